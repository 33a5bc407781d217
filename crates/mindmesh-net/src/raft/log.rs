//! openraft's log storage over a [`RaftStore`]: entries, vote and committed position, each
//! encoded with a version tag.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use mindmesh_core::wire;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::store::{MetaKey, RaftStore};
use super::{Entry, LogId, MAX_ENTRY_BYTES, RAFT_WIRE_VERSION, TypeConfig, Vote, store_err};
use crate::{NetError, NodeId};

/// Entries read in one call at most (openraft asks for `max_payload_entries` at a time).
const MAX_ENTRIES_PER_READ: usize = 10_000;

#[derive(Debug, Clone)]
pub struct LogStore<S: RaftStore> {
    store: S,
}

impl<S: RaftStore> LogStore<S> {
    pub fn new(store: S) -> Self {
        LogStore { store }
    }
}

/// Run a store call: on the blocking pool for a disk store, inline for a memory one.
pub(crate) async fn run<S: RaftStore, T: Send + 'static>(
    store: &S,
    f: impl FnOnce(&S) -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    if S::BLOCKING {
        let s = store.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .map_err(|e| NetError::Storage(format!("storage task failed: {e}")))?
    } else {
        f(store)
    }
}

pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, NetError> {
    Ok(wire::encode(RAFT_WIRE_VERSION, v)?)
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, NetError> {
    Ok(wire::decode(RAFT_WIRE_VERSION, b, MAX_ENTRY_BYTES)?)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<S: RaftStore> LogStore<S> {
    async fn meta<T: DeserializeOwned + Send + 'static>(&self, key: MetaKey) -> Result<Option<T>, NetError> {
        match run(&self.store, move |s| s.get_meta(key)).await? {
            Some(b) => Ok(Some(dec(&b)?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: Serialize>(&self, key: MetaKey, v: &T) -> Result<(), NetError> {
        let b = enc(v)?;
        run(&self.store, move |s| s.put_meta(key, &b)).await
    }
}

impl<S: RaftStore> RaftLogReader<TypeConfig> for LogStore<S> {
    /// Entries `start, start + 1, …` of the range, in order, and nothing else.
    ///
    /// A read whose start is no longer in the log (purged under a snapshot, or not written yet)
    /// returns nothing rather than the entries that follow: replication sends what this returns
    /// as the entries right after the follower's last matching one, so entries from further on
    /// would leave a hole in the follower's log (a simulated leader did, once, when a purge landed
    /// between its choice of range and the read). An empty answer is openraft's "not found":
    /// replication retries, finds the start purged and sends a snapshot instead.
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let (start, end) = bounds(&range);
        let raw = run(&self.store, move |s| s.entries(start, end, MAX_ENTRIES_PER_READ))
            .await
            .map_err(|e| store_err(&e, false))?;
        contiguous_from(start, end, &raw).map_err(|e| store_err(&e, false))
    }
}

/// Decode the run of `raw` that starts at `start`, checking each entry is the one its key names
/// and lies in `[start, end)`. A gap after the first entry cannot come from our writes (each
/// append, truncate and purge is one transaction, each read one snapshot): it is damage, and an
/// error, never a silent hole.
fn contiguous_from(start: u64, end: u64, raw: &[(u64, Vec<u8>)]) -> Result<Vec<Entry>, NetError> {
    let Some((first, _)) = raw.first() else { return Ok(Vec::new()) };
    if *first != start {
        return Ok(Vec::new());
    }
    let mut entries = Vec::with_capacity(raw.len());
    for (expected, (index, bytes)) in (start..end).zip(raw) {
        if *index != expected {
            return Err(NetError::Storage(format!(
                "raft log: entry {expected} missing before {index} (damaged store)"
            )));
        }
        let entry = dec::<Entry>(bytes)?;
        if entry.log_id.index != *index {
            return Err(NetError::Storage(format!(
                "raft log: the entry stored at {index} says it is {} (damaged store)",
                entry.log_id.index
            )));
        }
        entries.push(entry);
    }
    if raw.len() > entries.len() {
        return Err(NetError::Storage(format!("raft log: the store returned entries outside [{start}, {end})")));
    }
    Ok(entries)
}

impl<S: RaftStore> RaftLogStorage<TypeConfig> for LogStore<S> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId> =
            self.meta::<Option<LogId>>(MetaKey::LastPurged).await.map_err(|e| store_err(&e, false))?.flatten();
        let last = run(&self.store, |s| s.last_entry()).await.map_err(|e| store_err(&e, false))?;
        let last_log_id = match last {
            Some((_, b)) => Some(dec::<Entry>(&b).map_err(|e| store_err(&e, false))?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        self.put_meta(MetaKey::Vote, vote).await.map_err(|e| openraft::StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.meta(MetaKey::Vote).await.map_err(|e| openraft::StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(MetaKey::Committed, &committed).await.map_err(|e| store_err(&e, true))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self.meta::<Option<LogId>>(MetaKey::Committed).await.map_err(|e| store_err(&e, false))?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Result<Vec<(u64, Vec<u8>)>, NetError> =
            entries.into_iter().map(|e| Ok((e.log_id.index, enc(&e)?))).collect();
        let encoded = encoded.map_err(|e| store_err(&e, true))?;
        match run(&self.store, move |s| s.append(encoded)).await {
            // durable: tell openraft the entries are flushed
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(store_err(&e, true))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        run(&self.store, move |s| s.truncate_from(log_id.index)).await.map_err(|e| store_err(&e, true))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let marker = enc(&Some(log_id)).map_err(|e| store_err(&e, true))?;
        run(&self.store, move |s| s.purge_upto(log_id.index, &marker)).await.map_err(|e| store_err(&e, true))
    }
}
