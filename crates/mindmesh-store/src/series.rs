//! The pure part of the metric series, shared by both backends: what one compaction rolls
//! up, keeps and drops, how samples become rollups, which rollups a read takes, and how a
//! long series is merged down to a number of points.
//!
//! Persona samples arrive as "recent" rows keyed by tick, so a tick of every persona is one
//! append at the end of one table (a per-persona key would rewrite a page per persona every
//! second). Compaction moves complete intervals into per-persona raw rows and writes one
//! rollup per persona and interval as soon as the interval is complete, so rollups exist
//! while the raw samples they summarise are still kept. Raw samples are only ever dropped
//! from intervals already rolled up, and reads take rollups only for intervals that end
//! before the first raw sample they return. Host samples are one row per tick already and
//! are rolled up in place.

use std::borrow::Cow;

use mindmesh_core::config::StoreConfig;
use mindmesh_core::metrics::{HostSample, PersonaSample};

use crate::store::MAX_SERIES_POINTS;

/// A sample kind of a series.
pub(crate) trait Sample: Clone {
    fn ts_ms(&self) -> u64;
    fn set_ts_ms(&mut self, ts_ms: u64);
    /// One sample standing for `samples` (non-empty, in time order).
    fn rollup(samples: &[Self]) -> Option<Self>;
}

impl Sample for PersonaSample {
    fn ts_ms(&self) -> u64 {
        self.ts_ms
    }
    fn set_ts_ms(&mut self, ts_ms: u64) {
        self.ts_ms = ts_ms;
    }
    fn rollup(samples: &[Self]) -> Option<Self> {
        PersonaSample::rollup(samples)
    }
}

impl Sample for HostSample {
    fn ts_ms(&self) -> u64 {
        self.ts_ms
    }
    fn set_ts_ms(&mut self, ts_ms: u64) {
        self.ts_ms = ts_ms;
    }
    fn rollup(samples: &[Self]) -> Option<Self> {
        HostSample::rollup(samples)
    }
}

/// `s` as stored at `ts_ms`: the tick's time wins over whatever the sample says.
pub(crate) fn stamped<T: Sample>(s: &T, ts_ms: u64) -> Cow<'_, T> {
    if s.ts_ms() == ts_ms {
        Cow::Borrowed(s)
    } else {
        let mut owned = s.clone();
        owned.set_ts_ms(ts_ms);
        Cow::Owned(owned)
    }
}

/// Most recent rows one compaction moves: memory and transaction size stay bounded after a
/// long pause; the rest moves next time (their intervals are then rolled up again, whole).
pub(crate) const MAX_MOVED_PER_COMPACT: usize = 500_000;

/// What one compaction does, from the config, `now_ms` and how far earlier ones got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub interval_ms: u64,
    /// Where the previous compaction stopped: intervals before it are rolled up already.
    pub rolled_until_ms: u64,
    /// Host samples: roll up the intervals starting in `roll_from_ms..roll_to_ms`.
    pub roll_from_ms: u64,
    /// The new watermark: every interval before it is complete and rolled up.
    pub roll_to_ms: u64,
    /// Drop raw samples older than this (interval-aligned, never past the watermark).
    pub raw_cut_ms: u64,
    /// Drop rollups of intervals starting before this.
    pub rollup_cut_ms: u64,
    /// Drop events older than this (a prefix of the log).
    pub event_cut_ms: u64,
}

impl Plan {
    pub fn new(config: &StoreConfig, now_ms: u64, rolled_until_ms: u64) -> Plan {
        let interval_ms = interval_ms(config);
        let floor = |t: u64| t - t % interval_ms;
        let ago = |s: u64| now_ms.saturating_sub(s.saturating_mul(1000));
        let rollup_cut_ms = floor(ago(config.rollup_retention_s));
        // A clock that went back never moves the watermark back: nothing is rolled twice.
        let roll_to_ms = floor(now_ms).max(rolled_until_ms);
        // Intervals that retention would drop at once are not worth rolling up.
        let roll_from_ms = rolled_until_ms.max(rollup_cut_ms).min(roll_to_ms);
        Plan {
            interval_ms,
            rolled_until_ms,
            roll_from_ms,
            roll_to_ms,
            // Aligned, so that kept raw samples always start an interval: a read then
            // takes whole rollups before them, never half of one twice.
            raw_cut_ms: floor(ago(config.raw_retention_s)).min(roll_to_ms),
            rollup_cut_ms,
            event_cut_ms: ago(config.event_retention_s),
        }
    }
}

