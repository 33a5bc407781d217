//! Small, allocation-light statistics: weighted least squares with fit quality, medians,
//! quantiles, and a Poisson tail for "is this many errors surprising given the history".

/// A weighted straight-line fit `y = intercept + slope * x`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
    /// Coefficient of determination, 0–1 (0 when y does not vary).
    pub r2: f64,
    /// Weighted standard deviation of the residuals.
    pub resid_sd: f64,
    pub n: usize,
}

impl Fit {
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// Weighted least squares over `(x, y, w)` points; `None` below 3 usable points or when x
/// does not vary. Non-finite points are skipped.
pub fn linreg(points: impl Iterator<Item = (f64, f64, f64)> + Clone) -> Option<Fit> {
    let (mut sw, mut sx, mut sy, mut n) = (0.0, 0.0, 0.0, 0usize);
    for (x, y, w) in points.clone() {
        if x.is_finite() && y.is_finite() && w > 0.0 {
            sw += w;
            sx += w * x;
            sy += w * y;
            n += 1;
        }
    }
    if n < 3 || sw <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / sw, sy / sw);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y, w) in points.clone() {
        if x.is_finite() && y.is_finite() && w > 0.0 {
            let (dx, dy) = (x - mx, y - my);
            sxx += w * dx * dx;
            sxy += w * dx * dy;
            syy += w * dy * dy;
        }
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res = (syy - slope * sxy).max(0.0);
    let r2 = if syy > 0.0 { (1.0 - ss_res / syy).clamp(0.0, 1.0) } else { 0.0 };
    Some(Fit { slope, intercept, r2, resid_sd: (ss_res / sw).sqrt(), n })
}

/// A step in a series: the split that best explains it as two flat levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Index of the first point of the later level.
    pub split: usize,
    pub before: f64,
    pub after: f64,
    /// Share of the variance the step explains, 0–1.
    pub gain: f64,
}

/// The best single mean shift in `(value, weight)` points, each level at least `min_seg`
/// points long. O(n) with prefix sums. `None` when too short or flat.
pub fn mean_shift(points: &[(f64, f64)], min_seg: usize) -> Option<Shift> {
    let n = points.len();
    let min_seg = min_seg.max(1);
    if n < 2 * min_seg {
        return None;
    }
    let (mut w, mut wx, mut wxx) = (vec![0.0; n + 1], vec![0.0; n + 1], vec![0.0; n + 1]);
    for (i, &(x, wt)) in points.iter().enumerate() {
        let (x, wt) = if x.is_finite() && wt > 0.0 { (x, wt) } else { (0.0, 0.0) };
        w[i + 1] = w[i] + wt;
        wx[i + 1] = wx[i] + wt * x;
        wxx[i + 1] = wxx[i] + wt * x * x;
    }
    let sse = |a: usize, b: usize| {
        let sw = w[b] - w[a];
        if sw <= 0.0 { 0.0 } else { (wxx[b] - wxx[a]) - (wx[b] - wx[a]).powi(2) / sw }
    };
    let total = sse(0, n);
    if total <= 0.0 || w[n] <= 0.0 {
        return None;
    }
    let mut best: Option<(f64, usize)> = None;
    for k in min_seg..=n - min_seg {
        if w[k] <= 0.0 || w[n] - w[k] <= 0.0 {
            continue;
        }
        let e = sse(0, k) + sse(k, n);
        if best.is_none_or(|(b, _)| e < b) {
            best = Some((e, k));
        }
    }
    let (e, k) = best?;
    Some(Shift {
        split: k,
        before: wx[k] / w[k],
        after: (wx[n] - wx[k]) / (w[n] - w[k]),
        gain: (1.0 - e / total).clamp(0.0, 1.0),
    })
}

