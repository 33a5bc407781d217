//! Paging through a persona's log files: from a position, from the last N lines, or from a
//! time, optionally one stream only. Each page opens the files it reads and closes them, and
//! reads at most a bounded number of bytes, so a reader holds neither descriptors nor memory
//! between pages (`logs -f` is a series of such pages).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{self, LogFileInfo};
use super::format::{self, LogLine, Stream};

/// Bytes one page reads at most (records are at most ~16 KiB, so a page always advances).
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// Bytes read per step when counting lines back from the end.
const BACK_BLOCK: u64 = 64 * 1024;

/// A place in a persona's logs: the file's number and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub seq: u64,
    pub offset: u64,
}

/// Where a read begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest line kept.
    Oldest,
    /// The last `n` lines (of the stream asked for).
    Tail(usize),
    /// Where the previous page ended.
    At(Position),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub stream: Option<Stream>,
    /// Lines stamped before this (Unix ms) are skipped.
    pub since_ms: Option<u64>,
}

impl Filter {
    fn keeps(&self, line: &LogLine) -> bool {
        self.stream.is_none_or(|s| s == line.stream) && self.since_ms.is_none_or(|t| line.ts_ms >= t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub lines: Vec<LogLine>,
    /// Where the next page begins.
    pub next: Position,
    /// Nothing more to read now (a follower waits, then asks again from `next`).
    pub at_end: bool,
    /// The position asked for had been rotated away: lines were missed.
    pub skipped: bool,
}

/// Read one page of at most `limit` lines from the persona directory `dir`.
pub fn read_page(dir: &Path, start: Start, filter: Filter, limit: usize) -> std::io::Result<Page> {
    let files = files::list(dir);
    let Some(last) = files.last() else {
        let next = match start {
            Start::At(p) => p,
            _ => Position { seq: 1, offset: 0 },
        };
        return Ok(Page { lines: Vec::new(), next, at_end: true, skipped: false });
    };
    let oldest = Position { seq: files[0].seq, offset: 0 };
    let mut skipped = false;
    let mut pos = match start {
        Start::Oldest => oldest,
        Start::Tail(n) => tail_start(&files, n, filter.stream)?,
        Start::At(p) => match files.iter().find(|f| f.seq == p.seq) {
            Some(f) if p.offset <= f.bytes => p,
            // the file is shorter than the position: it was deleted and begun anew
            Some(_) => Position { seq: p.seq, offset: 0 },
            None if p.seq < oldest.seq => {
                skipped = true;
                oldest
            }
            // a position past every file: the logs were deleted and begun anew
            None if p.seq > last.seq => oldest,
            None => {
                skipped = true;
                Position { seq: files.iter().find(|f| f.seq > p.seq).map_or(last.seq, |f| f.seq), offset: 0 }
            }
        },
    };
    if let (Some(since), Start::Oldest | Start::Tail(_)) = (filter.since_ms, start) {
        // a file last written before `since` holds nothing to show
        let first_recent = files.iter().find(|f| f.modified_ms >= since).map_or(last.seq, |f| f.seq);
        pos = pos.max(Position { seq: first_recent, offset: 0 });
    }
    let limit = limit.max(1);
    let mut lines = Vec::new();
    let mut budget = MAX_PAGE_BYTES;
    let mut buf = Vec::new();
    loop {
        let Some(idx) = files.iter().position(|f| f.seq == pos.seq) else {
            return Ok(Page { lines, next: pos, at_end: true, skipped });
        };
        let mut file = match File::open(dir.join(files::file_name(pos.seq))) {
            Ok(f) => f,
            // rotated away between the listing and now: on to the next one
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && idx + 1 < files.len() => {
                pos = Position { seq: files[idx + 1].seq, offset: 0 };
                skipped = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(pos.offset))?;
        buf.clear();
        (&mut file).take(budget as u64).read_to_end(&mut buf)?;
        // only whole records: a last one without its newline is still being written
        let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut used = 0;
        for raw in buf[..whole].split_inclusive(|&b| b == b'\n') {
            used += raw.len();
            if let Some(line) = format::decode(&raw[..raw.len() - 1])
                && filter.keeps(&line)
            {
                lines.push(line);
                if lines.len() >= limit {
                    break;
                }
            }
        }
        pos.offset += used as u64;
        budget -= used;
        let file_len = file.metadata()?.len();
        if lines.len() >= limit || budget < format::MAX_LINE_BYTES + format::PREFIX_LEN + 1 {
            let at_end = pos.offset >= file_len && idx + 1 == files.len();
            return Ok(Page { lines, next: pos, at_end, skipped });
        }
        if pos.offset < file_len && whole > 0 {
            continue;
        }
        match files.get(idx + 1) {
            // everything of this file read: the next one, if the writer moved on
            Some(next) if pos.offset >= file_len || whole == 0 => pos = Position { seq: next.seq, offset: 0 },
            _ => return Ok(Page { lines, next: pos, at_end: true, skipped }),
        }
    }
}

/// Where the last `n` lines (of `stream`, if given) begin.
fn tail_start(files: &[LogFileInfo], n: usize, stream: Option<Stream>) -> std::io::Result<Position> {
    let last = files.last().expect("caller checked");
    if n == 0 {
        return Ok(Position { seq: last.seq, offset: last.bytes });
    }
    let mut need = n;
    let mut block = vec![0u8; BACK_BLOCK as usize];
    let mut head = [0u8; format::PREFIX_LEN];
    for f in files.iter().rev() {
        let file = match File::open(&f.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        // does the line beginning at `at` count?
        let counts = |at: u64, head: &mut [u8; format::PREFIX_LEN]| -> bool {
            let Some(want) = stream else { return true };
            file.read_exact_at(head, at).is_ok() && format::decode(head).is_some_and(|l| l.stream == want)
        };
        // the final newline ends the last line; every newline before it begins one
        let mut end = len.saturating_sub(1);
        while end > 0 {
            let from = end.saturating_sub(BACK_BLOCK);
            let chunk = &mut block[..(end - from) as usize];
            file.read_exact_at(chunk, from)?;
            for i in (0..chunk.len()).rev() {
                if chunk[i] == b'\n' {
                    let at = from + i as u64 + 1;
                    if counts(at, &mut head) {
                        need -= 1;
                        if need == 0 {
                            return Ok(Position { seq: f.seq, offset: at });
                        }
                    }
                }
            }
            end = from;
        }
        if len > 0 && counts(0, &mut head) {
            need -= 1;
            if need == 0 {
                return Ok(Position { seq: f.seq, offset: 0 });
            }
        }
    }
    Ok(Position { seq: files[0].seq, offset: 0 })
}

#[cfg(test)]
mod tests {
    use mindmesh_core::config::LogsConfig;

    use super::*;
    use crate::logs::files::LogWriter;

    fn fill(dir: &Path, n: u64, max_file_bytes: u64, max_files: u32) {
        let cfg = LogsConfig { max_file_bytes, max_files, ..LogsConfig::default() };
        let mut w = LogWriter::open(dir, &cfg).unwrap();
        for i in 0..n {
            let stream = if i % 3 == 0 { Stream::Stderr } else { Stream::Stdout };
            w.push(1_000 + i, stream, format!("line {i}").as_bytes()).unwrap();
        }
        w.flush().unwrap();
    }

    fn texts(p: &Page) -> Vec<String> {
        p.lines.iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn pages_cover_every_line_once_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 500, 4096, 100);
        assert!(files::list(dir.path()).len() > 3);
        let mut pos = Start::Oldest;
        let mut all = Vec::new();
        loop {
            let p = read_page(dir.path(), pos, Filter::default(), 37).unwrap();
            all.extend(texts(&p));
            pos = Start::At(p.next);
            if p.at_end {
                break;
            }
        }
        let want: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
        assert_eq!(all, want);
        // at the end, a page is empty and stays at the end
        let p = read_page(dir.path(), pos, Filter::default(), 10).unwrap();
        assert!(p.lines.is_empty() && p.at_end);
    }

    #[test]
    fn tail_counts_back_across_files_and_by_stream() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 300, 4096, 100);
        let p = read_page(dir.path(), Start::Tail(120), Filter::default(), 1000).unwrap();
        assert_eq!(p.lines.len(), 120);
        assert_eq!(p.lines[0].text, "line 180");
        assert!(p.at_end);
        let err = Filter { stream: Some(Stream::Stderr), since_ms: None };
        let p = read_page(dir.path(), Start::Tail(5), err, 1000).unwrap();
        assert_eq!(texts(&p), ["line 285", "line 288", "line 291", "line 294", "line 297"]);
        let p = read_page(dir.path(), Start::Tail(10_000), Filter::default(), 10_000).unwrap();
        assert_eq!(p.lines.len(), 300);
        let p = read_page(dir.path(), Start::Tail(0), Filter::default(), 10).unwrap();
        assert!(p.lines.is_empty() && p.at_end);
    }

    #[test]
    fn since_skips_older_lines_and_a_rotated_away_position_says_so() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 400, 4096, 3);
        assert!(files::list(dir.path())[0].seq > 1, "the first file was rotated away");
        let since = Filter { stream: None, since_ms: Some(1_000 + 390) };
        let p = read_page(dir.path(), Start::Oldest, since, 1000).unwrap();
        assert_eq!(p.lines.first().map(|l| l.text.as_str()), Some("line 390"));
        assert_eq!(p.lines.len(), 10);
        let gone = Position { seq: 1, offset: 0 };
        let p = read_page(dir.path(), Start::At(gone), Filter::default(), 5).unwrap();
        assert!(p.skipped);
        assert_eq!(p.lines.len(), 5);
    }

    #[test]
    fn damaged_lines_are_skipped_and_a_half_written_record_waits() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 3, 1 << 20, 3);
        let path = &files::list(dir.path())[0].path;
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut f, b"garbage\n\xff\xfe\n2026-12-06T06:30:11.123Z stdout half").unwrap();
        let p = read_page(dir.path(), Start::Oldest, Filter::default(), 100).unwrap();
        assert_eq!(texts(&p), ["line 0", "line 1", "line 2"]);
        let again = read_page(dir.path(), Start::At(p.next), Filter::default(), 100).unwrap();
        assert!(again.lines.is_empty());
        std::io::Write::write_all(&mut f, b" done\n").unwrap();
        let done = read_page(dir.path(), Start::At(p.next), Filter::default(), 100).unwrap();
        assert_eq!(texts(&done), ["half done"]);
    }

    #[test]
    fn no_directory_is_an_empty_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = read_page(&dir.path().join("nope"), Start::Tail(10), Filter::default(), 10).unwrap();
        assert!(p.lines.is_empty() && p.at_end);
    }
}
