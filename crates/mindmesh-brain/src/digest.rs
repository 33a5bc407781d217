//! Incremental summaries of a persona's history, so a cycle costs what is new, not what is
//! old: 10,000 personas with a day of 1-minute samples are 14 M points per measure, far too
//! many to re-read every 10 s.
//!
//! A [`PersonaDigest`] folds the samples *older than the recent window* into fixed-size
//! buckets (mean/min/max memory, mean CPU, request and error sums, median latencies, peak
//! queue) and keeps a few running trackers (last activity, longest gap, restart times). The
//! recent window itself is always read raw by the features, so late corrections of the newest
//! samples (a partly filled 1-minute roll-up) never invalidate the digest.
//!
//! The digest remembers the time of the last sample it folded; on the next cycle it resumes
//! after it (a binary search if the view's front was trimmed) and rebuilds from scratch only if
//! that sample is gone or time went backwards.

use std::collections::VecDeque;

use crate::stats::median_in_place;
use crate::view::PersonaSeries;

/// Fewest samples per bucket.
pub const MIN_BUCKET_LEN: usize = 8;
/// Aim for about this many buckets over a history (a day of minutes: 15-minute buckets);
/// rebuild with larger buckets past twice it.
pub const TARGET_BUCKETS: usize = 96;
/// Restart times remembered.
pub const MAX_RESTARTS_KEPT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub t_first_ms: u64,
    pub t_last_ms: u64,
    pub n: u32,
    pub mem_mean: f32,
    pub mem_min: f32,
    pub mem_max: f32,
    /// NaN when not measured.
    pub cpu_mean: f32,
    /// NaN when the column is missing.
    pub requests: f32,
    pub errors: f32,
    /// Median of the samples' percentiles; NaN when no request completed.
    pub p50_med: f32,
    pub p95_med: f32,
    pub queue_max: f32,
}

impl Bucket {
    pub fn t_mid_ms(&self) -> u64 {
        self.t_first_ms + (self.t_last_ms - self.t_first_ms) / 2
    }
}

#[derive(Debug, Clone, Default)]
struct OpenBucket {
    t_first_ms: u64,
    t_last_ms: u64,
    n: u32,
    mem_sum: f64,
    mem_n: u32,
    mem_min: f32,
    mem_max: f32,
    cpu_sum: f64,
    cpu_n: u32,
    requests: f32,
    errors: f32,
    has_requests: bool,
    p50: Vec<f32>,
    p95: Vec<f32>,
    queue_max: f32,
}

impl OpenBucket {
    fn add(&mut self, s: &PersonaSeries, i: usize) {
        let t = s.t_ms[i];
        if self.n == 0 {
            self.t_first_ms = t;
            self.mem_min = f32::INFINITY;
            self.mem_max = f32::NEG_INFINITY;
            self.queue_max = f32::NAN;
        }
        self.t_last_ms = t;
        self.n += 1;
        let m = s.memory_mb[i];
        if m.is_finite() {
            self.mem_sum += f64::from(m);
            self.mem_n += 1;
            self.mem_min = self.mem_min.min(m);
            self.mem_max = self.mem_max.max(m);
        }
        if let Some(&c) = s.cpu_percent.get(i)
            && c.is_finite()
        {
            self.cpu_sum += f64::from(c);
            self.cpu_n += 1;
        }
        if let Some(&r) = s.requests.get(i) {
            self.has_requests = true;
            if r.is_finite() {
                self.requests += r;
            }
        }
        if let Some(&e) = s.errors.get(i)
            && e.is_finite()
        {
            self.errors += e;
        }
        if let Some(&v) = s.latency_p50_ms.get(i) {
            self.p50.push(v);
        }
        if let Some(&v) = s.latency_p95_ms.get(i) {
            self.p95.push(v);
        }
        if let Some(&q) = s.queue_depth.get(i)
            && q.is_finite()
        {
            self.queue_max = if self.queue_max.is_nan() { q } else { self.queue_max.max(q) };
        }
    }

    fn close(&mut self) -> Option<Bucket> {
        if self.n == 0 {
            return None;
        }
        let mem_ok = self.mem_n > 0;
        let b = Bucket {
            t_first_ms: self.t_first_ms,
            t_last_ms: self.t_last_ms,
            n: self.n,
            mem_mean: if mem_ok { (self.mem_sum / f64::from(self.mem_n)) as f32 } else { f32::NAN },
            mem_min: if mem_ok { self.mem_min } else { f32::NAN },
            mem_max: if mem_ok { self.mem_max } else { f32::NAN },
            cpu_mean: if self.cpu_n > 0 { (self.cpu_sum / f64::from(self.cpu_n)) as f32 } else { f32::NAN },
            requests: if self.has_requests { self.requests } else { f32::NAN },
            errors: if self.has_requests { self.errors } else { f32::NAN },
            p50_med: median_in_place(&mut self.p50),
            p95_med: median_in_place(&mut self.p95),
            queue_max: self.queue_max,
        };
        let (p50, p95) = (std::mem::take(&mut self.p50), std::mem::take(&mut self.p95));
        *self = OpenBucket { p50, p95, ..Default::default() };
        self.p50.clear();
        self.p95.clear();
        Some(b)
    }
}

