//! The simulator's command line, shared by the `mindmesh-sim` binary and `mindmesh sim`.
//!
//! `--seed 17` replays seed 17 and prints its timeline (faults, heal, failovers) and, if it
//! fails, the invariant that broke; `--seeds 0..100` (or `--seeds 5000`, the long mode: seeds
//! 0 to 4999) runs a batch on `--threads` threads and prints each failing seed with the command
//! that replays it.

use std::process::ExitCode;
use std::time::Instant;

use crate::{SimConfig, SimReport, run_seed_traced, run_seeds_reporting};

/// The simulator's options, shared by `mindmesh-sim` and `mindmesh sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Replay one seed: print its timeline, and the invariant that broke if one did.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Seeds to run: `START..END`, or `N` for `0..N` (the long mode: `--seeds 5000`).
    #[arg(long, default_value = "0..100")]
    pub seeds: String,
    /// OS threads running seeds side by side.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Nodes in each simulated mesh.
    #[arg(long, default_value_t = 5)]
    pub nodes: u64,
    /// Personas placed on each node before the faults.
    #[arg(long, default_value_t = 4)]
    pub personas_per_node: u64,
    /// Virtual milliseconds of the fault phase.
    #[arg(long, default_value_t = 20_000)]
    pub fault_ms: u64,
    /// Deliberately break the mesh (crashed nodes lose their Raft store) to see the checker fail.
    #[arg(long)]
    pub amnesia: bool,
    /// Deliberately break fencing (nodes ignore their lease, a crashed node's processes run
    /// on) to see the checker fail.
    #[arg(long)]
    pub broken_fencing: bool,
    /// Deliberately break desired state (reconcilers ignore every change after the first) to
    /// see the checker fail.
    #[arg(long)]
    pub broken_desired: bool,
    /// Deliberately break the audit trail (reconcilers skip restarts and report them carried
    /// out) to see the checker fail.
    #[arg(long)]
    pub broken_audit: bool,
    /// Log (RUST_LOG syntax, e.g. `info` or `mindmesh_net=debug`).
    #[arg(long)]
    pub log: Option<String>,
}

