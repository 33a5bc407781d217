//! Durations on the command line carry their unit (`45s`, `500ms`, `2m`, `1h30m`), as
//! kubectl's and nomad's do: a bare number is refused rather than guessed at.

use std::time::Duration;

/// Longest duration a flag takes (a year): beyond it a number is a typo, not a wait.
const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parse `45s`, `500ms`, `2m`, `1h30m`, `1d`, `1.5s`: one or more number-unit pairs, units
/// `ms`, `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: give a number with a unit, e.g. 45s, 500ms, 2m, 1h".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} has no unit: write {s}s, {s}ms or {s}m"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 45s, 500ms, 2m, 1h30m)"))?;
        let unit_s = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => return Err(format!("{s:?}: {num} has no unit (ms, s, m, h or d)")),
            other => return Err(format!("{s:?}: unknown unit {other:?} (ms, s, m, h or d)")),
        };
        total += value * unit_s;
        rest = next;
    }
    if !total.is_finite() || total > MAX.as_secs_f64() {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// [`parse`], refusing zero (a wait or a timeout of nothing).
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!("{:?} must be longer than zero", text.trim()));
    }
    Ok(d)
}

/// The shortest way to write a duration back (`1m30s`, `250ms`).
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    let (days, hours, minutes, secs) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_read() {
        assert_eq!(parse("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(" 10s ").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn bare_numbers_and_nonsense_are_refused_with_a_hint() {
        assert!(parse("45").unwrap_err().contains("45s"), "{}", parse("45").unwrap_err());
        assert!(parse("").is_err());
        assert!(parse("10x").unwrap_err().contains("unknown unit"));
        assert!(parse("s").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("1..2s").is_err());
        assert!(parse("99999999999999d").unwrap_err().contains("year"));
        assert!(parse_positive("0s").is_err());
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn shown_as_written() {
        for text in ["45s", "250ms", "2m", "1h30m", "1d", "1.5s", "2m5s"] {
            assert_eq!(show(parse(text).unwrap()), text);
        }
    }
}
