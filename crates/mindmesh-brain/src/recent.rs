//! Judgements from the data at hand. A node that started ten minutes ago hands the brain ten
//! minutes of samples, all of them in the raw recent window and none in the digest: the
//! history summaries (`history.rs`) have nothing to say yet. What the recent samples say on
//! their own is computed here, with how much evidence there was:
//!
//! - memory: a straight line over the current process's recent samples (after its first
//!   minute of loading), its fit, whether both halves grow alike (a load that levels off does
//!   not), and whether the rise stands out of the noise;
//! - latency: how long a persona has been far above a reference level (its replicas'), walked
//!   back sample by sample through a running median so one quiet sample does not end a run.

use serde::Serialize;

use crate::stats::linreg;

const MIN: u64 = 60_000;
/// Memory of a process that just started is loading, not leaking: its first minute is skipped.
pub const LOAD_SKIP_MS: u64 = MIN;
/// Fewest samples and shortest span on which a recent memory line is judged.
pub const MIN_FIT_SAMPLES: usize = 12;
pub const MIN_FIT_SPAN_MS: u64 = 3 * MIN;
/// A recent line this well fitted, persistent and clear is growth.
pub const GROWTH_MIN_R2: f64 = 0.8;

/// A line through a process's recent memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryLine {
    pub slope_mb_per_min: f32,
    pub r2: f32,
    pub span_ms: u64,
    pub samples: usize,
    /// Fitted level at the first and the last sample.
    pub start_mb: f32,
    pub end_mb: f32,
    pub resid_sd_mb: f32,
    /// Both halves grow at a comparable rate (a load that levels off fails this).
    pub persistent: bool,
    /// Steady, well-fitted growth that stands out of the noise.
    pub growing: bool,
    /// Swing around the line, relative to the level (2 residual sd).
    pub swing_frac: f32,
}

/// Fit `mem[from..to]` against time. `None` below [`MIN_FIT_SAMPLES`] finite samples or
/// [`MIN_FIT_SPAN_MS`] of span.
pub fn memory_line(t_ms: &[u64], mem: &[f32], from: usize, to: usize) -> Option<MemoryLine> {
    let to = to.min(t_ms.len()).min(mem.len());
    if from >= to {
        return None;
    }
    // no allocation: this runs for every persona every cycle
    let finite = |a: usize, b: usize| (a..b).filter(|&i| mem[i].is_finite());
    let count = finite(from, to).count();
    if count < MIN_FIT_SAMPLES {
        return None;
    }
    let (first_i, last_i) = (finite(from, to).next()?, finite(from, to).next_back()?);
    let t0 = t_ms[first_i];
    let span_ms = t_ms[last_i].saturating_sub(t0);
    if span_ms < MIN_FIT_SPAN_MS {
        return None;
    }
    let x = |i: usize| t_ms[i].saturating_sub(t0) as f64 / MIN as f64;
    let points = move |a: usize, b: usize| finite(a, b).map(move |i| (x(i), f64::from(mem[i]), 1.0));
    let fit = linreg(points(from, to))?;
    // the halves, split at the middle finite sample
    let mid = finite(from, to).nth(count / 2)?;
    let first = linreg(points(from, mid));
    let second = linreg(points(mid, to));
    let persistent = match (first, second) {
        (Some(a), Some(b)) => fit.slope > 0.0 && a.slope >= 0.4 * fit.slope && b.slope >= 0.4 * fit.slope,
        _ => false,
    };
    let span_min = span_ms as f64 / MIN as f64;
    let start = fit.at(0.0);
    let end = fit.at(span_min);
    let rise = fit.slope * span_min;
    let level = (0.5 * (start + end)).max(1.0);
    // clear: far above the noise, and worth noticing against the process's own size
    let clear = rise >= (5.0 * fit.resid_sd).max(0.03 * start.max(1.0)).max(5.0);
    Some(MemoryLine {
        slope_mb_per_min: fit.slope as f32,
        r2: fit.r2 as f32,
        span_ms,
        samples: count,
        start_mb: start as f32,
        end_mb: end as f32,
        resid_sd_mb: fit.resid_sd as f32,
        persistent,
        growing: persistent && clear && fit.r2 >= GROWTH_MIN_R2,
        swing_frac: (2.0 * fit.resid_sd / level) as f32,
    })
}

