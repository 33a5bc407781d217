use serde::{Deserialize, Serialize};

use crate::bounds::{MAX_MEMORY_MB, at_most, within};
use crate::error::Result;

/// What this node offers its personas (`[node.capacity]`): admission on start and wake
/// ([`crate::evict`]) keeps what they hold within it, and placement counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// Memory for personas, in MB. None: the host's total memory. A declared figure above the
    /// host's is cut to the host's.
    pub memory_mb: Option<u64>,
    /// `Retry-After` of the 503 that a request gets when its persona cannot be woken for want
    /// of memory and nothing idle can be evicted.
    pub retry_after_s: u32,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig { memory_mb: None, retry_after_s: 5 }
    }
}

impl CapacityConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(mb) = self.memory_mb {
            within("memory_mb", mb, 1, MAX_MEMORY_MB)?;
        }
        at_most("retry_after_s", u64::from(self.retry_after_s), 3600)?;
        Ok(())
    }

    /// The memory admission works with: the declared figure cut to the host's, or the host's
    /// (0 when neither is known: admission then admits everything).
    pub fn memory_mb(&self, host_total_mb: Option<u64>) -> u64 {
        match (self.memory_mb, host_total_mb.filter(|mb| *mb > 0)) {
            (Some(d), Some(h)) => d.min(h),
            (Some(d), None) => d,
            (None, Some(h)) => h,
            (None, None) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_figure_is_cut_to_the_host_and_bad_values_name_their_field() {
        let c = CapacityConfig { memory_mb: Some(512), ..Default::default() };
        assert_eq!((c.memory_mb(Some(256)), c.memory_mb(Some(4096)), c.memory_mb(None)), (256, 512, 512));
        assert_eq!(CapacityConfig::default().memory_mb(Some(4096)), 4096);
        assert_eq!(CapacityConfig::default().memory_mb(None), 0);
        let c = CapacityConfig { memory_mb: Some(0), ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("memory_mb"));
        let c = CapacityConfig { retry_after_s: 100_000, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("retry_after_s"));
    }
}
