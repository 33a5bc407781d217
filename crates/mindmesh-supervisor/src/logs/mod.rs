//! Persona output. Each persona process writes its stdout and stderr into two FIFOs of its
//! log directory; the node's collector for that persona reads them, stamps every line with
//! the time it arrived and appends it to numbered files rotated by size ([`files`]), in a
//! plain format ([`format`]) that [`reader`] pages through for `mindmesh logs`.
//!
//! Why FIFOs and not pipes or plain files: a persona outlives its node by design (a restarted
//! node adopts it). A plain file gives no timestamps and can only be rotated by copy and
//! truncate, which loses lines; an anonymous pipe dies with the node and the persona's next
//! write raises SIGPIPE. A FIFO has a name, so a restarted node opens it again and finds what
//! was written while it was away; and each process is given a reading end of its own FIFOs
//! (opened in the child before exec, never read), so a write never finds the pipe without a
//! reader. While no node reads, output waits in the pipe (up to 1 MiB) and then the writer
//! blocks — nothing is lost.

mod collector;
pub mod files;
pub mod format;
pub mod reader;

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mindmesh_core::clock::Clock;
use mindmesh_core::config::LogsConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use files::LogFileInfo;
pub use format::{LogLine, Stream};

use collector::Collector;
use files::{STDERR_FIFO, STDOUT_FIFO};

/// Where one new process of a persona sends its output.
#[derive(Debug)]
pub struct ProcessOutputs {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// FIFOs the child opens for reading before exec and keeps (see the module header).
    pub keep_readers: Vec<CString>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The collectors of this node's personas. Owned by the supervisor task.
pub struct LogBook {
    root: PathBuf,
    cfg: LogsConfig,
    clock: Arc<dyn Clock>,
    running: HashMap<String, Running>,
}

impl LogBook {
    /// `root` is the node's `logs/` directory.
    pub fn new(root: PathBuf, cfg: LogsConfig, clock: Arc<dyn Clock>) -> LogBook {
        LogBook { root, cfg, clock, running: HashMap::new() }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        files::persona_dir(&self.root, name)
    }

    /// Collect the persona's output (its FIFOs created if need be); already collecting is fine.
    pub fn collect(&mut self, name: &str) -> std::io::Result<()> {
        if self.running.get(name).is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir)?;
        let stdout = collector::open_reader(&dir.join(STDOUT_FIFO))?;
        let stderr = collector::open_reader(&dir.join(STDERR_FIFO))?;
        let writer = files::LogWriter::open(&dir, &self.cfg)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            Collector {
                stdout: Some(stdout),
                stderr: Some(stderr),
                writer,
                clock: self.clock.clone(),
                persona: name.to_owned(),
            }
            .run(stop.clone()),
        );
        self.running.insert(name.to_owned(), Running { stop, task });
        Ok(())
    }

    /// The persona left this node (its process is gone): stop collecting once what is left in
    /// its FIFOs is written. The files stay (the node's log janitor decides when they go).
    pub fn release(&mut self, name: &str) {
        if let Some(r) = self.running.remove(name) {
            r.stop.cancel();
        }
    }

    /// Stop every collector and wait until each has written what it read.
    pub async fn shutdown(&mut self) {
        for (_, r) in self.running.drain() {
            r.stop.cancel();
            let _ = r.task.await;
        }
    }
}

/// The outputs for a new process of the persona whose log directory is `dir`; its collector
/// must be running ([`LogBook::collect`]), else there is no reader and this fails at once
/// rather than wait for one.
pub fn outputs(dir: &Path) -> std::io::Result<ProcessOutputs> {
    let open = |fifo: &str| -> std::io::Result<OwnedFd> {
        let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(dir.join(fifo))?;
        // the persona writes with blocking writes: when the pipe is full it waits, never loses
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        Ok(file.into())
    };
    let keep = |fifo: &str| CString::new(dir.join(fifo).as_os_str().as_bytes()).map_err(std::io::Error::other);
    Ok(ProcessOutputs {
        stdout: open(STDOUT_FIFO)?,
        stderr: open(STDERR_FIFO)?,
        keep_readers: vec![keep(STDOUT_FIFO)?, keep(STDERR_FIFO)?],
    })
}

/// Delete a persona's logs (FIFOs included). A persona running here must be released first.
pub fn delete(root: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_dir_all(files::persona_dir(root, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
