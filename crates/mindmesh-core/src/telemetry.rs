//! Cumulative histograms for Prometheus: fixed bucket bounds in seconds, chosen per kind of
//! duration (an LLM answer, a queue wait, a Raft commit), recorded with one atomic add each.
//!
//! Not the gateway's interval histograms (log-linear, swapped out every metrics tick to give
//! the stored p50/p99): these never reset, so Prometheus can take `rate()` and
//! `histogram_quantile()` over any window. Fixed bounds keep every series' cardinality known
//! in advance: a persona adds `bounds.len() + 1` bucket series per histogram, no more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A gateway answer end to end: a cached or tiny answer takes milliseconds, a long generation
/// minutes (budgets stop at an hour; past 10 min it is all `+Inf`).
pub const LLM_LATENCY_S: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// First token: what a user feels; interactive targets sit between 0.2 and 2 s.
pub const TTFT_S: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0];
/// Waiting for a slot in the node's queue (a hibernating persona's wake included).
pub const QUEUE_WAIT_S: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Spawn to ready: a wrapper is up in milliseconds, a local model loads for minutes.
pub const SPAWN_READY_S: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// A Raft commit: a heartbeat's round trip on a LAN, seconds across an election.
pub const COMMIT_S: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// One brain cycle (analysis, an LLM call included) or one LLM call of the brain.
pub const BRAIN_S: &[f64] = &[0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// A histogram over fixed upper bounds (seconds); the last bucket is `+Inf`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative: one add per observation; cumulated when read.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_ns: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < s);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts now, cumulative as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut seen = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                seen += c.load(Ordering::Relaxed);
                seen
            })
            .collect();
        HistogramSnapshot { bounds: self.bounds, cumulative, sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// One per bound, then `+Inf` (= the count).
    pub cumulative: Vec<u64>,
    pub sum_s: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(100)); // le="0.1" holds 0.1 itself
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![1, 2, 3]);
        assert_eq!(s.count(), 3);
        assert!((s.sum_s - 5.6).abs() < 1e-9, "{}", s.sum_s);
    }

    #[test]
    fn every_bucket_set_ascends() {
        for b in [LLM_LATENCY_S, TTFT_S, QUEUE_WAIT_S, SPAWN_READY_S, COMMIT_S, BRAIN_S] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
            assert!(b.len() <= 20, "a bounded number of series per histogram");
        }
    }
}
