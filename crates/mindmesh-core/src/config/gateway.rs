use serde::{Deserialize, Serialize};

use super::at_least;
use crate::error::{CoreError, Result};

/// The OpenAI-compatible gateway in front of the personas: its node-wide bounds and how its
/// shared priority queue ages waiting requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Requests in flight to personas at once, all personas together; past it requests queue
    /// and the queue serves the highest (aged) priority first.
    pub max_in_flight: u32,
    /// Requests waiting in the node's queue, all personas together; past it a request is
    /// refused at once with 429 and `Retry-After`.
    pub max_queued: u32,
    /// Requests waiting for one persona; past it that persona's requests get 429.
    pub max_queued_per_persona: u32,
    /// A waiting request gains one priority point per this many ms, so a low-priority request
    /// is served at last even while higher ones keep coming (100: +10 points a second; a
    /// priority-10 request outranks fresh priority-90 ones after 8 s).
    pub aging_ms_per_point: u64,
    /// Share of `max_in_flight` held back from lower priorities, so that a higher-priority
    /// request finds a free slot on a node saturated by lower ones instead of waiting for one
    /// to end. A request of (aged) priority p may only start while fewer than
    /// `max_in_flight - floor(max_in_flight × share × (100 - p) / 100)` requests are in flight:
    /// priority 100 may use every slot, priority 0 all but the share. 0 turns it off.
    pub priority_reserve_share: f64,
    /// Restart, stop and hibernate wait this long for requests in flight to finish before the
    /// process is stopped; requests still running then get an explicit error.
    pub drain_timeout_ms: u64,
    /// `Retry-After` of a 429 when the queue is full.
    pub retry_after_s: u32,
    /// Connecting to a persona's port takes at most this long (it is on this host).
    pub connect_timeout_ms: u64,
    /// How often idle personas are checked against their `hibernate_after_idle_s`.
    pub idle_check_interval_ms: u64,
    /// Idle keep-alive connections kept per persona.
    pub pool_idle_per_persona: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_in_flight: 256,
            max_queued: 1024,
            max_queued_per_persona: 256,
            aging_ms_per_point: 100,
            priority_reserve_share: 0.25,
            drain_timeout_ms: 30_000,
            retry_after_s: 1,
            connect_timeout_ms: 1_000,
            idle_check_interval_ms: 1_000,
            pool_idle_per_persona: 64,
        }
    }
}

/// Upper bounds that keep a typo from reserving the world.
pub const MAX_IN_FLIGHT: u32 = 65_536;
pub const MAX_QUEUED: u32 = 1_000_000;

impl GatewayConfig {
    pub fn validate(&self) -> Result<()> {
        at_least("max_in_flight", u64::from(self.max_in_flight), 1)?;
        at_least("max_queued", u64::from(self.max_queued), 1)?;
        at_least("max_queued_per_persona", u64::from(self.max_queued_per_persona), 1)?;
        use crate::bounds::{MAX_TIMER_MS, at_most, within};
        within("aging_ms_per_point", self.aging_ms_per_point, 1, MAX_TIMER_MS)?;
        at_most("drain_timeout_ms", self.drain_timeout_ms, MAX_TIMER_MS)?;
        at_most("retry_after_s", u64::from(self.retry_after_s), 24 * 3600)?;
        within("connect_timeout_ms", self.connect_timeout_ms, 10, MAX_TIMER_MS)?;
        within("idle_check_interval_ms", self.idle_check_interval_ms, 50, MAX_TIMER_MS)?;
        if self.max_in_flight > MAX_IN_FLIGHT {
            return Err(CoreError::invalid("max_in_flight", format!("must be at most {MAX_IN_FLIGHT}")));
        }
        if self.max_queued > MAX_QUEUED || self.max_queued_per_persona > MAX_QUEUED {
            return Err(CoreError::invalid("max_queued", format!("must be at most {MAX_QUEUED}")));
        }
        if !(0.0..=0.5).contains(&self.priority_reserve_share) {
            return Err(CoreError::invalid("priority_reserve_share", "must be within 0..=0.5"));
        }
        if self.pool_idle_per_persona > MAX_IN_FLIGHT as usize {
            return Err(CoreError::invalid("pool_idle_per_persona", format!("must be at most {MAX_IN_FLIGHT}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        GatewayConfig::default().validate().unwrap();
        let c = GatewayConfig { max_in_flight: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("max_in_flight"));
        let c = GatewayConfig { aging_ms_per_point: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("aging_ms_per_point"));
        let c = GatewayConfig { priority_reserve_share: 0.6, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("priority_reserve_share"));
    }
}
