//! A persona's log directory, `<data_dir>/logs/<name>/`: the two FIFOs its processes write
//! into and the numbered files the collector writes, `output-<seq>.log`, the highest number
//! being the one written to. Numbers only grow, so a reader's position (file number, offset)
//! stays meaningful across rotations.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use mindmesh_core::config::LogsConfig;
use serde::{Deserialize, Serialize};

use super::format::{self, Stream};

pub const STDOUT_FIFO: &str = "stdout.fifo";
pub const STDERR_FIFO: &str = "stderr.fifo";
const PREFIX: &str = "output-";
const SUFFIX: &str = ".log";

/// The directory of one persona's logs under a node's `logs/` directory.
pub fn persona_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

pub fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:010}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()
}

/// One log file, as `persona show` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFileInfo {
    pub seq: u64,
    pub path: String,
    pub bytes: u64,
    /// Last written (Unix ms).
    pub modified_ms: u64,
}

/// The log files of a persona directory, oldest first (none if there is no directory).
pub fn list(dir: &Path) -> Vec<LogFileInfo> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<LogFileInfo> = entries
        .flatten()
        .filter_map(|e| {
            let seq = parse_name(e.file_name().to_str()?)?;
            let meta = e.metadata().ok()?;
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            Some(LogFileInfo { seq, path: e.path().display().to_string(), bytes: meta.len(), modified_ms })
        })
        .collect();
    out.sort_by_key(|f| f.seq);
    out
}

/// The file the collector appends to, rotated by size.
pub struct LogWriter {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: u32,
    seq: u64,
    file: File,
    len: u64,
    /// Records gathered before one write.
    pending: Vec<u8>,
}

impl LogWriter {
    /// Continue the newest file of `dir` (a restarted node or a persona back on this node
    /// goes on where it left off), or begin the first.
    pub fn open(dir: &Path, cfg: &LogsConfig) -> std::io::Result<LogWriter> {
        std::fs::create_dir_all(dir)?;
        let seq = list(dir).last().map_or(1, |f| f.seq);
        let (file, len) = open_append(&dir.join(file_name(seq)))?;
        let mut w = LogWriter {
            dir: dir.to_owned(),
            max_file_bytes: cfg.max_file_bytes,
            max_files: cfg.max_files,
            seq,
            file,
            len,
            pending: Vec::new(),
        };
        w.prune();
        Ok(w)
    }

    /// Add one line (written at the next [`LogWriter::flush`], or before a rotation).
    pub fn push(&mut self, ts_ms: u64, stream: Stream, text: &[u8]) -> std::io::Result<()> {
        let record_len = (format::PREFIX_LEN + text.len() + 1) as u64;
        let buffered = self.pending.len() as u64;
        if self.len + buffered > 0 && self.len + buffered + record_len > self.max_file_bytes {
            self.flush()?;
            self.rotate()?;
        }
        format::encode(ts_ms, stream, text, &mut self.pending);
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.pending);
        // on a failed write (disk full) the lines are dropped rather than kept growing in memory
        self.len += self.pending.len() as u64;
        self.pending.clear();
        r
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.seq += 1;
        let (file, len) = open_append(&self.dir.join(file_name(self.seq)))?;
        self.file = file;
        self.len = len;
        self.prune();
        Ok(())
    }

    /// Delete the oldest files beyond the number kept.
    fn prune(&mut self) {
        let keep_from = self.seq.saturating_sub(u64::from(self.max_files) - 1);
        for f in list(&self.dir) {
            if f.seq < keep_from
                && let Err(e) = std::fs::remove_file(&f.path)
            {
                tracing::warn!(path = %f.path, error = %e, "cannot delete an old log file");
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogsConfig { max_file_bytes: 4096, max_files: 3, ..LogsConfig::default() };
        let mut w = LogWriter::open(dir.path(), &cfg).unwrap();
        let text = [b'x'; 100];
        for i in 0..400 {
            w.push(i, Stream::Stdout, &text).unwrap();
            if i % 7 == 0 {
                w.flush().unwrap();
            }
        }
        w.flush().unwrap();
        let files = list(dir.path());
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files.iter().all(|f| f.bytes <= 4096), "{files:?}");
        let seqs: Vec<u64> = files.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![seqs[0], seqs[0] + 1, seqs[0] + 2]);
        // a reopened writer continues the newest file
        drop(w);
        let mut w = LogWriter::open(dir.path(), &cfg).unwrap();
        w.push(1000, Stream::Stderr, b"after").unwrap();
        w.flush().unwrap();
        let newest = list(dir.path()).pop().unwrap();
        assert_eq!(newest.seq, seqs[2]);
        assert!(std::fs::read_to_string(&newest.path).unwrap().ends_with(" stderr after\n"));
    }
}
