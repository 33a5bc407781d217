//! What the store costs a node, at the size a node's file reaches in steady state.
//!
//! `cargo bench -p mindmesh-store --bench store` (release). For each persona count (100 and
//! 500; `MINDMESH_BENCH_PERSONAS=100,500`) it fills a file with 24 h of history under the
//! default retention — a tick a minute for 23 h (each becomes one rollup, as a minute of
//! 1-second ticks would), then an hour of 1-second ticks, compacting as a node does — and
//! then measures, on that full file:
//! - `append_samples`, one tick of every persona, with quick-repair on (the default) and off;
//! - `compact` once a minute, as a node runs it (60 × N raw samples rolled up and dropped);
//! - `persona_series` and `host_series` over the last 24 h;
//! - reopening the file after a clean close and after a SIGKILL-like exit.
//!
//! The file lives in a temporary directory (`MINDMESH_BENCH_DIR` to put it elsewhere, e.g.
//! on the disk a node's data dir is on).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mindmesh_core::config::StoreConfig;
use mindmesh_core::metrics::{ErrorKind, HostSample, PersonaSample};
use mindmesh_store::{RedbOptions, RedbStore, Store};

const CHILD_ENV: &str = "MINDMESH_BENCH_CRASH_CHILD";
const MIN_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
/// Ticks measured per configuration once the file is full.
const MEASURED_TICKS: u64 = 300;

fn main() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        crash_child(Path::new(&path));
    }
    let counts: Vec<usize> = std::env::var("MINDMESH_BENCH_PERSONAS")
        .unwrap_or_else(|_| "100,500".into())
        .split(',')
        .map(|n| n.trim().parse().expect("MINDMESH_BENCH_PERSONAS: comma-separated counts"))
        .collect();
    let base = std::env::var_os("MINDMESH_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    println!("mindmesh-store bench: files under {}; {}", base.display(), load());
    for n in counts {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        run(n, &dir.path().join("store.redb"));
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("persona-{i:03}")).collect()
}

/// A sample as a busy persona produces it: every field set, one error kind.
fn sample(ts_ms: u64, i: usize) -> PersonaSample {
    let i = i as u64;
    PersonaSample {
        ts_ms,
        rss_bytes: (200 << 20) + (ts_ms / 1000 % 4096) * 1024 + i,
        peak_rss_bytes: 260 << 20,
        cpu_percent: 12.5 + (ts_ms % 7) as f32,
        disk_read_bytes: 10 << 20,
        disk_written_bytes: ts_ms * 3,
        restarts: 1,
        healthy: Some(true),
        requests: 4,
        errors: 1,
        errors_by_kind: vec![(ErrorKind::Timeout, 1)],
        latency_p50_ms: Some(180.0),
        latency_p95_ms: Some(420.0),
        latency_p99_ms: Some(900.0),
        ttft_p50_ms: Some(60.0),
        queue_depth: 2,
        in_flight: 1,
        tokens_out: 800,
        // a persona without a metrics path (the common case): nothing reported
        reported: None,
    }
}

fn host(ts_ms: u64) -> HostSample {
    HostSample { ts_ms, cpu_percent: 40.0, memory_used_bytes: 8 << 30, memory_total_bytes: 24 << 30, cpu_cores: 2 }
}

fn tick(store: &RedbStore, names: &[String], ts_ms: u64) -> Duration {
    let samples: Vec<(String, PersonaSample)> =
        names.iter().enumerate().map(|(i, n)| (n.clone(), sample(ts_ms, i))).collect();
    let started = Instant::now();
    store.append_samples(ts_ms, &samples, Some(&host(ts_ms))).expect("append_samples");
    started.elapsed()
}

