//! The libp2p transport: a swarm running as an actor task, and a cloneable handle
//! ([`P2pTransport`]) that implements [`Transport`] over a bounded command channel.

mod actor;
pub mod behaviour;
pub mod codec;

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{PeerInfo, Transport, TransportEvent};
use crate::keys::{MeshKey, node_id_of};
use crate::{NetError, NodeId};

/// Everything the swarm needs.
#[derive(Clone)]
pub struct P2pConfig {
    pub keypair: Keypair,
    pub mesh_key: MeshKey,
    pub listen: Vec<Multiaddr>,
    /// Addresses to advertise instead of the bound ones (NAT, containers).
    pub advertise: Vec<Multiaddr>,
    pub mdns: bool,
    /// TCP + private network + noise + yamux must complete within this.
    pub connect_timeout: Duration,
    pub max_gossip_bytes: usize,
    pub max_rpc_bytes: usize,
    /// Upper bound of any request's deadline (each request may ask for less).
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub gossip_heartbeat: Duration,
    pub max_connections: u32,
    pub max_concurrent_streams: usize,
    /// Events queued for the mesh logic; past it, inbound messages are dropped.
    pub inbox: usize,
    /// Commands queued for the swarm actor.
    pub command_queue: usize,
    /// Requests awaiting an answer at once.
    pub max_pending_requests: usize,
}

impl P2pConfig {
    pub fn new(keypair: Keypair, mesh_key: MeshKey) -> Self {
        P2pConfig {
            keypair,
            mesh_key,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal multiaddr")],
            advertise: Vec::new(),
            mdns: false,
            connect_timeout: Duration::from_secs(3),
            max_gossip_bytes: 256 * 1024,
            max_rpc_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            gossip_heartbeat: Duration::from_millis(500),
            max_connections: 512,
            max_concurrent_streams: 256,
            inbox: 4096,
            command_queue: 1024,
            max_pending_requests: 4096,
        }
    }
}

/// The handle of a running swarm.
#[derive(Clone)]
pub struct P2pTransport {
    node: NodeId,
    peer_id: PeerId,
    tx: mpsc::Sender<actor::Command>,
    max_gossip_bytes: usize,
    max_rpc_bytes: usize,
}

impl std::fmt::Debug for P2pTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P2pTransport({} / {})", self.node, self.peer_id)
    }
}

/// Start the swarm: bind every listen address (failing if none binds), subscribe to gossip,
/// and return the handle, the event stream and the actor's task. The actor stops when
/// `cancel` fires.
pub async fn start(
    cfg: P2pConfig,
    cancel: CancellationToken,
) -> Result<(P2pTransport, mpsc::Receiver<TransportEvent>, JoinHandle<()>), NetError> {
    let peer_id = cfg.keypair.public().to_peer_id();
    let (tx, rx) = mpsc::channel(cfg.command_queue);
    let (events_tx, events_rx) = mpsc::channel(cfg.inbox);
    let handle = P2pTransport {
        node: node_id_of(&peer_id),
        peer_id,
        tx,
        max_gossip_bytes: cfg.max_gossip_bytes,
        max_rpc_bytes: cfg.max_rpc_bytes,
    };
    let actor = actor::Actor::new(&cfg, rx, events_tx)?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(actor.run(cfg.listen.clone(), ready_tx, cancel));
    ready_rx.await.map_err(|_| NetError::Shutdown)??;
    Ok((handle, events_rx, task))
}

impl P2pTransport {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<T, NetError>>) -> actor::Command,
    ) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(cmd(reply)).await.map_err(|_| NetError::Shutdown)?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }
}

impl Transport for P2pTransport {
    fn local_id(&self) -> NodeId {
        self.node
    }

    fn local_peer_id(&self) -> String {
        self.peer_id.to_string()
    }

    async fn publish(&self, data: Vec<u8>) -> Result<(), NetError> {
        if data.len() > self.max_gossip_bytes {
            return Err(NetError::TooLarge { what: "gossip", size: data.len(), limit: self.max_gossip_bytes });
        }
        self.call(|reply| actor::Command::Publish { data, reply }).await
    }

    async fn request(&self, to: NodeId, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, NetError> {
        if data.len() > self.max_rpc_bytes {
            return Err(NetError::TooLarge { what: "request", size: data.len(), limit: self.max_rpc_bytes });
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(actor::Command::Request { to, data, reply }).await.map_err(|_| NetError::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NetError::Shutdown),
            Err(_) => Err(NetError::Timeout(timeout.as_millis() as u64)),
        }
    }

    async fn dial(&self, addr: &str, timeout: Duration) -> Result<NodeId, NetError> {
        let parsed: Multiaddr = addr
            .parse()
            .map_err(|e| NetError::Dial { addr: addr.to_owned(), reason: format!("not a multiaddr: {e}") })?;
        match tokio::time::timeout(timeout, self.call(|reply| actor::Command::Dial { addr: parsed, reply })).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Dial { addr: addr.to_owned(), reason: format!("no answer within {timeout:?}") }),
        }
    }

    async fn add_peer(&self, peer: PeerInfo) -> Result<(), NetError> {
        self.call(|reply| actor::Command::AddPeer { peer, reply }).await
    }

    async fn ban(&self, peer: NodeId, duration: Duration) -> Result<(), NetError> {
        self.call(|reply| actor::Command::Ban { peer, duration, reply }).await
    }

    async fn listen_addrs(&self) -> Result<Vec<String>, NetError> {
        self.call(|reply| actor::Command::ListenAddrs { reply }).await
    }

    async fn connected_peers(&self) -> Result<Vec<NodeId>, NetError> {
        self.call(|reply| actor::Command::Connected { reply }).await
    }
}