/// Where growth starts: the index `k` that best fits `y = a` before `x[k]` and
/// `y = a + b (x - x[k])` from it on (a hinge), with the later part at least `min_tail`
/// points. O(n) with suffix sums; `k = 0` is a plain line. `None` below 4 points.
pub fn hinge_start(points: &[(f64, f64)], min_tail: usize) -> Option<usize> {
    let n = points.len();
    if n < 4 {
        return None;
    }
    let nf = n as f64;
    let (sy, syy) = points.iter().fold((0.0, 0.0), |(a, b), &(_, y)| (a + y, b + y * y));
    let syy_c = syy - sy * sy / nf;
    // suffix sums of x, x², x·y, y
    let (mut st, mut stt, mut sty, mut s_y) = (0.0, 0.0, 0.0, 0.0);
    let mut best: Option<(f64, usize)> = None;
    let last = n.saturating_sub(min_tail.max(2));
    for k in (0..n).rev() {
        let (x, y) = points[k];
        st += x;
        stt += x * x;
        sty += x * y;
        s_y += y;
        if k > last {
            continue;
        }
        let m = (n - k) as f64;
        let su = st - m * x;
        let suu = stt - 2.0 * x * st + m * x * x;
        let suy = sty - x * s_y;
        let suu_c = suu - su * su / nf;
        let suy_c = suy - su * sy / nf;
        if suu_c <= 1e-12 {
            continue;
        }
        let sse = syy_c - suy_c * suy_c / suu_c;
        if best.is_none_or(|(b, _)| sse < b - 1e-9 * syy_c.abs()) {
            best = Some((sse, k));
        }
    }
    best.map(|(_, k)| k)
}

/// `t.partition_point(|v| v <= x)` for sorted `t`, searched from the end: the answer is
/// almost always near it, so this touches a few cache lines instead of a binary search's
/// path through the whole series.
pub fn count_le_from_end(t: &[u64], x: u64) -> usize {
    let n = t.len();
    if n == 0 || t[n - 1] <= x {
        return n;
    }
    // gallop back until t[lo] <= x (or the start), then search the last step
    let mut step = 1;
    let mut hi = n - 1; // t[hi] > x
    loop {
        let lo = hi.saturating_sub(step);
        if t[lo] <= x {
            return lo + 1 + t[lo + 1..hi].partition_point(|&v| v <= x);
        }
        if lo == 0 {
            return 0;
        }
        hi = lo;
        step *= 2;
    }
}

/// Median of the finite values; `NaN` if none. Reorders `v`.
pub fn median_in_place(v: &mut [f32]) -> f32 {
    quantile_in_place(v, 0.5)
}

