//! The CI gate of the simulation: 50 seeds, every invariant held, every run live after healing.
//! And a seed replays: the same seed observes the same run.

use mindmesh_sim::{SimConfig, SimError, run_seed, run_seeds};

#[test]
fn fifty_seeds_hold_every_invariant() {
    let results = run_seeds(0..50, &SimConfig::default(), 2);
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(failed.is_empty(), "{} of 50 seeds failed:\n{}", failed.len(), failed.join("\n"));
    let reports: Vec<_> = results.into_iter().flatten().collect();
    assert!(reports.iter().any(|r| r.leader_terms > 1), "faults must cause re-elections");
    assert!(reports.iter().all(|r| r.writes_acked > 0));
}

#[test]
fn a_seed_replays_the_same_run() {
    let cfg = SimConfig { fault_ms: 8_000, heal_ms: 5_000, ..SimConfig::default() };
    let a = run_seed(7, &cfg).expect("seed 7");
    let b = run_seed(7, &cfg).expect("seed 7 again");
    assert_eq!(a.faults, b.faults);
    assert_eq!((a.writes_started, a.writes_acked), (b.writes_started, b.writes_acked));
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, same observed run");
}

/// The checker can fail: crashed nodes that come back with their Raft store wiped (vote and log
/// forgotten) break what Raft rests on, and seeds must fail — by a broken invariant (two
/// leaders in a term, a lost commit, diverging replicas) or by a mesh that does not recover
/// (openraft stops a leader whose follower's log went backwards).
#[test]
fn a_store_that_forgets_is_caught() {
    let cfg = SimConfig { amnesia: true, ..SimConfig::default() };
    let results = run_seeds(0..8, &cfg, 2);
    let caught: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ (SimError::Violation { .. } | SimError::Liveness { .. })) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert!(caught.len() >= 2, "the amnesia went unnoticed: {results:?}");
}
