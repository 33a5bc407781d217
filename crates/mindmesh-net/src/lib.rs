//! # mindmesh-net
//!
//! The mesh: a libp2p transport under a private-network key, gossip of node snapshots into a
//! mesh view, and the openraft cluster that replicates the registry of `mindmesh-core`. A node
//! starts it with one call ([`start`], or [`start_with`] over any transport and store) and
//! talks to it through a [`MeshHandle`].
//!
//! # Layout
//! - [`mesh`]: start-up, the [`MeshHandle`], the mesh actor (gossip view, status, commands),
//!   the membership loop (bootstrap, retry-join, registration, voter promotion), leader-only
//!   operations and their forwarding
//! - [`transport`]: the `Transport` seam; [`transport::p2p`] (libp2p: TCP + pnet + noise +
//!   yamux, identify, ping, gossipsub, request-response, optional mDNS) and [`transport::mem`]
//!   (in-process, with cuts, loss and delay on a seeded RNG) implement it
//! - [`raft`]: openraft's type config, storage adapters over a small byte store (in memory,
//!   redb), and the Raft network over the transport
//! - [`rpc`]: the versioned request/response messages between nodes
//! - [`runtime`]: openraft's runtime, tokio with a seedable RNG (for replayable simulations)
//! - [`keys`]: the mesh key file (`mesh init`) and the persisted node identity
//! - [`error`]: the crate's one error type
//! - `fuzzing`: entry points of the fuzz targets and of their corpus replay (hidden)
//!
//! Timing reads go through tokio's clock only, so the whole mesh runs on virtual time under
//! `tokio::time::pause()`.

pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod mesh;
pub mod raft;
pub mod rpc;
pub mod runtime;
pub mod transport;

pub use error::NetError;
pub use mesh::{CommitStats, MeshHandle, MeshParams, MeshRole, MeshStart, MeshStatus, NodeProfile, start, start_with};
pub use mindmesh_core::registry::NodeId;
