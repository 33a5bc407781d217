//! The event log: a gap-free sequence, and an index by persona.

use mindmesh_core::event::Event;
use redb::{ReadableTable, WriteTransaction};

use super::RedbStore;
use super::tables::{EVENTS, EVENTS_BY_PERSONA, META, META_LAST_EVENT_SEQ};
use crate::codec;
use crate::error::Result;
use crate::store::{
    MAX_EVENTS_EXPIRED_PER_COMPACT, MAX_EVENTS_PER_APPEND, MAX_EVENTS_PER_READ, check_count, check_event,
};

pub(super) fn append(store: &RedbStore, events: &mut [Event]) -> Result<()> {
    check_count("events", events.len(), MAX_EVENTS_PER_APPEND)?;
    if events.is_empty() {
        return Ok(());
    }
    for e in events.iter_mut() {
        check_event(e)?;
    }
    let txn = store.begin_write()?;
    let last = {
        let mut meta = txn.open_table(META)?;
        let last = meta.get(META_LAST_EVENT_SEQ)?.map_or(0, |v| v.value());
        meta.insert(META_LAST_EVENT_SEQ, last + events.len() as u64)?;
        last
    };
    {
        let mut log = txn.open_table(EVENTS)?;
        let mut index = txn.open_table(EVENTS_BY_PERSONA)?;
        for (i, e) in events.iter().enumerate() {
            let seq = last + 1 + i as u64;
            // the caller's events get their seq only once the commit has succeeded
            let bytes = codec::encode(&Event { seq, ..e.clone() })?;
            log.insert(seq, bytes.as_slice())?;
            index.insert((e.persona.as_str(), seq), ())?;
        }
    }
    txn.commit()?;
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = last + 1 + i as u64;
    }
    Ok(())
}

pub(super) fn read(store: &RedbStore, after_seq: u64, limit: usize, persona: Option<&str>) -> Result<Vec<Event>> {
    let limit = limit.min(MAX_EVENTS_PER_READ);
    let Some(first) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
    let txn = store.begin_read()?;
    let log = txn.open_table(EVENTS)?;
    let mut out = Vec::new();
    match persona {
        None => {
            for row in log.range(first..)?.take(limit) {
                let (k, v) = row?;
                out.push(codec::decode(v.value(), &k.value())?);
            }
        }
        Some(p) => {
            let index = txn.open_table(EVENTS_BY_PERSONA)?;
            for row in index.range((p, first)..=(p, u64::MAX))?.take(limit) {
                let seq = row?.0.value().1;
                // index and log change in the same transactions: a miss is damage, said as such
                if let Some(v) = log.get(seq)? {
                    out.push(codec::decode(v.value(), &seq)?);
                } else {
                    tracing::warn!(seq, persona = p, "event index names a missing event");
                }
            }
        }
    }
    Ok(out)
}

pub(super) fn last_seq(store: &RedbStore) -> Result<u64> {
    let txn = store.begin_read()?;
    let meta = txn.open_table(META)?;
    Ok(meta.get(META_LAST_EVENT_SEQ)?.map_or(0, |v| v.value()))
}

/// Drop the oldest events while they are older than `cut_ms`. Only a prefix goes, so the log
/// stays one gap-free run; an event stamped out of order holds back those after it.
pub(super) fn expire(txn: &WriteTransaction, cut_ms: u64) -> Result<u64> {
    let mut log = txn.open_table(EVENTS)?;
    let mut doomed: Vec<(u64, String)> = Vec::new();
    for row in log.iter()?.take(MAX_EVENTS_EXPIRED_PER_COMPACT) {
        let (k, v) = row?;
        let seq = k.value();
        match codec::decode::<Event>(v.value(), &seq) {
            Ok(e) if e.ts_ms >= cut_ms => break,
            Ok(e) => doomed.push((seq, e.persona)),
            // garbage is never worth keeping, and skipping it would pin the log forever
            Err(err) => {
                tracing::warn!(seq, error = %err, "dropping an undecodable event");
                doomed.push((seq, String::new()));
            }
        }
    }
    let mut index = txn.open_table(EVENTS_BY_PERSONA)?;
    for (seq, persona) in &doomed {
        log.remove(*seq)?;
        index.remove((persona.as_str(), *seq))?;
    }
    Ok(doomed.len() as u64)
}
