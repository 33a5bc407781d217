//! What a persona's budget means for the gateway, as pure arithmetic.
//!
//! `throttle_multiplier` m scales the persona's capacity to `max_concurrent_inferences × m`
//! concurrent requests and its queue priority to `priority × m` (0.5 = half speed and half the
//! priority, 2.0 = twice the concurrency and double priority). A fractional capacity is served
//! with a duty cycle: `ceil(c)` slots, each held idle after a request for as long as keeps the
//! average at `c` (capacity 0.5 = one slot, busy half the time) — so a throttled persona is
//! slowed even when it is a remote-API wrapper that no CPU limit would slow.

use mindmesh_core::Budget;

/// Longest a throttled slot is held after a request: a request that ran for minutes must not
/// block its persona for hours.
pub const MAX_HOLD_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    /// Requests in flight at once.
    pub slots: u32,
    /// Share of the time each slot may be busy (≤ 1).
    pub duty: f64,
    /// Base priority in the shared queue, before aging.
    pub priority: f64,
}

pub fn effective(b: &Budget) -> Effective {
    let m = if b.throttle_multiplier.is_finite() && b.throttle_multiplier > 0.0 { b.throttle_multiplier } else { 1.0 };
    let capacity = (f64::from(b.max_concurrent_inferences.max(1)) * m).max(0.01);
    let slots = capacity.ceil().min(f64::from(u32::MAX)) as u32;
    Effective { slots, duty: capacity / f64::from(slots), priority: f64::from(b.inference_queue_priority) * m }
}

/// How many requests may be in flight on the node when one of aged priority `score` starts:
/// all `max_in_flight` for priority 100, fewer for lower ones (the reserve is kept for higher
/// priorities). Never below one, so every priority makes progress.
pub fn node_limit(max_in_flight: u32, reserve_share: f64, score: f64) -> u32 {
    let reserve = (f64::from(max_in_flight) * reserve_share.clamp(0.0, 0.5)).floor();
    let held_back = (reserve * (100.0 - score.clamp(0.0, 100.0)) / 100.0).floor() as u32;
    max_in_flight.saturating_sub(held_back).max(1)
}

/// How long a slot stays held after a request that kept it busy for `busy_ms`.
pub fn hold_ms(duty: f64, busy_ms: u64) -> u64 {
    if duty >= 1.0 || duty <= 0.0 {
        return 0;
    }
    ((busy_ms as f64) * (1.0 / duty - 1.0)).round().min(MAX_HOLD_MS as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max: u32, prio: u8, m: f64) -> Budget {
        Budget {
            max_concurrent_inferences: max,
            inference_queue_priority: prio,
            throttle_multiplier: m,
            ..Budget::default()
        }
    }

    #[test]
    fn multiplier_scales_slots_priority_and_duty() {
        let e = effective(&budget(4, 50, 1.0));
        assert_eq!((e.slots, e.duty, e.priority), (4, 1.0, 50.0));
        let e = effective(&budget(4, 50, 0.5));
        assert_eq!((e.slots, e.duty, e.priority), (2, 1.0, 25.0));
        let e = effective(&budget(4, 50, 2.0));
        assert_eq!((e.slots, e.priority), (8, 100.0));
        // one slot at half speed: busy half the time
        let e = effective(&budget(1, 10, 0.5));
        assert_eq!((e.slots, e.duty), (1, 0.5));
        assert_eq!(hold_ms(e.duty, 200), 200);
        let e = effective(&budget(3, 10, 0.5));
        assert_eq!((e.slots, e.duty), (2, 0.75));
        assert_eq!(hold_ms(1.0, 200), 0);
        assert_eq!(hold_ms(0.01, 10_000_000), MAX_HOLD_MS);
    }

    #[test]
    fn lower_priorities_leave_a_reserve() {
        // 16 slots, a quarter in reserve: priority 10 stops at 13, 90 and above use all 16
        assert_eq!(node_limit(16, 0.25, 10.0), 13);
        assert_eq!(node_limit(16, 0.25, 50.0), 14);
        assert_eq!(node_limit(16, 0.25, 90.0), 16);
        assert_eq!(node_limit(16, 0.25, 250.0), 16);
        // aging climbs into the reserve; nothing is ever shut out
        assert_eq!(node_limit(16, 0.25, 60.0), 15);
        assert_eq!(node_limit(1, 0.5, 0.0), 1);
        assert_eq!(node_limit(16, 0.0, 0.0), 16);
    }
}
