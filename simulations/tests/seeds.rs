//! The CI gate of the simulation: 100 seeds of chaos on real nodes (node and leader crashes,
//! minority, majority and flapping partitions, loss and delay, persona crashes) with operators'
//! verbs interleaved (hibernate, start, stop, restart, budget, migrate, drain), every invariant
//! held, every run live after healing. A seed replays: the same seed observes the same run. And
//! the checker can fail: a mesh that forgets its Raft store, whose fencing is broken, or whose
//! reconcilers ignore changes of desired state or report restarts they skipped, is caught.

use std::time::Instant;

use mindmesh_sim::{SimConfig, SimError, run_seed, run_seeds};

#[test]
fn a_hundred_seeds_hold_every_invariant() {
    let cfg = SimConfig::default();
    let started = Instant::now();
    let results = run_seeds(0..100, &cfg, 2);
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(failed.is_empty(), "{} of 100 seeds failed:\n{}", failed.len(), failed.join("\n"));
    let reports: Vec<_> = results.into_iter().flatten().collect();
    let max_overlap_us = reports.iter().map(|r| r.max_overlap_us).max().unwrap_or(0);
    let max_lag_us = reports.iter().map(|r| r.max_fence_lag_us).max().unwrap_or(0);
    let slowest_ms = reports.iter().filter_map(|r| r.recovered_ms).max().unwrap_or(0);
    let failovers: u64 = reports.iter().map(|r| r.failovers).sum();
    let crashes: u64 = reports.iter().map(|r| r.persona_crashes).sum();
    let verbs: u64 = reports.iter().map(|r| r.verbs_acked).sum();
    eprintln!(
        "100 seeds in {:.1} s: {failovers} personas failed over, {crashes} persona crashes, {verbs} operator verbs, longest double run \
         {max_overlap_us} µs, longest fence lag {max_lag_us} µs, slowest recovery after healing {slowest_ms} ms \
         (bound {} ms)",
        started.elapsed().as_secs_f64(),
        cfg.failover_bound_ms()
    );
    // the faults did what they are for
    assert!(reports.iter().filter(|r| r.leader_terms > 1).count() > 50, "faults must cause re-elections");
    assert!(reports.iter().filter(|r| r.failovers > 0).count() > 50, "faults must cause failovers");
    assert!(crashes > 100, "personas must crash and be restarted");
    assert!(verbs > 150, "operators must act");
    assert!(reports.iter().all(|r| r.writes_acked > 0 && r.personas >= 20));
    // fencing done right shows no double run at all, not merely one within the lease (which is
    // all invariant (a) demands): the races the simulator found in the lease and failover code
    // ran personas twice for 3 ms to 1.1 s, all within it
    assert_eq!(max_overlap_us, 0, "a persona ran on two nodes at once");
    assert_eq!(max_lag_us, 0, "a node stopped its personas after its lease's expiry");
    // every run recovers well within the bound, which is the worst case the config allows
    assert!(slowest_ms < cfg.failover_bound_ms());
}

/// Seeds beyond the CI range that once broke an invariant, and what they found. A change to the
/// simulator may send them down other paths; they stay as extra seeds.
const REGRESSION_SEEDS: [(u64, &str); 10] = [
    (892, "a deposed leader's failover write was never answered; its failover loop stalled"),
    (941, "the same, on another schedule"),
    (2296, "a reconcile step the supervisor refused (start while not allowed to run) was retried at once, forever"),
    (3882, "the same, on another schedule"),
    (249, "a lease lost and regained while the reconciler was busy: what fencing killed never started again"),
    (332, "the same, on another schedule"),
    (1174, "the run awaited an operator's verb for 5 s and played no fence guard meanwhile: a seeming double run"),
    (1304, "the same, on another schedule"),
    (715, "a second, higher leader in one term: openraft's leader ids, checked as such since"),
    (2408, "the same, on another schedule"),
];

