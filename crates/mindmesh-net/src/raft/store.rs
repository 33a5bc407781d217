//! Where Raft keeps what must survive a crash: the log, the vote, the committed position and
//! the last snapshot of the registry. A small byte-level trait, so the openraft adapters
//! ([`super::log`], [`super::sm`]) are written once; [`MemRaftStore`] serves tests and the
//! simulator (a "crashed" node restarts on the same instance), [`super::redb_store`] the node.
//!
//! Contract: every write is durable when the call returns (the `Committed` marker may instead
//! become durable with the next write: openraft treats it as a hint), and `purge_upto` changes
//! the log and the last-purged marker atomically.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::NetError;

/// The log's neighbours in the metadata table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKey {
    Vote,
    Committed,
    LastPurged,
}

impl MetaKey {
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::Vote => "vote",
            MetaKey::Committed => "committed",
            MetaKey::LastPurged => "last_purged",
        }
    }
}

pub trait RaftStore: Clone + Send + Sync + 'static {
    /// Calls block on disk I/O: the adapters run them on the blocking pool. An in-memory store
    /// says no, and is called inline, which keeps a simulation deterministic.
    const BLOCKING: bool;

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, NetError>;
    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), NetError>;
    /// Insert entries by index, replacing any at the same index.
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), NetError>;
    /// Remove entries with index `>= from`.
    fn truncate_from(&self, from: u64) -> Result<(), NetError>;
    /// Remove entries with index `<= upto` and record `last_purged`, in one step.
    fn purge_upto(&self, upto: u64, last_purged: &[u8]) -> Result<(), NetError>;
    /// Entries with `start <= index < end`, in order, at most `max`.
    fn entries(&self, start: u64, end: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, NetError>;
    fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, NetError>;
    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, NetError>;
    fn put_snapshot(&self, bytes: &[u8]) -> Result<(), NetError>;
}

#[derive(Debug, Default)]
struct MemInner {
    meta: BTreeMap<MetaKey, Vec<u8>>,
    log: BTreeMap<u64, Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

/// A store in memory. Clones share the data, so a node "restarted" on a clone finds what it
/// wrote before its "crash".
#[derive(Debug, Clone, Default)]
pub struct MemRaftStore {
    inner: Arc<Mutex<MemInner>>,
}

impl MemRaftStore {
    pub fn new() -> Self {
        MemRaftStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemInner>, NetError> {
        self.inner.lock().map_err(|_| NetError::Storage("in-memory store poisoned".into()))
    }
}

impl RaftStore for MemRaftStore {
    const BLOCKING: bool = false;

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, NetError> {
        Ok(self.lock()?.meta.get(&key).cloned())
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), NetError> {
        self.lock()?.meta.insert(key, value.to_vec());
        Ok(())
    }

    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), NetError> {
        self.lock()?.log.extend(entries);
        Ok(())
    }

    fn truncate_from(&self, from: u64) -> Result<(), NetError> {
        self.lock()?.log.split_off(&from);
        Ok(())
    }

    fn purge_upto(&self, upto: u64, last_purged: &[u8]) -> Result<(), NetError> {
        let mut g = self.lock()?;
        g.log = match upto.checked_add(1) {
            Some(first_kept) => g.log.split_off(&first_kept),
            None => BTreeMap::new(),
        };
        g.meta.insert(MetaKey::LastPurged, last_purged.to_vec());
        Ok(())
    }

    fn entries(&self, start: u64, end: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, NetError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self.lock()?.log.range(start..end).take(max).map(|(k, v)| (*k, v.clone())).collect())
    }

    fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, NetError> {
        Ok(self.lock()?.log.last_key_value().map(|(k, v)| (*k, v.clone())))
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, NetError> {
        Ok(self.lock()?.snapshot.clone())
    }

    fn put_snapshot(&self, bytes: &[u8]) -> Result<(), NetError> {
        self.lock()?.snapshot = Some(bytes.to_vec());
        Ok(())
    }
}
