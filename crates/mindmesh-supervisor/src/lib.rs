//! # mindmesh-supervisor
//!
//! Supervises persona processes on one host: spawns each in its own process group with
//! `MINDMESH_PORT`, `MINDMESH_PERSONA_ID` and `MINDMESH_STATE_FILE`; notices exits from the
//! child's exit (never by polling); restarts by policy with jittered backoff and kills crash
//! loops (the pure rules are `mindmesh_core::lifecycle`); stops gracefully (SIGTERM, grace,
//! SIGKILL of the whole group); enforces hard memory limits and CPU throttling through cgroups
//! where it can, by measuring and signalling where it cannot; probes health; samples OS
//! metrics for its own PIDs only; and finds the processes a previous run left behind.
//!
//! # Layout
//! - [`actor`]: the supervisor task owning every persona slot (one file per job)
//! - [`handle`]: the cloneable handle and the actions it offers
//! - [`status`]: the published status table and the reports sent for persistence
//! - [`spawn_gate`]: fencing's gate on every spawn
//! - [`host`]: the process seam — [`ProcessHost`], the OS host and its in-memory twin
//!
//! The OS host's parts:
//! - [`process`]: spawning, process groups, signals, identifying processes across restarts
//! - [`cgroup`]: cgroup v1/v2 detection, memory and CPU limits, OOM detection
//! - [`throttle`]: the SIGSTOP/SIGCONT duty cycle used without cgroups
//! - [`pidfd`]: waiting for adopted (non-child) processes to exit
//! - [`health`]: health probes and the state hook
//! - [`logs`]: persona output: FIFOs, the collector, rotated timestamped files, paging
//! - [`sampler`]: sysinfo on its own thread
//! - [`error`]: the crate's one error type

pub mod actor;
pub mod cgroup;
pub mod error;
pub mod handle;
pub mod health;
pub mod host;
pub mod logs;
pub mod pidfd;
pub mod process;
pub mod sampler;
pub mod spawn_gate;
pub mod status;
pub mod throttle;

pub use actor::{Supervisor, SupervisorSettings};
pub use error::SupervisorError;
pub use handle::{Act, RestoreSummary, SupervisorHandle};
pub use host::{MemHost, OsHost, ProcessHost};
pub use spawn_gate::SpawnGate;
pub use status::{AdapterStatus, PersonaStatus, Report, StatusTable};
