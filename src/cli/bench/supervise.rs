//! `mindmesh bench supervise`: a real node supervising N tiny personas (the demo persona in
//! idle mode), then a storm of SIGKILLs, one every `kill_interval_ms`. Measures restart
//! latency (kill → replacement spawned, from the node's own spawn events), the node's RSS,
//! and its CPU time idle and during the storm, with 1 s metrics over every persona.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use mindmesh_node::api::types::{EventsPage, NodeStatus};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::cli::client::{ApiArgs, Client};

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// Personas supervised.
    #[arg(long, default_value_t = 100)]
    pub personas: usize,
    /// Personas killed during the storm (each at most once while kills ≤ personas).
    #[arg(long, default_value_t = 200)]
    pub kills: usize,
    /// Pause between two kills of the storm.
    #[arg(long, default_value_t = 50)]
    pub kill_interval_ms: u64,
    /// Idle period over which the node's CPU time is measured.
    #[arg(long, default_value_t = 30)]
    pub idle_s: u64,
    /// The node's metrics tick (its `[supervisor] metrics_interval_ms`).
    #[arg(long, default_value_t = 1000)]
    pub metrics_interval_ms: u64,
    /// Seed of the order in which personas are killed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    personas: usize,
    kills: usize,
    kill_interval_ms: u64,
    metrics_interval_ms: u64,
    restart_ms_p50: f64,
    restart_ms_p95: f64,
    restart_ms_p99: f64,
    restart_ms_max: f64,
    restarts_measured: usize,
    node_rss_mb_idle: f64,
    node_rss_mb_after_storm: f64,
    node_rss_mb_peak: f64,
    node_cpu_s_idle: f64,
    idle_s: u64,
    node_cpu_percent_idle: f64,
    node_cpu_s_storm: f64,
    storm_s: f64,
    personas_rss_mb_total: f64,
}

pub async fn run(args: SuperviseArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.personas > 0, "--personas must be at least 1");
    let demo = sibling_binary("mindmesh-demo-persona")?;
    let dir = std::env::temp_dir().join(format!("mindmesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench(&args, &demo, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: &SuperviseArgs, demo: &Path, dir: &Path) -> anyhow::Result<Report> {
    let data = dir.join("data");
    let mut config = format!(
        "[node]\nname = \"bench\"\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[supervisor]\nmetrics_interval_ms = {}\nmax_personas = {}\n",
        data.display(),
        args.metrics_interval_ms,
        args.personas.max(1)
    );
    for i in 0..args.personas {
        config.push_str(&format!(
            "[[persona]]\nname = \"p{i:04}\"\ncommand = \"{}\"\nargs = [\"--idle\"]\nrestart = \"always\"\n",
            demo.display()
        ));
    }
    let config_path = dir.join("node.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("node.log"))?;
    eprintln!("starting a node with {} idle personas…", args.personas);
    let mut node = tokio::process::Command::new(std::env::current_exe()?)
        .args(["node", "start", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("start the node")?;
    let node_pid = node.id().context("node pid")?;
    let addr = wait(Duration::from_secs(60), || std::fs::read_to_string(data.join("api.addr")).ok())
        .await
        .context("the node did not start")?;
    let client = Client::new(&ApiArgs { api: format!("http://{}", addr.trim()), token: None })?;
    let status = wait_status(&client, Duration::from_secs(300), |s| {
        s.phases.get("running").copied().unwrap_or(0) == args.personas
    })
    .await
    .context("not every persona reached running")?;
    eprintln!("all {} running; idle for {} s…", status.personas.len(), args.idle_s);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cpu0 = cpu_seconds(node_pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_s)).await;
    let cpu_idle = cpu_seconds(node_pid)? - cpu0;
    let rss_idle = rss_mb(node_pid, "VmRSS:")?;

    let status: NodeStatus = client.get("/api/v1/status").await?;
    let personas_rss_mb_total = status.personas.iter().map(|p| p.rss_bytes as f64).sum::<f64>() / 1048576.0;
    let seq0 = status.last_event_seq;
    let mut targets: Vec<(String, u32)> =
        status.personas.iter().filter_map(|p| p.pid.map(|pid| (p.name.clone(), pid))).collect();
    targets.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(args.seed));
    let kills = args.kills.min(targets.len());
    targets.truncate(kills);
    eprintln!("killing {kills} personas, one every {} ms…", args.kill_interval_ms);
    let cpu_storm0 = cpu_seconds(node_pid)?;
    let storm_start = Instant::now();
    let mut killed_at: Vec<(String, u32, f64)> = Vec::with_capacity(kills);
    let mut tick = tokio::time::interval(Duration::from_millis(args.kill_interval_ms.max(1)));
    for (name, pid) in &targets {
        tick.tick().await;
        let at = now_ms_f64();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL)
            .with_context(|| format!("kill {name} ({pid})"))?;
        killed_at.push((name.clone(), *pid, at));
    }
    let old: HashMap<String, u32> = targets.iter().cloned().collect();
    wait_status(&client, Duration::from_secs(120), |s| {
        s.personas.iter().filter(|p| old.get(&p.name).is_some_and(|&o| p.pid.is_some_and(|n| n != o))).count() == kills
    })
    .await
    .context("not every killed persona came back")?;
    let storm_s = storm_start.elapsed().as_secs_f64();
    let cpu_storm = cpu_seconds(node_pid)? - cpu_storm0;
    let rss_after = rss_mb(node_pid, "VmRSS:")?;
    let rss_peak = rss_mb(node_pid, "VmHWM:")?;

    let spawns = spawn_events(&client, seq0).await?;
    let mut latencies: Vec<f64> = killed_at
        .iter()
        .filter_map(|(name, _, at)| {
            let t = spawns.get(name)?.iter().copied().find(|&ts| ts as f64 >= at.floor())?;
            Some((t as f64 - at).max(0.0))
        })
        .collect();
    latencies.sort_by(f64::total_cmp);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(node_pid as i32), nix::sys::signal::Signal::SIGTERM)?;
    let _ = tokio::time::timeout(Duration::from_secs(60), node.wait()).await;

    if latencies.is_empty() {
        bail!("no restart could be matched to a spawn event");
    }
    Ok(Report {
        personas: args.personas,
        kills,
        kill_interval_ms: args.kill_interval_ms,
        metrics_interval_ms: args.metrics_interval_ms,
        restart_ms_p50: pct(&latencies, 0.50),
        restart_ms_p95: pct(&latencies, 0.95),
        restart_ms_p99: pct(&latencies, 0.99),
        restart_ms_max: *latencies.last().unwrap_or(&0.0),
        restarts_measured: latencies.len(),
        node_rss_mb_idle: rss_idle,
        node_rss_mb_after_storm: rss_after,
        node_rss_mb_peak: rss_peak,
        node_cpu_s_idle: cpu_idle,
        idle_s: args.idle_s,
        node_cpu_percent_idle: 100.0 * cpu_idle / args.idle_s.max(1) as f64,
        node_cpu_s_storm: cpu_storm,
        storm_s,
        personas_rss_mb_total,
    })
}

