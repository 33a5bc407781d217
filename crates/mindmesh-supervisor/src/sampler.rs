//! OS metrics for the supervised PIDs only (never the whole process table), on a thread of its
//! own so the supervisor's task never blocks on `/proc`: sysinfo for the host every tick and
//! for the supervised processes every few ticks, and one `/proc/<pid>/stat` read per process
//! every tick for CPU and RSS (see [`LeanSampler`] for why).

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

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
    /// Start the sampler thread; readings arrive on `out`. sysinfo refreshes the supervised
    /// processes every `full_every_ticks` readings (disk I/O); CPU and RSS are read each one.
    pub fn spawn(out: mpsc::Sender<Reading>, full_every_ticks: u32) -> std::io::Result<Sampler> {
        let (tx, rx) = std_mpsc::sync_channel::<Request>(1);
        std::thread::Builder::new().name("mindmesh-sampler".into()).spawn(move || run(rx, out, full_every_ticks))?;
        Ok(Sampler { tx })
    }

    /// Ask for a reading; false if the previous one is still in progress.
    pub fn request(&self, ts_ms: u64, pids: Vec<u32>) -> bool {
        self.tx.try_send(Request { ts_ms, pids }).is_ok()
    }
}

fn run(rx: std_mpsc::Receiver<Request>, out: mpsc::Sender<Reading>, full_every_ticks: u32) {
    let Ok(mut sys) =
        System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()))
    else {
        tracing::error!("sysinfo is not supported here: no OS metrics");
        return;
    };
    let cpu_cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let kind = ProcessRefreshKind::nothing().with_memory().with_cpu().with_disk_usage().without_tasks();
    let mut lean = LeanSampler::new();
    let mut previous: Vec<Pid> = Vec::new();
    let mut disk: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut tick: u32 = 0;
    while let Ok(req) = rx.recv() {
        let pids: Vec<Pid> = req.pids.iter().map(|&p| Pid::from_u32(p)).collect();
        let full = tick.is_multiple_of(full_every_ticks.max(1));
        tick = tick.wrapping_add(1);
        let mut processes = HashMap::with_capacity(pids.len());
        if full {
            // sysinfo over exactly the supervised PIDs, plus the ones that just left the list
            // so that its table forgets them (it only drops dead processes it is asked about)
            let mut ask = pids.clone();
            ask.extend(previous.iter().filter(|p| !pids.contains(p)));
            sys.refresh_processes_specifics(ProcessesToUpdate::Some(&ask), true, kind);
            disk.clear();
            for pid in &pids {
                if let Some(p) = sys.process(*pid) {
                    let d = p.disk_usage();
                    disk.insert(pid.as_u32(), (d.total_read_bytes, d.total_written_bytes));
                }
            }
        }
        lean.retain(&req.pids);
        for &pid in &req.pids {
            let Some((rss_bytes, cpu_percent)) = lean.read(pid) else { continue };
            let (disk_read_bytes, disk_written_bytes) = disk.get(&pid).copied().unwrap_or_default();
            processes.insert(pid, ProcessReading { rss_bytes, cpu_percent, disk_read_bytes, disk_written_bytes });
        }
        previous = pids;
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        sys.refresh_cpu_usage();
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

/// CPU and RSS from one file per process, `/proc/<pid>/stat`. sysinfo reads four files per
/// process on every refresh, among them `/proc/<pid>/status`, which the kernel renders at
/// some cost: measured at 500 personas, ~3 % of a core each second for sysinfo against
/// ~0.5 % for this. sysinfo still refreshes the supervised PIDs every
/// `full_every_ticks` (disk I/O totals), and the host every tick.
struct LeanSampler {
    last: HashMap<u32, (u64, Instant)>,
    /// `/proc/<pid>/stat` kept open: a re-read from offset 0 renders it afresh, so a tick
    /// costs one `pread` per process instead of open, stat, read, read, close.
    files: HashMap<u32, std::fs::File>,
    buf: Vec<u8>,
    page_bytes: u64,
    ticks_per_s: f64,
}

impl LeanSampler {
    fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let (page, hz) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::sysconf(libc::_SC_CLK_TCK)) };
        LeanSampler {
            last: HashMap::new(),
            files: HashMap::new(),
            buf: vec![0; 1024],
            page_bytes: if page > 0 { page as u64 } else { 4096 },
            ticks_per_s: if hz > 0 { hz as f64 } else { 100.0 },
        }
    }

    fn retain(&mut self, pids: &[u32]) {
        if self.last.len() > pids.len() || self.files.len() > pids.len() {
            let keep: std::collections::HashSet<u32> = pids.iter().copied().collect();
            self.last.retain(|p, _| keep.contains(p));
            self.files.retain(|p, _| keep.contains(p));
        }
    }

    /// (rss bytes, cpu % of one core since the previous read; 0 on the first)
    fn read(&mut self, pid: u32) -> Option<(u64, f32)> {
        use std::os::unix::fs::FileExt;
        let file = match self.files.entry(pid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(std::fs::File::open(format!("/proc/{pid}/stat")).ok()?)
            }
        };
        let n = match file.read_at(&mut self.buf, 0) {
            Ok(n) if n > 0 => n,
            _ => {
                // the process is gone (a reused PID gets a fresh open next time)
                self.files.remove(&pid);
                self.last.remove(&pid);
                return None;
            }
        };
        let now = Instant::now();
        let (ticks, rss_pages) = parse_stat(&self.buf[..n])?;
        let cpu = match self.last.insert(pid, (ticks, now)) {
            Some((t0, at0)) if ticks >= t0 => {
                let secs = now.duration_since(at0).as_secs_f64();
                if secs > 0.0 { ((ticks - t0) as f64 / self.ticks_per_s / secs * 100.0) as f32 } else { 0.0 }
            }
            _ => 0.0,
        };
        Some((rss_pages * self.page_bytes, cpu))
    }
}

/// utime + stime (fields 14, 15) and rss in pages (field 24) of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &[u8]) -> Option<(u64, u64)> {
    // the command (field 2) may hold spaces and parentheses: fields count from the last ')'
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let rss: i64 = fields.nth(8)?.parse().ok()?;
    Some((utime + stime, rss.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = b"123 (a (b) c) S 1 123 123 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 555 1000000 42 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some((10, 42)));
    }

    #[test]
    fn reads_own_process() {
        let mut s = LeanSampler::new();
        let (rss, cpu) = s.read(std::process::id()).unwrap();
        assert!(rss > 1024 * 1024);
        assert_eq!(cpu, 0.0);
        let t = Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(200) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let (_, cpu) = s.read(std::process::id()).unwrap();
        assert!(cpu > 20.0, "{cpu}");
    }
}
