//! One suite, two transports: what the mesh logic relies on must hold over libp2p (real
//! sockets on loopback, with the mesh key) and over the in-memory network alike.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use mindmesh_net::keys::{MeshKey, node_id_of};
use mindmesh_net::transport::mem::{MemConfig, MemNetwork, mem_addr};
use mindmesh_net::transport::p2p::{self, P2pConfig};
use mindmesh_net::transport::{PeerInfo, Reply, Transport, TransportEvent};
use mindmesh_net::{NetError, NodeId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const GOSSIP_MAX: usize = 64 * 1024;
const RPC_MAX: usize = 256 * 1024;

/// A node under test: its transport, and what its event pump saw.
struct Node<T> {
    t: T,
    gossip: mpsc::Receiver<(NodeId, Vec<u8>)>,
    peers: mpsc::Receiver<(bool, NodeId)>,
    _pump: JoinHandle<()>,
}

/// Answers requests: `echo:`+data, except data starting with `drop` (reply dropped) or `hold`
/// (reply kept unanswered for a minute).
fn pump<T: Transport>(t: T, mut events: mpsc::Receiver<TransportEvent>) -> Node<T> {
    let (gtx, gossip) = mpsc::channel(1024);
    let (ptx, peers) = mpsc::channel(1024);
    let pump = tokio::spawn(async move {
        let mut held: Vec<Reply> = Vec::new();
        while let Some(ev) = events.recv().await {
            match ev {
                TransportEvent::Gossip { from, data, verdict } => {
                    verdict.accept();
                    let _ = gtx.try_send((from, data));
                }
                TransportEvent::Request { data, reply, .. } => {
                    if data.starts_with(b"drop") {
                        drop(reply);
                    } else if data.starts_with(b"hold") {
                        held.push(reply);
                    } else if data.starts_with(b"big") {
                        assert!(matches!(reply.send(vec![0; RPC_MAX + 1]), Err(NetError::TooLarge { .. })));
                    } else {
                        let mut out = b"echo:".to_vec();
                        out.extend_from_slice(&data);
                        reply.send(out).unwrap();
                    }
                }
                TransportEvent::PeerUp { node } => {
                    let _ = ptx.try_send((true, node));
                }
                TransportEvent::PeerDown { node } => {
                    let _ = ptx.try_send((false, node));
                }
                // the conformance cases send no oversized frames
                TransportEvent::Misbehaved { node, what } => panic!("{node} misbehaved: {what}"),
            }
        }
    });
    Node { t, gossip, peers, _pump: pump }
}

async fn mem_nodes(n: usize, cancel: &CancellationToken) -> Result<Vec<Node<impl Transport>>> {
    let cfg = MemConfig { max_gossip_bytes: GOSSIP_MAX, max_rpc_bytes: RPC_MAX, ..MemConfig::default() };
    let net = MemNetwork::new(7, cfg, cancel.clone());
    let mut nodes = Vec::new();
    for id in 1..=n as NodeId {
        let (t, ev) = net.attach(id).await?;
        nodes.push(pump(t, ev));
    }
    Ok(nodes)
}

async fn p2p_nodes(n: usize, key: MeshKey, cancel: &CancellationToken) -> Result<Vec<Node<impl Transport>>> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let mut cfg = P2pConfig::new(libp2p::identity::Keypair::generate_ed25519(), key);
        cfg.max_gossip_bytes = GOSSIP_MAX;
        cfg.max_rpc_bytes = RPC_MAX;
        cfg.gossip_heartbeat = Duration::from_millis(100);
        cfg.connect_timeout = Duration::from_secs(1);
        let (t, ev, _task) = p2p::start(cfg, cancel.clone()).await?;
        nodes.push(pump(t, ev));
    }
    Ok(nodes)
}

/// Every node dials the first.
async fn connect<T: Transport>(nodes: &[Node<T>]) -> Result<()> {
    let addr = nodes[0].t.listen_addrs().await?.into_iter().next().context("no listen address")?;
    for n in &nodes[1..] {
        let who = n.t.dial(&addr, Duration::from_secs(5)).await?;
        assert_eq!(who, nodes[0].t.local_id(), "dial learns who answers");
    }
    Ok(())
}