fn run(n: usize, path: &Path) {
    let names = names(n);
    let config = StoreConfig::default();
    println!("\n## {n} personas");
    let mut now = 0;

    // fill: 23 h of a tick a minute, then 1 h of a tick a second; compaction as a node runs it
    let fill_started = Instant::now();
    {
        let store = RedbStore::open(path, config.clone()).expect("open");
        while now < 23 * HOUR_MS {
            tick(&store, &names, now);
            now += MIN_MS;
            if now % (10 * MIN_MS) == 0 {
                store.compact(now).expect("compact");
            }
        }
        while now < 24 * HOUR_MS {
            tick(&store, &names, now);
            now += 1000;
            if now % MIN_MS == 0 {
                store.compact(now).expect("compact");
            }
        }
    }
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "filled 24 h in {:.0} s; file {:.1} MiB",
        fill_started.elapsed().as_secs_f64(),
        file_bytes as f64 / (1 << 20) as f64
    );

    println!("{}", load());
    println!("\n| operation ({n} personas) | p50 | p95 | p99 | max | mean |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut compactions = Vec::new();
    for quick_repair in [true, false] {
        let options = RedbOptions { quick_repair, ..Default::default() };
        let store = RedbStore::open_with(path, config.clone(), options).expect("open");
        let mut ticks = Vec::new();
        for _ in 0..MEASURED_TICKS {
            ticks.push(tick(&store, &names, now));
            now += 1000;
            if now % MIN_MS == 0 {
                let started = Instant::now();
                store.compact(now).expect("compact");
                compactions.push(started.elapsed());
            }
        }
        row(&format!("append_samples, one tick (quick_repair {quick_repair})"), &mut ticks);
    }
    row("compact, once a minute (60 ticks)", &mut compactions);

    let store = RedbStore::open(path, config.clone()).expect("open");
    let from = now - 24 * HOUR_MS;
    for max_points in [10_000, 300] {
        let mut reads = Vec::new();
        let mut points = 0;
        for name in names.iter().step_by((n / 50).max(1)) {
            let started = Instant::now();
            points = store.persona_series(name, from, now, max_points).expect("series").len();
            reads.push(started.elapsed());
        }
        row(&format!("persona_series 24 h, max_points {max_points} ({points} points)"), &mut reads);
    }
    let mut reads = Vec::new();
    let mut points = 0;
    for _ in 0..20 {
        let started = Instant::now();
        points = store.host_series(from, now, 10_000).expect("host series").len();
        reads.push(started.elapsed());
    }
    row(&format!("host_series 24 h ({points} points)"), &mut reads);
    drop(store);

    let mut opens = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        drop(RedbStore::open(path, config.clone()).expect("open"));
        opens.push(started.elapsed());
    }
    row("open after a clean close", &mut opens);
    for quick_repair in [true, false] {
        let mut opens = Vec::new();
        for _ in 0..3 {
            dirty_exit(path, quick_repair);
            let started = Instant::now();
            drop(RedbStore::open(path, config.clone()).expect("open after crash"));
            opens.push(started.elapsed());
        }
        row(&format!("open after a crash (last commit quick_repair {quick_repair})"), &mut opens);
    }
}

/// The machine's load, printed beside the figures: other work on the cores skews them.
fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avg: Vec<&str> = avg.split_whitespace().take(3).collect();
    format!("load average {} on {} cores", avg.join(" "), std::thread::available_parallelism().map_or(0, |n| n.get()))
}

fn row(what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!(
        "| {what} | {} | {} | {} | {} | {} |",
        ms(at(0.5)),
        ms(at(0.95)),
        ms(at(0.99)),
        ms(*times.last().expect("measured")),
        ms(mean)
    );
}

/// Have a child commit once and exit without closing the file, as a SIGKILL would leave it.
fn dirty_exit(path: &Path, quick_repair: bool) {
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, path)
        .env("MINDMESH_BENCH_QUICK_REPAIR", if quick_repair { "1" } else { "0" })
        .status()
        .expect("child");
    assert!(status.success(), "crash child failed: {status}");
}

fn crash_child(path: &Path) -> ! {
    let quick_repair = std::env::var("MINDMESH_BENCH_QUICK_REPAIR").as_deref() == Ok("1");
    let store = RedbStore::open_with(path, StoreConfig::default(), RedbOptions { quick_repair, ..Default::default() })
        .expect("open");
    store.put_state("persona-000", &[7; 100]).expect("commit");
    // no destructor runs: the file is left open, exactly as a kill leaves it
    std::process::exit(0);
}
