//! The simulator's command line, shared by the `mindmesh-sim` binary and `mindmesh sim`.
//!
//! `--seed 17` replays seed 17; `--seeds 0..100 --threads 2` runs a batch and prints each
//! failing seed.

use std::process::ExitCode;
use std::time::Instant;

use crate::{SimConfig, run_seed, run_seeds};

/// The simulator's options, shared by `mindmesh-sim` and `mindmesh sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Replay one seed and print its report.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// A range of seeds, `START..END`.
    #[arg(long, default_value = "0..50")]
    pub seeds: String,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 5)]
    pub nodes: u64,
    /// Virtual milliseconds of the fault phase.
    #[arg(long, default_value_t = 20_000)]
    pub fault_ms: u64,
    /// Deliberately break the mesh (crashed nodes lose their Raft store) to see the checker fail.
    #[arg(long)]
    pub amnesia: bool,
    /// Log (RUST_LOG syntax, e.g. `info` or `mindmesh_net=debug`).
    #[arg(long)]
    pub log: Option<String>,
}

/// Run the simulator as its command line asks, printing what happened; fails if any seed
/// broke an invariant (each failing seed is printed with the command that replays it).
pub fn run(args: &SimArgs) -> ExitCode {
    if let Some(filter) = &args.log {
        let _ = tracing_subscriber::fmt().with_env_filter(filter.as_str()).with_target(false).try_init();
    }
    let cfg = SimConfig { nodes: args.nodes, fault_ms: args.fault_ms, amnesia: args.amnesia, ..SimConfig::default() };
    let started = Instant::now();
    if let Some(seed) = args.seed {
        return match run_seed(seed, &cfg) {
            Ok(r) => {
                println!("seed {seed}: ok in {} virtual ms ({} ms wall)", r.virtual_ms, started.elapsed().as_millis());
                for (at, f) in &r.faults {
                    println!("  {at:>6} ms  {f}");
                }
                println!(
                    "  writes {}/{} acknowledged, {} leader terms, network {:?}, trace {:016x}",
                    r.writes_acked, r.writes_started, r.leader_terms, r.network, r.trace_hash
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("FAILED {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some((a, b)) = args.seeds.split_once("..") else {
        eprintln!("--seeds takes START..END");
        return ExitCode::FAILURE;
    };
    let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
        eprintln!("--seeds takes START..END");
        return ExitCode::FAILURE;
    };
    let results = run_seeds(a..b, &cfg, args.threads);
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for e in &failed {
        eprintln!("FAILED {e}  (replay: mindmesh sim --seed {})", e.seed());
    }
    println!("{} seeds, {} failed, {} ms wall", results.len(), failed.len(), started.elapsed().as_millis());
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