/// The folded history of one persona, up to (not including) its recent window.
#[derive(Debug, Clone, Default)]
pub struct PersonaDigest {
    bucket_len: usize,
    /// Offsets this persona's bucket boundaries (from a hash of its id), so the personas of a
    /// mesh sampled on the same tick do not all close a bucket — and recompute their history
    /// summary — in the same cycle.
    phase: u64,
    /// Samples folded since the last rebuild: bucket boundaries count from it.
    count: u64,
    /// Changes whenever the closed buckets change.
    version: u64,
    pub buckets: Vec<Bucket>,
    open: OpenBucket,
    /// Index in the series of the next sample to fold, and the time of the last folded one.
    next_idx: usize,
    last_ts: Option<u64>,
    /// Last folded sample that completed a request.
    pub last_active_ms: Option<u64>,
    /// Longest time between two samples with completed requests.
    pub max_gap_ms: u64,
    /// Restarts seen (time, how many), oldest first.
    pub restarts: VecDeque<(u64, f32)>,
    last_restart_count: f32,
    /// Start of the current process's history: the last restart, or a memory collapse that
    /// looks like one.
    pub segment_start_ms: Option<u64>,
    prev_mem: f32,
    /// How many samples were folded in total (cost accounting for benches).
    pub folded: u64,
}

impl PersonaDigest {
    /// An empty digest whose bucket boundaries are offset by `phase_seed`.
    pub fn with_phase(phase_seed: u64) -> Self {
        PersonaDigest { phase: phase_seed, ..Default::default() }
    }

    pub fn bucket_len(&self) -> usize {
        self.bucket_len
    }

    /// Changes whenever the closed buckets change (a bucket closed, the front was trimmed, a
    /// rebuild): summaries of the closed history stay valid while it does not.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Fold the samples of `s` with index < `end` (the start of the recent window).
    pub fn update(&mut self, s: &PersonaSeries, end: usize) {
        let end = end.min(s.len());
        let resume = match self.last_ts {
            None => Some(0),
            Some(ts) => {
                if self.next_idx >= 1 && self.next_idx <= s.len() && s.t_ms[self.next_idx - 1] == ts {
                    Some(self.next_idx)
                } else {
                    // the front was trimmed: find where we were
                    s.t_ms.binary_search(&ts).ok().map(|j| j + 1)
                }
            }
        };
        let resume = match resume {
            Some(r) if r <= end => r,
            _ => {
                self.rebuild(s, end);
                return;
            }
        };
        if let Some(&t0) = s.t_ms.first()
            && self.buckets.first().is_some_and(|b| b.t_first_ms < t0)
        {
            let drop = self.buckets.partition_point(|b| b.t_first_ms < t0);
            self.buckets.drain(..drop);
            self.version += 1;
        }
        self.next_idx = resume;
        self.fold(s, end);
        if self.buckets.len() > 2 * TARGET_BUCKETS {
            self.rebuild(s, end);
        }
    }

    fn rebuild(&mut self, s: &PersonaSeries, end: usize) {
        let bucket_len = MIN_BUCKET_LEN.max(s.len().div_ceil(TARGET_BUCKETS));
        let (phase, version, folded) = (self.phase, self.version + 1, self.folded);
        *self = PersonaDigest {
            bucket_len,
            phase,
            version,
            folded,
            last_restart_count: f32::NAN,
            prev_mem: f32::NAN,
            ..Default::default()
        };
        self.fold(s, end);
    }

    fn fold(&mut self, s: &PersonaSeries, end: usize) {
        if self.bucket_len == 0 {
            self.bucket_len = MIN_BUCKET_LEN.max(s.len().div_ceil(TARGET_BUCKETS));
            self.last_restart_count = f32::NAN;
            self.prev_mem = f32::NAN;
        }
        for i in self.next_idx..end {
            let t = s.t_ms[i];
            // a restart or a collapse of memory starts a new segment: never mix processes in a bucket
            let mut boundary = false;
            if let Some(&r) = s.restarts.get(i)
                && r.is_finite()
            {
                if self.last_restart_count.is_finite() && r > self.last_restart_count {
                    if self.restarts.len() == MAX_RESTARTS_KEPT {
                        self.restarts.pop_front();
                    }
                    self.restarts.push_back((t, r - self.last_restart_count));
                    boundary = true;
                }
                self.last_restart_count = r;
            }
            let m = s.memory_mb[i];
            if m.is_finite() {
                if is_collapse(self.prev_mem, m) {
                    boundary = true;
                }
                self.prev_mem = m;
            }
            if boundary {
                self.segment_start_ms = Some(t);
                if let Some(b) = self.open.close() {
                    self.buckets.push(b);
                    self.version += 1;
                }
            }
            if let Some(&r) = s.requests.get(i)
                && r > 0.0
            {
                if let Some(prev) = self.last_active_ms {
                    self.max_gap_ms = self.max_gap_ms.max(t.saturating_sub(prev));
                }
                self.last_active_ms = Some(t);
            }
            self.open.add(s, i);
            self.count += 1;
            self.folded += 1;
            if (self.count + self.phase).is_multiple_of(self.bucket_len as u64)
                && let Some(b) = self.open.close()
            {
                self.buckets.push(b);
                self.version += 1;
            }
        }
        if end > self.next_idx {
            self.next_idx = end;
            self.last_ts = Some(s.t_ms[end - 1]);
        }
    }

