//! What a persona's closed history says — its baselines and trends — computed from the
//! digest's buckets only, so it stays valid until a bucket closes (every `bucket_len` samples,
//! staggered across personas) and each cycle reads only the raw recent window.
//!
//! - memory: where growth starts (a hinge), a weighted line from there with its fit, a line
//!   through the floors of groups of buckets (sees through GC sawtooth), persistence of the
//!   growth in both halves, the swing, the usual peak
//! - latency: the baseline p50/p95, taken before a step up if there is one (a long
//!   degradation never becomes its own baseline), the trailing run of high buckets, the drift
//! - errors: the base rate, taken before a step up if there is one
//! - CPU and traffic: usual levels

use serde::Serialize;

use crate::digest::{Bucket, PersonaDigest};
use crate::stats::{Fit, hinge_start, linreg, mean_shift, median_of, quantile_in_place};

const MIN: u64 = 60_000;
/// After a restart, latency and memory are not judged for this long.
pub const WARMUP_MS: u64 = 10 * MIN;
/// Growth is looked for over at least this long.
const MIN_GROWTH_MS: u64 = 60 * MIN;
/// A bucket this far above the baseline counts as "high" when walking back a degradation.
pub const HIGH_RATIO: f32 = 1.35;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemHist {
    /// Start of the history the trend was fitted on (after the last restart and warm-up).
    pub from_ms: Option<u64>,
    pub span_ms: u64,
    pub growth_span_ms: u64,
    pub slope_mb_per_min: f32,
    pub fit_r2: f32,
    pub floor_slope_mb_per_min: f32,
    pub floor_r2: f32,
    pub growth_frac: f32,
    pub persistent: bool,
    /// The fitted rise is large against the residual noise.
    pub rises_clearly: bool,
    pub swing_frac: f32,
    /// 95th percentile of the buckets' peaks in this process's life.
    pub high_mb: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatHist {
    pub base_p50_ms: f32,
    pub base_p95_ms: f32,
    /// Start of the trailing run of buckets above the baseline, if the last one is.
    pub high_since_ms: Option<u64>,
    pub trend_ratio: f32,
    pub trend_r2: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrHist {
    pub rate_base: f32,
    /// When the error rate stepped up to its latest level, if it did.
    pub step_since_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistSummary {
    /// The digest version it was computed from.
    #[serde(skip)]
    pub version: u64,
    pub memory: MemHist,
    pub latency: LatHist,
    pub errors: ErrHist,
    pub cpu_base_percent: f32,
    pub requests_per_min: f32,
}

/// Working space reused across personas.
#[derive(Debug, Default)]
pub struct Scratch {
    pub a: Vec<f32>,
    idx: Vec<usize>,
    pairs: Vec<(f64, f64)>,
    triples: Vec<(f64, f64, f64)>,
}

fn warm(restarts: &[(u64, f32)], t: u64) -> bool {
    restarts.iter().rev().take(8).any(|(r, _)| t >= *r && t < *r + WARMUP_MS)
}

/// Summarise the closed buckets of `d`. `interval_ms` turns sample counts into time.
pub fn summarize(d: &PersonaDigest, interval_ms: u64, sc: &mut Scratch) -> HistSummary {
    let restarts: Vec<(u64, f32)> = d.restarts.iter().copied().collect();
    let b = &d.buckets;
    let mut h = HistSummary {
        version: d.version(),
        memory: memory(d, &restarts, sc),
        latency: latency(b, &restarts, sc),
        errors: errors(b, sc),
        cpu_base_percent: median_of(b.iter().map(|x| x.cpu_mean), &mut sc.a),
        requests_per_min: f32::NAN,
    };
    let (req, n) =
        b.iter().filter(|x| x.requests.is_finite()).fold((0.0f32, 0u32), |(r, n), x| (r + x.requests, n + x.n));
    if n > 0 && interval_ms > 0 {
        h.requests_per_min = req / (n as f32 * interval_ms as f32 / MIN as f32);
    }
    h
}

fn memory(d: &PersonaDigest, restarts: &[(u64, f32)], sc: &mut Scratch) -> MemHist {
    let mut m =
        MemHist { fit_r2: f32::NAN, floor_r2: f32::NAN, swing_frac: f32::NAN, high_mb: f32::NAN, ..Default::default() };
    let from = d.segment_start_ms.map_or(0, |t| t + WARMUP_MS);
    m.from_ms = d.segment_start_ms.map(|t| t + WARMUP_MS);
    sc.idx.clear();
    sc.idx.extend(
        d.buckets
            .iter()
            .enumerate()
            .filter(|(_, x)| x.t_first_ms >= from && x.mem_mean.is_finite() && !warm(restarts, x.t_mid_ms()))
            .map(|(i, _)| i),
    );
    let pts: Vec<&Bucket> = sc.idx.iter().map(|&i| &d.buckets[i]).collect();
    sc.a.clear();
    sc.a.extend(pts.iter().map(|x| x.mem_max));
    m.high_mb = quantile_in_place(&mut sc.a, 0.95);
    if pts.len() < 5 {
        return m;
    }
    let t0 = pts[0].t_mid_ms();
    let x = |t: u64| (t - t0) as f64 / MIN as f64;
    let line = |ps: &[&Bucket]| linreg(ps.iter().map(|p| (x(p.t_mid_ms()), f64::from(p.mem_mean), f64::from(p.n))));
    let Some(full) = line(&pts) else { return m };
    // where growth starts: a leak that began an hour ago in a day of history is judged on that
    // hour, and a one-time step (a cache filling) shows no growth after it
    let mut start = 0;
    if full.slope > 0.0 && pts.len() >= 8 {
        sc.pairs.clear();
        sc.pairs.extend(pts.iter().map(|p| (x(p.t_mid_ms()), f64::from(p.mem_mean))));
        // growth is looked for over at least an hour (the shortest leak) of buckets
        let bucket_ms = (m_span(&pts) / pts.len() as u64).max(1);
        let min_tail = (MIN_GROWTH_MS.div_ceil(bucket_ms) as usize).clamp(4, pts.len() / 2);
        start = hinge_start(&sc.pairs, min_tail).unwrap_or(0);
    }
    let seg = &pts[start..];
    let fit: Fit = line(seg).unwrap_or(full);
    let seg_t0 = seg[0].t_mid_ms();
    m.span_ms = pts[pts.len() - 1].t_mid_ms() - t0;
    m.growth_span_ms = seg[seg.len() - 1].t_mid_ms() - seg_t0;
    m.slope_mb_per_min = fit.slope as f32;
    m.fit_r2 = fit.r2 as f32;
    let span_min = m.growth_span_ms as f64 / MIN as f64;
    m.growth_frac = (fit.slope * span_min / fit.at(x(seg_t0)).max(1.0)) as f32;
    m.rises_clearly = fit.slope * span_min >= 5.0 * fit.resid_sd;
    // floor: the lowest point of consecutive groups, so a sawtooth on a rising floor shows
    let groups = (seg.len() / 3).clamp(4, 16).min(seg.len());
    let per = seg.len().div_ceil(groups);
    sc.triples.clear();
    sc.triples.extend(seg.chunks(per).map(|c| {
        let lo = c.iter().map(|p| p.mem_min).fold(f32::INFINITY, f32::min);
        (x(c[c.len() / 2].t_mid_ms()), f64::from(lo), 1.0)
    }));
    if let Some(fl) = linreg(sc.triples.iter().copied()) {
        m.floor_slope_mb_per_min = fl.slope as f32;
        m.floor_r2 = fl.r2 as f32;
    }
    // persistence: both halves of the growth grow at a comparable rate
    let half = seg.len() / 2;
    m.persistent = match (line(&seg[..half]), line(&seg[half..])) {
        (Some(a), Some(b)) => fit.slope > 0.0 && a.slope >= 0.4 * fit.slope && b.slope >= 0.4 * fit.slope,
        _ => false,
    };
    // swing within buckets and around the trend, relative to the level
    sc.a.clear();
    sc.a.extend(pts.iter().filter(|p| p.mem_mean > 0.0).map(|p| (p.mem_max - p.mem_min) / p.mem_mean));
    let swing = quantile_in_place(&mut sc.a, 0.5);
    let level = full.at(x(pts[pts.len() / 2].t_mid_ms())).max(1.0);
    m.swing_frac = swing.max((2.0 * full.resid_sd / level) as f32);
    m
}

fn m_span(pts: &[&Bucket]) -> u64 {
    match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => b.t_last_ms.saturating_sub(a.t_first_ms),
        _ => 0,
    }
}

/// Recent against a baseline: the geometric mean of the p50 and p95 ratios (either alone if
/// the other is unknown).
pub fn latency_ratio(p50: f32, p95: f32, b50: f32, b95: f32) -> f32 {
    let r50 = p50 / b50;
    let r95 = p95 / b95;
    match (r50.is_finite() && r50 > 0.0, r95.is_finite() && r95 > 0.0) {
        (true, true) => (r50 * r95).sqrt(),
        (true, false) => r50,
        (false, true) => r95,
        _ => f32::NAN,
    }
}

fn latency(b: &[Bucket], restarts: &[(u64, f32)], sc: &mut Scratch) -> LatHist {
    let mut l = LatHist {
        base_p50_ms: f32::NAN,
        base_p95_ms: f32::NAN,
        trend_ratio: f32::NAN,
        trend_r2: f32::NAN,
        ..Default::default()
    };
    sc.idx.clear();
    sc.idx.extend(
        b.iter()
            .enumerate()
            .filter(|(_, x)| (x.p50_med.is_finite() || x.p95_med.is_finite()) && !warm(restarts, x.t_mid_ms()))
            .map(|(i, _)| i),
    );
    let pts: Vec<&Bucket> = sc.idx.iter().map(|&i| &b[i]).collect();
    if pts.len() < 3 {
        return l;
    }
    // a step up (a mean shift of the log p50) splits "normal" from "degraded"
    sc.pairs.clear();
    sc.pairs.extend(
        pts.iter().map(|p| (f64::from(p.p50_med.max(1e-3)).ln(), if p.p50_med.is_finite() { 1.0 } else { 0.0 })),
    );
    let step =
        mean_shift(&sc.pairs, (pts.len() / 8).max(3)).filter(|s| s.after - s.before >= 1.3f64.ln() && s.gain >= 0.3);
    let base = match step {
        Some(s) => &pts[..s.split],
        None => &pts[..],
    };
    l.base_p50_ms = median_of(base.iter().map(|p| p.p50_med), &mut sc.a);
    l.base_p95_ms = median_of(base.iter().map(|p| p.p95_med), &mut sc.a);
    // walk back while the buckets stay high
    for p in pts.iter().rev() {
        let r = latency_ratio(p.p50_med, p.p95_med, l.base_p50_ms, l.base_p95_ms);
        if r.is_nan() {
            continue;
        }
        if r < HIGH_RATIO {
            break;
        }
        l.high_since_ms = Some(p.t_first_ms);
    }
    // gradual drift of the p50
    let with_p50: Vec<&&Bucket> = pts.iter().filter(|p| p.p50_med.is_finite()).collect();
    if with_p50.len() >= 6 {
        let t0 = with_p50[0].t_mid_ms();
        let x = |t: u64| (t - t0) as f64 / MIN as f64;
        if let Some(fit) = linreg(with_p50.iter().map(|p| (x(p.t_mid_ms()), f64::from(p.p50_med), 1.0))) {
            let (a, z) = (fit.at(0.0), fit.at(x(with_p50[with_p50.len() - 1].t_mid_ms())));
            if a > 0.0 && z > 0.0 {
                l.trend_ratio = (z / a) as f32;
                l.trend_r2 = fit.r2 as f32;
            }
        }
    }
    l
}

fn errors(b: &[Bucket], sc: &mut Scratch) -> ErrHist {
    let mut e = ErrHist { rate_base: f32::NAN, step_since_ms: None };
    sc.idx.clear();
    sc.idx.extend(b.iter().enumerate().filter(|(_, x)| x.requests.is_finite() && x.requests > 0.0).map(|(i, _)| i));
    // a step up in the error rate: the level before it is the base (a long burst must not
    // become its own baseline)
    sc.pairs.clear();
    sc.pairs.extend(sc.idx.iter().map(|&i| (f64::from(b[i].errors / b[i].requests), f64::from(b[i].requests))));
    let step =
        mean_shift(&sc.pairs, (sc.idx.len() / 8).max(3)).filter(|s| s.after >= 2.0 * s.before + 0.005 && s.gain >= 0.2);
    let used = match step {
        Some(s) => &sc.idx[..s.split],
        None => &sc.idx[..],
    };
    let (req, err) =
        used.iter().fold((0.0f32, 0.0f32), |(r, er), &i| (r + b[i].requests, er + b[i].errors.min(b[i].requests)));
    if req >= 50.0 {
        e.rate_base = err / req;
    }
    e.step_since_ms = step.map(|s| b[sc.idx[s.split]].t_first_ms);
    e
}