/// What becomes of recent samples of one persona and interval when compaction moves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Kept as raw samples, and the interval (re)rolled up from all its raw samples.
    Keep,
    /// Past raw retention but never rolled up: rolled up, not kept.
    RollOnly,
    /// Past raw retention and rolled up already without them (a sample that came late), or
    /// past rollup retention: dropped.
    Drop,
}

impl Plan {
    pub fn fate(&self, interval_start_ms: u64) -> Fate {
        if interval_start_ms < self.rollup_cut_ms {
            Fate::Drop
        } else if interval_start_ms >= self.raw_cut_ms {
            Fate::Keep
        } else if interval_start_ms >= self.rolled_until_ms {
            Fate::RollOnly
        } else {
            Fate::Drop
        }
    }
}

/// Merge two time-ordered runs into one, `newer` winning where both have a time: a sample
/// appended again at the same tick replaces the one compaction had moved.
pub(crate) fn merge_by_ts<T: Sample>(older: Vec<T>, newer: Vec<T>) -> Vec<T> {
    if older.is_empty() {
        return newer;
    }
    let mut all: Vec<T> = older.into_iter().chain(newer).collect();
    // stable: for one time the older sample comes first, then the newer one that replaces it
    all.sort_by_key(|s| s.ts_ms());
    let mut out: Vec<T> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.ts_ms() == s.ts_ms() => *last = s,
            _ => out.push(s),
        }
    }
    out
}

pub(crate) fn interval_ms(config: &StoreConfig) -> u64 {
    config.rollup_interval_s.saturating_mul(1000).max(1)
}

/// Group time-ordered samples by interval and roll each group up, keyed by interval start.
pub(crate) fn rollup_by_interval<T: Sample>(samples: &[T], interval_ms: u64) -> Vec<(u64, T)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < samples.len() {
        let bucket = samples[start].ts_ms() - samples[start].ts_ms() % interval_ms;
        let end = samples[start..]
            .iter()
            .position(|s| s.ts_ms() - s.ts_ms() % interval_ms != bucket)
            .map_or(samples.len(), |n| start + n);
        if let Some(r) = T::rollup(&samples[start..end]) {
            out.push((bucket, r));
        }
        start = end;
    }
    out
}

/// The last interval start (inclusive) whose rollup a read takes, given the first raw
/// sample the read returns: rollups cover only what raw samples no longer do.
pub(crate) fn rollup_upper_ms(first_raw_ms: Option<u64>, to_ms: u64, interval_ms: u64) -> Option<u64> {
    match first_raw_ms {
        None => Some(to_ms),
        Some(first) => first.checked_sub(interval_ms),
    }
}