async fn suite<T: Transport>(mut nodes: Vec<Node<T>>) -> Result<()> {
    connect(&nodes).await?;
    let (a, b) = (nodes[0].t.clone(), nodes[1].t.clone());
    let t = Duration::from_secs(5);

    // request/response both ways, once connected
    assert_eq!(b.request(a.local_id(), b"ping".to_vec(), t).await.context("b→a")?, b"echo:ping");
    assert_eq!(a.request(b.local_id(), b"pong".to_vec(), t).await.context("a→b")?, b"echo:pong");
    let up = tokio::time::timeout(t, nodes[1].peers.recv()).await?.context("peer events")?;
    assert_eq!(up, (true, a.local_id()));

    // an unknown peer fails fast
    let r = a.request(0xdead_beef, b"x".to_vec(), t).await;
    assert!(matches!(r, Err(NetError::Unreachable(_))), "{r:?}");

    // size bounds, both ways
    let r = a.request(b.local_id(), vec![0; RPC_MAX + 1], t).await;
    assert!(matches!(r, Err(NetError::TooLarge { .. })), "{r:?}");
    assert!(matches!(a.publish(vec![0; GOSSIP_MAX + 1]).await, Err(NetError::TooLarge { .. })));
    assert!(a.request(b.local_id(), b"big".to_vec(), t).await.is_err(), "an oversized answer is never sent");

    // a dropped reply fails the request; an unanswered one times out at the caller's deadline
    let started = tokio::time::Instant::now();
    assert!(a.request(b.local_id(), b"drop".to_vec(), t).await.is_err());
    assert!(started.elapsed() < t, "a dropped reply fails before the deadline");
    let r = a.request(b.local_id(), b"hold".to_vec(), Duration::from_millis(300)).await;
    assert!(matches!(r, Err(NetError::Timeout(_))), "{r:?}");

    // gossip from a reaches every other node, attributed to a
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut got = vec![false; nodes.len()];
    got[0] = true;
    while !got.iter().all(|g| *g) {
        if tokio::time::Instant::now() > deadline {
            bail!("gossip did not reach every node: {got:?}");
        }
        a.publish(b"snapshot".to_vec()).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (i, n) in nodes.iter_mut().enumerate().skip(1) {
            while let Ok((from, data)) = n.gossip.try_recv() {
                assert_eq!((from, data.as_slice()), (a.local_id(), b"snapshot".as_slice()));
                got[i] = true;
            }
        }
    }

    // a ban cuts the peer off
    b.ban(a.local_id(), Duration::from_secs(60)).await?;
    let mut down = false;
    let deadline = tokio::time::Instant::now() + t;
    while !down && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(t, nodes[1].peers.recv()).await {
            Ok(Some((false, n))) if n == a.local_id() => down = true,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(down, "the banned peer goes down");
    let r = a.request(b.local_id(), b"after-ban".to_vec(), Duration::from_secs(2)).await;
    assert!(r.is_err(), "a banned peer gets no answers: {r:?}");
    // others still reach b
    if nodes.len() > 2 {
        let c = nodes[2].t.clone();
        // c never met b: it needs b's identity and addresses (the Raft membership carries them)
        let info = PeerInfo { node_id: b.local_id(), peer_id: b.local_peer_id(), addrs: b.listen_addrs().await? };
        c.add_peer(info).await?;
        assert_eq!(c.request(b.local_id(), b"still".to_vec(), t).await.context("c→b")?, b"echo:still");
    }
    Ok(())
}

#[tokio::test]
async fn in_memory_transport_conforms() -> Result<()> {
    let cancel = CancellationToken::new();
    suite(mem_nodes(3, &cancel).await?).await?;
    cancel.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_transport_conforms() -> Result<()> {
    let cancel = CancellationToken::new();
    suite(p2p_nodes(3, MeshKey::generate()?, &cancel).await?).await?;
    cancel.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_refuses_a_peer_with_another_mesh_key() -> Result<()> {
    let cancel = CancellationToken::new();
    let ours = p2p_nodes(1, MeshKey::generate()?, &cancel).await?;
    let theirs = p2p_nodes(1, MeshKey::generate()?, &cancel).await?;
    let addr = ours[0].t.listen_addrs().await?.remove(0);
    // refusal may only come when the connection set-up times out (a garbled length prefix)
    let r = theirs[0].t.dial(&addr, Duration::from_secs(5)).await;
    assert!(r.is_err(), "a wrong key must not connect: {r:?}");
    assert!(ours[0].t.connected_peers().await?.is_empty());
    cancel.cancel();
    Ok(())
}

#[test]
fn node_ids_follow_peer_ids() {
    let k = libp2p::identity::Keypair::generate_ed25519();
    let p = k.public().to_peer_id();
    assert_eq!(node_id_of(&p), node_id_of(&p));
    assert_eq!(mem_addr(5), "/memory/5");
}
