//! OS metrics with sysinfo, refreshed for the supervised PIDs only (never the whole process
//! table), on a thread of its own so the supervisor's task never blocks on `/proc`.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;

use mindmesh_core::metrics::HostSample;
use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};
use tokio::sync::mpsc;

/// One process at one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessReading {
    pub rss_bytes: u64,
    pub cpu_percent: f32,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub ts_ms: u64,
    pub processes: HashMap<u32, ProcessReading>,
    pub host: HostSample,
}

/// A request: sample these PIDs, stamp the result with `ts_ms`.
struct Request {
    ts_ms: u64,
    pids: Vec<u32>,
}

/// The sampler thread's inbox. Capacity 1: if a tick is still being sampled, the next is
/// skipped rather than queued (stale samples are worth nothing).
pub struct Sampler {
    tx: std_mpsc::SyncSender<Request>,
}

impl Sampler {
    /// Start the sampler thread; readings arrive on `out`.
    pub fn spawn(out: mpsc::Sender<Reading>) -> std::io::Result<Sampler> {
        let (tx, rx) = std_mpsc::sync_channel::<Request>(1);
        std::thread::Builder::new().name("mindmesh-sampler".into()).spawn(move || run(rx, out))?;
        Ok(Sampler { tx })
    }

    /// Ask for a reading; false if the previous one is still in progress.
    pub fn request(&self, ts_ms: u64, pids: Vec<u32>) -> bool {
        self.tx.try_send(Request { ts_ms, pids }).is_ok()
    }
}

fn run(rx: std_mpsc::Receiver<Request>, out: mpsc::Sender<Reading>) {
    let Ok(mut sys) =
        System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()))
    else {
        tracing::error!("sysinfo is not supported here: no OS metrics");
        return;
    };
    let cpu_cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let kind = ProcessRefreshKind::nothing().with_memory().with_cpu().with_disk_usage().without_tasks();
    let mut known: Vec<Pid> = Vec::new();
    while let Ok(req) = rx.recv() {
        let pids: Vec<Pid> = req.pids.iter().map(|&p| Pid::from_u32(p)).collect();
        // forget processes no longer supervised, so the table stays as small as the PID list
        known.retain(|p| pids.contains(p));
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
        known.clone_from(&pids);
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        sys.refresh_cpu_usage();
        let processes = pids
            .iter()
            .filter_map(|pid| {
                let p = sys.process(*pid)?;
                let disk = p.disk_usage();
                Some((
                    pid.as_u32(),
                    ProcessReading {
                        rss_bytes: p.memory(),
                        cpu_percent: p.cpu_usage(),
                        disk_read_bytes: disk.total_read_bytes,
                        disk_written_bytes: disk.total_written_bytes,
                    },
                ))
            })
            .collect();
        let host = HostSample {
            ts_ms: req.ts_ms,
            cpu_percent: sys.global_cpu_usage(),
            memory_used_bytes: sys.used_memory(),
            memory_total_bytes: sys.total_memory(),
            cpu_cores,
        };
        if out.blocking_send(Reading { ts_ms: req.ts_ms, processes, host }).is_err() {
            break; // the supervisor is gone
        }
    }
}
