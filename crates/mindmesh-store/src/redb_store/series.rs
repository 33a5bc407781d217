//! Metric series in the file: raw samples and rollups keyed so that one persona's span is
//! one range scan.

use std::ops::Bound;

use mindmesh_core::metrics::{HostSample, PersonaSample};
use redb::{ReadableTable, Table, WriteTransaction};

use super::RedbStore;
use super::tables::{HOST_RAW, HOST_ROLLUPS, PERSONA_RAW, PERSONA_ROLLUPS};
use crate::codec::{self, At};
use crate::error::Result;
use crate::series::{self, Plan, stamped};
use crate::store::{CompactReport, MAX_SAMPLES_PER_TICK, check_count, check_name};

type SeriesTable<'txn> = Table<'txn, (&'static str, u64), &'static [u8]>;

pub(super) fn append(
    store: &RedbStore,
    ts_ms: u64,
    samples: &[(String, PersonaSample)],
    host: Option<&HostSample>,
) -> Result<()> {
    check_count("persona samples", samples.len(), MAX_SAMPLES_PER_TICK)?;
    // encoded before the transaction: a bad sample refuses the tick without touching the file
    let mut rows = Vec::with_capacity(samples.len());
    for (name, s) in samples {
        check_name(name)?;
        rows.push(codec::encode(stamped(s, ts_ms).as_ref())?);
    }
    let host_row = host.map(|h| codec::encode(stamped(h, ts_ms).as_ref())).transpose()?;
    let txn = store.begin_write()?;
    {
        let mut raw = txn.open_table(PERSONA_RAW)?;
        for ((name, _), bytes) in samples.iter().zip(&rows) {
            raw.insert((name.as_str(), ts_ms), bytes.as_slice())?;
        }
    }
    if let Some(bytes) = host_row {
        txn.open_table(HOST_RAW)?.insert(ts_ms, bytes.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

pub(super) fn persona(
    store: &RedbStore,
    name: &str,
    from_ms: u64,
    to_ms: u64,
    max_points: usize,
) -> Result<Vec<PersonaSample>> {
    if from_ms > to_ms {
        return Ok(Vec::new());
    }
    let txn = store.begin_read()?;
    let raw = txn.open_table(PERSONA_RAW)?;
    let rollups = txn.open_table(PERSONA_ROLLUPS)?;
    let first_raw_ms = match raw.range((name, from_ms)..=(name, to_ms))?.next() {
        Some(row) => Some(row?.0.value().1),
        None => None,
    };
    let mut points = Vec::new();
    let interval_ms = series::interval_ms(&store.config);
    if let Some(upper_ms) = series::rollup_upper_ms(first_raw_ms, to_ms, interval_ms)
        && upper_ms >= from_ms
    {
        for row in rollups.range((name, from_ms)..=(name, upper_ms))? {
            let (k, v) = row?;
            points.push(codec::decode(v.value(), &At(name, k.value().1))?);
        }
    }
    if let Some(first_ms) = first_raw_ms {
        for row in raw.range((name, first_ms)..=(name, to_ms))? {
            let (k, v) = row?;
            points.push(codec::decode(v.value(), &At(name, k.value().1))?);
        }
    }
    Ok(series::downsample(points, from_ms, to_ms, max_points))
}

pub(super) fn host(store: &RedbStore, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>> {
    if from_ms > to_ms {
        return Ok(Vec::new());
    }
    let txn = store.begin_read()?;
    let raw = txn.open_table(HOST_RAW)?;
    let rollups = txn.open_table(HOST_ROLLUPS)?;
    let first_raw_ms = match raw.range(from_ms..=to_ms)?.next() {
        Some(row) => Some(row?.0.value()),
        None => None,
    };
    let mut points = Vec::new();
    let interval_ms = series::interval_ms(&store.config);
    if let Some(upper_ms) = series::rollup_upper_ms(first_raw_ms, to_ms, interval_ms)
        && upper_ms >= from_ms
    {
        for row in rollups.range(from_ms..=upper_ms)? {
            let (k, v) = row?;
            points.push(codec::decode(v.value(), &At("host", k.value()))?);
        }
    }
    if let Some(first_ms) = first_raw_ms {
        for row in raw.range(first_ms..=to_ms)? {
            let (k, v) = row?;
            points.push(codec::decode(v.value(), &At("host", k.value()))?);
        }
    }
    Ok(series::downsample(points, from_ms, to_ms, max_points))
}

/// Roll up and expire every persona's series, one persona at a time.
pub(super) fn compact_personas(txn: &WriteTransaction, plan: &Plan, report: &mut CompactReport) -> Result<()> {
    let mut raw = txn.open_table(PERSONA_RAW)?;
    let mut rollups = txn.open_table(PERSONA_ROLLUPS)?;
    let mut after: Option<String> = None;
    while let Some(name) = next_name(&raw, after.as_deref())? {
        if plan.roll_from_ms < plan.roll_to_ms {
            let mut samples: Vec<PersonaSample> = Vec::new();
            for row in raw.range((name.as_str(), plan.roll_from_ms)..(name.as_str(), plan.roll_to_ms))? {
                let (k, v) = row?;
                match codec::decode(v.value(), &At(&name, k.value().1)) {
                    Ok(s) => samples.push(s),
                    Err(error) => {
                        tracing::warn!(%error, "sample left out of its rollup");
                        report.undecodable += 1;
                    }
                }
            }
            for (start_ms, rollup) in series::rollup_by_interval(&samples, plan.interval_ms) {
                rollups.insert((name.as_str(), start_ms), codec::encode(&rollup)?.as_slice())?;
                report.rollups_written += 1;
            }
        }
        report.raw_deleted += drain(&mut raw, &name, plan.raw_cut_ms)?;
        after = Some(name);
    }
    let mut after: Option<String> = None;
    while let Some(name) = next_name(&rollups, after.as_deref())? {
        report.rollups_deleted += drain(&mut rollups, &name, plan.rollup_cut_ms)?;
        after = Some(name);
    }
    Ok(())
}

pub(super) fn compact_host(txn: &WriteTransaction, plan: &Plan, report: &mut CompactReport) -> Result<()> {
    let mut raw = txn.open_table(HOST_RAW)?;
    let mut rollups = txn.open_table(HOST_ROLLUPS)?;
    if plan.roll_from_ms < plan.roll_to_ms {
        let mut samples: Vec<HostSample> = Vec::new();
        for row in raw.range(plan.roll_from_ms..plan.roll_to_ms)? {
            let (k, v) = row?;
            match codec::decode(v.value(), &At("host", k.value())) {
                Ok(s) => samples.push(s),
                Err(error) => {
                    tracing::warn!(%error, "host sample left out of its rollup");
                    report.undecodable += 1;
                }
            }
        }
        for (start_ms, rollup) in series::rollup_by_interval(&samples, plan.interval_ms) {
            rollups.insert(start_ms, codec::encode(&rollup)?.as_slice())?;
            report.host_rollups_written += 1;
        }
    }
    report.host_raw_deleted += count_drained(raw.extract_from_if(..plan.raw_cut_ms, |_, _| true)?)?;
    report.host_rollups_deleted += count_drained(rollups.extract_from_if(..plan.rollup_cut_ms, |_, _| true)?)?;
    Ok(())
}

/// The first persona name in a `(name, ts)` table after `after`: one seek per persona,
/// instead of a walk through all their rows.
fn next_name<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, u64), V>,
    after: Option<&str>,
) -> Result<Option<String>> {
    let mut range = match after {
        None => table.range::<(&str, u64)>(..)?,
        Some(p) => table.range::<(&str, u64)>((Bound::Excluded((p, u64::MAX)), Bound::Unbounded))?,
    };
    match range.next() {
        Some(row) => Ok(Some(row?.0.value().0.to_owned())),
        None => Ok(None),
    }
}

/// Delete `name`'s rows older than `before_ms`.
fn drain(table: &mut SeriesTable<'_>, name: &str, before_ms: u64) -> Result<u64> {
    if before_ms == 0 {
        return Ok(0);
    }
    count_drained(table.extract_from_if((name, 0)..(name, before_ms), |_, _| true)?)
}

/// Rows leave an extract iterator's table only as they are read.
fn count_drained<T, E>(rows: impl Iterator<Item = std::result::Result<T, E>>) -> Result<u64>
where
    crate::error::StoreError: From<E>,
{
    let mut n = 0;
    for row in rows {
        row?;
        n += 1;
    }
    Ok(n)
}
