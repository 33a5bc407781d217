//! openraft's state machine: the registry of `mindmesh-core`, applied entry by entry, its
//! snapshots kept in the [`RaftStore`], and each new state published on a `watch` for readers.
//!
//! Only snapshots are written to disk: on start, the state is the last snapshot and openraft
//! re-applies the committed log after it, so no committed entry is lost and none is applied
//! twice into durable state.

use std::io::Cursor;
use std::sync::Arc;

use mindmesh_core::registry::{ApplyCtx, Outcome, Registry};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info};

use super::log::{enc, run};
use super::store::RaftStore;
use super::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::{NetError, NodeId};

/// A snapshot as stored: openraft's metadata and the encoded registry.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn sm_err(e: &NetError, write: bool) -> StorageError<NodeId> {
    if write { StorageIOError::write_state_machine(e).into() } else { StorageIOError::read_state_machine(e).into() }
}

pub struct StateMachineStore<S: RaftStore> {
    store: S,
    registry: Arc<Registry>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    publish: watch::Sender<Arc<Registry>>,
}

impl<S: RaftStore> StateMachineStore<S> {
    /// Restore from the stored snapshot, if any. Readers subscribe to the returned sender.
    pub async fn open(store: S) -> Result<(Self, watch::Sender<Arc<Registry>>), NetError> {
        let stored = run(&store, |s| s.get_snapshot()).await?;
        let (publish, _) = watch::channel(Arc::new(Registry::new()));
        let mut sm = StateMachineStore {
            store,
            registry: Arc::new(Registry::new()),
            last_applied: None,
            membership: StoredMembership::default(),
            publish: publish.clone(),
        };
        if let Some(bytes) = stored {
            let s: StoredSnapshot = dec_snapshot(&bytes)?;
            sm.registry = Arc::new(Registry::decode(&s.data)?);
            sm.last_applied = s.meta.last_log_id;
            sm.membership = s.meta.last_membership.clone();
            info!(last_applied = ?sm.last_applied, "registry restored from snapshot");
        }
        sm.publish.send_replace(sm.registry.clone());
        Ok((sm, publish))
    }
}

fn dec_snapshot(bytes: &[u8]) -> Result<StoredSnapshot, NetError> {
    Ok(mindmesh_core::wire::decode(
        super::RAFT_WIRE_VERSION,
        bytes,
        mindmesh_core::registry::MAX_REGISTRY_SNAPSHOT_BYTES + 64 * 1024,
    )?)
}

/// Builds a snapshot of the state at the moment it was asked for, while applying goes on.
pub struct SnapshotBuilder<S: RaftStore> {
    store: S,
    registry: Arc<Registry>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl<S: RaftStore> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = self.registry.encode().map_err(|e| sm_err(&e.into(), false))?;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.registry.digest),
            None => "empty".to_owned(),
        };
        let meta =
            SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id };
        let stored = enc(&StoredSnapshot { meta: meta.clone(), data: data.clone() }).map_err(|e| sm_err(&e, true))?;
        run(&self.store, move |s| s.put_snapshot(&stored)).await.map_err(|e| sm_err(&e, true))?;
        debug!(id = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl<S: RaftStore> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // copy-on-write: readers keep the state they hold, this batch changes a fresh one
        let registry = Arc::make_mut(&mut self.registry);
        let mut out = Vec::new();
        for e in entries {
            let ctx = ApplyCtx { index: e.log_id.index, term: e.log_id.leader_id.term };
            self.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {
                    registry.apply_blank(ctx);
                    out.push(Outcome::Done);
                }
                EntryPayload::Normal(p) => out.push(registry.apply(&p, ctx)),
                EntryPayload::Membership(m) => {
                    registry.apply_membership(ctx, m.voter_ids(), m.learner_ids());
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Outcome::Done);
                }
            }
        }
        self.publish.send_replace(self.registry.clone());
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            registry: self.registry.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let registry = Registry::decode(&data).map_err(|e| sm_err(&e.into(), false))?;
        let stored = enc(&StoredSnapshot { meta: meta.clone(), data }).map_err(|e| sm_err(&e, true))?;
        run(&self.store, move |s| s.put_snapshot(&stored)).await.map_err(|e| sm_err(&e, true))?;
        self.registry = Arc::new(registry);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publish.send_replace(self.registry.clone());
        info!(id = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(bytes) = run(&self.store, |s| s.get_snapshot()).await.map_err(|e| sm_err(&e, false))? else {
            return Ok(None);
        };
        let s = dec_snapshot(&bytes).map_err(|e| sm_err(&e, false))?;
        Ok(Some(Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
