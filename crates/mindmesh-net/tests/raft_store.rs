//! The Raft store: one suite over the in-memory and the redb implementations, and a node that
//! restarts on its redb file with its registry intact (from snapshot and log).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::registry::Command;
use mindmesh_core::spec::PersonaSpec;
use mindmesh_net::raft::redb_store::RedbRaftStore;
use mindmesh_net::raft::store::{MemRaftStore, MetaKey, RaftStore};
use mindmesh_net::transport::mem::{MemConfig, MemNetwork};
use mindmesh_net::{MeshParams, NodeProfile, start_with};
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