    /// The partly filled bucket's (middle time, requests, errors), if it holds samples.
    pub fn open_counts(&self) -> Option<(u64, f32, f32)> {
        let o = &self.open;
        (o.n > 0 && o.has_requests).then(|| (o.t_first_ms + (o.t_last_ms - o.t_first_ms) / 2, o.requests, o.errors))
    }

    /// The closed buckets and, if any, the partly filled one (as a bucket).
    pub fn all_buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        let open = if self.open.n > 0 { Some(self.open.clone().close()) } else { None };
        self.buckets.iter().copied().chain(open.flatten())
    }
}

/// Memory that falls to less than half, from a size worth noticing, is a new process.
pub fn is_collapse(prev_mb: f32, now_mb: f32) -> bool {
    prev_mb.is_finite() && prev_mb > 64.0 && now_mb < 0.5 * prev_mb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, step_ms: u64) -> PersonaSeries {
        let mut s = PersonaSeries::default();
        for i in 0..n {
            s.t_ms.push(1_000 + i as u64 * step_ms);
            s.memory_mb.push(100.0 + i as f32);
            s.requests.push(if i % 10 == 0 { 0.0 } else { 5.0 });
            s.errors.push(0.0);
            s.latency_p50_ms.push(100.0);
            s.latency_p95_ms.push(200.0);
            s.restarts.push(if i >= 50 { 1.0 } else { 0.0 });
        }
        s
    }

    fn summary(d: &PersonaDigest) -> Vec<(u64, u64, u32)> {
        d.buckets.iter().map(|b| (b.t_first_ms, b.t_last_ms, b.n)).collect()
    }

    #[test]
    fn incremental_equals_from_scratch() {
        let s = series(400, 60_000);
        let mut inc = PersonaDigest::default();
        for end in (100..=380).step_by(7) {
            inc.update(&s, end);
        }
        inc.update(&s, 380);
        let mut cold = PersonaDigest::default();
        cold.update(&s, 380);
        assert_eq!(summary(&inc), summary(&cold));
        assert_eq!(inc.last_active_ms, cold.last_active_ms);
        assert_eq!(inc.restarts, cold.restarts);
        assert_eq!(inc.restarts.len(), 1);
        assert_eq!(inc.segment_start_ms, Some(s.t_ms[50]));
        // a bucket never straddles the restart
        assert!(inc.buckets.iter().all(|b| b.t_first_ms >= s.t_ms[50] || b.t_last_ms < s.t_ms[50]));
        // the incremental one folded each sample once
        assert_eq!(inc.folded, 380);
    }

    #[test]
    fn phases_stagger_bucket_boundaries() {
        let s = series(200, 60_000);
        let (mut a, mut b) = (PersonaDigest::with_phase(0), PersonaDigest::with_phase(3));
        a.update(&s, 100);
        b.update(&s, 100);
        assert_ne!(a.buckets[0].n, b.buckets[0].n);
        assert!(b.buckets[1..].iter().take(3).all(|x| x.n as usize == b.bucket_len()));
    }

    #[test]
    fn follows_a_trimmed_front_and_rebuilds_when_lost() {
        let mut s = series(400, 60_000);
        let mut d = PersonaDigest::default();
        d.update(&s, 300);
        let folded = d.folded;
        let cut = s.t_ms[100];
        let k = s.t_ms.partition_point(|&t| t < cut);
        for c in [
            &mut s.memory_mb,
            &mut s.requests,
            &mut s.errors,
            &mut s.latency_p50_ms,
            &mut s.latency_p95_ms,
            &mut s.restarts,
        ] {
            c.drain(..k);
        }
        s.t_ms.drain(..k);
        d.update(&s, 250);
        assert_eq!(d.folded, folded + 50, "resumed, not rebuilt");
        assert!(d.buckets.first().unwrap().t_first_ms >= cut);
        // going back in time forces a rebuild from the start
        let (folded, version) = (d.folded, d.version());
        d.update(&s, 100);
        assert_eq!(d.folded, folded + 100);
        assert!(d.version() > version);
    }
}
