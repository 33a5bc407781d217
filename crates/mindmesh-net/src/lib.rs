//! # mindmesh-net
//!
//! The mesh: libp2p transport, gossip of node snapshots, and the openraft cluster that
//! replicates the registry.
//!
//! # Layout
//! - [`transport`]: the `Transport` seam; [`transport::p2p`] (libp2p) and [`transport::mem`]
//!   (in-process, with faults) implement it
//! - [`keys`]: the mesh key file (`mesh init`) and the persisted node identity
//! - [`error`]: the crate's one error type

pub mod error;
pub mod keys;
pub mod mesh;
pub mod transport;

pub mod raft;
pub mod rpc;
pub mod runtime;

pub use error::NetError;
pub use mesh::{MeshHandle, MeshParams, MeshRole, MeshStart, MeshStatus, NodeProfile, start, start_with};
pub use mindmesh_core::registry::NodeId;
