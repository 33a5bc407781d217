//! # mindmesh-brain
//!
//! "It takes a mind to manage minds": given a mesh and its history, decide per persona among
//! continue, restart, hibernate, kill, throttle, investigate and migrate, with a reason and a
//! confidence — never from a fixed absolute threshold alone, always against the persona's own
//! history, its peers and its host — and score those decisions on labelled scenarios.
//!
//! Pure logic plus one HTTP client: features, analysts and guardrails do no I/O and read no
//! clock (time is `now_ms`); the LLM call sits behind [`llm::LlmClient`].
//!
//! # Layout
//! - [`view`]: the input model, a mesh view with history ([`MeshView`]), from scenarios or a
//!   node's store
//! - [`scenario`]: the `mindmesh-scenario/1` loader (strict)
//! - [`digest`]: incremental history summaries, so a cycle costs what is new
//! - [`history`]: what a persona's closed history says (baselines, trends), cached until it
//!   changes
//! - [`recent`]: what the data at hand says when the history is short (a recent memory line,
//!   how long a persona has been far above a reference)
//! - [`features`]: per persona, per node and mesh-wide features
//! - [`classify`]: what an error means (recoverable, permanent, client, rate limit, crash)
//! - [`anomaly`]: typed anomalies, health scores
//! - [`analyst`]: the built-in analyst and the naive baseline
//! - [`llm`]: the LLM analyst (client trait and twin, prompt, answer validation)
//! - [`guardrails`]: rules after any analyst
//! - [`budget`]: budget envelopes, the fields the brain may move and why (causes)
//! - [`brain`]: [`Brain`], one analysis per cycle, stateful across cycles
//! - [`eval`]: scoring analysts on scenarios
//! - [`stats`]: regression, medians, a Poisson tail
//! - [`synth`]: seeded synthetic histories for tests and benches
//! - [`error`]: the crate's one error type
//! - `fuzzing`: the entry point of the fuzz target and of its corpus replay (hidden)

pub mod analyst;
pub mod anomaly;
pub mod brain;
pub mod budget;
pub mod classify;
pub mod digest;
pub mod error;
pub mod eval;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
pub mod guardrails;
pub mod history;
pub mod llm;
pub mod recent;
pub mod scenario;
pub mod stats;
pub mod synth;
pub mod view;

pub use brain::{Brain, CycleReport, Fallback, LlmCallStats, Mode};
pub use error::BrainError;
pub use view::{MeshView, NodeView, PersonaView};
