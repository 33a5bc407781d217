//! `mindmesh-faults`: real faults against real nodes. N `mindmesh` node processes on loopback
//! form a mesh; each run places a few demo personas on a node that does not lead, then
//! SIGKILLs that node (or freezes it with SIGSTOP), and measures until every one of them is
//! healthy on another node: detection (the first moved) and failover (all healthy elsewhere).
//! Throughout, and after the node comes back (restarted, or SIGCONT), it checks the invariant
//! that matters: no persona runs twice (two live processes with its name), and nothing the
//! mesh moved away is resurrected. The report gives each run and p50/p99/max.
//!
//! `cargo build --release && target/release/mindmesh-faults --runs 20` (the numbers in
//! docs/benchmarks.md); `--pause` freezes instead of killing; `--json` for one line per run.

mod node;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use node::{Node, running_personas};

#[derive(Debug, Parser)]
#[command(about = "Kill or freeze real mindmesh nodes and measure failover")]
struct Args {
    /// Nodes in the mesh (3–5 is the benchmark's range).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Personas placed on the victim of each run.
    #[arg(long, default_value_t = 3)]
    personas: usize,
    /// Freeze the victim (SIGSTOP, then SIGCONT) instead of killing it.
    #[arg(long)]
    pause: bool,
    /// The `mindmesh` executable (default: beside this one).
    #[arg(long)]
    mindmesh: Option<PathBuf>,
    /// Longest wait for a failover before the run counts as failed.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Debug, Clone)]
struct Run {
    victim: String,
    /// From the fault to the first persona placed elsewhere.
    detection_ms: Option<u64>,
    /// From the fault to every persona healthy elsewhere.
    failover_ms: Option<u64>,
    /// Samples in which some persona ran twice.
    duplicate_samples: u32,
    /// The victim ran one of them again after it came back.
    resurrected: bool,
}

const POLL: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.nodes >= 3, "--nodes: at least 3, so a majority survives a lost node");
    let exe = match args.mindmesh.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("mindmesh"),
    };
    anyhow::ensure!(exe.exists(), "no mindmesh executable at {} (build it, or pass --mindmesh)", exe.display());
    let root = tempfile::Builder::new().prefix("mindmesh-faults").tempdir()?;
    let mut nodes = start_mesh(&exe, root.path(), args.nodes).await?;
    eprintln!("mesh of {} nodes up; {} runs of {} personas each", args.nodes, args.runs, args.personas);

    let mut runs = Vec::new();
    for i in 0..args.runs {
        let r = match one_run(&mut nodes, i, &args).await {
            Ok(r) => r,
            Err(e) => {
                drop(nodes);
                let kept = root.keep();
                return Err(e.context(format!("run {i} (the nodes' logs are kept in {})", kept.display())));
            }
        };
        if args.json {
            println!(
                "{}",
                json!({"run": i, "victim": r.victim, "detection_ms": r.detection_ms, "failover_ms": r.failover_ms,
                       "duplicate_samples": r.duplicate_samples, "resurrected": r.resurrected})
            );
        } else {
            println!(
                "run {i:>3}  victim {:<4} detection {:>6} ms  failover {:>6} ms  duplicates {}  resurrected {}",
                r.victim,
                r.detection_ms.map_or("-".into(), |v| v.to_string()),
                r.failover_ms.map_or("-".into(), |v| v.to_string()),
                r.duplicate_samples,
                r.resurrected
            );
        }
        runs.push(r);
    }
    Ok(summary(&runs, &args))
}

/// The first node founds the mesh, the others join it; wait until all see the same members.
async fn start_mesh(exe: &std::path::Path, root: &std::path::Path, n: usize) -> anyhow::Result<Vec<Node>> {
    let first = Node::start(exe, root, "n1", None)?;
    wait(Duration::from_secs(30), "n1 leads", || async { Some(leader(&first).await? == "n1") }).await?;
    let status = first.get("/api/v1/status").await?;
    let addr = status["mesh"]["listen"][0].as_str().context("a mesh address")?.to_owned();
    let key = first.key_file();
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(Node::start(exe, root, &format!("n{i}"), Some((&addr, &key)))?);
    }
    for node in &nodes {
        // voters, not only members: a mesh whose third node is still a learner cannot lose one
        wait(Duration::from_secs(60), "all members voters", || async {
            let s = node.get("/api/v1/status").await.ok()?;
            let nodes = s["mesh"]["nodes"].as_array()?;
            let voters = nodes.iter().filter(|m| m["role"] == "leader" || m["role"] == "follower").count();
            Some(nodes.len() == n && voters == n.min(5) && s["mesh"]["leader"].is_string())
        })
        .await?;
    }
    Ok(nodes)
}

async fn leader(node: &Node) -> Option<String> {
    node.get("/api/v1/status").await.ok()?["mesh"]["leader"].as_str().map(str::to_owned)
}

