//! Upper bounds on every number an operator, a client or a config file gives the node.
//!
//! A value past its bound is refused at validation, naming the field, before anything is
//! stored or computed from it: a memory limit in MB becomes bytes (`× 2^20`), a time in
//! seconds becomes milliseconds (`× 1000`), a timeout becomes an `Instant` — each of which
//! overflows, wraps or panics on a large enough input (a `memory_max_mb` of 2^44 wrapped to a
//! 0-byte limit; a `hibernate_after_idle_s` of 18446744073709552 to 384 ms). The bounds are
//! far above any real use and far below any overflow; where the code multiplies, it also
//! saturates, so a value that slipped past validation (an old store) still cannot wrap.
//!
//! `docs/security.md` lists each bound with its field.

use crate::error::{CoreError, Result};

/// Memory in MB (limits, requests, budgets): 16 TiB.
pub const MAX_MEMORY_MB: u64 = 1 << 24;
/// CPU in percent of one core (limits, requests): 1024 cores.
pub const MAX_CPU_PERCENT: f64 = 1024.0 * 100.0;
/// `hibernate_after_idle_s`: a year.
pub const MAX_IDLE_S: u64 = 366 * 24 * 3600;
/// `maintenance.restart_after_inferences`: 2^40 (a trillion; a persona answering a thousand a
/// second reaches it in 35 years).
pub const MAX_INFERENCES: u64 = 1 << 40;
/// `maintenance.restart_after_s` at least: a scheduled restart more often than this is a crash
/// loop by design (the brain decides once a cycle and its cooldown spaces restarts anyway).
pub const MIN_MAINTENANCE_S: u64 = 60;
/// A budget's `max_response_time_ms`: an hour.
pub const MAX_RESPONSE_TIME_MS: u64 = 3_600_000;
/// A budget's `tokens_per_response`, and the LLM analyst's `max_completion_tokens`.
pub const MAX_TOKENS: u32 = 1 << 20;
/// A budget's `max_concurrent_inferences` (the gateway's node-wide cap is no larger).
pub const MAX_CONCURRENT_INFERENCES: u32 = 65_536;
/// Any interval, timeout or back-off of the node's config, in ms: a day.
pub const MAX_TIMER_MS: u64 = 24 * 3600 * 1000;
/// Windows and cool-downs of the config, in seconds: a week.
pub const MAX_WINDOW_S: u64 = 7 * 24 * 3600;
/// Retention of stored history, in seconds: ten years.
pub const MAX_RETENTION_S: u64 = 10 * 366 * 24 * 3600;
/// Counts that size a table or a queue (personas per node, restarts in a window, …).
pub const MAX_COUNT: u64 = 1_000_000;
/// Bytes of one message, body or blob the node holds in memory at once: 1 GiB.
pub const MAX_BYTES: u64 = 1 << 30;

/// Refuse `v` outside `min..=max`, naming `field`.
pub fn within(field: &str, v: u64, min: u64, max: u64) -> Result<()> {
    if v < min {
        return Err(CoreError::invalid(field, format!("must be at least {min}")));
    }
    if v > max {
        return Err(CoreError::invalid(field, format!("must be at most {max}, got {v}")));
    }
    Ok(())
}

/// Refuse `v` above `max`, naming `field`.
pub fn at_most(field: &str, v: u64, max: u64) -> Result<()> {
    within(field, v, 0, max)
}

/// Refuse a float that is not finite or lies outside `min..=max`.
pub fn within_f(field: &str, v: f64, min: f64, max: f64) -> Result<()> {
    if !v.is_finite() || v < min || v > max {
        return Err(CoreError::invalid(field, format!("must be a number within {min}..={max}, got {v}")));
    }
    Ok(())
}

/// MB to bytes, saturating (a bound makes saturation unreachable; this makes wrapping so).
pub fn mb_to_bytes(mb: u64) -> u64 {
    mb.saturating_mul(1024 * 1024)
}

/// Seconds to milliseconds, saturating.
pub fn s_to_ms(s: u64) -> u64 {
    s.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_field_and_say_the_limit() {
        within("x", 5, 1, 10).unwrap();
        let e = within("x", 11, 1, 10).unwrap_err();
        assert_eq!(e.field(), Some("x"));
        assert!(e.to_string().contains("at most 10"), "{e}");
        assert_eq!(within("x", 0, 1, 10).unwrap_err().field(), Some("x"));
        assert!(within_f("f", f64::NAN, 0.0, 1.0).is_err());
        assert!(within_f("f", f64::INFINITY, 0.0, 1.0).is_err());
        within_f("f", 1.0, 0.0, 1.0).unwrap();
    }

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        // 2^44 MB × 2^20 is 2^64: it wrapped to a 0-byte limit
        assert_eq!(mb_to_bytes(1 << 44), u64::MAX);
        assert_eq!(mb_to_bytes(MAX_MEMORY_MB), 1 << 44);
        // 18446744073709552 s × 1000 wrapped to 384 ms
        assert_eq!(s_to_ms(18_446_744_073_709_552), u64::MAX);
        assert_eq!(s_to_ms(MAX_IDLE_S), MAX_IDLE_S * 1000);
    }

    #[test]
    fn every_bound_survives_its_conversion() {
        assert!(MAX_MEMORY_MB.checked_mul(1024 * 1024).is_some());
        assert!(MAX_RETENTION_S.checked_mul(1000).is_some());
        // a timer plus a day still fits a u64 of ms (deadlines add a timer to a clock)
        assert!(MAX_TIMER_MS.checked_mul(4).and_then(|t| t.checked_add(u64::MAX / 2)).is_some());
    }
}