/// Since when `value(i)` (for `i` in `from..to`, oldest first) has been at least `high` times
/// `reference`, judged on a running median of five samples so that one quiet sample does not
/// end a run and one loud one does not start it. Samples with no value are skipped; `skip(t)`
/// leaves out samples that must not count (a warm-up). `None` when the latest is not high.
pub fn high_since(
    t_ms: &[u64],
    from: usize,
    to: usize,
    value: impl Fn(usize) -> f32,
    reference: f32,
    high: f32,
    skip: impl Fn(u64) -> bool,
) -> Option<u64> {
    if !(reference.is_finite() && reference > 0.0) {
        return None;
    }
    let ratios: Vec<(u64, f32)> = (from..to.min(t_ms.len()))
        .filter(|&i| !skip(t_ms[i]))
        .filter_map(|i| {
            let v = value(i);
            (v.is_finite() && v > 0.0).then(|| (t_ms[i], v / reference))
        })
        .collect();
    if ratios.len() < 3 {
        return None;
    }
    let median5 = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 3).min(ratios.len());
        let mut w: Vec<f32> = ratios[lo..hi].iter().map(|r| r.1).collect();
        crate::stats::median_in_place(&mut w)
    };
    let mut since = None;
    for k in (0..ratios.len()).rev() {
        if median5(k) < high {
            break;
        }
        since = Some(ratios[k].0);
    }
    since
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, step_ms: u64, f: impl Fn(usize) -> f32) -> (Vec<u64>, Vec<f32>) {
        ((0..n).map(|i| 10_000 + i as u64 * step_ms).collect(), (0..n).map(f).collect())
    }

    #[test]
    fn a_steady_climb_is_growth_and_a_load_that_levels_off_is_not() {
        // 30 MB/min at 10-s samples for 8 minutes
        let (t, m) = series(48, 10_000, |i| 80.0 + 5.0 * i as f32 + if i % 2 == 0 { 1.0 } else { -1.0 });
        let l = memory_line(&t, &m, 0, t.len()).unwrap();
        assert!(l.growing && l.persistent && l.r2 > 0.99, "{l:?}");
        assert!((l.slope_mb_per_min - 30.0).abs() < 0.5, "{l:?}");
        // loads for two minutes, then flat for six
        let (t, m) = series(48, 10_000, |i| 3000.0 * (0.4 + 0.6 * (i as f32 / 12.0).min(1.0)));
        let l = memory_line(&t, &m, 0, t.len()).unwrap();
        assert!(!l.growing && !l.persistent, "{l:?}");
        // flat noise
        let (t, m) = series(48, 10_000, |i| 250.0 * (1.0 + 0.05 * ((i * 7919 % 13) as f32 / 6.0 - 1.0)));
        assert!(!memory_line(&t, &m, 0, t.len()).unwrap().growing);
        // too little
        let (t, m) = series(10, 10_000, |i| 80.0 + 5.0 * i as f32);
        assert!(memory_line(&t, &m, 0, t.len()).is_none());
    }

    #[test]
    fn high_since_walks_back_through_a_running_median() {
        let (t, v) = series(30, 10_000, |i| if i >= 10 { if i == 20 { 100.0 } else { 900.0 } } else { 100.0 });
        let since = high_since(&t, 0, t.len(), |i| v[i], 100.0, 2.0, |_| false).unwrap();
        assert_eq!(since, t[10], "one quiet sample does not end the run");
        assert_eq!(high_since(&t, 0, 10, |i| v[i], 100.0, 2.0, |_| false), None);
    }
}
