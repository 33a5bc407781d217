//! The Raft store: one suite over the in-memory and the redb implementations, and a node that
//! restarts on its redb file with its registry intact (from snapshot and log).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::registry::Command;
use mindmesh_core::spec::PersonaSpec;
use mindmesh_core::wire;
use mindmesh_net::raft::log::LogStore;
use mindmesh_net::raft::redb_store::RedbRaftStore;
use mindmesh_net::raft::store::{MemRaftStore, MetaKey, RaftStore};
use mindmesh_net::raft::{Entry, LogId, RAFT_WIRE_VERSION};
use mindmesh_net::transport::mem::{MemConfig, MemNetwork};
use mindmesh_net::{MeshParams, NodeProfile, start_with};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use tokio_util::sync::CancellationToken;

fn suite(s: &impl RaftStore) -> Result<()> {
    let ten: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, vec![i as u8; 3])).collect();
    s.append(ten)?;
    ensure!(s.entries(3, 6, 100)?.iter().map(|(i, _)| *i).collect::<Vec<_>>() == vec![3, 4, 5]);
    ensure!(s.entries(3, 6, 2)?.len() == 2, "bounded reads");
    ensure!(s.entries(6, 3, 100)?.is_empty());
    ensure!(s.last_entry()? == Some((10, vec![10; 3])));
    s.truncate_from(8)?;
    ensure!(s.last_entry()?.map(|(i, _)| i) == Some(7));
    s.append(vec![(8, b"new".to_vec())])?;
    ensure!(s.entries(8, 9, 1)? == vec![(8, b"new".to_vec())], "appends replace");
    s.purge_upto(4, b"purged-at-4")?;
    ensure!(s.entries(0, 100, 100)?.first().map(|(i, _)| *i) == Some(5));
    ensure!(s.get_meta(MetaKey::LastPurged)?.as_deref() == Some(b"purged-at-4".as_slice()));
    ensure!(s.get_meta(MetaKey::Vote)?.is_none());
    s.put_meta(MetaKey::Vote, b"v1")?;
    s.put_meta(MetaKey::Vote, b"v2")?;
    ensure!(s.get_meta(MetaKey::Vote)?.as_deref() == Some(b"v2".as_slice()));
    ensure!(s.get_snapshot()?.is_none());
    s.put_snapshot(b"snap")?;
    ensure!(s.get_snapshot()?.as_deref() == Some(b"snap".as_slice()));
    Ok(())
}

#[test]
fn in_memory_store_conforms() -> Result<()> {
    suite(&MemRaftStore::new())
}

#[test]
fn redb_store_conforms_and_survives_reopening() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node.redb");
    {
        let db = Arc::new(redb::Database::create(&path)?);
        suite(&RedbRaftStore::open(db)?)?;
    }
    let s = RedbRaftStore::open(Arc::new(redb::Database::create(&path)?))?;
    ensure!(s.get_meta(MetaKey::Vote)?.as_deref() == Some(b"v2".as_slice()));
    ensure!(s.last_entry()?.map(|(i, _)| i) == Some(8));
    ensure!(s.get_snapshot()?.as_deref() == Some(b"snap".as_slice()));
    Ok(())
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// The bytes of a blank entry as the log store writes them, stored under `key` but naming
/// `index` (equal, unless a test damages the store on purpose).
fn stored(key: u64, index: u64) -> Result<(u64, Vec<u8>)> {
    let entry = Entry { log_id: log_id(index), payload: EntryPayload::Blank };
    Ok((key, wire::encode(RAFT_WIRE_VERSION, &entry)?))
}

async fn indexes<S: RaftStore>(
    log: &mut LogStore<S>,
    range: impl std::ops::RangeBounds<u64> + Clone + std::fmt::Debug + Send,
) -> Result<Vec<u64>> {
    Ok(log.try_get_log_entries(range).await?.iter().map(|e| e.log_id.index).collect())
}