/// `START..END` or `N` (= `0..N`).
pub fn parse_seeds(s: &str) -> Option<std::ops::Range<u64>> {
    match s.split_once("..") {
        Some((a, b)) => Some(a.trim().parse().ok()?..b.trim().parse().ok()?),
        None => Some(0..s.trim().parse().ok()?),
    }
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn print_report(r: &SimReport) {
    println!(
        "  {} personas desired running, {} moved by failover, {} persona crashes; writes {}/{} acknowledged; \
         {} leader terms",
        r.personas, r.failovers, r.persona_crashes, r.writes_acked, r.writes_started, r.leader_terms
    );
    println!(
        "  longest double run {} ({} overlaps), longest fence lag {}, all running {} ms after healing",
        ms(r.max_overlap_us),
        r.overlaps,
        ms(r.max_fence_lag_us),
        r.recovered_ms.map_or_else(|| "-".into(), |m| m.to_string())
    );
    println!("  network {:?}, trace {:016x}", r.network, r.trace_hash);
}

/// Progress of a batch on stderr: a line every [`Progress::EVERY`] of wall time, with what is
/// done, what failed and an estimate of what is left, so a 5,000-seed run is not silent.
struct Progress {
    total: u64,
    started: Instant,
    state: std::sync::Mutex<(u64, u64, Instant)>,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn new(total: u64, started: Instant) -> Self {
        Progress { total, started, state: std::sync::Mutex::new((0, 0, started)) }
    }

    fn record(&self, failed: bool) {
        let Ok(mut state) = self.state.lock() else { return };
        let (done, failures, last) = &mut *state;
        *done += 1;
        *failures += u64::from(failed);
        let now = Instant::now();
        if now.duration_since(*last) < Self::EVERY || *done == self.total {
            return;
        }
        *last = now;
        let elapsed_s = now.duration_since(self.started).as_secs_f64();
        let left_s = elapsed_s / *done as f64 * self.total.saturating_sub(*done) as f64;
        eprintln!("{done}/{} seeds, {failures} failed, {elapsed_s:.0} s so far, about {left_s:.0} s left", self.total);
    }
}

/// Run the simulator as its command line asks, printing what happened; fails if any seed
/// broke an invariant (each failing seed is printed with the command that replays it).
pub fn run(args: &SimArgs) -> ExitCode {
    if let Some(filter) = &args.log {
        let _ = tracing_subscriber::fmt().with_env_filter(filter.as_str()).with_target(false).try_init();
    }
    let cfg = SimConfig {
        nodes: args.nodes,
        personas_per_node: args.personas_per_node,
        fault_ms: args.fault_ms,
        amnesia: args.amnesia,
        broken_fencing: args.broken_fencing,
        broken_desired: args.broken_desired,
        broken_audit: args.broken_audit,
        ..SimConfig::default()
    };
    let started = Instant::now();
    if let Some(seed) = args.seed {
        let (result, timeline) = run_seed_traced(seed, &cfg);
        println!("seed {seed}: timeline (virtual ms)");
        for (at, what) in &timeline {
            println!("  {at:>6}  {what}");
        }
        return match result {
            Ok(r) => {
                println!("seed {seed}: ok in {} virtual ms ({} ms wall)", r.virtual_ms, started.elapsed().as_millis());
                print_report(&r);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("FAILED {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(range) = parse_seeds(&args.seeds) else {
        eprintln!("--seeds takes START..END or N");
        return ExitCode::FAILURE;
    };
    let flags: String = [
        (args.amnesia, " --amnesia"),
        (args.broken_fencing, " --broken-fencing"),
        (args.broken_desired, " --broken-desired"),
        (args.broken_audit, " --broken-audit"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| *flag)
    .collect();
    let progress = Progress::new(range.end.saturating_sub(range.start), started);
    // failures print the moment they happen, so a long batch can be stopped and replayed early
    let on_result = |_seed: u64, r: &Result<SimReport, crate::SimError>| {
        if let Err(e) = r {
            eprintln!("FAILED {e}  (replay: mindmesh sim --seed {}{flags})", e.seed());
        }
        progress.record(r.is_err());
    };
    let results = run_seeds_reporting(range, &cfg, args.threads, &on_result);
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let ok: Vec<&SimReport> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    println!("{} seeds, {} failed, {} ms wall", results.len(), failed.len(), started.elapsed().as_millis());
    if !ok.is_empty() {
        let max_overlap = ok.iter().map(|r| r.max_overlap_us).max().unwrap_or(0);
        let max_lag = ok.iter().map(|r| r.max_fence_lag_us).max().unwrap_or(0);
        let max_recovery = ok.iter().filter_map(|r| r.recovered_ms).max().unwrap_or(0);
        println!(
            "passing seeds: {} failovers, {} persona crashes, {} operator verbs carried out ({} refused), longest \
             double run {}, longest fence lag {}, slowest recovery after healing {max_recovery} ms (bound {} ms)",
            ok.iter().map(|r| r.failovers).sum::<u64>(),
            ok.iter().map(|r| r.persona_crashes).sum::<u64>(),
            ok.iter().map(|r| r.verbs_acked).sum::<u64>(),
            ok.iter().map(|r| r.verbs_refused).sum::<u64>(),
            ms(max_overlap),
            ms(max_lag),
            cfg.failover_bound_ms()
        );
    }
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_a_range_or_a_count() {
        assert_eq!(parse_seeds("3..7"), Some(3..7));
        assert_eq!(parse_seeds("5000"), Some(0..5000));
        assert_eq!(parse_seeds("x"), None);
        assert_eq!(parse_seeds("1..y"), None);
    }
}
