//! The fencing gate every spawn passes: until when this node may start processes.

/// Until when this node may start processes (Unix ms), as its fencing says. Checked at the
/// instant of every spawn — restarts by policy included — so a node waking from a freeze, or
/// whose lease just ran out, starts nothing even before its fencing task has run.
#[derive(Debug)]
pub struct SpawnGate {
    until_ms: std::sync::atomic::AtomicU64,
}

impl SpawnGate {
    pub fn new(until_ms: u64) -> Self {
        SpawnGate { until_ms: std::sync::atomic::AtomicU64::new(until_ms) }
    }

    /// Move the limit later (never earlier).
    pub fn extend(&self, until_ms: u64) {
        self.until_ms.fetch_max(until_ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn until_ms(&self) -> u64 {
        self.until_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn open_at(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms()
    }
}
