//! # mindmesh-node
//!
//! The daemon of one host: wires the store, the supervisor and the API together and shuts
//! them down in order.
//!
//! # Layout
//! - [`daemon`]: start-up (store, supervisor, take-over of a previous run, config personas,
//!   API) and ordered shutdown
//! - [`ui`]: the operator's dashboard at `/ui` (HTML and SVG drawn here from the API's
//!   handlers, behind the API's door)
//! - [`api`]: the HTTP API and its JSON types (shared with the CLI)
//! - [`idle`]: hibernation of personas idle past their `hibernate_after_idle_s`
//! - [`capacity`]: memory-aware admission of wakes: evicts idle personas to make room, or
//!   refuses (the gateway answers 503)
//! - [`mesh`]: the node's part in the mesh (reconciler, fence, checkpoints, gossip, leader)
//! - [`control`]: the one door for acting on a persona (drains before it stops a process)
//! - [`recorder`]: persists the supervisor's reports in batches
//! - [`gateway`]: the OpenAI-compatible gateway in front of the personas (budgets, queue,
//!   wake, drain, measurements)
//! - [`waker`]: wakes a hibernating persona with its saved state (gateway and control use it)
//! - [`admit`]: the waker's door to admission (the actor lives in [`capacity`])
//! - [`http`]: the HTTP error type, the caller a request acts for, and the forwarder, shared by
//!   the API and the gateway
//! - [`local`]: the local operator's credential (token file, Unix socket) and how the CLI
//!   finds it
//! - [`telemetry`]: what `/metrics` counts beyond the gateway and the mesh (restarts by
//!   reason, spawn-to-ready, the brain's cycles and decisions)
//! - [`error`]: the crate's one error type
//! - `fuzzing`: entry points of the fuzz targets and of their corpus replay (hidden; uses
//!   only the gateway)
//!
//! # Layers
//! A module uses only modules listed below it in [`LAYERS`]; `tests/layers.rs` reads every
//! `crate::` path in the sources and fails on one that points up or sideways, so no import ring
//! can come back.

pub mod admit;
pub mod api;
pub mod capacity;
pub mod control;
pub mod daemon;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod http;
pub mod idle;
pub mod local;
pub mod mesh;
pub mod recorder;
pub mod telemetry;
pub mod ui;
pub mod waker;

pub use daemon::{API_ADDR_FILE, Node};
pub use error::NodeError;

/// The crate's modules from the top down, each with the modules it may use (all of them
/// further down). Kept as data so the layering test and a reader see the same thing.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("fuzzing", &["gateway"]),
    (
        "daemon",
        &[
            "ui",
            "api",
            "idle",
            "capacity",
            "mesh",
            "control",
            "recorder",
            "telemetry",
            "gateway",
            "waker",
            "admit",
            "http",
            "local",
            "error",
        ],
    ),
    ("ui", &["api", "http"]),
    ("api", &["mesh", "control", "telemetry", "gateway", "http", "local", "error"]),
    ("idle", &["control", "gateway"]),
    ("capacity", &["admit", "control", "gateway"]),
    ("mesh", &["control", "recorder", "telemetry", "error"]),
    ("control", &["gateway", "waker", "admit"]),
    ("recorder", &["telemetry", "gateway"]),
    ("telemetry", &[]),
    ("gateway", &["waker", "http", "error"]),
    ("waker", &["admit"]),
    ("admit", &[]),
    ("http", &["error"]),
    ("local", &[]),
    ("error", &[]),
];
