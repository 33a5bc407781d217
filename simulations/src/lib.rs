//! # mindmesh-sim
//!
//! The deterministic simulation of a mesh: N real [`mindmesh_node::Node`]s, each built from
//! in-memory twins of its dependencies (network, Raft and record stores, process host, clock,
//! seed), on virtual time, under a seeded schedule of node and leader crashes, partitions
//! (minority, majority, flapping), loss and delay, persona crashes and operators' verbs;
//! invariants checked after every step on what the processes actually did, liveness judged
//! after healing. `--seed` replays a run.
//!
//! # Layout
//! - [`config`]: what a run does (nodes, personas, phase lengths, fault rates) and the bounds
//!   the invariants hold it to
//! - [`schedule`]: the fault and verb schedule, a pure function of the seed
//! - [`cluster`]: the real nodes and their in-memory dependencies
//! - [`processes`]: the observer of their process hosts: the table of who runs what
//! - [`invariants`]: one invariant per file
//! - `run`: one run, step by step
//! - [`cli`]: the command line (`--seed`, `--seeds`), for `mindmesh-sim` and `mindmesh sim`

pub mod cli;
pub mod cluster;
pub mod config;
pub mod invariants;
mod panics;
pub mod processes;
mod run;
pub mod schedule;

use mindmesh_net::NetError;
use thiserror::Error;

pub use config::SimConfig;
pub use run::SimReport;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("seed {seed}: invariant {invariant} broken at {at_ms} ms: {detail}")]
    Violation { seed: u64, invariant: &'static str, at_ms: u64, detail: String },
    #[error("seed {seed}: not live after healing: {detail}")]
    Liveness { seed: u64, detail: String },
    /// `error` rather than `source`: the message carries it, so it is not also the cause.
    #[error("seed {seed}: mesh: {error}")]
    Mesh { seed: u64, error: NetError },
    #[error("seed {seed}: harness: {detail}")]
    Harness { seed: u64, detail: String },
    /// A task of a node panicked (a node's own assertion, or openraft's on a broken
    /// guarantee such as a follower's log going backwards).
    #[error("seed {seed}: a task panicked at {at_ms} ms: {detail}")]
    Panic { seed: u64, at_ms: u64, detail: String },
}

impl SimError {
    pub fn seed(&self) -> u64 {
        match self {
            SimError::Violation { seed, .. }
            | SimError::Liveness { seed, .. }
            | SimError::Mesh { seed, .. }
            | SimError::Harness { seed, .. }
            | SimError::Panic { seed, .. } => *seed,
        }
    }
}

/// Run one seed on its own thread with its own current-thread runtime on paused time, so it
/// can be called from anywhere (the CLI calls it from inside its own runtime).
pub fn run_seed(seed: u64, cfg: &SimConfig) -> Result<SimReport, SimError> {
    run_seed_traced(seed, cfg).0
}

/// [`run_seed`], with the run's timeline (faults, heal, failovers) whatever its outcome: what a
/// replay of a failing seed prints.
pub fn run_seed_traced(seed: u64, cfg: &SimConfig) -> (Result<SimReport, SimError>, Vec<(u64, String)>) {
    let cfg = cfg.clone();
    let harness = |detail: String| SimError::Harness { seed, detail };
    let joined = std::thread::Builder::new()
        .name(format!("sim-{seed}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
                Ok(rt) => rt,
                Err(e) => return (Err(SimError::Harness { seed, detail: format!("runtime: {e}") }), Vec::new()),
            };
            // openraft's election timeouts come from this thread's generator
            mindmesh_net::runtime::seed_thread_rng(seed);
            panics::watch();
            let _ = panics::take();
            let mut timeline = Vec::new();
            let r = rt.block_on(run::run(seed, cfg, &mut timeline));
            (r, timeline)
        })
        .map_err(|e| harness(format!("thread: {e}")))
        .and_then(|t| t.join().map_err(|_| harness("the run panicked".into())));
    match joined {
        Ok(out) => out,
        Err(e) => (Err(e), Vec::new()),
    }
}

/// Run seeds `seeds` on `threads` threads; every result, in seed order.
pub fn run_seeds(seeds: std::ops::Range<u64>, cfg: &SimConfig, threads: usize) -> Vec<Result<SimReport, SimError>> {
    run_seeds_reporting(seeds, cfg, threads, &|_, _| {})
}

/// [`run_seeds`], calling `on_result` with each seed's result as soon as it is known (from the
/// thread that ran it), so a long batch can show progress and its failures as they happen.
pub fn run_seeds_reporting(
    seeds: std::ops::Range<u64>,
    cfg: &SimConfig,
    threads: usize,
    on_result: &(dyn Fn(u64, &Result<SimReport, SimError>) + Sync),
) -> Vec<Result<SimReport, SimError>> {
    let seeds: Vec<u64> = seeds.collect();
    let threads = threads.clamp(1, 64);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(seed) = seeds.get(i) else { break };
                    let r = run_seed(*seed, cfg);
                    on_result(*seed, &r);
                    if let Ok(mut v) = results.lock() {
                        v.push((*seed, r));
                    }
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by_key(|(seed, _)| *seed);
    v.into_iter().map(|(_, r)| r).collect()
}
