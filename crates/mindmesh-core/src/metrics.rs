//! Samples: what the node measures of each persona (OS figures from the supervisor,
//! behaviour figures from the gateway) and of its host, once per metrics tick.

use serde::{Deserialize, Serialize};

use crate::reported::ReportedMetrics;

/// How a request through the gateway failed. Recoverable kinds (timeouts, 5xx, refused
/// connections) differ from permanent ones (auth, quota) and from client edge cases (context
/// length, other 4xx): the brain weighs them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Timeout,
    /// An upstream 4xx other than the kinds below; the code is kept.
    Upstream4xx(u16),
    Upstream5xx,
    ConnectionRefused,
    Auth,
    Quota,
    ContextLength,
    /// Refused by the gateway itself: queue full, not allowed to run.
    Rejected,
    Other,
}

impl ErrorKind {
    pub fn label(self) -> String {
        match self {
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Upstream4xx(c) => format!("upstream_{c}"),
            ErrorKind::Upstream5xx => "upstream_5xx".into(),
            ErrorKind::ConnectionRefused => "connection_refused".into(),
            ErrorKind::Auth => "auth".into(),
            ErrorKind::Quota => "quota".into(),
            ErrorKind::ContextLength => "context_length".into(),
            ErrorKind::Rejected => "rejected".into(),
            ErrorKind::Other => "other".into(),
        }
    }

    /// Retrying or restarting cannot fix it: only an operator (new key, more quota) can.
    pub fn is_permanent(self) -> bool {
        matches!(self, ErrorKind::Auth | ErrorKind::Quota)
    }

    /// The caller's request was at fault, not the persona.
    pub fn is_client_edge_case(self) -> bool {
        matches!(self, ErrorKind::ContextLength | ErrorKind::Upstream4xx(_))
    }
}

/// One persona at one tick. OS figures are instantaneous or cumulative as named; behaviour
/// figures cover the interval that ends at `ts_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonaSample {
    pub ts_ms: u64,
    // --- from the OS (supervisor)
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// 100 = one core.
    pub cpu_percent: f32,
    /// Cumulative since the process started.
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    /// Cumulative automatic restarts since registration.
    pub restarts: u32,
    pub healthy: Option<bool>,
    // --- from the gateway, over the interval
    pub requests: u32,
    pub errors: u32,
    pub errors_by_kind: Vec<(ErrorKind, u32)>,
    pub latency_p50_ms: Option<f32>,
    pub latency_p95_ms: Option<f32>,
    pub latency_p99_ms: Option<f32>,
    /// Streaming requests: time to first token.
    pub ttft_p50_ms: Option<f32>,
    pub queue_depth: u32,
    pub in_flight: u32,
    pub tokens_out: u64,
    // --- from the persona itself (its metrics path), the latest report; stored version 2
    /// What the persona last reported of itself (None: it reports nothing, or its last
    /// answer was refused).
    #[serde(default)]
    pub reported: Option<ReportedMetrics>,
}

/// [`PersonaSample`] as stored before persona-reported metrics (store version 1): the same
/// fields without `reported`. Kept so version-1 series still decode; never written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonaSampleV1 {
    pub ts_ms: u64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu_percent: f32,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    pub restarts: u32,
    pub healthy: Option<bool>,
    pub requests: u32,
    pub errors: u32,
    pub errors_by_kind: Vec<(ErrorKind, u32)>,
    pub latency_p50_ms: Option<f32>,
    pub latency_p95_ms: Option<f32>,
    pub latency_p99_ms: Option<f32>,
    pub ttft_p50_ms: Option<f32>,
    pub queue_depth: u32,
    pub in_flight: u32,
    pub tokens_out: u64,
}

impl From<PersonaSampleV1> for PersonaSample {
    fn from(s: PersonaSampleV1) -> Self {
        PersonaSample {
            ts_ms: s.ts_ms,
            rss_bytes: s.rss_bytes,
            peak_rss_bytes: s.peak_rss_bytes,
            cpu_percent: s.cpu_percent,
            disk_read_bytes: s.disk_read_bytes,
            disk_written_bytes: s.disk_written_bytes,
            restarts: s.restarts,
            healthy: s.healthy,
            requests: s.requests,
            errors: s.errors,
            errors_by_kind: s.errors_by_kind,
            latency_p50_ms: s.latency_p50_ms,
            latency_p95_ms: s.latency_p95_ms,
            latency_p99_ms: s.latency_p99_ms,
            ttft_p50_ms: s.ttft_p50_ms,
            queue_depth: s.queue_depth,
            in_flight: s.in_flight,
            tokens_out: s.tokens_out,
            reported: None,
        }
    }
}