/// Quantile (nearest rank on the finite values); `NaN` if none. Reorders `v`.
pub fn quantile_in_place(v: &mut [f32], q: f64) -> f32 {
    let mut n = 0;
    for i in 0..v.len() {
        if v[i].is_finite() {
            v.swap(n, i);
            n += 1;
        }
    }
    if n == 0 {
        return f32::NAN;
    }
    let v = &mut v[..n];
    let k = ((q.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize).min(n - 1);
    *v.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

/// Median of the finite values of an iterator, using `scratch` as working space.
pub fn median_of(values: impl Iterator<Item = f32>, scratch: &mut Vec<f32>) -> f32 {
    scratch.clear();
    scratch.extend(values.filter(|v| v.is_finite()));
    median_in_place(scratch)
}

/// P(X >= k) for X ~ Poisson(lambda): how surprising `k` events are when `lambda` were
/// expected. Bounded work: a normal approximation for large counts.
pub fn poisson_tail(k: f64, lambda: f64) -> f64 {
    if k <= 0.0 {
        return 1.0;
    }
    let lambda = lambda.max(1e-9);
    if k <= lambda {
        return 1.0;
    }
    if lambda > 50.0 || k > 400.0 {
        // continuity-corrected normal tail
        let z = (k - 0.5 - lambda) / lambda.sqrt();
        return 0.5 * erfc(z / std::f64::consts::SQRT_2);
    }
    // sum the upper tail from k on, in log space; terms shrink fast past lambda
    let k = k.floor();
    let ln_term0 = k * lambda.ln() - lambda - ln_factorial(k);
    let mut term = ln_term0.exp();
    let mut sum = term;
    let mut i = k;
    for _ in 0..500 {
        i += 1.0;
        term *= lambda / i;
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum.min(1.0)
}

fn ln_factorial(n: f64) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    if n < 30.0 {
        return (2..=n as u64).map(|i| (i as f64).ln()).sum();
    }
    // Stirling with the first correction terms
    n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n) - 1.0 / (360.0 * n * n * n)
}

/// Complementary error function (Abramowitz–Stegun 7.1.26), enough for a tail test.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linreg_recovers_a_line_and_its_fit() {
        let pts: Vec<(f64, f64, f64)> = (0..50).map(|i| (i as f64, 3.0 + 2.0 * i as f64, 1.0)).collect();
        let f = linreg(pts.iter().copied()).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-9 && (f.intercept - 3.0).abs() < 1e-9);
        assert!(f.r2 > 0.999);
        let flat: Vec<(f64, f64, f64)> =
            (0..50).map(|i| (i as f64, if i % 2 == 0 { 1.0 } else { -1.0 }, 1.0)).collect();
        let f = linreg(flat.iter().copied()).unwrap();
        assert!(f.slope.abs() < 0.01 && f.r2 < 0.05);
        assert!(linreg([(1.0, 1.0, 1.0), (1.0, 2.0, 1.0), (1.0, 3.0, 1.0)].into_iter()).is_none());
    }

    #[test]
    fn mean_shift_finds_a_step() {
        let pts: Vec<(f64, f64)> =
            (0..40).map(|i| (if i < 25 { 1.0 + 0.01 * (i % 3) as f64 } else { 2.0 }, 1.0)).collect();
        let s = mean_shift(&pts, 3).unwrap();
        assert_eq!(s.split, 25);
        assert!((s.before - 1.01).abs() < 0.01 && (s.after - 2.0).abs() < 1e-9 && s.gain > 0.95);
        assert!(mean_shift(&pts[..5], 3).is_none());
        assert!(mean_shift(&[(1.0, 1.0); 10], 2).is_none());
    }

    #[test]
    fn hinge_finds_where_growth_starts() {
        let pts: Vec<(f64, f64)> =
            (0..60).map(|i| (i as f64, if i < 20 { 10.0 } else { 10.0 + (i - 20) as f64 })).collect();
        assert_eq!(hinge_start(&pts, 5), Some(20));
        let line: Vec<(f64, f64)> = (0..60).map(|i| (i as f64, 3.0 * i as f64)).collect();
        assert_eq!(hinge_start(&line, 5), Some(0));
    }

    #[test]
    fn count_from_the_end_matches_partition_point() {
        let t: Vec<u64> = (0..1000).map(|i| i * 10).collect();
        for x in [0, 5, 10, 15, 4990, 5000, 9980, 9990, 9995, 100_000] {
            assert_eq!(count_le_from_end(&t, x), t.partition_point(|&v| v <= x), "{x}");
        }
        assert_eq!(count_le_from_end(&[], 3), 0);
        assert_eq!(count_le_from_end(&[5], 3), 0);
    }

    #[test]
    fn medians_skip_nan() {
        let mut v = vec![5.0, f32::NAN, 1.0, 3.0];
        assert_eq!(median_in_place(&mut v), 3.0);
        let mut v: Vec<f32> = vec![f32::NAN];
        assert!(median_in_place(&mut v).is_nan());
        let mut v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(quantile_in_place(&mut v, 0.9), 90.0);
    }

    #[test]
    fn poisson_tail_is_sane() {
        assert!((poisson_tail(1.0, 1.0) - 1.0).abs() < 1e-9);
        // P(X>=3 | 1) = 1 - e^-1 (1 + 1 + 1/2)
        let want = 1.0 - (-1.0f64).exp() * 2.5;
        assert!((poisson_tail(3.0, 1.0) - want).abs() < 1e-9);
        assert!(poisson_tail(40.0, 4.0) < 1e-15);
        assert!(poisson_tail(200.0, 100.0) < 1e-12);
        assert!(poisson_tail(105.0, 100.0) > 0.2);
    }
}
