//! Wall-clock time as a side effect behind a trait: production reads the system clock, tests
//! and the simulator move a manual one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ms)))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A clock that runs `speed` times faster than `inner` from the moment it is made: tests and
/// demos give the brain hours of history in minutes.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    inner: Arc<dyn Clock>,
    origin_ms: u64,
    speed: f64,
}

impl ScaledClock {
    pub fn new(inner: Arc<dyn Clock>, speed: f64) -> Self {
        let origin_ms = inner.now_ms();
        ScaledClock { inner, origin_ms, speed: if speed.is_finite() && speed > 0.0 { speed } else { 1.0 } }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        let real = self.inner.now_ms().saturating_sub(self.origin_ms);
        self.origin_ms + (real as f64 * self.speed) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_runs_faster_from_its_origin() {
        let base = ManualClock::new(1_000_000);
        let fast = ScaledClock::new(Arc::new(base.clone()), 60.0);
        assert_eq!(fast.now_ms(), 1_000_000);
        base.advance(1000);
        assert_eq!(fast.now_ms(), 1_060_000);
    }
}
