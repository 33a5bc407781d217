//! Spawning a persona in its own process group and finding it again: signals go to the whole
//! group, and a process is identified by PID *and* start time so a reused PID is never taken
//! for ours.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Result, SupervisorError};

pub use mindmesh_core::persona_env::{ENV_EXE, ENV_NODE_INSTANCE, ENV_PERSONA_ID, ENV_PORT, ENV_STATE_FILE};

/// Largest log file kept per persona before it is rotated to `.1` at the next spawn.
const MAX_LOG_BYTES: u64 = 16 * 1024 * 1024;

/// Everything needed to start one persona process.
#[derive(Debug, Clone)]
pub struct SpawnPlan {
    pub persona: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing of the node's reaches the process but this.
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    pub log_file: PathBuf,
}

/// Spawn the persona: own process group, stdin closed, stdout and stderr appended to its log
/// file (a file, not a pipe, so the process outlives a node restart without SIGPIPE), and an
/// environment of exactly `plan.env` (the node's own holds its token and keys).
pub fn spawn(plan: &SpawnPlan) -> Result<tokio::process::Child> {
    rotate_log(&plan.log_file);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log_file)
        .map_err(|e| SupervisorError::io(format!("open log {}", plan.log_file.display()), e))?;
    let log_err = log.try_clone().map_err(|e| SupervisorError::io("dup log", e))?;
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .env_clear()
        .envs(&plan.env);
    if let Some(dir) = &plan.working_dir {
        cmd.current_dir(dir);
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    cmd.spawn().map_err(|e| SupervisorError::io(format!("spawn {}", plan.program.display()), e))
}

/// Move a running process into a cgroup. In cgroup v1 a move waits for an RCU grace period
/// (~10 ms), so the supervisor does it off the restart path, right after the spawn, rather
/// than in the child before exec (which would hold up the spawn by as much).
pub fn join_cgroup(pid: u32, procs_files: &[PathBuf]) -> std::io::Result<()> {
    for f in procs_files {
        std::fs::write(f, pid.to_string())?;
    }
    Ok(())
}

fn rotate_log(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
}

/// Signal a whole process group; a group already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, ?signal, error = %e, "cannot signal process group"),
    }
}

/// Does any process of the group still exist?
pub fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// Process start time in clock ticks since boot, from `/proc/<pid>/stat` field 22.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: parse after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); field 22 is the 20th from here
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Is `pid` still the process that was started at `ticks`?
pub fn is_same_process(pid: u32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks) && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()))
        .is_some_and(|state| state == 'Z' || state == 'X')
}

/// A persona process found by its environment marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundProcess {
    pub pid: u32,
    pub start_ticks: u64,
    pub persona: String,
    pub port: Option<u16>,
}

/// Scan `/proc` for group leaders started by this node instance (by the environment marker).
/// Runs once at start-up, so reading every process's environment is affordable there.
pub fn scan_instance(instance: &str) -> Vec<FoundProcess> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let marker = format!("{ENV_NODE_INSTANCE}={instance}");
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let mut mine = false;
        let mut persona = None;
        let mut port = None;
        for var in environ.split(|&b| b == 0) {
            let Ok(var) = std::str::from_utf8(var) else { continue };
            if var == marker {
                mine = true;
            } else if let Some(v) = var.strip_prefix("MINDMESH_PERSONA_ID=") {
                persona = Some(v.to_owned());
            } else if let Some(v) = var.strip_prefix("MINDMESH_PORT=") {
                port = v.parse().ok();
            }
        }
        // children of a persona inherit its environment: only group leaders are personas
        let leader = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).is_ok_and(|g| g.as_raw() as u32 == pid);
        if let (true, true, Some(persona), Some(ticks)) = (mine, leader, persona, start_ticks(pid))
            && !is_zombie(pid)
        {
            found.push(FoundProcess { pid, start_ticks: ticks, persona, port });
        }
    }
    found
}

/// A command naming the node's own executable: `mindmesh demo-persona` runs from any build.
pub const EXE_PLACEHOLDER: &str = "${MINDMESH_EXE}";

/// Resolve a command the way a shell would, then next to the node's own executable, so that
/// companion binaries (the demo persona) work from a build directory without PATH changes.
pub fn resolve_program(command: &str) -> PathBuf {
    if command == EXE_PLACEHOLDER
        && let Ok(exe) = std::env::current_exe()
    {
        return exe;
    }
    if command.contains('/') {
        return PathBuf::from(command);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(command);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        // test binaries live one level below the build directory (`target/debug/deps`)
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            let candidate = d.join(command);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_identifies_this_process() {
        let me = std::process::id();
        let t = start_ticks(me).expect("own stat");
        assert!(is_same_process(me, t));
        assert!(!is_same_process(me, t + 1));
        assert_eq!(start_ticks(u32::MAX - 1), None);
    }

    #[test]
    fn resolve_program_searches_path() {
        assert_eq!(resolve_program("/bin/sh"), PathBuf::from("/bin/sh"));
        assert!(resolve_program("sh").is_absolute());
    }
}