/// What openraft reads from the log: exactly the entries asked for, from the start asked for,
/// never a run that begins further on (replication would send it as if it followed the
/// follower's last entry, leaving a hole there), never a gap passed over in silence.
async fn reads_suite<S: RaftStore>(s: S) -> Result<()> {
    s.append((1..=10).map(|i| stored(i, i)).collect::<Result<_>>()?)?;
    let mut log = LogStore::new(s.clone());
    ensure!(indexes(&mut log, 3..6).await? == vec![3, 4, 5]);
    ensure!(indexes(&mut log, 3..=6).await? == vec![3, 4, 5, 6]);
    ensure!(indexes(&mut log, 8..).await? == vec![8, 9, 10]);
    ensure!(indexes(&mut log, ..3).await? == Vec::<u64>::new(), "index 0 was never written");
    ensure!(indexes(&mut log, 1..3).await? == vec![1, 2]);
    ensure!(indexes(&mut log, (std::ops::Bound::Excluded(4), std::ops::Bound::Included(6))).await? == vec![5, 6]);
    ensure!(indexes(&mut log, 6..6).await?.is_empty());
    #[allow(clippy::reversed_empty_ranges)] // openraft may ask for one: it must read as empty
    let backwards = 7..5;
    ensure!(indexes(&mut log, backwards).await?.is_empty());
    ensure!(indexes(&mut log, 11..20).await?.is_empty(), "nothing past the end");
    ensure!(indexes(&mut log, u64::MAX..).await?.is_empty());

    let marker = wire::encode(RAFT_WIRE_VERSION, &Some(log_id(4)))?;
    s.purge_upto(4, &marker)?;
    ensure!(indexes(&mut log, 0..100).await?.is_empty(), "a read from a purged start returns no later entries");
    ensure!(indexes(&mut log, 4..8).await?.is_empty(), "a read from the purge point returns no later entries");
    ensure!(indexes(&mut log, 5..8).await? == vec![5, 6, 7], "the first kept entry reads as before");
    ensure!(indexes(&mut log, 5..).await? == vec![5, 6, 7, 8, 9, 10]);

    // a gap in the middle cannot come from our own writes: a damaged store is an error
    s.truncate_from(9)?;
    s.append(vec![stored(10, 10)?])?;
    ensure!(indexes(&mut log, 5..9).await? == vec![5, 6, 7, 8], "reads short of the gap are whole");
    ensure!(log.try_get_log_entries(5..11).await.is_err(), "a gap in the log is not skipped");
    // an entry stored under a key it does not name is damage too
    s.append(vec![stored(9, 12)?])?;
    ensure!(log.try_get_log_entries(9..10).await.is_err(), "an entry under the wrong index is refused");
    s.purge_upto(u64::MAX, &marker)?;
    ensure!(s.last_entry()?.is_none(), "a purge up to the last index clears the log");
    Ok(())
}

#[tokio::test]
async fn in_memory_log_reads_exactly_what_is_asked() -> Result<()> {
    reads_suite(MemRaftStore::new()).await
}

#[tokio::test]
async fn redb_log_reads_exactly_what_is_asked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(redb::Database::create(dir.path().join("node.redb"))?);
    reads_suite(RedbRaftStore::open(db)?).await
}

/// A single-node mesh on redb, snapshotting every 10 entries: 45 writes, a restart on the same
/// file, and every persona is back (snapshot + the log after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_on_its_redb_file_with_its_registry() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node.redb");
    let mut config = MeshConfig::for_test();
    config.bootstrap = true;
    config.snapshot_after_logs = 10;
    let params = MeshParams {
        config,
        profile: NodeProfile { name: "solo".into(), ..Default::default() },
        incarnation: 1,
        seed: None,
    };
    let cancel = CancellationToken::new();
    let net = MemNetwork::new(1, MemConfig::default(), cancel.clone());

    let digest_before = {
        let db = Arc::new(redb::Database::create(&path)?);
        let (t, ev) = net.attach(1).await?;
        let h = start_with(t, ev, RedbRaftStore::open(db)?, params.clone(), cancel.child_token()).await?;
        h.wait_for_leader(Duration::from_secs(10)).await?;
        for i in 0..45 {
            let spec = PersonaSpec::new(&format!("p{i}"), "srv");
            h.propose(Command::put_persona(spec, None)).await?;
        }
        let r = h.registry();
        ensure!(r.personas.len() == 45);
        h.shutdown().await;
        (r.applied_index, r.digest)
    };
    // give openraft's tasks a moment to drop their handles on the file
    tokio::time::sleep(Duration::from_millis(200)).await;

    let db = Arc::new(redb::Database::create(&path)?);
    let (t, ev) = net.attach(1).await?;
    let h = start_with(t, ev, RedbRaftStore::open(db)?, params, cancel.child_token()).await?;
    h.wait_for_leader(Duration::from_secs(10)).await?;
    let mut reg = h.watch_registry();
    let r = tokio::time::timeout(Duration::from_secs(10), reg.wait_for(|r| r.applied_index >= digest_before.0))
        .await??
        .clone();
    ensure!(r.personas.len() == 45, "{} personas after restart", r.personas.len());
    let replayed_digest = if r.applied_index == digest_before.0 { Some(r.digest) } else { None };
    ensure!(replayed_digest.is_none_or(|d| d == digest_before.1), "the same log gives the same registry");
    h.shutdown().await;
    cancel.cancel();
    Ok(())
}
