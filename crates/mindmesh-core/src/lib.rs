//! # mindmesh-core
//!
//! The bottom layer: the words of the design as types, their validation, and the pure logic
//! that decides what to do. No I/O, no clock reads, no async: time and randomness are passed
//! in, so the same logic runs in a node and in the deterministic simulator.
//!
//! # Layout
//! - [`spec`]: the persona spec (TOML/JSON), importance, restart policy, limits, adapters
//! - [`spec_v3`]: the spec as wire version 3 laid it out, so older bytes still decode
//! - [`spec_v4`]: the same for wire version 4 (before the budget envelope and maintenance)
//! - [`bounds`]: the upper bound of every number a user, a client or a config gives
//! - [`budget`]: the compute budget and run-time patches to it
//! - [`config`]: the node's config file, one section per subsystem
//! - [`phase`]: a persona's observed phase and health
//! - [`placement`]: which node a new persona goes to
//! - [`reconcile`]: the pure plan that brings a persona to what the registry wants
//! - [`record`]: what a node persists about each persona (phase, process for adoption)
//! - [`lifecycle`]: the sans-IO supervision state machine (restart policy, backoff, crash
//!   loops, graceful stop)
//! - [`event`]: the event log's records
//! - [`evict`]: memory-aware admission on a node: who is evicted to make room
//! - [`metrics`]: per-tick samples of personas and hosts, and their rollups
//! - [`reported`]: what a persona reports of itself (`GET /mindmesh/metrics`), parsed and bounded
//! - [`action`]: decisions and the actions they name
//! - [`wire`]: versioned, size-bounded postcard encoding
//! - [`clock`]: wall-clock time behind a trait
//! - [`persona_env`]: the clean environment a persona starts with (allowlist + contract)
//! - [`snapshot`]: `NodeSnapshot`, what a node gossips each tick (size-bounded)
//! - [`mesh_view`]: per node the last snapshot, last-seen and staleness
//! - [`registry`]: the Raft-replicated desired state and its pure state machine
//! - [`telemetry`]: cumulative histograms with fixed buckets, for `/metrics`
//! - [`error`]: the crate's one error type
//! - `fuzzing`: entry points of the fuzz targets and of their corpus replay (hidden)

pub mod action;
pub mod bounds;
pub mod budget;
pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod evict;
pub mod failover;
#[doc(hidden)]
pub mod fuzzing;
pub mod hibernate;
pub mod lifecycle;
pub mod mesh_view;
pub mod metrics;
pub mod persona_env;
pub mod phase;
pub mod placement;
pub mod reconcile;
pub mod record;
pub mod registry;
pub mod reported;
pub mod snapshot;
pub mod spec;
pub mod spec_diff;
pub mod spec_v3;
pub mod spec_v4;
pub mod telemetry;
pub mod wire;

pub use action::{Action, AnalystKind, Decision};
pub use budget::{Budget, BudgetBound, BudgetChange, BudgetEnvelope, BudgetPatch};
pub use error::CoreError;
pub use phase::{Health, Phase};
pub use record::{PersonaRecord, ProcessRecord};
pub use spec::{Importance, PersonaKind, PersonaSpec, RestartPolicy};
