//! The store's tables in the redb file. Names are namespaced (`store/`, `persona/`, `event/`,
//! `series/`) because other modules (the Raft log and state machine) keep their own tables in
//! the same file. Values are [`crate::codec`] bytes.

use redb::TableDefinition;

/// Store-wide counters and markers, keyed by the names below.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("store/meta");
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// Kept apart from the log so numbering survives retention emptying it.
pub(crate) const META_LAST_EVENT_SEQ: &str = "event_last_seq";
/// Every interval before this (ms) is rolled up.
pub(crate) const META_ROLLED_UNTIL_MS: &str = "series_rolled_until_ms";

/// name → `PersonaRecord`
pub(crate) const PERSONAS: TableDefinition<&str, &[u8]> = TableDefinition::new("persona/record");
/// name → the state blob as the persona gave it (opaque, not encoded)
pub(crate) const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("persona/state");

/// seq → `Event`
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("event/log");
/// (persona, seq) → (): reads of one persona's events skip everyone else's
pub(crate) const EVENTS_BY_PERSONA: TableDefinition<(&str, u64), ()> = TableDefinition::new("event/by_persona");

/// (interval start ms, persona) → that interval's raw `PersonaSample`s in time order: one
/// row per persona and interval, written once, at the end of the table, by compaction
pub(crate) const PERSONA_RAW: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("series/persona_raw");
/// (interval start ms, persona) → rolled-up `PersonaSample`
pub(crate) const PERSONA_ROLLUPS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("series/persona_rollup");
/// ts_ms → raw `HostSample`
pub(crate) const HOST_RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("series/host_raw");
/// interval start ms → rolled-up `HostSample`
pub(crate) const HOST_ROLLUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("series/host_rollup");
/// (ts_ms, persona) → `PersonaSample` not yet compacted: a tick of every persona lands at
/// the end of this one table
pub(crate) const PERSONA_RECENT: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("series/persona_recent");
