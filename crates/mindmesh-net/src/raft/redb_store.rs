//! The Raft store in redb. The caller passes the `Database`, so the tables can live in the
//! node's one store file beside the metric series; they are namespaced `raft/…` to stay out of
//! the store crate's way. Each call is one write transaction, committed with redb's default
//! (immediate, fsync) durability before it returns.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::store::{MetaKey, RaftStore};
use crate::NetError;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft/log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft/meta");
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("raft/sm");
const SNAPSHOT_KEY: &str = "snapshot";

#[derive(Clone)]
pub struct RedbRaftStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbRaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbRaftStore")
    }
}

impl RedbRaftStore {
    /// Use `db` for Raft, creating the tables if needed.
    pub fn open(db: Arc<Database>) -> Result<Self, NetError> {
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.open_table(META)?;
        tx.open_table(SM)?;
        tx.commit()?;
        Ok(RedbRaftStore { db })
    }

    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), NetError>) -> Result<(), NetError> {
        let tx = self.db.begin_write()?;
        f(&tx)?;
        tx.commit()?;
        Ok(())
    }
}

impl RaftStore for RedbRaftStore {
    const BLOCKING: bool = true;

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, NetError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key.as_str())?.map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), NetError> {
        let mut tx = self.db.begin_write()?;
        // The committed position only spares a restarted node some re-applying (openraft
        // re-learns it from the leader), so it rides on the next durable commit instead of
        // costing an fsync per write. The vote must be durable: a forgotten vote can elect two
        // leaders in one term.
        // (A database opened for several writing processes refuses non-durable commits: then
        // it stays immediate.)
        if key == MetaKey::Committed && tx.set_durability(redb::Durability::None).is_err() {
            tracing::trace!("non-durable commits unsupported here");
        }
        tx.open_table(META)?.insert(key.as_str(), value)?;
        tx.commit()?;
        Ok(())
    }

    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), NetError> {
        self.write(|tx| {
            let mut t = tx.open_table(LOG)?;
            for (index, bytes) in &entries {
                t.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
    }

    fn truncate_from(&self, from: u64) -> Result<(), NetError> {
        self.write(|tx| {
            tx.open_table(LOG)?.retain_in(from.., |_, _| false)?;
            Ok(())
        })
    }

    fn purge_upto(&self, upto: u64, last_purged: &[u8]) -> Result<(), NetError> {
        self.write(|tx| {
            tx.open_table(LOG)?.retain_in(..=upto, |_, _| false)?;
            tx.open_table(META)?.insert(MetaKey::LastPurged.as_str(), last_purged)?;
            Ok(())
        })
    }

    fn entries(&self, start: u64, end: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, NetError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LOG)?;
        let mut out = Vec::new();
        for item in t.range(start..end)?.take(max) {
            let (k, v) = item?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, NetError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LOG)?;
        Ok(t.last()?.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, NetError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SM)?;
        Ok(t.get(SNAPSHOT_KEY)?.map(|v| v.value().to_vec()))
    }

    fn put_snapshot(&self, bytes: &[u8]) -> Result<(), NetError> {
        self.write(|tx| {
            tx.open_table(SM)?.insert(SNAPSHOT_KEY, bytes)?;
            Ok(())
        })
    }
}
