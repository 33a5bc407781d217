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
//! - [`error`]: the crate's one error type
//! - `fuzzing`: entry points of the fuzz targets and of their corpus replay (hidden)

pub mod api;
pub mod control;
pub mod daemon;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod mesh;
pub mod recorder;

pub use daemon::{API_ADDR_FILE, Node};
pub use error::NodeError;
