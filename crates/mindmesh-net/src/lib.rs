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
pub mod transport;

pub use error::NetError;
pub use mindmesh_core::registry::NodeId;
