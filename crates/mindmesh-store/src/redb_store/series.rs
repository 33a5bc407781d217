//! Metric series in the file: ticks appended at the end of one table, then moved by
//! compaction into raw rows and rollups keyed so that one persona's span is one range scan
//! (see [`crate::series`]).

use std::ops::Bound;

use mindmesh_core::metrics::{HostSample, PersonaSample};
use redb::{ReadableTable, Table, WriteTransaction};

use super::RedbStore;
use super::tables::{HOST_RAW, HOST_ROLLUPS, PERSONA_RAW, PERSONA_RECENT, PERSONA_ROLLUPS};
use crate::codec::{self, At};
use crate::error::Result;
use crate::series::{self, Fate, MAX_MOVED_PER_COMPACT, Plan, stamped};
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
        let mut recent = txn.open_table(PERSONA_RECENT)?;
        for ((name, _), bytes) in samples.iter().zip(&rows) {
            recent.insert((ts_ms, name.as_str()), bytes.as_slice())?;
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
    let recent = txn.open_table(PERSONA_RECENT)?;
    let rollups = txn.open_table(PERSONA_ROLLUPS)?;
    let mut kept = Vec::new();
    for row in raw.range((name, from_ms)..=(name, to_ms))? {
        let (k, v) = row?;
        kept.push(codec::decode(v.value(), &At(name, k.value().1))?);
    }
    let raw_points = series::merge_by_ts(kept, recent_of(&recent, name, from_ms, to_ms)?);
    let first_raw_ms = raw_points.first().map(|s| s.ts_ms);
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
    points.extend(raw_points);
    Ok(series::downsample(points, from_ms, to_ms, max_points))
}

/// `name`'s samples among the recent rows, which are keyed by tick first: seek to
/// `(tick, name)` in each tick rather than read every persona's rows, two seeks a tick at most.
fn recent_of(
    recent: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    name: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<PersonaSample>> {
    let mut out = Vec::new();
    let mut cursor_ms = from_ms;
    while cursor_ms <= to_ms {
        let Some(row) = recent.range::<(u64, &str)>((cursor_ms, name)..)?.next() else { break };
        let (k, v) = row?;
        let (ts_ms, found) = k.value();
        if ts_ms > to_ms {
            break;
        }
        if found < name {
            // a later tick where `name` sorts further on: seek to it there
            cursor_ms = ts_ms;
            continue;
        }
        if found == name {
            out.push(codec::decode(v.value(), &At(name, ts_ms))?);
        }
        // found, or not in this tick (the seek landed past it): on to the next tick
        let Some(next_ms) = ts_ms.checked_add(1) else { break };
        cursor_ms = next_ms;
    }
    Ok(out)
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

/// Move recent samples of complete intervals into per-persona raw rows and roll those
/// intervals up; then expire raw samples and rollups, one persona at a time.
pub(super) fn compact_personas(txn: &WriteTransaction, plan: &Plan, report: &mut CompactReport) -> Result<()> {
    let mut recent = txn.open_table(PERSONA_RECENT)?;
    let mut raw = txn.open_table(PERSONA_RAW)?;
    let mut rollups = txn.open_table(PERSONA_ROLLUPS)?;

    let mut moved: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for row in recent.extract_from_if(..(plan.roll_to_ms, ""), |_, _| true)?.take(MAX_MOVED_PER_COMPACT) {
        let (k, v) = row?;
        let (ts_ms, name) = k.value();
        moved.push((name.to_owned(), ts_ms, v.value().to_vec()));
    }
    moved.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));

    // one group per persona and interval
    let mut rest = moved.as_slice();
    while let Some((name, first_ms, _)) = rest.first() {
        let start_ms = first_ms - first_ms % plan.interval_ms;
        let len =
            rest.iter().position(|(n, ts, _)| n != name || *ts >= start_ms + plan.interval_ms).unwrap_or(rest.len());
        let (group, tail) = rest.split_at(len);
        rest = tail;
        let fate = plan.fate(start_ms);
        if fate != Fate::Keep {
            report.raw_deleted += group.len() as u64;
        }
        if fate == Fate::Drop {
            continue;
        }
        let mut fresh: Vec<PersonaSample> = Vec::with_capacity(group.len());
        for (_, ts_ms, bytes) in group {
            match codec::decode(bytes, &At(name, *ts_ms)) {
                Ok(s) => fresh.push(s),
                Err(error) => {
                    tracing::warn!(%error, "sample dropped");
                    report.undecodable += 1;
                }
            }
        }
        let mut kept: Vec<PersonaSample> = Vec::new();
        for row in raw.range((name.as_str(), start_ms)..(name.as_str(), start_ms + plan.interval_ms))? {
            let (k, v) = row?;
            match codec::decode(v.value(), &At(name, k.value().1)) {
                Ok(s) => kept.push(s),
                Err(error) => {
                    tracing::warn!(%error, "sample left out of its rollup");
                    report.undecodable += 1;
                }
            }
        }
        if fate == Fate::Keep {
            for (_, ts_ms, bytes) in group {
                raw.insert((name.as_str(), *ts_ms), bytes.as_slice())?;
            }
        }
        if let Some(rollup) = PersonaSample::rollup(&series::merge_by_ts(kept, fresh)) {
            rollups.insert((name.as_str(), start_ms), codec::encode(&rollup)?.as_slice())?;
            report.rollups_written += 1;
        }
    }

    let mut after: Option<String> = None;
    while let Some(name) = next_name(&raw, after.as_deref())? {
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
