//! The swarm actor: owns the libp2p `Swarm`, turns commands into swarm calls and swarm events
//! into [`TransportEvent`]s. Every table it keeps is bounded.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use super::P2pConfig;
use super::behaviour::{MeshBehaviour, MeshBehaviourEvent, SNAPSHOT_TOPIC, build_swarm};
use crate::keys::node_id_of;
use crate::transport::{Acceptance, PeerInfo, Reply, TransportEvent, Verdict};
use crate::{NetError, NodeId};

type Answer<T> = oneshot::Sender<Result<T, NetError>>;

/// Addresses kept per peer.
const MAX_ADDRS_PER_PEER: usize = 16;
/// Peers remembered (id ↔ address book); beyond it, disconnected peers are forgotten.
const MAX_KNOWN_PEERS: usize = 16_384;
/// Longest the actor waits for its listeners to bind.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Refused inbound handshakes are warned about at most once per this interval.
const REFUSAL_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one warning through per interval and counts the ones it holds back.
struct WarnLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimit {
    fn new(interval: Duration) -> Self {
        WarnLimit { interval, last: None, suppressed: 0 }
    }

    /// `Some(held back since the last one)` when a warning may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|l| now.duration_since(l) < self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

pub(crate) enum Command {
    Publish { data: Vec<u8>, reply: Answer<()> },
    Request { to: NodeId, data: Vec<u8>, reply: Answer<Vec<u8>> },
    Dial { addr: Multiaddr, reply: Answer<NodeId> },
    AddPeer { peer: PeerInfo, reply: Answer<()> },
    Ban { peer: NodeId, duration: Duration, reply: Answer<()> },
    ListenAddrs { reply: Answer<Vec<String>> },
    Connected { reply: Answer<Vec<NodeId>> },
}

struct VerdictMsg {
    id: MessageId,
    source: PeerId,
    acceptance: Acceptance,
}

pub(crate) struct Actor {
    swarm: Swarm<MeshBehaviour>,
    topic: IdentTopic,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<TransportEvent>,
    verdict_tx: mpsc::Sender<VerdictMsg>,
    verdict_rx: mpsc::Receiver<VerdictMsg>,
    peers: HashMap<NodeId, PeerId>,
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    connected: HashSet<PeerId>,
    pending_out: HashMap<OutboundRequestId, (NodeId, Answer<Vec<u8>>)>,
    pending_in: HashMap<u64, ResponseChannel<Vec<u8>>>,
    answers: FuturesUnordered<BoxFuture<'static, (u64, Option<Vec<u8>>)>>,
    next_inbound: u64,
    dials: HashMap<ConnectionId, (Multiaddr, Answer<NodeId>)>,
    bans: HashMap<PeerId, Instant>,
    refusals: WarnLimit,
    listen_addrs: Vec<Multiaddr>,
    advertise: Vec<Multiaddr>,
    max_rpc_bytes: usize,
    max_pending: usize,
}

impl Actor {
    pub(crate) fn new(
        cfg: &P2pConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<TransportEvent>,
    ) -> Result<Self, NetError> {
        let swarm = build_swarm(cfg)?;
        let (verdict_tx, verdict_rx) = mpsc::channel(cfg.inbox);
        Ok(Actor {
            swarm,
            topic: IdentTopic::new(SNAPSHOT_TOPIC),
            commands,
            events,
            verdict_tx,
            verdict_rx,
            peers: HashMap::new(),
            addrs: HashMap::new(),
            connected: HashSet::new(),
            pending_out: HashMap::new(),
            pending_in: HashMap::new(),
            answers: FuturesUnordered::new(),
            next_inbound: 0,
            dials: HashMap::new(),
            bans: HashMap::new(),
            refusals: WarnLimit::new(REFUSAL_WARN_INTERVAL),
            listen_addrs: Vec::new(),
            advertise: cfg.advertise.clone(),
            max_rpc_bytes: cfg.max_rpc_bytes,
            max_pending: cfg.max_pending_requests,
        })
    }

    pub(crate) async fn run(
        mut self,
        listen: Vec<Multiaddr>,
        ready: oneshot::Sender<Result<(), NetError>>,
        cancel: CancellationToken,
    ) {
        match self.bind(listen).await {
            Ok(()) => {
                info!(peer_id = %self.swarm.local_peer_id(), addrs = ?self.listen_addrs, "libp2p swarm listening");
                let _ = ready.send(Ok(()));
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                Some(v) = self.verdict_rx.recv() => self.verdict(v),
                Some((id, answer)) = self.answers.next(), if !self.answers.is_empty() => self.respond(id, answer),
                ev = self.swarm.select_next_some() => self.swarm_event(ev),
                _ = tick.tick() => self.expire_bans(),
            }
        }
        debug!("libp2p swarm stopped");
    }