/// Merge time-ordered `points` down to at most `max_points` by rolling up equal time buckets
/// over `from_ms..=to_ms`. A series that already fits is returned as is.
pub(crate) fn downsample<T: Sample>(points: Vec<T>, from_ms: u64, to_ms: u64, max_points: usize) -> Vec<T> {
    let max_points = max_points.clamp(1, MAX_SERIES_POINTS);
    if points.len() <= max_points {
        return points;
    }
    let span_ms = u128::from(to_ms.saturating_sub(from_ms)) + 1;
    let width_ms = span_ms.div_ceil(max_points as u128).max(1);
    let bucket = |ts: u64| (u128::from(ts.saturating_sub(from_ms)) / width_ms).min(max_points as u128 - 1);
    let mut out = Vec::with_capacity(max_points);
    let mut start = 0;
    while start < points.len() {
        let b = bucket(points[start].ts_ms());
        let end = points[start..].iter().position(|p| bucket(p.ts_ms()) != b).map_or(points.len(), |n| start + n);
        let group = &points[start..end];
        match group {
            [one] => out.push(one.clone()),
            _ => out.extend(T::rollup(group)),
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StoreConfig {
        StoreConfig::default()
    }

    fn s(ts_ms: u64, rss_bytes: u64) -> PersonaSample {
        PersonaSample { ts_ms, rss_bytes, ..Default::default() }
    }

    #[test]
    fn plan_rolls_complete_intervals_and_cuts_aligned() {
        let now = 10 * 3600 * 1000 + 30_500; // 10 h 30.5 s
        let p = Plan::new(&cfg(), now, 0);
        assert_eq!(p.interval_ms, 60_000);
        assert_eq!(p.roll_to_ms, 10 * 3600 * 1000);
        assert_eq!(p.roll_from_ms, 0);
        assert_eq!(p.raw_cut_ms, 9 * 3600 * 1000);
        assert_eq!(p.rollup_cut_ms, 0);
        // the next run starts where this one stopped
        let q = Plan::new(&cfg(), now + 60_000, p.roll_to_ms);
        assert_eq!((q.roll_from_ms, q.roll_to_ms), (p.roll_to_ms, p.roll_to_ms + 60_000));
        // a clock that went back rolls nothing and keeps the watermark
        let r = Plan::new(&cfg(), now - 3_600_000, p.roll_to_ms);
        assert_eq!((r.roll_from_ms, r.roll_to_ms), (p.roll_to_ms, p.roll_to_ms));
    }

    #[test]
    fn plan_never_drops_raw_past_the_watermark() {
        let c = StoreConfig { raw_retention_s: 1, ..cfg() };
        let p = Plan::new(&c, 90_000, 0);
        assert_eq!(p.roll_to_ms, 60_000);
        assert_eq!(p.raw_cut_ms, 60_000);
    }

    #[test]
    fn plan_skips_intervals_retention_drops() {
        let now = 48 * 3600 * 1000;
        let p = Plan::new(&cfg(), now, 0);
        assert_eq!(p.roll_from_ms, 24 * 3600 * 1000);
        assert_eq!(p.rollup_cut_ms, 24 * 3600 * 1000);
    }

    #[test]
    fn fate_keeps_rolls_or_drops_by_age_and_watermark() {
        let now = 30 * 3600 * 1000;
        let p = Plan::new(&cfg(), now, now - 10 * 60_000);
        assert_eq!(p.fate(now - 60_000), Fate::Keep);
        assert_eq!(p.fate(p.raw_cut_ms), Fate::Keep);
        // older than raw retention: rolled up if that never happened, else it came too late
        let p_fresh = Plan::new(&cfg(), now, 0);
        assert_eq!(p_fresh.fate(p.raw_cut_ms - 60_000), Fate::RollOnly);
        assert_eq!(p.fate(p.raw_cut_ms - 60_000), Fate::Drop);
        assert_eq!(p_fresh.fate(p.rollup_cut_ms - 60_000), Fate::Drop);
    }

    #[test]
    fn merge_by_ts_orders_and_lets_newer_win() {
        let merged = merge_by_ts(vec![s(1, 1), s(3, 3), s(5, 5)], vec![s(2, 20), s(3, 30)]);
        let got: Vec<_> = merged.iter().map(|x| (x.ts_ms, x.rss_bytes)).collect();
        assert_eq!(got, vec![(1, 1), (2, 20), (3, 30), (5, 5)]);
    }

    #[test]
    fn rollup_groups_by_interval() {
        let samples = [s(0, 10), s(59_999, 30), s(60_000, 100), s(185_000, 7)];
        let r = rollup_by_interval(&samples, 60_000);
        let got: Vec<_> = r.iter().map(|(b, s)| (*b, s.ts_ms, s.rss_bytes)).collect();
        assert_eq!(got, vec![(0, 59_999, 20), (60_000, 60_000, 100), (180_000, 185_000, 7)]);
    }

    #[test]
    fn rollup_upper_leaves_no_overlap() {
        assert_eq!(rollup_upper_ms(None, 500, 60), Some(500));
        assert_eq!(rollup_upper_ms(Some(600), 900, 60), Some(540));
        assert_eq!(rollup_upper_ms(Some(30), 900, 60), None);
    }

    #[test]
    fn downsample_bounds_points_and_keeps_short_series() {
        let pts: Vec<_> = (0..1000).map(|i| s(i * 1000, i)).collect();
        assert_eq!(downsample(pts.clone(), 0, 999_000, 2000).len(), 1000);
        let d = downsample(pts.clone(), 0, 999_000, 10);
        assert_eq!(d.len(), 10);
        assert_eq!(d[0].rss_bytes, (0..100).sum::<u64>() / 100);
        assert_eq!(d[9].ts_ms, 999_000);
        assert!(d.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        assert_eq!(downsample(pts.clone(), 0, 999_000, 0).len(), 1);
        // points beyond `to_ms` fall in the last bucket instead of adding one
        assert_eq!(downsample(pts, 0, 500_000, 5).len(), 5);
    }
}
