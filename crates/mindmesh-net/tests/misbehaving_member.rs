//! A misbehaving member: a peer that HOLDS the mesh key (so it passes the private-network
//! handshake) sends three real nodes malformed, oversized, lying, impersonating and replayed
//! gossip and RPC frames over real libp2p on loopback. It must be banned — disconnected and
//! refused on reconnect until its ban lapses — while the mesh keeps its leader, its registry and
//! its view of the honest nodes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::metrics::HostSample;
use mindmesh_core::registry::{Command, Proposal, ProposalId};
use mindmesh_core::snapshot::{NodeSnapshot, SNAPSHOT_WIRE_VERSION};
use mindmesh_core::spec::PersonaSpec;
use mindmesh_core::wire;
use mindmesh_net::keys::MeshKey;
use mindmesh_net::rpc::{self, MeshRequest};
use mindmesh_net::transport::p2p::{self, P2pConfig, P2pTransport};
use mindmesh_net::transport::{Transport, TransportEvent};
use mindmesh_net::{MeshHandle, MeshRole};
use openraft::Vote;
use openraft::raft::AppendEntriesRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod common;
use common::node;

/// Long enough to see the attacker refused, short enough to see it let back in.
const BAN_MS: u64 = 8000;

async fn eventually<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agreed_leader(nodes: &[&MeshHandle]) -> Option<(u64, u64)> {
    let s: Vec<_> = nodes.iter().map(|h| h.status()).collect();
    let leader = s[0].leader?;
    let ok = s.iter().all(|x| x.leader == Some(leader) && x.voters.len() == 3)
        && s.iter().filter(|x| x.role == MeshRole::Leader).count() == 1;
    ok.then_some((leader, s[0].term))
}

fn snapshot(node_id: u64, name: &str, seq: u64) -> NodeSnapshot {
    NodeSnapshot {
        node_id,
        node_name: name.into(),
        incarnation: 1,
        seq,
        ts_ms: 0,
        host: HostSample { cpu_cores: 2, memory_total_bytes: 1 << 30, ..Default::default() },
        personas: Vec::new(),
    }
}

