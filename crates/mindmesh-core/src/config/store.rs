use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Retention of the metric series: raw samples for a while, then per-minute rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub raw_retention_s: u64,
    pub rollup_interval_s: u64,
    pub rollup_retention_s: u64,
    /// Events older than this are dropped.
    pub event_retention_s: u64,
    /// Largest persona state blob kept.
    pub max_state_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            raw_retention_s: 3600,
            rollup_interval_s: 60,
            rollup_retention_s: 24 * 3600,
            event_retention_s: 7 * 24 * 3600,
            max_state_bytes: 64 * 1024 * 1024,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::{MAX_BYTES, MAX_RETENTION_S, within};
        within("raw_retention_s", self.raw_retention_s, 1, MAX_RETENTION_S)?;
        within("rollup_interval_s", self.rollup_interval_s, 1, 24 * 3600)?;
        within("rollup_retention_s", self.rollup_retention_s, 1, MAX_RETENTION_S)?;
        within("event_retention_s", self.event_retention_s, 1, MAX_RETENTION_S)?;
        within("max_state_bytes", self.max_state_bytes, 1, MAX_BYTES)?;
        if self.rollup_retention_s < self.raw_retention_s {
            return Err(CoreError::invalid("rollup_retention_s", "must not be shorter than raw_retention_s"));
        }
        Ok(())
    }
}
