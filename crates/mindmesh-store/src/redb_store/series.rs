//! Metric series in the file (see [`crate::series`] for the rules).
//!
//! Every persona table is keyed time first, `(ts or interval start, persona)`: a tick, a
//! compaction's chunks and rollups all land at the end of their table and retention cuts a
//! range off the start, so writes touch a few pages, not one per persona. A persona's span is
//! read by seeking to `(time, name)` at each time present, two seeks per time at most.

use mindmesh_core::metrics::{HostSample, PersonaSample};
use redb::{ReadableTable, WriteTransaction};

use super::RedbStore;
use super::tables::{HOST_RAW, HOST_ROLLUPS, PERSONA_RAW, PERSONA_RECENT, PERSONA_ROLLUPS};
use crate::codec::{self, At};
use crate::error::{Result, StoreError};
use crate::series::{self, Fate, MAX_MOVED_PER_COMPACT, Plan, stamped};
use crate::store::{CompactReport, MAX_SAMPLES_PER_TICK, check_count, check_name};

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
    let interval_ms = series::interval_ms(&store.config);
    let txn = store.begin_read()?;
    let mut kept: Vec<PersonaSample> = Vec::new();
    let raw = txn.open_table(PERSONA_RAW)?;
    seek_each(&raw, name, from_ms - from_ms % interval_ms, to_ms, |start_ms, bytes| {
        let chunk: Vec<PersonaSample> = codec::decode(bytes, &At(name, start_ms))?;
        kept.extend(chunk.into_iter().filter(|s| (from_ms..=to_ms).contains(&s.ts_ms)));
        Ok(())
    })?;
    let mut recent: Vec<PersonaSample> = Vec::new();
    seek_each(&txn.open_table(PERSONA_RECENT)?, name, from_ms, to_ms, |ts_ms, bytes| {
        recent.push(codec::decode(bytes, &At(name, ts_ms))?);
        Ok(())
    })?;
    let raw_points = series::merge_by_ts(kept, recent);
    let mut points = Vec::new();
    if let Some(upper_ms) = series::rollup_upper_ms(raw_points.first().map(|s| s.ts_ms), to_ms, interval_ms)
        && upper_ms >= from_ms
    {
        seek_each(&txn.open_table(PERSONA_ROLLUPS)?, name, from_ms, upper_ms, |start_ms, bytes| {
            points.push(codec::decode(bytes, &At(name, start_ms))?);
            Ok(())
        })?;
    }
    points.extend(raw_points);
    Ok(series::downsample(points, from_ms, to_ms, max_points))
}

/// Call `each` with the time and value of every `(time, name)` row with time in
/// `from_ms..=to_ms`, in time order, without reading other personas' rows: each seek either
/// lands on `name` or finds the next time present, so two seeks per time at most. (A guess
/// of the next time from the last stride would save one, but would skip the rows between
/// when a series changes pace.)
fn seek_each(
    table: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    name: &str,
    from_ms: u64,
    to_ms: u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut cursor_ms = from_ms;
    while cursor_ms <= to_ms {
        let Some(row) = table.range::<(u64, &str)>((cursor_ms, name)..)?.next() else { break };
        let (k, v) = row?;
        let (ts_ms, found) = k.value();
        if ts_ms > to_ms {
            break;
        }
        if found < name {
            // a later time, where `name` sorts further on: seek to it there
            cursor_ms = ts_ms;
            continue;
        }
        if found == name {
            each(ts_ms, v.value())?;
        }
        // taken, or not at this time (the seek landed past it): on to the next time
        let Some(next_ms) = ts_ms.checked_add(1) else { break };
        cursor_ms = next_ms;
    }
    Ok(())
}

pub(super) fn host(store: &RedbStore, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>> {
    if from_ms > to_ms {
        return Ok(Vec::new());
    }
    let txn = store.begin_read()?;
    let raw = txn.open_table(HOST_RAW)?;
    let rollups = txn.open_table(HOST_ROLLUPS)?;
    let mut raw_points: Vec<HostSample> = Vec::new();
    for row in raw.range(from_ms..=to_ms)? {
        let (k, v) = row?;
        raw_points.push(codec::decode(v.value(), &At("host", k.value()))?);
    }
    let mut points = Vec::new();
    let interval_ms = series::interval_ms(&store.config);
    if let Some(upper_ms) = series::rollup_upper_ms(raw_points.first().map(|s| s.ts_ms), to_ms, interval_ms)
        && upper_ms >= from_ms
    {
        for row in rollups.range(from_ms..=upper_ms)? {
            let (k, v) = row?;
            points.push(codec::decode(v.value(), &At("host", k.value()))?);
        }
    }
    points.extend(raw_points);
    Ok(series::downsample(points, from_ms, to_ms, max_points))
}

/// Move recent samples of complete intervals into one raw chunk per persona and interval,
/// roll those intervals up, then cut expired chunks and rollups off the start.
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
        let end_ms = start_ms + plan.interval_ms;
        let len = rest.iter().position(|(n, ts, _)| n != name || *ts >= end_ms).unwrap_or(rest.len());
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
        let key = (start_ms, name.as_str());
        // a chunk exists already only when samples came late, or a bounded move split the
        // interval: merge, so the interval is kept and rolled up whole
        let kept: Vec<PersonaSample> = match raw.get(key)? {
            Some(v) => codec::decode(v.value(), &At(name, start_ms)).unwrap_or_else(|error| {
                tracing::warn!(%error, "raw chunk replaced");
                report.undecodable += 1;
                Vec::new()
            }),
            None => Vec::new(),
        };
        let merged = series::merge_by_ts(kept, fresh);
        if fate == Fate::Keep {
            match codec::encode(&merged) {
                Ok(bytes) => drop(raw.insert(key, bytes.as_slice())?),
                // refusing the chunk would fail every compaction from now on: keep the rollup
                Err(error) => {
                    tracing::warn!(%error, persona = %name, start_ms, "raw samples of an interval not kept");
                    report.raw_deleted += merged.len() as u64;
                }
            }
        }
        if let Some(rollup) = PersonaSample::rollup(&merged) {
            rollups.insert(key, codec::encode(&rollup)?.as_slice())?;
            report.rollups_written += 1;
        }
    }

    for row in raw.extract_from_if(..(plan.raw_cut_ms, ""), |_, _| true)? {
        report.raw_deleted += codec::chunk_len(row?.1.value());
    }
    report.rollups_deleted += count_drained(rollups.extract_from_if(..(plan.rollup_cut_ms, ""), |_, _| true)?)?;
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

/// Rows leave an extract iterator's table only as they are read.
fn count_drained<T, E>(rows: impl Iterator<Item = std::result::Result<T, E>>) -> Result<u64>
where
    StoreError: From<E>,
{
    let mut n = 0;
    for row in rows {
        row?;
        n += 1;
    }
    Ok(n)
}