/// The attacker: the real libp2p transport with the mesh key, and bounds of its own far above
/// the nodes' so its oversized frames leave it.
async fn attacker(key: MeshKey) -> Result<(P2pTransport, mpsc::Receiver<TransportEvent>, CancellationToken)> {
    let mut cfg = P2pConfig::new(libp2p::identity::Keypair::generate_ed25519(), key);
    cfg.max_gossip_bytes = 1024 * 1024;
    cfg.max_rpc_bytes = 32 * 1024 * 1024;
    cfg.request_timeout = Duration::from_secs(5);
    let cancel = CancellationToken::new();
    let (t, events, _task) = p2p::start(cfg, cancel.clone()).await?;
    Ok((t, events, cancel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sending_garbage_is_banned_and_the_mesh_stays_healthy() -> Result<()> {
    let key = MeshKey::generate()?;
    let a = node("node-a", key, true, Vec::new(), |c| c.ban_ms = BAN_MS).await?;
    let join = vec![a.handle.listen_addrs()[0].clone()];
    let b = node("node-b", key, false, join.clone(), |c| c.ban_ms = BAN_MS).await?;
    let c = node("node-c", key, false, join, |c| c.ban_ms = BAN_MS).await?;
    let honest = [&a.handle, &b.handle, &c.handle];
    let (leader, term) =
        eventually("one leader, three voters", Duration::from_secs(60), async || agreed_leader(&honest)).await?;
    for i in 0..3 {
        let spec = PersonaSpec::new(&format!("chat-{i}"), "srv");
        a.handle.propose(Command::put_persona(spec, Some(a.handle.node_id()))).await?;
    }
    let names = ["node-a", "node-b", "node-c"];
    for (h, name) in honest.iter().zip(names) {
        h.publish_snapshot(snapshot(h.node_id(), name, 1)).await?;
    }

    let (evil, mut evil_events, evil_cancel) = attacker(key).await?;
    let mut targets = Vec::new();
    for h in &honest {
        targets.push(evil.dial(&h.listen_addrs()[0], Duration::from_secs(10)).await?);
    }
    eventually("the attacker connected to all three", Duration::from_secs(10), async || {
        (evil.connected_peers().await.ok()?.len() == 3).then_some(())
    })
    .await?;
    // gossip it received, to replay
    let mut captured = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while captured.is_empty() && Instant::now() < until {
        for h in &honest {
            h.publish_snapshot(snapshot(h.node_id(), "again", 2)).await?;
        }
        if let Ok(Some(TransportEvent::Gossip { data, .. })) =
            tokio::time::timeout(Duration::from_millis(500), evil_events.recv()).await
        {
            captured.push(data);
        }
    }

    // the attack: every kind of bad frame, each well past the nodes' patience
    let evil_id = evil.local_id();
    let garbage: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i.wrapping_mul(37); 64 + usize::from(i)]).collect();
    let lie = wire::encode(SNAPSHOT_WIRE_VERSION, &snapshot(a.handle.node_id(), "not-node-a", 999))?;
    let mut huge_gossip = wire::encode(SNAPSHOT_WIRE_VERSION, &snapshot(evil_id, "evil", 1))?;
    huge_gossip.resize(MeshConfig::default().max_gossip_bytes + 512, 0);
    let impersonation = rpc::encode(&MeshRequest::AppendEntries(AppendEntriesRequest {
        vote: Vote::new_committed(term + 100, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    }))?;
    let forged = rpc::encode(&MeshRequest::Propose(Proposal {
        id: ProposalId { node: leader, nonce: 1 },
        command: Command::RemovePersona { name: "chat-0".into() },
    }))?;
    let oversized = vec![1u8; MeshConfig::default().max_rpc_bytes + 1];
    let renew = rpc::encode(&MeshRequest::Renew)?;
    for round in 0..3 {
        for g in garbage.iter().chain([&lie, &huge_gossip]).chain(&captured) {
            // a publish fails once the attacker is cut off: that is the point
            let _ = evil.publish(g.clone()).await;
        }
        for &to in &targets {
            for frame in garbage.iter().chain([&impersonation, &forged, &oversized]) {
                let _ = evil.request(to, frame.clone(), Duration::from_secs(3)).await;
            }
            // a valid request replayed over and over is no violation, and does no harm
            for _ in 0..5 {
                let _ = evil.request(to, renew.clone(), Duration::from_secs(1)).await;
            }
        }
        println!("attack round {round}: attacker connected to {:?}", evil.connected_peers().await?);
    }

    // banned: cut off from every node
    eventually("the attacker disconnected by all three", Duration::from_secs(20), async || {
        evil.connected_peers().await.ok()?.is_empty().then_some(())
    })
    .await?;
    let banned_at = Instant::now();
    // and refused when it comes back within the ban: any connection it gets is closed at once,
    // no request is answered
    for h in &honest {
        let _ = evil.dial(&h.listen_addrs()[0], Duration::from_secs(3)).await;
    }
    while banned_at.elapsed() < Duration::from_millis(BAN_MS / 2) {
        for &to in &targets {
            let r = evil.request(to, renew.clone(), Duration::from_secs(1)).await;
            ensure!(r.is_err(), "a banned peer was answered by node {to}: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // the mesh is healthy: the same leader, its registry intact and still writable, the view
    // of each honest node its own
    ensure!(agreed_leader(&honest).map(|(l, _)| l) == Some(leader), "leadership moved: {:?}", a.handle.status());
    ensure!(honest.iter().all(|h| h.status().term < term + 100), "the impersonated leader's term was taken");
    let reg = a.handle.registry();
    ensure!(reg.personas.len() == 3 && reg.personas.contains_key("chat-0"), "registry: {:?}", reg.personas.keys());
    ensure!(!reg.nodes.contains_key(&evil_id), "the attacker is in the registry");
    b.handle.propose(Command::put_persona(PersonaSpec::new("after-attack", "srv"), None)).await?;
    eventually("the write after the attack everywhere", Duration::from_secs(10), async || {
        honest.iter().all(|h| h.registry().personas.contains_key("after-attack")).then_some(())
    })
    .await?;
    for h in &honest {
        let view = h.mesh_view().await?;
        ensure!(view.iter().all(|v| v.node_id != evil_id), "the attacker's snapshot was taken");
        let row = view.iter().find(|v| v.node_id == a.handle.node_id()).context("node-a in the view")?;
        ensure!(row.snapshot.node_name != "not-node-a", "a lie about node-a was taken");
    }

    // for a while only: once the ban lapses the peer may connect again
    tokio::time::sleep(Duration::from_millis(BAN_MS + 2000).saturating_sub(banned_at.elapsed())).await;
    eventually("the attacker let back in after its ban", Duration::from_secs(20), async || {
        let _ = evil.dial(&a.handle.listen_addrs()[0], Duration::from_secs(3)).await;
        evil.request(targets[0], renew.clone(), Duration::from_secs(2)).await.ok()
    })
    .await?;

    evil_cancel.cancel();
    for h in honest {
        h.shutdown().await;
    }
    Ok(())
}