    /// Listen on every address; wait until each listener has bound or failed.
    async fn bind(&mut self, listen: Vec<Multiaddr>) -> Result<(), NetError> {
        let mut waiting = HashSet::new();
        let mut errors = Vec::new();
        for addr in listen {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    waiting.insert(id);
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while !waiting.is_empty() {
            let ev = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| NetError::Transport(format!("listeners not bound within {LISTEN_TIMEOUT:?}")))?;
            match ev {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(&listener_id);
                    self.swarm_event(ev);
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    waiting.remove(&listener_id);
                    errors.push(format!("listener closed: {reason:?}"));
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    waiting.remove(&listener_id);
                    errors.push(error.to_string());
                }
                other => self.swarm_event(other),
            }
        }
        if self.listen_addrs.is_empty() {
            return Err(NetError::Transport(format!("cannot listen: {}", errors.join("; "))));
        }
        for e in errors {
            warn!(error = %e, "a listen address failed");
        }
        Ok(())
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { data, reply } => {
                let r = match self.swarm.behaviour_mut().gossipsub.publish(self.topic.clone(), data) {
                    Ok(_) => Ok(()),
                    // alone, or before the mesh forms: not an error for a periodic gossip
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                    Err(gossipsub::PublishError::Duplicate) => Ok(()),
                    Err(e) => Err(NetError::Transport(format!("publish: {e}"))),
                };
                let _ = reply.send(r);
            }
            Command::Request { to, data, reply } => {
                let Some(peer) = self.peers.get(&to).copied() else {
                    let _ = reply.send(Err(NetError::Unreachable(to)));
                    return;
                };
                if self.pending_out.len() >= self.max_pending {
                    let _ = reply.send(Err(NetError::Busy));
                    return;
                }
                let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
                let id = self.swarm.behaviour_mut().rpc.send_request_with_addresses(&peer, data, addrs);
                self.pending_out.insert(id, (to, reply));
            }
            Command::Dial { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason: e.to_string() }));
                    }
                }
            }
            Command::AddPeer { peer, reply } => {
                let _ = reply.send(self.add_peer(peer));
            }
            Command::Ban { peer, duration, reply } => {
                if let Some(p) = self.peers.get(&peer).copied() {
                    warn!(node = peer, peer_id = %p, ?duration, "peer banned");
                    self.swarm.behaviour_mut().blocked.block_peer(p);
                    self.swarm.behaviour_mut().gossipsub.blacklist_peer(&p);
                    self.bans.insert(p, Instant::now() + duration);
                }
                let _ = reply.send(Ok(()));
            }
            Command::ListenAddrs { reply } => {
                let addrs = if self.advertise.is_empty() { &self.listen_addrs } else { &self.advertise };
                let _ = reply.send(Ok(addrs.iter().map(|a| a.to_string()).collect()));
            }
            Command::Connected { reply } => {
                let _ = reply.send(Ok(self.connected.iter().map(node_id_of).collect()));
            }
        }
    }

    fn add_peer(&mut self, peer: PeerInfo) -> Result<(), NetError> {
        let peer_id: PeerId =
            peer.peer_id.parse().map_err(|e| NetError::Protocol(format!("peer id {:?}: {e}", peer.peer_id)))?;
        if node_id_of(&peer_id) != peer.node_id {
            return Err(NetError::Protocol(format!("peer id {peer_id} is not node {}", peer.node_id)));
        }
        self.learn(peer_id);
        for a in peer.addrs {
            if let Ok(addr) = a.parse::<Multiaddr>() {
                self.remember_addr(peer_id, addr);
            }
        }
        Ok(())
    }

    fn learn(&mut self, peer: PeerId) -> NodeId {
        let node = node_id_of(&peer);
        if self.peers.len() >= MAX_KNOWN_PEERS && !self.peers.contains_key(&node) {
            let connected = &self.connected;
            self.peers.retain(|_, p| connected.contains(p));
            self.addrs.retain(|p, _| connected.contains(p));
        }
        self.peers.insert(node, peer);
        node
    }

    fn remember_addr(&mut self, peer: PeerId, addr: Multiaddr) {
        if !self.peers.contains_key(&node_id_of(&peer)) {
            return;
        }
        let list = self.addrs.entry(peer).or_default();
        if !list.contains(&addr) {
            if list.len() >= MAX_ADDRS_PER_PEER {
                list.remove(0);
            }
            list.push(addr);
        }
    }

    fn verdict(&mut self, v: VerdictMsg) {
        let acceptance = match v.acceptance {
            Acceptance::Accept => MessageAcceptance::Accept,
            Acceptance::Reject => MessageAcceptance::Reject,
            Acceptance::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&v.id, &v.source, acceptance);
    }

    fn respond(&mut self, id: u64, answer: Option<Vec<u8>>) {
        let Some(channel) = self.pending_in.remove(&id) else { return };
        match answer {
            Some(data) => {
                if self.swarm.behaviour_mut().rpc.send_response(channel, data).is_err() {
                    debug!("requester gone before the answer");
                }
            }
            // the handler dropped the reply: dropping the channel fails the request remotely
            None => drop(channel),
        }
    }

    fn swarm_event(&mut self, ev: SwarmEvent<MeshBehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(MeshBehaviourEvent::Rpc(e)) => self.rpc_event(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Gossipsub(e)) => self.gossip_event(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Identify(identify::Event::Received {
                peer_id, info, ..
            })) => {
                for addr in info.listen_addrs {
                    self.remember_addr(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(MeshBehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if self.bans.contains_key(&peer) {
                        continue;
                    }
                    self.learn(peer);
                    self.remember_addr(peer, addr.clone());
                    if !self.connected.contains(&peer) {
                        debug!(%peer, %addr, "mdns: dialling");
                        let _ = self.swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            SwarmEvent::Behaviour(other) => trace!(event = ?other, "behaviour event"),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                let node = self.learn(peer_id);
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.remember_addr(peer_id, address.clone());
                }
                if num_established.get() == 1 {
                    self.connected.insert(peer_id);
                    debug!(node, %peer_id, "peer up");
                    let _ = self.events.try_send(TransportEvent::PeerUp { node });
                }
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(node));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                self.connected.remove(&peer_id);
                let node = node_id_of(&peer_id);
                debug!(node, %peer_id, ?cause, "peer down");
                let _ = self.events.try_send(TransportEvent::PeerDown { node });
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                debug!(?peer_id, %error, "dial failed");
                if let Some((addr, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason: error.to_string() }));
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                // a peer without the mesh key ends here (or one that gave up mid-handshake); a
                // flood of them must not flood the log
                debug!(%send_back_addr, %error, "inbound connection refused");
                if let Some(suppressed) = self.refusals.allow(Instant::now()) {
                    warn!(
                        %send_back_addr, %error, suppressed,
                        "inbound handshake refused: wrong mesh key, or not a mindmesh node \
                         (at most one such warning per {}s; `suppressed` counts those not shown)",
                        REFUSAL_WARN_INTERVAL.as_secs()
                    );
                }
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.listen_addrs.retain(|a| *a != address),
            _ => {}
        }
    }

    fn rpc_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if self.bans.contains_key(&peer) || self.pending_in.len() >= self.max_pending {
                        return;
                    }
                    let from = self.learn(peer);
                    let (tx, rx) = oneshot::channel();
                    let event =
                        TransportEvent::Request { from, data: request, reply: Reply::new(tx, self.max_rpc_bytes) };
                    if self.events.try_send(event).is_err() {
                        debug!(from, "inbox full: request dropped");
                        return;
                    }
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.pending_in.insert(id, channel);
                    self.answers.push(Box::pin(async move { (id, rx.await.ok()) }));
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.pending_out.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some((node, reply)) = self.pending_out.remove(&request_id) {
                    let e = match error {
                        OutboundFailure::DialFailure | OutboundFailure::ConnectionClosed => NetError::Unreachable(node),
                        OutboundFailure::Timeout => NetError::Timeout(0),
                        other => NetError::Transport(format!("request to {peer}: {other}")),
                    };
                    let _ = reply.send(Err(e));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
                // the codec refuses a frame over the bound before buffering it: a protocol
                // violation, not a network fault (those are timeouts and closed connections)
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    let node = node_id_of(&peer);
                    let _ = self.events.try_send(TransportEvent::Misbehaved { node, what: "oversized request frame" });
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn gossip_event(&mut self, ev: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = ev else {
            trace!(event = ?ev, "gossipsub event");
            return;
        };
        let Some(source) = message.source else {
            // strict validation should have refused it already
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &propagation_source,
                MessageAcceptance::Reject,
            );
            return;
        };
        let from = self.learn(source);
        let tx = self.verdict_tx.clone();
        let (id, prop) = (message_id.clone(), propagation_source);
        let verdict = Verdict::new(move |acceptance| {
            let _ = tx.try_send(VerdictMsg { id, source: prop, acceptance });
        });
        if let Err(e) = self.events.try_send(TransportEvent::Gossip { from, data: message.data, verdict }) {
            // the verdict inside the dropped event reports Ignore on its way out
            drop(e);
            debug!(from, "inbox full: gossip dropped");
        }
    }

    fn expire_bans(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self.bans.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for p in expired {
            self.bans.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
            self.swarm.behaviour_mut().gossipsub.remove_blacklisted_peer(&p);
            info!(peer_id = %p, "ban lifted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_a_count_of_the_rest() {
        let mut w = WarnLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(w.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(w.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(w.allow(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(w.allow(t0 + Duration::from_secs(11)), None);
    }
}
