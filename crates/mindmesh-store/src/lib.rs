//! # mindmesh-store
//!
//! A node's durable state in one redb file: persona records and state blobs, the event log,
//! and per-persona and host metric series with rollups and retention. Behind one blocking
//! trait, [`Store`], with a file implementation ([`RedbStore`]) and an in-memory twin
//! ([`MemStore`]) that pass the same conformance suite; async code goes through
//! [`StoreHandle`], an actor on its own thread.
//!
//! # Layout
//! - [`store`]: the [`Store`] trait, [`CompactReport`], the limits every backend applies
//! - [`redb_store`]: [`RedbStore`] — tables (`tables.rs`), records and blobs
//!   (`personas.rs`), the event log (`events.rs`), series (`series.rs`), compaction
//!   (`compact.rs`)
//! - [`mem_store`]: [`MemStore`], the twin
//! - [`handle`]: [`StoreHandle`], the actor: bounded queue, oneshot replies, draining close
//! - [`health`]: [`StoreHealth`], the first failure of the file (I/O, damage, a panic), which
//!   stops the store from answering and its owner from acknowledging anything more
//! - [`check_file`]: verify a file on a copy, list its tables and rows (`mindmesh store check`)
//! - `series`: pure series logic both backends share (compaction plan, rollups by interval,
//!   which rollups a read takes, downsampling)
//! - `codec`: version tags and size bounds of stored values
//! - [`error`]: [`StoreError`], the crate's one error type
//!
//! ## The file
//! | table | key | value |
//! | --- | --- | --- |
//! | `store/meta` | `&str` | `u64`: `schema_version`, `event_last_seq`, `series_rolled_until_ms` |
//! | `persona/record` | name | `PersonaRecord` |
//! | `persona/state` | name | the blob as given |
//! | `event/log` | seq | `Event` |
//! | `event/by_persona` | (name, seq) | `()` |
//! | `series/persona_recent` | (ts_ms, name) | `PersonaSample`, not yet compacted |
//! | `series/persona_raw` | (interval start ms, name) | the interval's `PersonaSample`s |
//! | `series/persona_rollup` | (interval start ms, name) | `PersonaSample` |
//! | `series/host_raw` | ts_ms | `HostSample` |
//! | `series/host_rollup` | interval start ms | `HostSample` |
//!
//! Values are postcard behind a one-byte version tag, each kind with a size bound. Tables
//! are namespaced because other modules (the Raft log and state machine) keep theirs in the
//! same file, reached through [`RedbStore::database`] / [`RedbStore::with_database`].
//!
//! ## Series
//! Series tables are keyed time first, so every write lands at the end of its table and
//! retention cuts a range off its start: a tick of 500 personas touches a few pages, not one
//! per persona. Each tick writes one sample per persona to `series/persona_recent` in one
//! transaction. [`Store::compact`], which a node runs about once a minute, moves every
//! complete interval (60 s by default) into one raw chunk and one rollup per persona, drops
//! raw samples past their retention (1 h) but never before they are rolled up, drops rollups
//! past theirs (24 h) and events past theirs, all in one transaction. Reads seek to one
//! persona's rows at each time, take rollups for the span raw samples no longer cover, and
//! merge the result down to the points asked for.

mod codec;
pub mod error;
pub mod handle;
pub mod health;
pub mod mem_store;
pub mod redb_store;
mod series;
pub mod store;

pub use error::StoreError;
pub use handle::{DEFAULT_QUEUE_LEN, StoreHandle, StoreThread};
pub use health::StoreHealth;
pub use mem_store::MemStore;
pub use redb_store::{CheckReport, RedbOptions, RedbStore, SCHEMA_VERSION, TableRows, check_file};
pub use store::{CompactReport, MAX_EVENTS_PER_READ, MAX_SERIES_POINTS, Store};
