//! # mindmesh-node
//!
//! The daemon of one host: wires the store, the supervisor and the API together and shuts
//! them down in order.
//!
//! # Layout
//! - [`daemon`]: start-up (store, supervisor, take-over of a previous run, config personas,
//!   API) and ordered shutdown
//! - [`recorder`]: persists the supervisor's reports in batches
//! - [`api`]: the HTTP API and its JSON types (shared with the CLI)
//! - [`gateway`]: the OpenAI-compatible gateway in front of the personas (budgets, queue,
//!   wake, drain, measurements)
//! - [`control`]: the one door for acting on a persona (drains before it stops a process)
//! - [`local`]: the local operator's credential (token file, Unix socket) and how the CLI
//!   finds it
//! - [`error`]: the crate's one error type

pub mod api;
pub mod control;
pub mod daemon;
pub mod error;
pub mod gateway;
pub mod local;
pub mod mesh;
pub mod recorder;

pub use daemon::{API_ADDR_FILE, Node};
pub use error::NodeError;
