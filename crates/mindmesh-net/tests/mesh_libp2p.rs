//! Three nodes in one process over REAL libp2p on loopback (TCP + mesh key + noise + yamux),
//! each with its Raft log in a redb file: join, one leader, a write on a follower forwarded and
//! replicated; the leader stopped, a new leader with every committed entry; a node with another
//! mesh key kept out.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mindmesh_core::registry::{Command, Registry};
use mindmesh_core::spec::PersonaSpec;
use mindmesh_net::keys::MeshKey;
use mindmesh_net::{MeshHandle, MeshRole};

mod common;
use common::node;

async fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One leader that every given node follows, with `voters` voters.
fn agreed_leader(nodes: &[&MeshHandle], voters: usize) -> Option<u64> {
    let s: Vec<_> = nodes.iter().map(|h| h.status()).collect();
    let leader = s[0].leader?;
    let ok = s.iter().all(|x| x.leader == Some(leader) && x.voters.len() == voters)
        && s.iter().filter(|x| x.role == MeshRole::Leader).count() == 1;
    ok.then_some(leader)
}

fn all_have(nodes: &[&MeshHandle], pred: impl Fn(&Registry) -> bool) -> Option<()> {
    nodes.iter().all(|h| pred(&h.registry())).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_real_nodes_form_a_mesh_and_survive_their_leader() -> Result<()> {
    let key = MeshKey::generate()?;
    let a = node("node-a", key, true, Vec::new(), |_| {}).await?;
    let join = vec![a.handle.listen_addrs()[0].clone()];
    let b = node("node-b", key, false, join.clone(), |_| {}).await?;
    let c = node("node-c", key, false, join.clone(), |_| {}).await?;
    let all = [&a.handle, &b.handle, &c.handle];

    let leader = eventually("one leader, three voters", Duration::from_secs(30), || agreed_leader(&all, 3)).await?;
    eventually("three registered nodes", Duration::from_secs(10), || all_have(&all, |r| r.nodes.len() == 3)).await?;

    // a write on a follower is forwarded to the leader and replicated to all
    let follower = all.iter().find(|h| h.node_id() != leader).context("a follower")?;
    for i in 0..10 {
        let spec = PersonaSpec::new(&format!("chat-{i}"), "srv");
        follower.propose(Command::put_persona(spec, Some(follower.node_id()))).await?;
    }
    eventually("ten personas everywhere", Duration::from_secs(10), || all_have(&all, |r| r.personas.len() == 10))
        .await?;

    // the leader stops; the others elect a new one and keep every committed entry
    let old = all.iter().find(|h| h.node_id() == leader).context("the leader")?;
    let stopped = Instant::now();
    old.shutdown().await;
    let rest: Vec<&MeshHandle> = all.iter().copied().filter(|h| h.node_id() != leader).collect();
    let new_leader = eventually("a new leader", Duration::from_secs(10), || {
        let s: Vec<_> = rest.iter().map(|h| h.status()).collect();
        let l = s[0].leader.filter(|l| *l != leader)?;
        s.iter().all(|x| x.leader == Some(l)).then_some(l)
    })
    .await?;
    println!("measured: new leader {new_leader} elected {} ms after the leader stopped", stopped.elapsed().as_millis());
    for h in &rest {
        assert_eq!(h.registry().personas.len(), 10, "committed entries kept on {}", h.node_id());
    }
    let spec = PersonaSpec::new("after-failover", "srv");
    rest[1].propose(Command::put_persona(spec, None)).await?;
    eventually("the write after failover everywhere", Duration::from_secs(10), || {
        all_have(&rest, |r| r.personas.contains_key("after-failover"))
    })
    .await?;

    // a node holding another mesh key cannot join (refusal may wait for the connect timeout)
    let intruder =
        node("intruder", MeshKey::generate()?, false, vec![rest[0].listen_addrs()[0].clone()], |_| {}).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = intruder.handle.status();
    assert_eq!(s.role, MeshRole::Joining, "{s:?}");
    assert_eq!(s.connected_peers, 0);
    assert!(rest[0].registry().node_by_name("intruder").is_none());
    assert_eq!(rest[0].status().voters.len() + rest[0].status().learners.len(), 3);

    for h in rest {
        h.shutdown().await;
    }
    intruder.handle.shutdown().await;
    Ok(())
}