async fn one_run(nodes: &mut [Node], i: usize, args: &Args) -> anyhow::Result<Run> {
    let lead_name = leader(&nodes[0]).await.context("a leader")?;
    let lead = nodes.iter().position(|n| n.name == lead_name).context("leader among the nodes")?;
    let others: Vec<usize> = (0..nodes.len()).filter(|&k| k != lead).collect();
    let v = others[i % others.len()];
    let victim = nodes[v].name.clone();
    let prefix = format!("f{i}-");
    let names: Vec<String> = (0..args.personas).map(|k| format!("{prefix}{k}")).collect();
    for name in &names {
        let spec = json!({"name": name, "command": "${MINDMESH_EXE}", "args": ["demo-persona", "--tokens", "4"],
                          "health_path": "/health", "importance": "user_facing"});
        nodes[lead].post(&format!("/api/v1/personas?node={victim}"), spec).await?;
    }
    let lead_node = &nodes[lead];
    wait(Duration::from_secs(30), "personas healthy on the victim", || async {
        let list = lead_node.get("/api/v1/personas").await.ok()?;
        Some(names.iter().all(|n| healthy_on(&list, n).is_some_and(|node| node == victim)))
    })
    .await?;

    let fault = Instant::now();
    if args.pause {
        nodes[v].signal(Signal::SIGSTOP)?;
    } else {
        nodes[v].kill9();
    }
    let mut r =
        Run { victim: victim.clone(), detection_ms: None, failover_ms: None, duplicate_samples: 0, resurrected: false };
    let timeout = Duration::from_secs(args.timeout_s);
    while fault.elapsed() < timeout {
        if running_personas(&prefix).values().any(|pids| pids.len() > 1) {
            r.duplicate_samples += 1;
        }
        if let Ok(list) = nodes[lead].get("/api/v1/personas").await {
            let placed = |n: &String| placed_on(&list, n).is_some_and(|node| node != victim);
            if r.detection_ms.is_none() && names.iter().any(placed) {
                r.detection_ms = Some(fault.elapsed().as_millis() as u64);
            }
            if names.iter().all(|n| healthy_on(&list, n).is_some_and(|node| node != victim)) {
                r.failover_ms = Some(fault.elapsed().as_millis() as u64);
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }

    // the victim comes back: it must run none of them again
    if args.pause {
        nodes[v].signal(Signal::SIGCONT)?;
    } else {
        nodes[v].spawn()?;
    }
    let back = &nodes[v];
    wait(Duration::from_secs(30), "the victim back with a lease", || async {
        let s = back.get("/api/v1/status").await.ok()?;
        Some(s["mesh"]["lease"]["held"] == true)
    })
    .await?;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        if running_personas(&prefix).values().any(|pids| pids.len() > 1) {
            r.resurrected = true;
        }
        tokio::time::sleep(POLL).await;
    }
    for name in &names {
        let _ = nodes[lead].delete(&format!("/api/v1/personas/{name}")).await;
    }
    Ok(r)
}

/// The node a persona is placed on, if it is running and healthy there.
fn healthy_on<'a>(list: &'a Value, name: &str) -> Option<&'a str> {
    let p = list.as_array()?.iter().find(|p| p["name"] == name)?;
    (p["phase"] == "running" && p["health"] == "healthy").then(|| p["node"].as_str()).flatten()
}

fn placed_on<'a>(list: &'a Value, name: &str) -> Option<&'a str> {
    list.as_array()?.iter().find(|p| p["name"] == name)?["node"].as_str()
}

async fn wait<F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {} s", timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Print p50/p99/max and the invariants; true if every run failed over with no duplicate.
fn summary(runs: &[Run], args: &Args) -> bool {
    let pct = |mut v: Vec<u64>, q: f64| -> Option<u64> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i])
    };
    let detection: Vec<u64> = runs.iter().filter_map(|r| r.detection_ms).collect();
    let failover: Vec<u64> = runs.iter().filter_map(|r| r.failover_ms).collect();
    let failed = runs.iter().filter(|r| r.failover_ms.is_none()).count();
    let duplicates: u32 = runs.iter().map(|r| r.duplicate_samples).sum();
    let resurrected = runs.iter().filter(|r| r.resurrected).count();
    let s = json!({
        "fault": if args.pause { "sigstop" } else { "sigkill" },
        "nodes": args.nodes, "runs": runs.len(), "personas_per_run": args.personas,
        "detection_ms": {"p50": pct(detection.clone(), 0.5), "p99": pct(detection.clone(), 0.99), "max": detection.iter().max()},
        "failover_ms": {"p50": pct(failover.clone(), 0.5), "p99": pct(failover.clone(), 0.99), "max": failover.iter().max()},
        "runs_not_failed_over": failed, "duplicate_samples": duplicates, "runs_resurrected": resurrected,
    });
    if args.json {
        println!("{s}");
    } else {
        println!(
            "\n{} runs, {} nodes, {} personas each ({}):\n  detection p50 {} ms, p99 {} ms\n  failover  p50 {} ms, p99 {} ms, max {} ms\n  not failed over: {failed}; duplicate samples: {duplicates}; resurrected: {resurrected}",
            runs.len(),
            args.nodes,
            args.personas,
            s["fault"].as_str().unwrap_or_default(),
            s["detection_ms"]["p50"],
            s["detection_ms"]["p99"],
            s["failover_ms"]["p50"],
            s["failover_ms"]["p99"],
            s["failover_ms"]["max"],
        );
    }
    failed == 0 && duplicates == 0 && resurrected == 0
}
