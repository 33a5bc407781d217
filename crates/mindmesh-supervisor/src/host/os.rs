//! The real host: process groups and signals (`process`), pidfds for adopted processes
//! (`pidfd`), `/proc` for finding and sampling (`process`, `sampler`), HTTP for health and
//! state (`health`), and cgroups (`cgroup`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use mindmesh_core::config::CgroupMode;
use mindmesh_core::lifecycle::ExitStatus;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use super::{ProcessHost, SampleSource, Sig, Spawned};
use crate::cgroup::Cgroups;
use crate::error::{Result, SupervisorError};
use crate::health::Prober;
use crate::pidfd;
use crate::process::{self, FoundProcess, SpawnPlan};
use crate::sampler::{Reading, Sampler};

/// Tries at a free port before giving up (a port the OS hands out may be one of ours).
const PORT_TRIES: usize = 16;

#[derive(Debug, Clone)]
pub struct OsHost {
    prober: Prober,
}

impl OsHost {
    /// A host whose health probes give up after `health_timeout_ms`.
    pub fn new(health_timeout_ms: u64) -> Result<OsHost> {
        let prober = Prober::new(health_timeout_ms)
            .map_err(|e| SupervisorError::io("health client", std::io::Error::other(e)))?;
        Ok(OsHost { prober })
    }
}

fn signal(sig: Sig) -> Signal {
    match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
        Sig::Stop => Signal::SIGSTOP,
        Sig::Cont => Signal::SIGCONT,
    }
}

fn exit_status(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        _ => ExitStatus::Unknown,
    }
}

impl Sampler {
    fn boxed(self) -> Box<dyn SampleSource> {
        Box::new(self)
    }
}

impl SampleSource for Sampler {
    fn request(&self, ts_ms: u64, pids: Vec<u32>) -> bool {
        Sampler::request(self, ts_ms, pids)
    }
}

impl ProcessHost for OsHost {
    fn check_program(
        &self,
        command: &str,
        resolved: &std::path::Path,
        working_dir: Option<&std::path::Path>,
    ) -> std::result::Result<(), String> {
        process::check_program(command, resolved, working_dir)
    }

    fn spawn(&self, plan: &SpawnPlan) -> Result<Spawned> {
        let mut child = process::spawn(plan)?;
        let pid = child.id().ok_or_else(|| SupervisorError::Conflict("spawned child has no pid".into()))?;
        let start_ticks = process::start_ticks(pid).unwrap_or(0);
        let persona = plan.persona.clone();
        let exited = Box::pin(async move {
            match child.wait().await {
                Ok(s) => exit_status(s),
                Err(e) => {
                    tracing::warn!(persona, error = %e, "wait for child failed");
                    ExitStatus::Unknown
                }
            }
        });
        Ok(Spawned { pid, start_ticks, exited })
    }

    fn signal_group(&self, pgid: u32, sig: Sig) {
        process::signal_group(pgid, signal(sig));
    }

    fn group_alive(&self, pgid: u32) -> bool {
        process::group_alive(pgid)
    }

    fn watch_exit(&self, pid: u32) -> Option<BoxFuture<'static, ()>> {
        let fd = pidfd::open(pid)?;
        Some(Box::pin(pidfd::exited(fd)))
    }

    fn scan_instance(&self, instance: &str) -> Vec<FoundProcess> {
        process::scan_instance(instance)
    }

    /// The OS picks a free port; ports of our running personas are never handed out twice.
    fn free_port(&self, in_use: &HashSet<u16>) -> Result<u16> {
        for _ in 0..PORT_TRIES {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| SupervisorError::io("pick a port", e))?;
            let port = l.local_addr().map_err(|e| SupervisorError::io("pick a port", e))?.port();
            if !in_use.contains(&port) {
                return Ok(port);
            }
        }
        Err(SupervisorError::Conflict("no free port found".into()))
    }

    fn probe(&self, port: u16, path: &str) -> BoxFuture<'static, bool> {
        let prober = self.prober.clone();
        let path = path.to_owned();
        Box::pin(async move { prober.probe(port, &path).await })
    }

    fn save_state(
        &self,
        port: u16,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'static, std::result::Result<Option<Vec<u8>>, String>> {
        let prober = self.prober.clone();
        Box::pin(async move { prober.save_state(port, timeout, max_bytes).await })
    }

    fn fetch_metrics(
        &self,
        port: u16,
        path: &str,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'static, std::result::Result<Option<Vec<u8>>, String>> {
        let prober = self.prober.clone();
        let path = path.to_owned();
        Box::pin(async move { prober.fetch(port, &path, timeout, max_bytes).await })
    }

    fn sampler(&self, out: mpsc::Sender<Reading>, full_every_ticks: u32) -> std::io::Result<Box<dyn SampleSource>> {
        Ok(Sampler::spawn(out, full_every_ticks)?.boxed())
    }

    fn cgroups(&self, mode: CgroupMode, instance: &str) -> Option<Cgroups> {
        Cgroups::detect(mode, instance)
    }

    /// Variables whose name or value is not UTF-8 are left out: no allowlisted one is.
    fn node_environment(&self) -> BTreeMap<String, String> {
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
    }

    fn node_exe(&self) -> Option<String> {
        std::env::current_exe().ok().map(|p| p.display().to_string())
    }

    /// `process::spawn` points the child's stdout and stderr at the persona's FIFOs.
    fn captures_output(&self) -> bool {
        true
    }
}
