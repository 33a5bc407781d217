//! One record per output line, plain text so `less` and `grep` read the files too:
//! `2026-12-06T06:30:11.123Z stdout the line as the persona wrote it`. The timestamp is the
//! node's clock when the line reached it (UTC, milliseconds, fixed width), the stream is
//! `stdout` or `stderr`.

use serde::{Deserialize, Serialize};

/// Bytes of a record before its text: timestamp, space, stream, space.
pub const PREFIX_LEN: usize = TS_LEN + 1 + 6 + 1;
const TS_LEN: usize = 24;
/// Longest text of one record: a longer line is cut into records of this size, so one runaway
/// line never makes a reader buffer without bound.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(s: &[u8]) -> Option<Stream> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// A line as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub ts_ms: u64,
    pub stream: Stream,
    pub text: String,
}

/// Append the record of one line (without its newline) to `out`.
pub fn encode(ts_ms: u64, stream: Stream, text: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format_ts(ts_ms).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    // a newline inside would split the record: the collector never passes one, but be sure
    out.extend(text.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    out.push(b'\n');
}

/// Read one record (without its newline); None for a line that is not one (a damaged file).
pub fn decode(line: &[u8]) -> Option<LogLine> {
    if line.len() < PREFIX_LEN - 1 || line.get(TS_LEN) != Some(&b' ') {
        return None;
    }
    let ts_ms = parse_ts(std::str::from_utf8(&line[..TS_LEN]).ok()?)?;
    let stream = Stream::parse(&line[TS_LEN + 1..TS_LEN + 7])?;
    let text = line.get(PREFIX_LEN..).unwrap_or_default();
    Some(LogLine { ts_ms, stream, text: String::from_utf8_lossy(text).into_owned() })
}

/// The timestamp of a record alone, cheaper than decoding it.
pub fn record_ts(line: &[u8]) -> Option<u64> {
    parse_ts(std::str::from_utf8(line.get(..TS_LEN)?).ok()?)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix milliseconds.
pub fn format_ts(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// The inverse of [`format_ts`], for exactly its format.
pub fn parse_ts(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != TS_LEN
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 || y < 1970 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    Some((days as u64 * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms)
}

// Howard Hinnant's civil-calendar algorithms (public domain), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_across_calendar_edges() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (leap day), 2000-03-01, 2100-12-31 23:59:59.999
        for (ms, text) in [
            (1_709_164_800_123, "2024-02-29T00:00:00.123Z"),
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (4_133_980_799_999, "2100-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(format_ts(ms), text);
            assert_eq!(parse_ts(text), Some(ms));
        }
        for ms in (0..200).map(|i| i * 7_919_999_937u64) {
            assert_eq!(parse_ts(&format_ts(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn damaged_records_are_rejected_not_misread() {
        for bad in [
            "",
            "2024-02-29T00:00:00.123Z",
            "2024-02-29X00:00:00.123Z stdout x",
            "2024-13-01T00:00:00.000Z stdout x",
            "2024-02-29T00:00:00.123Z stdin x",
            "+024-02-29T00:00:00.123Z stdout x",
            "2024-02-29T00:00:00.1-3Z stdout x",
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn records_round_trip_and_never_hold_a_newline() {
        let mut out = Vec::new();
        encode(1_709_164_800_123, Stream::Stderr, b"a\nb \xff", &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let line = decode(&out[..out.len() - 1]).unwrap();
        assert_eq!(line.ts_ms, 1_709_164_800_123);
        assert_eq!(line.stream, Stream::Stderr);
        assert_eq!(line.text, "a b \u{fffd}");
        let mut empty = Vec::new();
        encode(5, Stream::Stdout, b"", &mut empty);
        assert_eq!(decode(&empty[..empty.len() - 1]).unwrap().text, "");
    }
}
