//! What the gateway measures of each persona, lock-free: every request adds to atomic counters
//! and log-scaled histograms; once per metrics tick the recorder swaps the interval's figures
//! out into the persona's [`PersonaSample`]. Live figures (in flight, idle, burst) are read by
//! the API at any time. Beside them, [`Cumulative`] keeps what `/metrics` shows: counters and
//! fixed-bucket histograms that never reset, so Prometheus can rate them over any window.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use mindmesh_core::metrics::{ErrorKind, PersonaSample};
use mindmesh_core::telemetry::{self, HistogramSnapshot};

/// Sub-buckets per power of two: a bucket spans at most 1/16 of its values, so a percentile
/// read from a bucket's middle is within about 3 % of the truth.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Largest value kept apart (µs); longer ones count as this (2^40 µs is about 12 days).
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS + 1) as u64 * SUB) as usize;

/// A histogram of microseconds over fixed log-linear buckets, recorded with one atomic add.
pub struct Histogram {
    buckets: Box<[AtomicU32]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect() }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let exp = (63 - us.leading_zeros()).min(MAX_EXP);
    let us = us.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = (us >> (exp - SUB_BITS)) - SUB;
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// The middle of a bucket, in µs.
fn value_of(bucket: usize) -> f64 {
    let b = bucket as u64;
    if b < SUB {
        return b as f64;
    }
    let exp = (b - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (b - SUB) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    ((SUB + sub) * width) as f64 + width as f64 / 2.0
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far, leaving the histogram empty for the next interval.
    pub fn take(&self) -> Counts {
        Counts(self.buckets.iter().map(|b| b.swap(0, Ordering::Relaxed)).collect())
    }
}

/// A histogram's counts at one moment.
pub struct Counts(Vec<u32>);

impl Counts {
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q` quantile (0–1) in milliseconds; none without values.
    pub fn quantile_ms(&self, q: f64) -> Option<f32> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, &c) in self.0.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some((value_of(i) / 1000.0) as f32);
            }
        }
        None
    }
}

/// Kinds with a counter of their own; `Upstream4xx` codes have a table apart.
const KINDS: [ErrorKind; 8] = [
    ErrorKind::Timeout,
    ErrorKind::Upstream5xx,
    ErrorKind::ConnectionRefused,
    ErrorKind::Auth,
    ErrorKind::Quota,
    ErrorKind::ContextLength,
    ErrorKind::Rejected,
    ErrorKind::Other,
];

fn kind_slot(kind: ErrorKind) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

/// The error kinds `/metrics` counts: the kinds above and all upstream 4xx codes as one, so the
/// label takes at most nine values whatever the personas answer.
pub const KIND_LABELS: [&str; KINDS.len() + 1] = [
    "timeout",
    "upstream_5xx",
    "connection_refused",
    "auth",
    "quota",
    "context_length",
    "rejected",
    "other",
    "upstream_4xx",
];

/// What `/metrics` shows of a persona's traffic: since the gateway made its gate, never reset.
pub struct Cumulative {
    /// By `[non-streamed, streamed]`: two different distributions (a stream's answer ends with
    /// its last token, a plain answer's with all of them).
    latency: [telemetry::Histogram; 2],
    ttft: [telemetry::Histogram; 2],
    queue_wait: telemetry::Histogram,
    tokens_out: AtomicU64,
    /// By [`KIND_LABELS`].
    errors: [AtomicU64; KIND_LABELS.len()],
}

impl Default for Cumulative {
    fn default() -> Self {
        let h = telemetry::Histogram::new;
        Cumulative {
            latency: [h(telemetry::LLM_LATENCY_S), h(telemetry::LLM_LATENCY_S)],
            ttft: [h(telemetry::TTFT_S), h(telemetry::TTFT_S)],
            queue_wait: h(telemetry::QUEUE_WAIT_S),
            tokens_out: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// [`Cumulative`] read at one moment.
pub struct CumulativeSnapshot {
    /// `[non-streamed, streamed]`.
    pub latency: [HistogramSnapshot; 2],
    pub ttft: [HistogramSnapshot; 2],
    pub queue_wait: HistogramSnapshot,
    pub tokens_out_total: u64,
    /// Counts by [`KIND_LABELS`].
    pub errors_total: [u64; KIND_LABELS.len()],
}

/// A counter per upstream 4xx code.
struct Codes4xx([AtomicU32; 100]);

impl Default for Codes4xx {
    fn default() -> Self {
        Codes4xx(std::array::from_fn(|_| AtomicU32::new(0)))
    }
}

/// One persona's measurements.
#[derive(Default)]
pub struct Meter {
    // over the current interval
    requests: AtomicU32,
    errors: AtomicU32,
    tokens_out: AtomicU64,
    kinds: [AtomicU32; KINDS.len()],
    codes_4xx: Codes4xx,
    latency: Histogram,
    ttft: Histogram,
    // live
    /// Requests between arrival and answer (queued, waking or in flight).
    active: AtomicU32,
    busy_since_ms: AtomicU64,
    last_burst_ms: AtomicU64,
    last_activity_ms: AtomicU64,
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    cumulative: Cumulative,
}

/// How one request ended, as the gateway saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// Arrival to the last byte; none when the caller left before the answer ended.
    pub latency: Option<Duration>,
    /// Arrival to the first byte of the answer's body (of a plain answer: all of it).
    pub ttft: Option<Duration>,
    /// Streamed (SSE): only streams' first bytes count in the stored TTFT percentiles.
    pub stream: bool,
    pub tokens_out: u64,
    pub error: Option<ErrorKind>,
}

/// What the API shows of a persona's traffic right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub active: u32,
    pub requests_total: u64,
    pub errors_total: u64,
    /// Last arrival or answer (ms since the epoch); none before the first request.
    pub last_activity_ms: Option<u64>,
    /// Time since the last activity, while nothing is active.
    pub idle_ms: Option<u64>,
    /// The current burst's length while busy, else the last one's.
    pub burst_ms: Option<u64>,
}

impl Meter {
    /// A request arrived.
    pub fn begin(&self, now_ms: u64) {
        if self.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.busy_since_ms.store(now_ms, Ordering::Relaxed);
        }
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// A request begun with [`Meter::begin`] has ended.
    pub fn end(&self, now_ms: u64, o: &Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if let Some(kind) = o.error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.errors_total.fetch_add(1, Ordering::Relaxed);
            match kind {
                ErrorKind::Upstream4xx(code @ 400..=499) => {
                    self.codes_4xx.0[usize::from(code - 400)].fetch_add(1, Ordering::Relaxed);
                    self.cumulative.errors[KINDS.len()].fetch_add(1, Ordering::Relaxed);
                }
                k => {
                    let slot = kind_slot(k).unwrap_or(KINDS.len() - 1);
                    self.kinds[slot].fetch_add(1, Ordering::Relaxed);
                    self.cumulative.errors[slot].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let stream = usize::from(o.stream);
        if let Some(d) = o.latency {
            self.latency.record(d);
            self.cumulative.latency[stream].observe(d);
        }
        if let Some(d) = o.ttft {
            if o.stream {
                self.ttft.record(d);
            }
            self.cumulative.ttft[stream].observe(d);
        }
        if o.tokens_out > 0 {
            self.tokens_out.fetch_add(o.tokens_out, Ordering::Relaxed);
            self.cumulative.tokens_out.fetch_add(o.tokens_out, Ordering::Relaxed);
        }
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            let since = self.busy_since_ms.load(Ordering::Relaxed);
            self.last_burst_ms.store(now_ms.saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// An admitted request waited this long for its slot (0 when one was free at once).
    pub fn queue_wait(&self, d: Duration) {
        self.cumulative.queue_wait.observe(d);
    }

    pub fn cumulative(&self) -> CumulativeSnapshot {
        let c = &self.cumulative;
        CumulativeSnapshot {
            latency: [c.latency[0].snapshot(), c.latency[1].snapshot()],
            ttft: [c.ttft[0].snapshot(), c.ttft[1].snapshot()],
            queue_wait: c.queue_wait.snapshot(),
            tokens_out_total: c.tokens_out.load(Ordering::Relaxed),
            errors_total: std::array::from_fn(|i| c.errors[i].load(Ordering::Relaxed)),
        }
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::SeqCst)
    }

    pub fn last_activity_ms(&self) -> Option<u64> {
        Some(self.last_activity_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    pub fn live(&self, now_ms: u64) -> Live {
        let active = self.active();
        let last = self.last_activity_ms();
        let burst_ms = if active > 0 {
            Some(now_ms.saturating_sub(self.busy_since_ms.load(Ordering::Relaxed)))
        } else {
            last.map(|_| self.last_burst_ms.load(Ordering::Relaxed))
        };
        Live {
            active,
            requests_total: self.requests_total.load(Ordering::Relaxed),
            errors_total: self.errors_total.load(Ordering::Relaxed),
            last_activity_ms: last,
            idle_ms: if active == 0 { last.map(|t| now_ms.saturating_sub(t)) } else { None },
            burst_ms,
        }
    }

    /// Move the interval's figures into `s` (its behaviour fields), leaving them at zero.
    /// Returns whether anything happened in the interval.
    pub fn take_interval(&self, s: &mut PersonaSample) -> bool {
        s.requests = self.requests.swap(0, Ordering::Relaxed);
        s.errors = self.errors.swap(0, Ordering::Relaxed);
        s.tokens_out = self.tokens_out.swap(0, Ordering::Relaxed);
        let mut kinds: Vec<(ErrorKind, u32)> = Vec::new();
        for (k, c) in KINDS.iter().zip(&self.kinds) {
            let n = c.swap(0, Ordering::Relaxed);
            if n > 0 {
                kinds.push((*k, n));
            }
        }
        for (i, c) in self.codes_4xx.0.iter().enumerate() {
            let n = c.swap(0, Ordering::Relaxed);
            if n > 0 {
                kinds.push((ErrorKind::Upstream4xx(400 + i as u16), n));
            }
        }
        kinds.sort();
        s.errors_by_kind = kinds;
        let lat = self.latency.take();
        s.latency_p50_ms = lat.quantile_ms(0.50);
        s.latency_p95_ms = lat.quantile_ms(0.95);
        s.latency_p99_ms = lat.quantile_ms(0.99);
        s.ttft_p50_ms = self.ttft.take().quantile_ms(0.50);
        s.requests > 0 || s.errors > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for us in [0u64, 1, 15, 16, 17, 31, 32, 100, 999, 1000, 12_345, 1 << 30, 1 << 41, u64::MAX] {
            let b = bucket_of(us);
            assert!(b >= last && b < BUCKETS, "{us} -> {b}");
            last = b;
            if (16..1 << 40).contains(&us) {
                let mid = value_of(b);
                assert!((mid - us as f64).abs() / us as f64 <= 1.0 / 16.0, "{us}: {mid}");
            }
        }
    }

    #[test]
    fn quantiles_of_known_values() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let c = h.take();
        assert_eq!(c.total(), 100);
        let p50 = c.quantile_ms(0.5).unwrap();
        let p99 = c.quantile_ms(0.99).unwrap();
        assert!((48.0..=53.0).contains(&p50), "{p50}");
        assert!((96.0..=102.0).contains(&p99), "{p99}");
        assert_eq!(h.take().total(), 0, "taking empties the histogram");
        assert!(h.take().quantile_ms(0.5).is_none());
    }

    #[test]
    fn an_interval_counts_requests_errors_and_kinds() {
        let m = Meter::default();
        let ok = Outcome { latency: Some(Duration::from_millis(10)), tokens_out: 5, ..Default::default() };
        for i in 0..3 {
            m.begin(1000 + i);
            m.end(1010 + i, &ok);
        }
        for kind in [ErrorKind::Timeout, ErrorKind::Upstream4xx(429), ErrorKind::Upstream4xx(429), ErrorKind::Quota] {
            m.begin(2000);
            m.end(2001, &Outcome { error: Some(kind), ..Default::default() });
        }
        let mut s = PersonaSample::default();
        assert!(m.take_interval(&mut s));
        assert_eq!((s.requests, s.errors, s.tokens_out), (7, 4, 15));
        assert_eq!(
            s.errors_by_kind,
            vec![(ErrorKind::Timeout, 1), (ErrorKind::Upstream4xx(429), 2), (ErrorKind::Quota, 1)]
        );
        assert!(s.latency_p50_ms.is_some_and(|v| (9.5..=10.5).contains(&v)), "{s:?}");
        let live = m.live(2500);
        assert_eq!((live.active, live.requests_total, live.errors_total), (0, 7, 4));
        assert_eq!(live.idle_ms, Some(499));
        let mut again = PersonaSample::default();
        assert!(!m.take_interval(&mut again), "an interval starts empty");
        let c = m.cumulative();
        assert_eq!(c.latency[0].count(), 3, "what /metrics shows is not taken by an interval");
        assert_eq!(c.tokens_out_total, 15);
        let by_kind: Vec<(&str, u64)> =
            KIND_LABELS.iter().copied().zip(c.errors_total).filter(|(_, n)| *n > 0).collect();
        assert_eq!(by_kind, vec![("timeout", 1), ("quota", 1), ("upstream_4xx", 2)]);
    }

    #[test]
    fn first_bytes_of_plain_answers_count_in_metrics_but_not_in_stored_ttft() {
        let m = Meter::default();
        let d = Some(Duration::from_millis(40));
        for stream in [false, true] {
            m.begin(1);
            m.end(2, &Outcome { latency: d, ttft: d, stream, ..Default::default() });
        }
        assert_eq!(m.ttft.take().total(), 1, "the stored TTFT is the streams'");
        let c = m.cumulative();
        assert_eq!([c.ttft[0].count(), c.ttft[1].count()], [1, 1]);
        assert_eq!([c.latency[0].count(), c.latency[1].count()], [1, 1]);
    }

    #[test]
    fn bursts_and_idleness() {
        let m = Meter::default();
        assert_eq!(m.live(5).last_activity_ms, None);
        m.begin(1000);
        m.begin(1100);
        assert_eq!(m.live(1500).burst_ms, Some(500));
        assert_eq!(m.live(1500).idle_ms, None);
        m.end(1600, &Outcome::default());
        m.end(1800, &Outcome::default());
        let l = m.live(3000);
        assert_eq!((l.burst_ms, l.idle_ms, l.last_activity_ms), (Some(800), Some(1200), Some(1800)));
    }
}
