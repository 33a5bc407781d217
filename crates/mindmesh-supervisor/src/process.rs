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
use crate::logs::ProcessOutputs;

pub use mindmesh_core::persona_env::{ENV_EXE, ENV_NODE_INSTANCE, ENV_PERSONA_ID, ENV_PORT, ENV_STATE_FILE};

/// Everything needed to start one persona process.
#[derive(Debug, Clone)]
pub struct SpawnPlan {
    pub persona: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing of the node's reaches the process but this.
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// The persona's log directory, whose FIFOs a collector reads (see [`crate::logs`]);
    /// None: the output is discarded.
    pub log_dir: Option<PathBuf>,
}

/// Spawn the persona: own process group, stdin closed, stdout and stderr into its log FIFOs
/// (named, so the process outlives a node restart without SIGPIPE; see [`crate::logs`]), and
/// an environment of exactly `plan.env` (the node's own holds its token and keys).
pub fn spawn(plan: &SpawnPlan) -> Result<tokio::process::Child> {
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args).stdin(Stdio::null()).process_group(0).env_clear().envs(&plan.env);
    match &plan.log_dir {
        Some(dir) => {
            let ProcessOutputs { stdout, stderr, keep_readers } = crate::logs::outputs(dir)
                .map_err(|e| SupervisorError::io(format!("open the log FIFOs in {}", dir.display()), e))?;
            cmd.stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
            // SAFETY: between fork and exec only `open` runs (async-signal-safe) on paths
            // prepared before the fork; nothing allocates. The descriptors are opened without
            // O_CLOEXEC on purpose: the program keeps them, so its FIFOs always have a reader.
            unsafe {
                cmd.pre_exec(move || {
                    for path in &keep_readers {
                        if libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    // SAFETY: only signal(2) runs between fork and exec (async-signal-safe). The node ignores
    // SIGXFSZ (a full store must fail in order, not kill it), and an ignored signal stays
    // ignored across exec: a persona gets the default it would have anywhere else.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
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

/// Would a spawn of `command` (resolved to `resolved` by [`resolve_program`]) find a program to
/// run? The reason it would not, in the words of the spawn's own error: checked before a
/// persona is committed, so a typo is refused at once instead of crash-looping on its node.
pub fn check_program(command: &str, resolved: &Path, working_dir: Option<&Path>) -> std::result::Result<(), String> {
    let path = match working_dir {
        Some(dir) if resolved.is_relative() && command.contains('/') => dir.join(resolved),
        _ => resolved.to_path_buf(),
    };
    if !command.contains('/') && resolved == Path::new(command) {
        let on = std::env::var("PATH").unwrap_or_default();
        return Err(format!("not found on PATH ({on}) nor beside the node's executable"));
    }
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{}: no such file", path.display()),
        _ => format!("{}: {e}", path.display()),
    })?;
    if meta.is_dir() {
        return Err(format!("{} is a directory", path.display()));
    }
    if nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(format!("{} is not executable by the node's user", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_program_names_what_a_spawn_would_trip_on() {
        let dir = tempfile::tempdir().unwrap();
        let check = |c: &str| check_program(c, &resolve_program(c), None);
        assert_eq!(check("sh"), Ok(()));
        assert_eq!(check("/bin/sh"), Ok(()));
        assert!(check("/nonexistent/x").unwrap_err().contains("no such file"));
        assert!(check("mindmesh-surely-not-on-path").unwrap_err().contains("not found on PATH"));
        assert!(check(dir.path().to_str().unwrap()).unwrap_err().contains("is a directory"));
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(check(plain.to_str().unwrap()).unwrap_err().contains("not executable"));
        // a relative path is looked up in the persona's working directory
        assert!(
            check_program("./plain", Path::new("./plain"), Some(dir.path())).unwrap_err().contains("not executable")
        );
    }

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
