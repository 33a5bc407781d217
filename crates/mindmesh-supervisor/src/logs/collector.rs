//! The collector of one persona: reads the two FIFOs its processes write into, cuts lines,
//! stamps them and appends them to the persona's log files. One collector serves every
//! process of the persona on this node (restarts write into the same FIFOs), from the first
//! spawn or adoption until the persona leaves the node.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::Clock;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::files::LogWriter;
use super::format::{MAX_LINE_BYTES, Stream};

/// A pipe this large holds the output of a node restart: the persona blocks on a write only
/// once it is full (Linux lets an unprivileged process raise a pipe to 1 MiB).
const PIPE_BYTES: usize = 1024 * 1024;
/// Bytes read at once from one FIFO.
const READ_CHUNK: usize = 64 * 1024;
/// A line without its newline is written after this long (a prompt, a progress bar).
const PARTIAL_AFTER: Duration = Duration::from_millis(500);

/// Make `path` a FIFO (replacing anything else of that name).
pub fn ensure_fifo(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => return Ok(()),
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(std::io::Error::from)
}

/// Open the reading end of a FIFO. Read-write, so that the node itself counts as a writer:
/// reads never see end-of-file between two processes of the persona.
pub fn open_reader(path: &Path) -> std::io::Result<pipe::Receiver> {
    ensure_fifo(path)?;
    let rx = pipe::OpenOptions::new().read_write(true).open_receiver(path)?;
    if let Err(e) = nix::fcntl::fcntl(&rx, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as _)) {
        tracing::debug!(path = %path.display(), error = %e, "pipe keeps its default size");
    }
    Ok(rx)
}

/// A line being gathered from one stream.
#[derive(Default)]
struct Partial {
    bytes: Vec<u8>,
    /// When its first byte arrived.
    since_ms: Option<u64>,
}

pub struct Collector {
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pub writer: LogWriter,
    pub clock: Arc<dyn Clock>,
    pub persona: String,
}

impl Collector {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut out_buf = vec![0u8; READ_CHUNK];
        let mut err_buf = vec![0u8; READ_CHUNK];
        let mut parts: [Partial; 2] = Default::default();
        let mut tick = tokio::time::interval(PARTIAL_AFTER);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = read_some(&mut self.stdout, &mut out_buf) => {
                    self.take(Stream::Stdout, r, &out_buf, &mut parts[0]);
                }
                r = read_some(&mut self.stderr, &mut err_buf) => {
                    self.take(Stream::Stderr, r, &err_buf, &mut parts[1]);
                }
                _ = tick.tick() => {
                    let now = self.clock.now_ms();
                    for (part, stream) in parts.iter_mut().zip([Stream::Stdout, Stream::Stderr]) {
                        if part.since_ms.is_some_and(|t| now.saturating_sub(t) >= PARTIAL_AFTER.as_millis() as u64) {
                            self.emit(stream, part);
                        }
                    }
                }
            }
            if let Err(e) = self.writer.flush()
                && !std::mem::replace(&mut warned, true)
            {
                tracing::warn!(persona = %self.persona, error = %e, "cannot write the persona's log; its lines are dropped");
            }
        }
        // what the last process wrote before it went is still in the pipes
        let [out_part, err_part] = &mut parts;
        for (stream, rx, buf, part) in [
            (Stream::Stdout, self.stdout.take(), &mut out_buf, out_part),
            (Stream::Stderr, self.stderr.take(), &mut err_buf, err_part),
        ] {
            let Some(rx) = rx else { continue };
            // bounded: a process still writing cannot keep the collector here
            for _ in 0..64 {
                match rx.try_read(buf) {
                    Ok(n) if n > 0 => self.take(stream, Ok(n), buf, part),
                    _ => break,
                }
            }
            self.emit(stream, part);
        }
        let _ = self.writer.flush();
    }

    fn take(&mut self, stream: Stream, read: std::io::Result<usize>, buf: &[u8], part: &mut Partial) {
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(persona = %self.persona, stream = stream.as_str(), error = %e, "cannot read the persona's output");
                match stream {
                    Stream::Stdout => self.stdout = None,
                    Stream::Stderr => self.stderr = None,
                }
                return;
            }
        };
        let now = self.clock.now_ms();
        for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(line) => {
                    part.bytes.extend_from_slice(line);
                    self.emit_at(now, stream, part);
                }
                None => {
                    part.bytes.extend_from_slice(piece);
                    part.since_ms.get_or_insert(now);
                    while part.bytes.len() >= MAX_LINE_BYTES {
                        let rest = part.bytes.split_off(MAX_LINE_BYTES);
                        self.push(now, stream, &std::mem::replace(&mut part.bytes, rest));
                    }
                }
            }
        }
    }

    fn emit(&mut self, stream: Stream, part: &mut Partial) {
        if !part.bytes.is_empty() {
            let now = self.clock.now_ms();
            self.emit_at(now, stream, part);
        }
    }

    fn emit_at(&mut self, now: u64, stream: Stream, part: &mut Partial) {
        let mut line = std::mem::take(&mut part.bytes);
        part.since_ms = None;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        for chunk in line.chunks(MAX_LINE_BYTES) {
            self.push(now, stream, chunk);
        }
        if line.is_empty() {
            self.push(now, stream, b"");
        }
        line.clear();
        part.bytes = line;
    }

    fn push(&mut self, now: u64, stream: Stream, text: &[u8]) {
        if let Err(e) = self.writer.push(now, stream, text) {
            tracing::warn!(persona = %self.persona, error = %e, "cannot rotate the persona's log");
        }
    }
}

/// Read from a stream that may have been given up (then wait forever: the other stream and
/// the stop signal still count).
async fn read_some(rx: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> std::io::Result<usize> {
    match rx {
        Some(rx) => match rx.read(buf).await {
            // a read-write FIFO never ends; if it did, do not spin on it
            Ok(0) => std::future::pending().await,
            r => r,
        },
        None => std::future::pending().await,
    }
}
