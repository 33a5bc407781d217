//! One compaction: rollups, series retention and event retention in a single transaction, so
//! a crash halfway leaves the file as before it, never with raw samples gone and no rollup.

use redb::ReadableTable;

use super::tables::{META, META_ROLLED_UNTIL_MS};
use super::{RedbStore, events, series};
use crate::error::Result;
use crate::series::Plan;
use crate::store::CompactReport;

pub(super) fn run(store: &RedbStore, now_ms: u64) -> Result<CompactReport> {
    let txn = store.begin_write()?;
    let rolled_until_ms = txn.open_table(META)?.get(META_ROLLED_UNTIL_MS)?.map_or(0, |v| v.value());
    let plan = Plan::new(&store.config, now_ms, rolled_until_ms);
    let mut report = CompactReport::default();
    series::compact_personas(&txn, &plan, &mut report)?;
    series::compact_host(&txn, &plan, &mut report)?;
    report.events_deleted = events::expire(&txn, plan.event_cut_ms)?;
    txn.open_table(META)?.insert(META_ROLLED_UNTIL_MS, plan.roll_to_ms)?;
    txn.commit()?;
    report.rolled_until_ms = plan.roll_to_ms;
    tracing::debug!(?report, "store compacted");
    Ok(report)
}
