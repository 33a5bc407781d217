//! An in-memory network for many nodes in one process: the simulator's transport.
//!
//! One hub actor carries every message. It knows which nodes are attached, which links are cut
//! and who banned whom, and it draws message loss and delay from one seeded RNG in the order
//! messages arrive — so on a current-thread runtime under `tokio::time::pause()`, a seed
//! replays the same deliveries. The overlay is a full mesh: gossip reaches every attached node
//! whose link to the sender is up (gossipsub's multi-hop forwarding is not modelled).
//!
//! A crashed or unknown node refuses requests at once (as a closed port would); a cut link or a
//! lost message is silence, and the requester times out (as a partition would).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::{PeerInfo, Reply, Transport, TransportEvent, Verdict};
use crate::{NetError, NodeId};

/// Bounds of the in-memory network.
#[derive(Debug, Clone)]
pub struct MemConfig {
    pub max_gossip_bytes: usize,
    pub max_rpc_bytes: usize,
    /// Events queued per node; past it, deliveries are dropped (as a full socket buffer would).
    pub inbox: usize,
    /// Control and send queue of the hub.
    pub hub_queue: usize,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemConfig { max_gossip_bytes: 256 * 1024, max_rpc_bytes: 8 * 1024 * 1024, inbox: 4096, hub_queue: 4096 }
    }
}

/// What the hub did with messages so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemStats {
    pub delivered: u64,
    pub lost: u64,
    /// Dropped because the link was cut, a node banned the other, or the target was down.
    pub blocked: u64,
    /// Dropped because the target's inbox was full.
    pub overflow: u64,
}

/// The control handle of the network: attach nodes, crash them, cut links, inject faults.
#[derive(Debug, Clone)]
pub struct MemNetwork {
    tx: mpsc::Sender<HubMsg>,
    config: MemConfig,
}

/// One node's endpoint on a [`MemNetwork`].
#[derive(Debug, Clone)]
pub struct MemTransport {
    node: NodeId,
    tx: mpsc::Sender<HubMsg>,
    config: MemConfig,
}

type Answer<T> = oneshot::Sender<Result<T, NetError>>;

enum HubMsg {
    Attach { node: NodeId, reply: Answer<mpsc::Receiver<TransportEvent>> },
    Crash { node: NodeId },
    SetLink { a: NodeId, b: NodeId, up: bool },
    Partition { groups: Vec<Vec<NodeId>> },
    Faults { loss: f64, delay_min_ms: u64, delay_max_ms: u64 },
    Publish { from: NodeId, data: Vec<u8> },
    Request { from: NodeId, to: NodeId, data: Vec<u8>, reply: Answer<Vec<u8>> },
    Dial { from: NodeId, addr: String, reply: Answer<NodeId> },
    Ban { from: NodeId, peer: NodeId, duration: Duration },
    Connected { node: NodeId, reply: Answer<Vec<NodeId>> },
    Stats { reply: oneshot::Sender<MemStats> },
}

impl MemNetwork {
    /// Start the hub. `seed` drives loss and delay.
    pub fn new(seed: u64, config: MemConfig, cancel: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(config.hub_queue);
        let hub = Hub {
            rng: SmallRng::seed_from_u64(seed),
            config: config.clone(),
            endpoints: BTreeMap::new(),
            cut: BTreeSet::new(),
            bans: BTreeMap::new(),
            up: BTreeSet::new(),
            loss: 0.0,
            delay_ms: (0, 0),
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            next_seq: 0,
            replies: FuturesUnordered::new(),
            black_hole: VecDeque::new(),
            stats: MemStats::default(),
        };
        tokio::spawn(hub.run(rx, cancel));
        MemNetwork { tx, config }
    }

    /// Attach a node (again, after a crash): returns its transport and its event stream.
    pub async fn attach(&self, node: NodeId) -> Result<(MemTransport, mpsc::Receiver<TransportEvent>), NetError> {
        let events = self.call(|reply| HubMsg::Attach { node, reply }).await?;
        Ok((MemTransport { node, tx: self.tx.clone(), config: self.config.clone() }, events))
    }

