//! The fence guard: a small process beside the node, in a session of its own, that enforces
//! the node's lease even when the node cannot — SIGKILLed, or frozen (SIGSTOP, a stalled VM).
//! Persona processes outlive their node by design (a restarted node adopts them), so without
//! it a dead node's personas would run on beside their replacements after a failover.
//!
//! The node writes its lease's expiry (Unix ms) to `<data_dir>/lease` while it may run
//! personas ([`super::fence`]). The guard reads it every [`POLL`]: once it has passed, it
//! SIGKILLs every process group this node instance started (found by their environment
//! marker). A node restarted in time keeps writing and keeps its personas. The guard leaves
//! when its node is gone and nothing of it runs, or when a newer guard took over its pid file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mindmesh_supervisor::process::{scan_instance, signal_group, start_ticks};
use nix::sys::signal::Signal;

use super::fence::{LEASE_FILE, read_lease};

/// How often the lease file is read.
pub const POLL: Duration = Duration::from_millis(100);
/// The guard's pid file, so a new node's guard replaces an old one.
pub const PID_FILE: &str = "fence-guard.pid";
/// Time between two warnings about a file the guard cannot read.
const COMPLAIN_EVERY: Duration = Duration::from_secs(5);
/// The one variable of the node's environment the guard gets: its log filter.
pub const GUARD_ENV_KEPT: &str = "RUST_LOG";

/// What the guard watches.
#[derive(Debug, Clone)]
pub struct GuardArgs {
    pub data_dir: PathBuf,
    /// The node instance whose processes it kills.
    pub instance: String,
    pub node_pid: u32,
    /// The node's start time (`/proc/<pid>/stat`), so a reused PID is not taken for it.
    pub node_start_ticks: u64,
}

/// Start the guard for this node: `exe fence-guard …` in a new session, so signals to the
/// node's group and the node's death leave it running. It needs nothing of the node's
/// environment (it reads files and `/proc`, and signals), so it gets none of it — not the
/// node's token or keys — but the log filter.
pub fn spawn(exe: &Path, data_dir: &Path, instance: &str) -> std::io::Result<Child> {
    let me = std::process::id();
    let ticks = start_ticks(me).unwrap_or(0);
    let mut cmd = Command::new(exe);
    cmd.arg("fence-guard")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--instance", instance, "--node-pid", &me.to_string(), "--node-start-ticks", &ticks.to_string()])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(filter) = std::env::var_os(GUARD_ENV_KEPT) {
        cmd.env(GUARD_ENV_KEPT, filter);
    }
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
}

/// The guard's loop; returns when its node is gone with nothing left running, or replaced.
pub fn run(args: &GuardArgs) {
    let pid_file = args.data_dir.join(PID_FILE);
    let me = std::process::id();
    if let Err(e) = std::fs::write(&pid_file, me.to_string()) {
        tracing::error!(error = %e, "fence guard cannot write its pid file");
    }
    tracing::info!(instance = %args.instance, node_pid = args.node_pid, "fence guard watching the node's lease");
    // the last expiry read; None until one was read (or the file was found missing)
    let mut last_until_ms: Option<u64> = None;
    let mut complained: Option<std::time::Instant> = None;
    loop {
        std::thread::sleep(POLL);
        match read_u64(&pid_file) {
            Ok(Some(pid)) if pid == u64::from(me) => {}
            // a newer guard watches now (or the data dir is gone)
            Ok(_) => return,
            // cannot tell (out of descriptors, say): keep watching rather than leave unguarded
            Err(e) => complain(&mut complained, "fence guard cannot read its pid file", &e),
        }
        let node_alive = start_ticks(args.node_pid) == Some(args.node_start_ticks);
        // no file: no lease; a file that cannot be read (whole): the last expiry read stands,
        // and with none read yet nothing is killed — a read error is no evidence that the
        // lease ran out, and killing healthy personas for want of a descriptor is the very
        // failure this guard must not add
        let until_ms = match read_lease(&args.data_dir.join(LEASE_FILE)) {
            Ok(v) => v.unwrap_or(0),
            Err(e) => {
                complain(&mut complained, "fence guard cannot read the lease file", &e);
                match last_until_ms {
                    Some(v) => v,
                    None => continue,
                }
            }
        };
        last_until_ms = Some(until_ms);
        if now_ms() < until_ms {
            continue;
        }
        let found = scan_instance(&args.instance);
        for p in &found {
            signal_group(p.pid, Signal::SIGKILL);
        }
        if !found.is_empty() {
            tracing::warn!(
                killed = found.len(),
                node_alive,
                "fence guard: the node's lease ran out; its persona processes are killed"
            );
        }
        if !node_alive {
            let _ = std::fs::remove_file(&pid_file);
            return;
        }
        // the node lives but is fenced: it stops its personas itself; look less often
        std::thread::sleep(POLL * 4);
    }
}

/// The number in a small file: `Ok(None)` when it is missing or holds no number, `Err` when
/// it cannot be read.
fn read_u64(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Warn about a read that failed, at most once per [`COMPLAIN_EVERY`].
fn complain(last: &mut Option<std::time::Instant>, what: &str, e: &std::io::Error) {
    if last.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY) {
        *last = Some(std::time::Instant::now());
        tracing::warn!(error = %e, "{what}; the last expiry read stands, nothing is killed for want of a read");
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_the_guard_cannot_read_is_no_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(PID_FILE);
        assert_eq!(read_u64(&file).unwrap(), None, "missing: the guard leaves");
        std::fs::write(&file, "42\n").unwrap();
        assert_eq!(read_u64(&file).unwrap(), Some(42));
        // a read that fails (here: a directory; in production EMFILE) is an error, not "gone"
        assert!(read_u64(dir.path()).is_err());
    }
}