/// The host at one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    pub ts_ms: u64,
    /// 0–100 for the whole host.
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub cpu_cores: u32,
}

impl PersonaSample {
    /// Merge consecutive samples into one that stands for their whole span: gauges averaged,
    /// peaks maxed, counters summed, cumulative figures taken from the last, latency
    /// percentiles weighted by request count (an approximation that keeps rollups small).
    pub fn rollup(samples: &[PersonaSample]) -> Option<PersonaSample> {
        let last = samples.last()?;
        let n = samples.len() as f64;
        let mean = |f: &dyn Fn(&PersonaSample) -> f64| samples.iter().map(f).sum::<f64>() / n;
        let weighted = |f: &dyn Fn(&PersonaSample) -> Option<f32>| {
            let (mut sum, mut w) = (0.0f64, 0.0f64);
            for s in samples {
                if let Some(v) = f(s) {
                    let weight = f64::from(s.requests.max(1));
                    sum += f64::from(v) * weight;
                    w += weight;
                }
            }
            (w > 0.0).then(|| (sum / w) as f32)
        };
        let mut kinds: Vec<(ErrorKind, u32)> = Vec::new();
        for s in samples {
            for &(k, c) in &s.errors_by_kind {
                match kinds.iter_mut().find(|(x, _)| *x == k) {
                    Some((_, total)) => *total += c,
                    None => kinds.push((k, c)),
                }
            }
        }
        kinds.sort();
        Some(PersonaSample {
            ts_ms: last.ts_ms,
            rss_bytes: mean(&|s| s.rss_bytes as f64) as u64,
            peak_rss_bytes: samples.iter().map(|s| s.peak_rss_bytes).max().unwrap_or(0),
            cpu_percent: mean(&|s| f64::from(s.cpu_percent)) as f32,
            disk_read_bytes: last.disk_read_bytes,
            disk_written_bytes: last.disk_written_bytes,
            restarts: last.restarts,
            healthy: last.healthy,
            requests: samples.iter().map(|s| s.requests).sum(),
            errors: samples.iter().map(|s| s.errors).sum(),
            errors_by_kind: kinds,
            latency_p50_ms: weighted(&|s| s.latency_p50_ms),
            latency_p95_ms: weighted(&|s| s.latency_p95_ms),
            latency_p99_ms: weighted(&|s| s.latency_p99_ms),
            ttft_p50_ms: weighted(&|s| s.ttft_p50_ms),
            queue_depth: mean(&|s| f64::from(s.queue_depth)).round() as u32,
            in_flight: mean(&|s| f64::from(s.in_flight)).round() as u32,
            tokens_out: samples.iter().map(|s| s.tokens_out).sum(),
            reported: ReportedMetrics::rollup(samples.iter().map(|s| s.reported.as_ref())),
        })
    }
}

impl HostSample {
    pub fn rollup(samples: &[HostSample]) -> Option<HostSample> {
        let last = samples.last()?;
        let n = samples.len() as f64;
        Some(HostSample {
            ts_ms: last.ts_ms,
            cpu_percent: (samples.iter().map(|s| f64::from(s.cpu_percent)).sum::<f64>() / n) as f32,
            memory_used_bytes: (samples.iter().map(|s| s.memory_used_bytes as f64).sum::<f64>() / n) as u64,
            memory_total_bytes: last.memory_total_bytes,
            cpu_cores: last.cpu_cores,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_averages_gauges_sums_counters_keeps_cumulative() {
        let a = PersonaSample {
            ts_ms: 1000,
            rss_bytes: 100,
            peak_rss_bytes: 150,
            cpu_percent: 10.0,
            restarts: 1,
            requests: 1,
            errors: 1,
            errors_by_kind: vec![(ErrorKind::Timeout, 1)],
            latency_p50_ms: Some(10.0),
            ..Default::default()
        };
        let b = PersonaSample {
            ts_ms: 2000,
            rss_bytes: 300,
            peak_rss_bytes: 300,
            cpu_percent: 30.0,
            restarts: 2,
            requests: 3,
            errors: 1,
            errors_by_kind: vec![(ErrorKind::Timeout, 1)],
            latency_p50_ms: Some(30.0),
            ..Default::default()
        };
        let r = PersonaSample::rollup(&[a, b]).unwrap();
        assert_eq!((r.ts_ms, r.rss_bytes, r.peak_rss_bytes, r.restarts), (2000, 200, 300, 2));
        assert_eq!((r.requests, r.errors), (4, 2));
        assert_eq!(r.errors_by_kind, vec![(ErrorKind::Timeout, 2)]);
        assert_eq!(r.latency_p50_ms, Some(25.0));
        assert!(PersonaSample::rollup(&[]).is_none());
    }
}
