//! The store's contract: one blocking trait, implemented on a redb file ([`crate::RedbStore`])
//! and in memory ([`crate::MemStore`]), checked by one conformance suite
//! (`tests/conformance.rs`). Async code reaches it through [`crate::StoreHandle`].

use mindmesh_core::PersonaRecord;
use mindmesh_core::config::StoreConfig;
use mindmesh_core::event::{Event, MAX_EVENT_DETAIL, truncate_utf8};
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::spec::MAX_NAME_LEN;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Most events one [`Store::events`] call returns, whatever `limit` asks.
pub const MAX_EVENTS_PER_READ: usize = 10_000;
/// Most points one series read returns, whatever `max_points` asks.
pub const MAX_SERIES_POINTS: usize = 10_000;
/// Most events one [`Store::append_events`] call takes: one transaction stays small.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
/// Most personas one [`Store::append_samples`] tick takes.
pub const MAX_SAMPLES_PER_TICK: usize = 10_000;

/// Most events one [`Store::compact`] expires; the rest wait for the next, so one call
/// stays short.
pub(crate) const MAX_EVENTS_EXPIRED_PER_COMPACT: usize = 100_000;

/// What one [`Store::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    /// Per-persona rollups written (one per persona per interval).
    pub rollups_written: u64,
    /// Raw persona samples dropped by raw retention.
    pub raw_deleted: u64,
    /// Persona rollups dropped by rollup retention.
    pub rollups_deleted: u64,
    pub host_rollups_written: u64,
    pub host_raw_deleted: u64,
    pub host_rollups_deleted: u64,
    /// Events dropped by event retention.
    pub events_deleted: u64,
    /// Stored samples or events that could not be decoded and were left out of rollups or
    /// dropped (damage; logged as it is met).
    pub undecodable: u64,
    /// Everything older than this (ms) has been rolled up.
    pub rolled_until_ms: u64,
}

