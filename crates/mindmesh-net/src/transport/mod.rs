//! The transport seam: everything the mesh logic needs from a network, and nothing more —
//! broadcast gossip, request/response to one peer with a deadline and a size bound, and an
//! event stream (gossip in, requests in with a reply handle, peers up and down).
//!
//! Two implementations: [`p2p`] over libp2p (TCP + private-network key + noise + yamux) and
//! [`mem`], many nodes in one process with link cuts, loss and delay on a seeded RNG, for the
//! deterministic simulator. `tests/transport_conformance.rs` runs one suite against both.
//!
//! Peers are named by their [`NodeId`] (the Raft id); the libp2p transport maps ids to peer ids
//! as it learns them (connections, identify, [`Transport::add_peer`]).

pub mod mem;
pub mod p2p;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::{NetError, NodeId};

/// How to reach a peer: its id, its transport-level identity (a libp2p peer id; empty for the
/// in-memory network) and addresses to dial.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    pub node_id: NodeId,
    pub peer_id: String,
    pub addrs: Vec<String>,
}

/// What the mesh logic needs from a network. Cheap to clone: a handle to an actor.
pub trait Transport: Clone + Send + Sync + 'static {
    /// This node's id.
    fn local_id(&self) -> NodeId;

    /// This node's transport identity (libp2p peer id), advertised with its addresses.
    fn local_peer_id(&self) -> String;

    /// Broadcast to every peer subscribed to the mesh's gossip. Fails with `TooLarge` above the
    /// transport's gossip bound; a gossip with no peers yet is not an error.
    fn publish(&self, data: Vec<u8>) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Send a request and wait for the answer, at most `timeout`. Fails with `TooLarge` above
    /// the request bound, `Unreachable` when no route to the peer is known, `Timeout` else.
    fn request(
        &self,
        to: NodeId,
        data: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, NetError>> + Send;

    /// Connect to an address and learn who answers there.
    fn dial(&self, addr: &str, timeout: Duration) -> impl Future<Output = Result<NodeId, NetError>> + Send;

    /// Remember how to reach a peer (from the Raft membership), for later requests.
    fn add_peer(&self, peer: PeerInfo) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Refuse a misbehaving peer for a while: disconnect it and drop whatever it sends.
    fn ban(&self, peer: NodeId, duration: Duration) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Addresses other nodes can dial to reach this one.
    fn listen_addrs(&self) -> impl Future<Output = Result<Vec<String>, NetError>> + Send;

    /// Peers with a live connection.
    fn connected_peers(&self) -> impl Future<Output = Result<Vec<NodeId>, NetError>> + Send;
}

/// What the network delivers to this node.
pub enum TransportEvent {
    /// A gossip message. Answer the verdict after validating it: a rejection scores the sender
    /// down; an accepted message may be forwarded on.
    Gossip {
        from: NodeId,
        data: Vec<u8>,
        verdict: Verdict,
    },
    /// A request; answer through `reply` (dropping it fails the request at the sender).
    Request {
        from: NodeId,
        data: Vec<u8>,
        reply: Reply,
    },
    PeerUp {
        node: NodeId,
    },
    PeerDown {
        node: NodeId,
    },
    /// A peer broke the protocol below the mesh logic (a request frame over the size bound):
    /// scored like an invalid message.
    Misbehaved {
        node: NodeId,
        what: &'static str,
    },
}

impl fmt::Debug for TransportEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportEvent::Gossip { from, data, .. } => write!(f, "Gossip(from {from}, {} bytes)", data.len()),
            TransportEvent::Request { from, data, .. } => write!(f, "Request(from {from}, {} bytes)", data.len()),
            TransportEvent::PeerUp { node } => write!(f, "PeerUp({node})"),
            TransportEvent::PeerDown { node } => write!(f, "PeerDown({node})"),
            TransportEvent::Misbehaved { node, what } => write!(f, "Misbehaved({node}: {what})"),
        }
    }
}

/// The answer channel of one inbound request, bounded in size.
pub struct Reply {
    tx: oneshot::Sender<Vec<u8>>,
    max_bytes: usize,
}

impl Reply {
    pub(crate) fn new(tx: oneshot::Sender<Vec<u8>>, max_bytes: usize) -> Self {
        Reply { tx, max_bytes }
    }

    /// Send the answer. Above the bound nothing is sent (the requester sees a failure).
    pub fn send(self, data: Vec<u8>) -> Result<(), NetError> {
        if data.len() > self.max_bytes {
            return Err(NetError::TooLarge { what: "response", size: data.len(), limit: self.max_bytes });
        }
        // the requester may have given up: nothing to do then
        let _ = self.tx.send(data);
        Ok(())
    }
}

/// The outcome of validating one gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    Accept,
    /// Invalid: scored against the sender.
    Reject,
    /// Valid but not worth forwarding (outdated).
    Ignore,
}

type VerdictFn = Box<dyn FnOnce(Acceptance) + Send>;

/// Report the validation of a gossip message to the transport. Dropped unanswered, it counts as
/// `Ignore`.
pub struct Verdict {
    report: Option<VerdictFn>,
}

impl Verdict {
    pub(crate) fn new(report: impl FnOnce(Acceptance) + Send + 'static) -> Self {
        Verdict { report: Some(Box::new(report)) }
    }

    /// A verdict nobody listens to (transports without validation).
    pub fn none() -> Self {
        Verdict { report: None }
    }

    pub fn accept(mut self) {
        self.give(Acceptance::Accept);
    }

    pub fn reject(mut self) {
        self.give(Acceptance::Reject);
    }

    pub fn ignore(mut self) {
        self.give(Acceptance::Ignore);
    }

    fn give(&mut self, a: Acceptance) {
        if let Some(f) = self.report.take() {
            f(a);
        }
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        self.give(Acceptance::Ignore);
    }
}