#[test]
fn seeds_that_found_bugs_hold() {
    for (seed, found) in REGRESSION_SEEDS {
        match run_seed(seed, &SimConfig::default()) {
            Ok(r) => assert_eq!(r.max_overlap_us, 0, "seed {seed} ({found}): a double run"),
            Err(e) => panic!("seed {seed} ({found}) fails again: {e}"),
        }
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    let cfg = SimConfig { fault_ms: 8_000, heal_ms: 5_000, ..SimConfig::default() };
    let a = run_seed(7, &cfg).expect("seed 7");
    let b = run_seed(7, &cfg).expect("seed 7 again");
    assert_eq!(a.faults, b.faults);
    assert_eq!((a.writes_started, a.writes_acked), (b.writes_started, b.writes_acked));
    assert_eq!((a.failovers, a.persona_crashes), (b.failovers, b.persona_crashes));
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, same observed run");
}

/// The checker can fail: crashed nodes that come back with their Raft store wiped (vote and log
/// forgotten) break what Raft rests on, and seeds must fail — by a broken invariant (two
/// leaders in a term, a lost commit, diverging replicas), by a mesh that does not recover, or by
/// openraft's own assertion that a follower's log never goes backwards (a panic of the leader's
/// replication task).
#[test]
fn a_store_that_forgets_is_caught() {
    let cfg = SimConfig { amnesia: true, ..SimConfig::default() };
    let results = run_seeds(0..8, &cfg, 2);
    let caught: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ (SimError::Violation { .. } | SimError::Liveness { .. } | SimError::Panic { .. })) => {
                Some(e.to_string())
            }
            _ => None,
        })
        .collect();
    assert!(caught.len() >= 2, "the amnesia went unnoticed: {results:?}");
}

/// The checker can fail on fencing: nodes that ignore their lease (a node cut off from the
/// quorum runs on) and whose processes outlive them until they are back (no fence guard) run
/// personas beside their replacements after a failover, longer than the lease, and invariant
/// (a) says so.
#[test]
fn broken_fencing_is_caught() {
    let cfg = SimConfig { broken_fencing: true, ..SimConfig::default() };
    let results = run_seeds(0..16, &cfg, 2);
    let caught: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ SimError::Violation { invariant: "no_double_run", .. }) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    eprintln!("broken fencing caught on {} of 16 seeds:\n{}", caught.len(), caught.join("\n"));
    assert!(caught.len() >= 3, "broken fencing went unnoticed: {results:?}");
    // where it stayed within the lease (1.8 s: many runs heal before a failover is due), the
    // double runs and the nodes running on past their lease are still measured; the seeds are
    // deterministic: 4 caught, 3 more with a double run, 9 more running on past the lease
    let measured = results.iter().flatten().filter(|r| r.max_overlap_us > 0 || r.max_fence_lag_us > 0).count();
    assert!(caught.len() + measured >= 10, "broken fencing went unmeasured: {results:?}");
}

/// The checker can fail on desired state: reconcilers that plan a persona once and ignore every
/// later change leave operators' hibernates, stops and budgets undone, and the invariants on
/// desired state say so.
#[test]
fn broken_desired_state_is_caught() {
    let cfg = SimConfig { broken_desired: true, ..SimConfig::default() };
    let results = run_seeds(0..16, &cfg, 2);
    let caught: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ SimError::Violation { invariant: "action_converges" | "desired_running", .. }) => {
                Some(e.to_string())
            }
            _ => None,
        })
        .collect();
    eprintln!("broken desired state caught on {} of 16 seeds:\n{}", caught.len(), caught.join("\n"));
    assert!(caught.len() >= 6, "broken desired state went unnoticed: {results:?}");
}

/// The checker can fail on the audit trail: reconcilers that skip the restarts they plan and
/// report them carried out leave operators' restarts logged as executed with no process
/// started, and invariant `decisions_audited` says so (no other invariant can: the persona
/// runs on its node as desired throughout).
#[test]
fn broken_audit_is_caught() {
    let cfg = SimConfig { broken_audit: true, ..SimConfig::default() };
    let results = run_seeds(0..24, &cfg, 2);
    let caught: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ SimError::Violation { invariant: "decisions_audited", .. }) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    eprintln!("broken audit caught on {} of 24 seeds:\n{}", caught.len(), caught.join("\n"));
    // only restarts by an operator on a node holding its lease throughout are judged: a few
    // seeds of 24 (the seeds are deterministic: 4 and 15 among the first 16)
    assert!(caught.len() >= 2, "broken audit went unnoticed: {results:?}");
    let other: Vec<&SimError> =
        results.iter().filter_map(|r| r.as_ref().err()).filter(|e| !caught.contains(&e.to_string())).collect();
    assert!(other.is_empty(), "broken audit broke something else: {other:?}");
}