/// A node's durable state: persona records, state blobs, the event log and metric series.
///
/// Blocking; every method is one transaction, so each either happens whole or not at all,
/// also across a crash. Call it from a dedicated thread ([`crate::StoreHandle`]) or
/// `spawn_blocking`, never from an async task.
pub trait Store: Send + Sync + 'static {
    /// The retention and limits this store applies.
    fn config(&self) -> &StoreConfig;

    /// Insert or replace the record named by `record.spec.name`.
    fn put_persona(&self, record: &PersonaRecord) -> Result<()>;
    fn get_persona(&self, name: &str) -> Result<Option<PersonaRecord>>;
    /// Every record, ordered by name.
    fn list_personas(&self) -> Result<Vec<PersonaRecord>>;
    /// Drop the record and its state blob; its series age out by retention. Returns whether
    /// a record existed.
    fn remove_persona(&self, name: &str) -> Result<bool>;

    /// Keep `state` for `name`, replacing any earlier blob. Refused over
    /// [`StoreConfig::max_state_bytes`].
    fn put_state(&self, name: &str, state: &[u8]) -> Result<()>;
    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Returns whether a blob existed.
    fn delete_state(&self, name: &str) -> Result<bool>;

    /// Append `events` in order, giving each the next `seq` (gap-free, starting at 1; the
    /// numbering never restarts, even when retention has emptied the log). Details longer
    /// than [`MAX_EVENT_DETAIL`] are cut. On error nothing is stored and `seq`s are untouched.
    fn append_events(&self, events: &mut [Event]) -> Result<()>;
    /// Up to `limit` events with `seq > after_seq`, oldest first, optionally of one persona.
    fn events(&self, after_seq: u64, limit: usize, persona: Option<&str>) -> Result<Vec<Event>>;
    /// The `seq` of the last event ever appended, 0 if none.
    fn last_event_seq(&self) -> Result<u64>;

    /// Record one metrics tick: a sample per persona and optionally the host's, in one
    /// transaction. Every sample is stored with `ts_ms` as its time.
    fn append_samples(&self, ts_ms: u64, samples: &[(String, PersonaSample)], host: Option<&HostSample>) -> Result<()>;
    /// Samples of `name` in `from_ms..=to_ms`, oldest first: raw samples with their time in
    /// the range where they are still kept; before the first of them, rollups (one per
    /// interval, stamped with the time of its last sample) of the intervals that start in the
    /// range. Merged down to at most `max_points` (clamped to `1..=`[`MAX_SERIES_POINTS`])
    /// equal time buckets when there are more.
    fn persona_series(&self, name: &str, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<PersonaSample>>;
    /// The host's series, as [`Store::persona_series`].
    fn host_series(&self, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>>;
    /// Roll complete intervals of raw samples into rollups and apply retention, as of
    /// `now_ms`. Idempotent: calling it again with the same `now_ms` does nothing more.
    fn compact(&self, now_ms: u64) -> Result<CompactReport>;
}

/// A store shared with its owner: the simulator keeps a node's in-memory store across the
/// node's crash and restart, as a file outlives the process that wrote it.
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn config(&self) -> &StoreConfig {
        (**self).config()
    }

    fn put_persona(&self, record: &PersonaRecord) -> Result<()> {
        (**self).put_persona(record)
    }

    fn get_persona(&self, name: &str) -> Result<Option<PersonaRecord>> {
        (**self).get_persona(name)
    }

    fn list_personas(&self) -> Result<Vec<PersonaRecord>> {
        (**self).list_personas()
    }

    fn remove_persona(&self, name: &str) -> Result<bool> {
        (**self).remove_persona(name)
    }

    fn put_state(&self, name: &str, state: &[u8]) -> Result<()> {
        (**self).put_state(name, state)
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        (**self).get_state(name)
    }

    fn delete_state(&self, name: &str) -> Result<bool> {
        (**self).delete_state(name)
    }

    fn append_events(&self, events: &mut [Event]) -> Result<()> {
        (**self).append_events(events)
    }

    fn events(&self, after_seq: u64, limit: usize, persona: Option<&str>) -> Result<Vec<Event>> {
        (**self).events(after_seq, limit, persona)
    }

    fn last_event_seq(&self) -> Result<u64> {
        (**self).last_event_seq()
    }

    fn append_samples(&self, ts_ms: u64, samples: &[(String, PersonaSample)], host: Option<&HostSample>) -> Result<()> {
        (**self).append_samples(ts_ms, samples, host)
    }

    fn persona_series(&self, name: &str, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<PersonaSample>> {
        (**self).persona_series(name, from_ms, to_ms, max_points)
    }

    fn host_series(&self, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>> {
        (**self).host_series(from_ms, to_ms, max_points)
    }

    fn compact(&self, now_ms: u64) -> Result<CompactReport> {
        (**self).compact(now_ms)
    }
}

/// Names become keys: bounded, non-empty (as [`mindmesh_core::PersonaSpec`] validates them).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 63 bytes"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName { name: truncated(name), reason })
}

/// Event persona names may be empty (node-wide events) but are bounded like any name.
pub(crate) fn check_event(event: &mut Event) -> Result<()> {
    if event.persona.len() > MAX_NAME_LEN {
        return Err(StoreError::InvalidName { name: truncated(&event.persona), reason: "longer than 63 bytes" });
    }
    truncate_utf8(&mut event.detail, MAX_EVENT_DETAIL);
    Ok(())
}

pub(crate) fn check_state(config: &StoreConfig, state: &[u8]) -> Result<()> {
    let len_bytes = state.len() as u64;
    if len_bytes > config.max_state_bytes {
        return Err(StoreError::TooLarge { what: "state blob", len_bytes, max_bytes: config.max_state_bytes });
    }
    Ok(())
}

pub(crate) fn check_count(what: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(StoreError::TooMany { what, count: len, max });
    }
    Ok(())
}

/// A bad name shown in an error is cut, so a huge one does not flood logs.
fn truncated(name: &str) -> String {
    let mut s = name.to_owned();
    truncate_utf8(&mut s, 80);
    s
}
