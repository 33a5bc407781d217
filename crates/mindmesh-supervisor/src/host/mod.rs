//! The process seam: everything the supervisor does to the operating system — spawn a
//! persona, signal its process group, learn of its exit, find processes a previous run left,
//! probe its health, ask for its state and its own metrics, sample its memory and CPU — goes through one
//! [`ProcessHost`]. [`OsHost`] is the real one (process groups, pidfds, `/proc`, HTTP probes,
//! cgroups); [`MemHost`] is its in-memory twin on tokio's clock, whose processes start, answer
//! health probes or not, exit, crash and use memory on a seeded RNG — what the simulator and
//! fast tests run. `tests/host_conformance.rs` holds both to the same behaviour.
//!
//! The supervisor calls the host directly from its task (no actor hop): a restart costs a
//! spawn, not a round trip.

pub mod mem;
pub mod os;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use mindmesh_core::config::CgroupMode;
use mindmesh_core::lifecycle::ExitStatus;
use tokio::sync::mpsc;

pub use mem::{HostEvent, HostEventKind, MemHost, MemProcess, Program, TokioClock};
pub use os::OsHost;

use crate::cgroup::Cgroups;
use crate::error::Result;
use crate::process::{FoundProcess, SpawnPlan};
use crate::sampler::Reading;

/// The signals the supervisor sends, always to a persona's whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// Please stop (the graceful start of a stop).
    Term,
    /// Stop now; cannot be ignored.
    Kill,
    /// Freeze (the throttle's duty cycle, or an operator's pause).
    Stop,
    /// Thaw a frozen group.
    Cont,
}

/// A process just started.
pub struct Spawned {
    pub pid: u32,
    /// With the pid, identifies the process across pid reuse (on Linux its start time in ticks).
    pub start_ticks: u64,
    /// Resolves once, with how the process ended.
    pub exited: BoxFuture<'static, ExitStatus>,
}

/// Takes requests for a reading of some pids; readings arrive on the channel given to
/// [`ProcessHost::sampler`].
pub trait SampleSource: Send {
    /// Ask for a reading stamped `ts_ms`; false if the previous one is still being taken
    /// (a stale reading is worth nothing, so the tick is skipped, never queued).
    fn request(&self, ts_ms: u64, pids: Vec<u32>) -> bool;
}

/// What the supervisor needs from the machine its personas run on.
pub trait ProcessHost: std::fmt::Debug + Send + Sync + 'static {
    /// Start `plan` as the leader of a new process group.
    fn spawn(&self, plan: &SpawnPlan) -> Result<Spawned>;
    /// Would [`ProcessHost::spawn`] find `resolved` (what `command` resolved to) runnable, in
    /// `working_dir`? If not, why — asked before a persona is committed to this node.
    fn check_program(
        &self,
        command: &str,
        resolved: &std::path::Path,
        working_dir: Option<&std::path::Path>,
    ) -> std::result::Result<(), String>;
    /// Signal the process group led by `pgid`; a group already gone is not an error.
    fn signal_group(&self, pgid: u32, sig: Sig);
    /// Does any process of the group still exist?
    fn group_alive(&self, pgid: u32) -> bool;
    /// Resolves when `pid` — a process this host did not start in this run (adopted) — exits;
    /// None if it cannot be watched (then it is not adopted).
    fn watch_exit(&self, pid: u32) -> Option<BoxFuture<'static, ()>>;
    /// The group leaders that a run of node `instance` started and that still live.
    fn scan_instance(&self, instance: &str) -> Vec<FoundProcess>;
    /// A free port for a new persona, not one of `in_use`.
    fn free_port(&self, in_use: &HashSet<u16>) -> Result<u16>;
    /// Does `GET path` on the persona at `port` answer 2xx (within the host's probe timeout)?
    fn probe(&self, port: u16, path: &str) -> BoxFuture<'static, bool>;
    /// `POST /mindmesh/state/save`: the persona's state, None if it has no hook.
    fn save_state(
        &self,
        port: u16,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'static, std::result::Result<Option<Vec<u8>>, String>>;
    /// `GET path` on the persona at `port`: the body of a 2xx answer, at most `max_bytes`
    /// (more is an error, unread); None if it has no such path (404, 405, 501). The persona's
    /// own metrics, which the caller parses ([`mindmesh_core::reported::parse`]).
    fn fetch_metrics(
        &self,
        port: u16,
        path: &str,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'static, std::result::Result<Option<Vec<u8>>, String>>;
    /// Start sampling: readings go to `out`; disk I/O every `full_every_ticks` readings.
    fn sampler(&self, out: mpsc::Sender<Reading>, full_every_ticks: u32) -> std::io::Result<Box<dyn SampleSource>>;
    /// The cgroups to enforce limits with, if this host has them and `mode` allows.
    fn cgroups(&self, mode: CgroupMode, instance: &str) -> Option<Cgroups>;
    /// The node's own environment, of which a persona inherits only the allowlisted part
    /// (`mindmesh_core::persona_env`); read once when the supervisor starts.
    fn node_environment(&self) -> BTreeMap<String, String>;
    /// The node's executable (`MINDMESH_EXE` of every persona), if known.
    fn node_exe(&self) -> Option<String>;
    /// Do the processes this host spawns write their stdout and stderr into the FIFOs of the
    /// plan's log directory, for the node to collect? The twin's processes write nothing, and
    /// collecting would open real FIFOs on a runtime that may have no I/O driver (the
    /// simulator's).
    fn captures_output(&self) -> bool;
}
