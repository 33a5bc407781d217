//! Times for people: the operator's local date and time, and how long ago. The API and
//! `--json` keep epoch milliseconds; only the tables translate them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in epoch milliseconds (the reference for "ago").
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `2026-12-06 07:33:38` in the local time zone (`TZ`, else `/etc/localtime`).
pub fn local(ts_ms: u64) -> String {
    civil(ts_ms, utc_offset_s(ts_ms), false)
}

/// [`local`] with milliseconds, for logs where order within a second matters.
pub fn local_ms(ts_ms: u64) -> String {
    civil(ts_ms, utc_offset_s(ts_ms), true)
}

/// `2026-12-06 07:33:38 (4m ago)`; `-` for none.
pub fn local_ago(ts_ms: Option<u64>, now_ms: u64) -> String {
    match ts_ms {
        None => "-".into(),
        Some(t) => format!("{} ({})", local(t), ago(t, now_ms)),
    }
}

/// `4m ago`, `3h ago`, `2d ago`; `in 5s` for a time ahead of this machine's clock.
pub fn ago(ts_ms: u64, now_ms: u64) -> String {
    if ts_ms > now_ms {
        return format!("in {}", span((ts_ms - now_ms) / 1000));
    }
    format!("{} ago", span((now_ms - ts_ms) / 1000))
}

/// A span in its largest two units: `45s`, `4m10s`, `3h5m`, `2d4h`.
pub fn span(s: u64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The local offset from UTC at that instant, in seconds (0 where the C library knows none).
fn utc_offset_s(ts_ms: u64) -> i64 {
    let t = (ts_ms / 1000) as libc::time_t;
    // SAFETY: `localtime_r` reads `t` and writes only into `tm`, which lives on this stack;
    // it is the reentrant variant, safe beside other threads.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() { 0 } else { tm.tm_gmtoff }
}

/// Format an instant shifted by `offset_s` as a calendar date and time (proleptic
/// Gregorian; the civil-from-days algorithm of Howard Hinnant's date library).
fn civil(ts_ms: u64, offset_s: i64, with_ms: bool) -> String {
    let secs = (ts_ms / 1000) as i64 + offset_s;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if with_ms {
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}", ts_ms % 1000)
    } else {
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_in_utc_and_shifted() {
        assert_eq!(civil(0, 0, false), "1970-01-01 00:00:00");
        // 2024-02-29 12:34:56.789 UTC: a leap day
        assert_eq!(civil(1_709_210_096_789, 0, true), "2024-02-29 12:34:56.789");
        // the same instant two hours east, and five hours west (the day before)
        assert_eq!(civil(1_709_210_096_789, 7200, false), "2024-02-29 14:34:56");
        assert_eq!(civil(1_709_170_000_000, -5 * 3600, false), "2024-02-28 20:26:40");
        assert_eq!(civil(1_796_538_819_261, 0, false), "2026-12-06 06:33:39");
    }

    #[test]
    fn relative_times() {
        assert_eq!(ago(1_000, 46_000), "45s ago");
        assert_eq!(ago(0, 250_000), "4m10s ago");
        assert_eq!(ago(0, 3 * 86_400_000 + 3_600_000), "3d1h ago");
        assert_eq!(ago(10_000, 5_000), "in 5s");
        assert_eq!(local_ago(None, 0), "-");
    }
}
