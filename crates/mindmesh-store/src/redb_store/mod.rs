//! [`RedbStore`]: the store in one redb file.
//!
//! Every trait method is one redb transaction, committed with fsync before it returns, so a
//! node killed at any instant reopens the file at its last commit: redb writes each commit
//! with checksums into the inactive of two slots and flips to it only when it is complete.

mod compact;
mod events;
mod personas;
mod series;
mod tables;

use std::path::Path;
use std::sync::Arc;

use mindmesh_core::PersonaRecord;
use mindmesh_core::config::StoreConfig;
use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::error::{Result, StoreError};
use crate::health::{StoreHealth, WatchedFile, panic_message};
use crate::store::{CompactReport, Store};
use tables::*;

pub use check::{CheckReport, TableRows, check_file};

mod check;

/// How a store file is opened: its cache, and the check on open.
fn open_builder(options: &RedbOptions) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes).set_check_integrity_on_open(options.verify_on_open);
    builder
}

/// The layout this build reads and writes; a file with another is refused, not guessed at.
/// 2: series keyed time first, raw samples in per-interval chunks (1 keyed them by persona).
/// 3: persona records carry the registry epoch they were last started at.
pub const SCHEMA_VERSION: u64 = 3;

/// How the redb file is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbOptions {
    /// redb's page cache. Its default (1 GiB) would dwarf a node that aims for tens of MB; the
    /// hot set (the last minutes of samples, the records, the log's tail) is small.
    pub cache_bytes: usize,
    /// Save the allocator state with every commit so a reopen after a crash is instant
    /// instead of a walk of the whole file, at the price of a second fsync per commit.
    pub quick_repair: bool,
    /// Verify the checksum of every page on open (redb's `check_integrity`): a file damaged
    /// since redb wrote it (truncated, zeroed, overwritten) is refused at once, where a plain
    /// open trusted it and panicked later on the first damaged page. Costs one read of the
    /// whole file per open.
    pub verify_on_open: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions { cache_bytes: 16 << 20, quick_repair: true, verify_on_open: true }
    }
}

/// The store in a redb file. Cheap to share: all methods take `&self`; redb serialises
/// writers and lets readers run beside them.
pub struct RedbStore {
    db: Arc<Database>,
    config: StoreConfig,
    options: RedbOptions,
    health: StoreHealth,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("config", &self.config).field("options", &self.options).finish()
    }
}

impl RedbStore {
    /// Open (or create) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        Self::open_with(path, config, RedbOptions::default())
    }

    /// Every failure names the file ([`StoreError::Open`]); a damaged file is an error, never
    /// a panic. I/O failures of the open database are reported to [`RedbStore::health`].
    pub fn open_with(path: impl AsRef<Path>, config: StoreConfig, options: RedbOptions) -> Result<Self> {
        config.validate().map_err(StoreError::Config)?;
        let path = path.as_ref();
        let open_error =
            |error: StoreError| StoreError::Open { path: path.display().to_string(), error: Box::new(error) };
        let health = StoreHealth::new();
        let started = std::time::Instant::now();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<RedbStore> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| open_error(StoreError::Database(redb::Error::Io(e))))?;
            let backend = WatchedFile::new(file, path, health.clone()).map_err(|e| open_error(e.into()))?;
            let db = open_builder(&options).create_with_backend(backend).map_err(|e| open_error(e.into()))?;
            let store = RedbStore {
                db: Arc::new(db),
                config: config.clone(),
                options: options.clone(),
                health: health.clone(),
            };
            store.init_schema().map_err(open_error)?;
            Ok(store)
        }));
        let store = match opened {
            Ok(r) => r?,
            Err(p) => {
                let what = format!("redb panicked reading it: {}", panic_message(p.as_ref()));
                return Err(open_error(StoreError::Database(redb::Error::Corrupted(what))));
            }
        };
        if let Some(failure) = health.failure() {
            return Err(open_error(StoreError::Failed(failure)));
        }
        tracing::debug!(path = %path.display(), verified = options.verify_on_open, elapsed_ms = started.elapsed().as_millis() as u64, "store file open");
        Ok(store)
    }

    /// Use a database that another module opened too (the Raft storage keeps its tables in
    /// the same file): the store only touches its own tables.
    pub fn with_database(db: Arc<Database>, config: StoreConfig, options: RedbOptions) -> Result<Self> {
        config.validate().map_err(StoreError::Config)?;
        let store = RedbStore { db, config, options, health: StoreHealth::new() };
        store.init_schema()?;
        Ok(store)
    }

    /// Where failures of the file are reported: every module sharing [`RedbStore::database`]
    /// writes through the same watched file, so one failure is seen by all.
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    /// The underlying database, for modules that keep their own tables in the same file.
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// Check the schema version, stamp a new file, and create every table so that reads
    /// never meet a missing one.
    fn init_schema(&self) -> Result<()> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_SCHEMA_VERSION)?.map(|v| v.value());
            match found {
                Some(found) if found != SCHEMA_VERSION => {
                    return Err(StoreError::UnknownSchema { found, supported: SCHEMA_VERSION });
                }
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
                }
            }
        }
        txn.open_table(PERSONAS)?;
        txn.open_table(STATES)?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENTS_BY_PERSONA)?;
        txn.open_table(PERSONA_RECENT)?;
        txn.open_table(PERSONA_RAW)?;
        txn.open_table(PERSONA_ROLLUPS)?;
        txn.open_table(HOST_RAW)?;
        txn.open_table(HOST_ROLLUPS)?;
        txn.commit()?;
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        txn.set_quick_repair(self.options.quick_repair);
        Ok(txn)
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }
}

impl Store for RedbStore {
    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn put_persona(&self, record: &PersonaRecord) -> Result<()> {
        personas::put(self, record)
    }

    fn get_persona(&self, name: &str) -> Result<Option<PersonaRecord>> {
        personas::get(self, name)
    }

    fn list_personas(&self) -> Result<Vec<PersonaRecord>> {
        personas::list(self)
    }

    fn remove_persona(&self, name: &str) -> Result<bool> {
        personas::remove(self, name)
    }

    fn put_state(&self, name: &str, state: &[u8]) -> Result<()> {
        personas::put_state(self, name, state)
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        personas::get_state(self, name)
    }

    fn delete_state(&self, name: &str) -> Result<bool> {
        personas::delete_state(self, name)
    }

    fn append_events(&self, events: &mut [Event]) -> Result<()> {
        events::append(self, events)
    }

    fn events(&self, after_seq: u64, limit: usize, persona: Option<&str>) -> Result<Vec<Event>> {
        events::read(self, after_seq, limit, persona)
    }

    fn last_event_seq(&self) -> Result<u64> {
        events::last_seq(self)
    }

    fn append_samples(&self, ts_ms: u64, samples: &[(String, PersonaSample)], host: Option<&HostSample>) -> Result<()> {
        series::append(self, ts_ms, samples, host)
    }

    fn persona_series(&self, name: &str, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<PersonaSample>> {
        series::persona(self, name, from_ms, to_ms, max_points)
    }

    fn host_series(&self, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>> {
        series::host(self, from_ms, to_ms, max_points)
    }

    fn compact(&self, now_ms: u64) -> Result<CompactReport> {
        compact::run(self, now_ms)
    }
}