/// Spawn times (ms) per persona from the node's event log after `seq0`.
async fn spawn_events(client: &Client, seq0: u64) -> anyhow::Result<HashMap<String, Vec<u64>>> {
    let mut after = seq0;
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    loop {
        let page: EventsPage = client.get(&format!("/api/v1/events?after={after}&limit=1000")).await?;
        if page.events.is_empty() {
            break;
        }
        for e in &page.events {
            if e.kind == mindmesh_core::event::EventKind::Spawn {
                out.entry(e.persona.clone()).or_default().push(e.ts_ms);
            }
        }
        after = page.last_seq;
    }
    Ok(out)
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn now_ms_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn rss_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .context("no such field")?
        .parse()?;
    Ok(kb / 1024.0)
}

async fn wait<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(
    client: &Client,
    timeout: Duration,
    cond: impl Fn(&NodeStatus) -> bool,
) -> anyhow::Result<NodeStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = client.get::<NodeStatus>("/api/v1/status").await
            && cond(&s)
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("timed out after {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A companion binary next to this one (same build directory).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(path.is_file(), "{} not found next to {} (build it: cargo build --bins)", name, exe.display());
    Ok(path)
}

fn print_report(r: &Report) {
    println!("personas            {}", r.personas);
    println!("kills               {} (one every {} ms)", r.kills, r.kill_interval_ms);
    println!(
        "restart latency ms  p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  ({} measured, kill -> replacement spawned)",
        r.restart_ms_p50, r.restart_ms_p95, r.restart_ms_p99, r.restart_ms_max, r.restarts_measured
    );
    println!(
        "node RSS MB         idle {:.1}  after storm {:.1}  peak {:.1}",
        r.node_rss_mb_idle, r.node_rss_mb_after_storm, r.node_rss_mb_peak
    );
    println!(
        "node CPU            idle {:.2} s over {} s ({:.2} % of a core, {} ms metrics over all personas)",
        r.node_cpu_s_idle, r.idle_s, r.node_cpu_percent_idle, r.metrics_interval_ms
    );
    println!("                    storm {:.2} s over {:.1} s", r.node_cpu_s_storm, r.storm_s);
    println!("personas RSS MB     {:.0} in total", r.personas_rss_mb_total);
}