    /// Detach a node: whatever is in flight to it is lost, its peers see it go down.
    pub async fn crash(&self, node: NodeId) -> Result<(), NetError> {
        self.send(HubMsg::Crash { node }).await
    }

    pub async fn cut(&self, a: NodeId, b: NodeId) -> Result<(), NetError> {
        self.send(HubMsg::SetLink { a, b, up: false }).await
    }

    pub async fn restore(&self, a: NodeId, b: NodeId) -> Result<(), NetError> {
        self.send(HubMsg::SetLink { a, b, up: true }).await
    }

    /// Cut every link between different groups (nodes in no group keep their links); an empty
    /// list heals every cut.
    pub async fn partition(&self, groups: Vec<Vec<NodeId>>) -> Result<(), NetError> {
        self.send(HubMsg::Partition { groups }).await
    }

    pub async fn heal(&self) -> Result<(), NetError> {
        self.partition(Vec::new()).await
    }

    /// Lose each message with probability `loss` and delay each by a uniform draw in the range.
    pub async fn set_faults(&self, loss: f64, delay_min_ms: u64, delay_max_ms: u64) -> Result<(), NetError> {
        let loss = if loss.is_finite() { loss.clamp(0.0, 1.0) } else { 0.0 };
        let delay_max_ms = delay_max_ms.max(delay_min_ms);
        self.send(HubMsg::Faults { loss, delay_min_ms, delay_max_ms }).await
    }

    pub async fn stats(&self) -> Result<MemStats, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(HubMsg::Stats { reply }).await?;
        rx.await.map_err(|_| NetError::Shutdown)
    }

    async fn send(&self, msg: HubMsg) -> Result<(), NetError> {
        self.tx.send(msg).await.map_err(|_| NetError::Shutdown)
    }

    async fn call<T>(&self, msg: impl FnOnce(Answer<T>) -> HubMsg) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(msg(reply)).await?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }
}

/// The address of a node on the in-memory network.
pub fn mem_addr(node: NodeId) -> String {
    format!("/memory/{node}")
}

impl MemTransport {
    async fn call<T>(&self, msg: impl FnOnce(Answer<T>) -> HubMsg) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(msg(reply)).await.map_err(|_| NetError::Shutdown)?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }
}

impl Transport for MemTransport {
    fn local_id(&self) -> NodeId {
        self.node
    }

    fn local_peer_id(&self) -> String {
        String::new()
    }

    async fn publish(&self, data: Vec<u8>) -> Result<(), NetError> {
        if data.len() > self.config.max_gossip_bytes {
            return Err(NetError::TooLarge { what: "gossip", size: data.len(), limit: self.config.max_gossip_bytes });
        }
        self.tx.send(HubMsg::Publish { from: self.node, data }).await.map_err(|_| NetError::Shutdown)
    }

    async fn request(&self, to: NodeId, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, NetError> {
        if data.len() > self.config.max_rpc_bytes {
            return Err(NetError::TooLarge { what: "request", size: data.len(), limit: self.config.max_rpc_bytes });
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(HubMsg::Request { from: self.node, to, data, reply }).await.map_err(|_| NetError::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NetError::Unreachable(to)),
            Err(_) => Err(NetError::Timeout(timeout.as_millis() as u64)),
        }
    }

    async fn dial(&self, addr: &str, timeout: Duration) -> Result<NodeId, NetError> {
        let addr = addr.to_owned();
        let node = self.node;
        match tokio::time::timeout(timeout, self.call(|reply| HubMsg::Dial { from: node, addr, reply })).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout(timeout.as_millis() as u64)),
        }
    }

    async fn add_peer(&self, _peer: PeerInfo) -> Result<(), NetError> {
        // every attached node is routable by id
        Ok(())
    }

    async fn ban(&self, peer: NodeId, duration: Duration) -> Result<(), NetError> {
        self.tx.send(HubMsg::Ban { from: self.node, peer, duration }).await.map_err(|_| NetError::Shutdown)
    }

    async fn listen_addrs(&self) -> Result<Vec<String>, NetError> {
        Ok(vec![mem_addr(self.node)])
    }

    async fn connected_peers(&self) -> Result<Vec<NodeId>, NetError> {
        let node = self.node;
        self.call(|reply| HubMsg::Connected { node, reply }).await
    }
}

enum Delivery {
    Gossip { from: NodeId, to: NodeId, data: Vec<u8> },
    Request { from: NodeId, to: NodeId, data: Vec<u8>, reply: Answer<Vec<u8>> },
    Response { from: NodeId, to: NodeId, data: Vec<u8>, reply: Answer<Vec<u8>> },
}

/// An answered (or abandoned) request, back at the hub.
struct Answered {
    /// The node that answered.
    from: NodeId,
    to: NodeId,
    data: Option<Vec<u8>>,
    reply: Answer<Vec<u8>>,
}

struct Hub {
    rng: SmallRng,
    config: MemConfig,
    endpoints: BTreeMap<NodeId, mpsc::Sender<TransportEvent>>,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// (banning node, banned node) → until.
    bans: BTreeMap<(NodeId, NodeId), Instant>,
    up: BTreeSet<(NodeId, NodeId)>,
    loss: f64,
    delay_ms: (u64, u64),
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: BTreeMap<u64, Delivery>,
    next_seq: u64,
    replies: FuturesUnordered<BoxFuture<'static, Answered>>,
    black_hole: VecDeque<Answer<Vec<u8>>>,
    stats: MemStats,
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::Receiver<HubMsg>, cancel: CancellationToken) {
        loop {
            let next = self.queue.peek().map(|Reverse((at, _))| *at);
            // `biased`: the same poll order every time, so a seed replays the same schedule
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => break,
                },
                Some(a) = self.replies.next(), if !self.replies.is_empty() => self.answered(a),
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            }
            self.deliver_due();
        }
        debug!("in-memory network stopped");
    }

    fn handle(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Attach { node, reply } => {
                let (tx, rx) = mpsc::channel(self.config.inbox);
                self.detach(node);
                self.endpoints.insert(node, tx);
                let _ = reply.send(Ok(rx));
            }
            HubMsg::Crash { node } => self.detach(node),
            HubMsg::SetLink { a, b, up } => {
                if up {
                    self.cut.remove(&pair(a, b));
                } else {
                    self.cut.insert(pair(a, b));
                    self.link_down(a, b);
                }
            }
            HubMsg::Partition { groups } => {
                self.cut.clear();
                let group_of: BTreeMap<NodeId, usize> =
                    groups.iter().enumerate().flat_map(|(g, nodes)| nodes.iter().map(move |n| (*n, g))).collect();
                for (a, ga) in &group_of {
                    for (b, gb) in &group_of {
                        if a < b && ga != gb {
                            self.cut.insert((*a, *b));
                        }
                    }
                }
                let ups: Vec<_> = self.up.iter().copied().filter(|p| self.cut.contains(p)).collect();
                for (a, b) in ups {
                    self.link_down(a, b);
                }
            }
            HubMsg::Faults { loss, delay_min_ms, delay_max_ms } => {
                self.loss = loss;
                self.delay_ms = (delay_min_ms, delay_max_ms);
            }
            HubMsg::Publish { from, data } => {
                let targets: Vec<NodeId> = self.endpoints.keys().copied().filter(|n| *n != from).collect();
                for to in targets {
                    self.schedule(from, to, Delivery::Gossip { from, to, data: data.clone() });
                }
            }
            HubMsg::Request { from, to, data, reply } => {
                if !self.endpoints.contains_key(&to) || to == from {
                    self.stats.blocked += 1;
                    let _ = reply.send(Err(NetError::Unreachable(to)));
                    return;
                }
                self.schedule(from, to, Delivery::Request { from, to, data, reply });
            }
            HubMsg::Dial { from, addr, reply } => {
                let target = addr.strip_prefix("/memory/").and_then(|s| s.parse::<NodeId>().ok());
                let answer = match target {
                    Some(to) if to != from && self.reachable(from, to) => {
                        self.touch(from, to);
                        Ok(to)
                    }
                    Some(to) if self.endpoints.contains_key(&to) => {
                        Err(NetError::Dial { addr, reason: "no route (link cut or banned)".into() })
                    }
                    _ => Err(NetError::Dial { addr, reason: "nothing listens there".into() }),
                };
                let _ = reply.send(answer);
            }
            HubMsg::Ban { from, peer, duration } => {
                self.bans.insert((from, peer), Instant::now() + duration);
                self.link_down(from, peer);
            }
            HubMsg::Connected { node, reply } => {
                let peers = self
                    .up
                    .iter()
                    .filter_map(|(a, b)| {
                        if *a == node {
                            Some(*b)
                        } else if *b == node {
                            Some(*a)
                        } else {
                            None
                        }
                    })
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            HubMsg::Stats { reply } => {
                let _ = reply.send(self.stats);
            }
        }
    }

    fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        let now = Instant::now();
        let banned = |x, y| self.bans.get(&(x, y)).is_some_and(|until| *until > now);
        self.endpoints.contains_key(&a)
            && self.endpoints.contains_key(&b)
            && !self.cut.contains(&pair(a, b))
            && !banned(a, b)
            && !banned(b, a)
    }

    /// Queue a delivery after the loss and delay draws.
    fn schedule(&mut self, from: NodeId, to: NodeId, d: Delivery) {
        if !self.reachable(from, to) {
            self.stats.blocked += 1;
            self.discard(d);
            return;
        }
        if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
            self.stats.lost += 1;
            trace!(from, to, "message lost");
            self.discard(d);
            return;
        }
        let (lo, hi) = self.delay_ms;
        let delay_ms = if hi > 0 { self.rng.random_range(lo..=hi) } else { 0 };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse((Instant::now() + Duration::from_millis(delay_ms), seq)));
        self.pending.insert(seq, d);
    }

    fn deliver_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            if let Some(d) = self.pending.remove(&seq) {
                self.deliver(d);
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        match d {
            Delivery::Gossip { from, to, data } => {
                if self.reachable(from, to) {
                    self.touch(from, to);
                    self.push(to, TransportEvent::Gossip { from, data, verdict: Verdict::none() });
                } else {
                    self.stats.blocked += 1;
                }
            }
            Delivery::Request { from, to, data, reply } => {
                if !self.reachable(from, to) {
                    // the link went down in flight
                    self.stats.blocked += 1;
                    self.silence(reply);
                    return;
                }
                self.touch(from, to);
                let (tx, rx) = oneshot::channel();
                if self
                    .push(to, TransportEvent::Request { from, data, reply: Reply::new(tx, self.config.max_rpc_bytes) })
                {
                    self.replies.push(Box::pin(async move {
                        let data = rx.await.ok();
                        Answered { from: to, to: from, data, reply }
                    }));
                }
            }
            Delivery::Response { from, to, data, reply } => {
                if self.reachable(from, to) {
                    self.stats.delivered += 1;
                    let _ = reply.send(Ok(data));
                } else {
                    self.stats.blocked += 1;
                    self.silence(reply);
                }
            }
        }
    }

    /// A message that will never arrive; a request's caller must wait out its deadline.
    fn discard(&mut self, d: Delivery) {
        match d {
            Delivery::Gossip { .. } => {}
            Delivery::Request { reply, .. } | Delivery::Response { reply, .. } => self.silence(reply),
        }
    }

    /// Keep the answer channel open without answering, as a partitioned network would. Bounded:
    /// channels whose caller gave up are dropped first, then the oldest.
    fn silence(&mut self, reply: Answer<Vec<u8>>) {
        if self.black_hole.len() >= self.config.hub_queue {
            self.black_hole.retain(|r| !r.is_closed());
            if self.black_hole.len() >= self.config.hub_queue {
                self.black_hole.pop_front();
            }
        }
        self.black_hole.push_back(reply);
    }

    fn answered(&mut self, a: Answered) {
        match a.data {
            Some(data) => {
                self.schedule(a.from, a.to, Delivery::Response { from: a.from, to: a.to, data, reply: a.reply })
            }
            None => {
                let _ = a.reply.send(Err(NetError::Protocol(format!("node {} dropped the request", a.from))));
            }
        }
    }

    /// Hand an event to a node; false when it could not take it.
    fn push(&mut self, to: NodeId, ev: TransportEvent) -> bool {
        let Some(tx) = self.endpoints.get(&to) else {
            self.stats.blocked += 1;
            return false;
        };
        let counts = !matches!(ev, TransportEvent::PeerUp { .. } | TransportEvent::PeerDown { .. });
        match tx.try_send(ev) {
            Ok(()) => {
                if counts {
                    self.stats.delivered += 1;
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.overflow += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.blocked += 1;
                false
            }
        }
    }

    /// Mark a link as carrying traffic; the first time, both ends see the peer come up.
    fn touch(&mut self, a: NodeId, b: NodeId) {
        if self.up.insert(pair(a, b)) {
            self.push(a, TransportEvent::PeerUp { node: b });
            self.push(b, TransportEvent::PeerUp { node: a });
        }
    }

    fn link_down(&mut self, a: NodeId, b: NodeId) {
        if self.up.remove(&pair(a, b)) {
            self.push(a, TransportEvent::PeerDown { node: b });
            self.push(b, TransportEvent::PeerDown { node: a });
        }
    }

    fn detach(&mut self, node: NodeId) {
        let peers: Vec<(NodeId, NodeId)> = self.up.iter().copied().filter(|(a, b)| *a == node || *b == node).collect();
        for (a, b) in peers {
            self.link_down(a, b);
        }
        self.endpoints.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attach nodes 1..=n; each answers every request with its own id.
    async fn nodes(net: &MemNetwork, n: u64) -> Vec<MemTransport> {
        let mut out = Vec::new();
        for id in 1..=n {
            let (t, mut ev) = net.attach(id).await.unwrap();
            tokio::spawn(async move {
                while let Some(e) = ev.recv().await {
                    if let TransportEvent::Request { reply, .. } = e {
                        let _ = reply.send(id.to_le_bytes().to_vec());
                    }
                }
            });
            out.push(t);
        }
        out
    }

    const T: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn cuts_partitions_and_crashes() {
        let net = MemNetwork::new(1, MemConfig::default(), CancellationToken::new());
        let n = nodes(&net, 3).await;
        assert!(n[0].request(2, vec![], T).await.is_ok());
        net.cut(1, 2).await.unwrap();
        assert!(matches!(n[0].request(2, vec![], T).await, Err(NetError::Timeout(_))), "a cut is silence");
        assert!(n[0].request(3, vec![], T).await.is_ok());
        net.restore(1, 2).await.unwrap();
        assert!(n[0].request(2, vec![], T).await.is_ok());
        net.partition(vec![vec![1], vec![2, 3]]).await.unwrap();
        assert!(n[0].request(3, vec![], T).await.is_err());
        assert!(n[1].request(3, vec![], T).await.is_ok());
        net.heal().await.unwrap();
        assert!(n[0].request(3, vec![], T).await.is_ok());
        net.crash(3).await.unwrap();
        assert!(matches!(n[0].request(3, vec![], T).await, Err(NetError::Unreachable(3))), "a crash refuses");
        let (_again, _ev) = net.attach(3).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_virtual_and_loss_is_seeded() {
        let net = MemNetwork::new(9, MemConfig::default(), CancellationToken::new());
        let n = nodes(&net, 2).await;
        net.set_faults(0.0, 40, 40).await.unwrap();
        let t0 = Instant::now();
        n[0].request(2, vec![], T).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(80), "40 ms each way, on virtual time");

        let mut outcomes = Vec::new();
        for seed in [5, 5, 6] {
            let net = MemNetwork::new(seed, MemConfig::default(), CancellationToken::new());
            let n = nodes(&net, 2).await;
            net.set_faults(0.5, 0, 10).await.unwrap();
            let mut ok = Vec::new();
            for _ in 0..40 {
                ok.push(n[0].request(2, vec![], Duration::from_millis(50)).await.is_ok());
            }
            outcomes.push((ok, net.stats().await.unwrap()));
        }
        assert_eq!(outcomes[0], outcomes[1], "a seed replays the same losses");
        assert_ne!(outcomes[0].0, outcomes[2].0);
        assert!(outcomes[0].1.lost > 0);
    }
}
