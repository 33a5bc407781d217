//! `mindmesh bench gateway`: what the gateway costs and whether priority holds.
//!
//! 1. Overhead: a node (a child process, as in production) supervising one demo persona in
//!    steady mode with no added latency. The same load generator, one run each, sends chat
//!    completions directly to the persona's port and through the node's gateway, with 1 and
//!    64 keep-alive connections: requests/s and latency p50/p99 side by side.
//! 2. Priority: a node whose gateway admits `--node-in-flight` requests at once, two demo
//!    personas with a fixed latency at priority 90 and 10. The high-priority one's p99 alone,
//!    then again while the low-priority one floods the node with 64 connections (the node's
//!    queue always full): it should stay within 2× of its unloaded p99.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::load::{self, Run, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration_s: f64,
    /// Unmeasured seconds before each run (connections open, pools and caches warm).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Connection counts of the overhead runs.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub concurrency: Vec<usize>,
    /// Added latency of the two personas of the priority runs.
    #[arg(long, default_value_t = 50)]
    pub priority_latency_ms: u64,
    /// The gateway's node-wide concurrency in the priority runs (what the flood saturates).
    #[arg(long, default_value_t = 16)]
    pub node_in_flight: u32,
    /// Connections of the high-priority client.
    #[arg(long, default_value_t = 8)]
    pub high_concurrency: usize,
    /// Added latency of a second overhead persona, run at the highest connection count: what
    /// the gateway costs when the persona, not the CPU, sets the pace (0: skip).
    #[arg(long, default_value_t = 10)]
    pub paced_latency_ms: u64,
    /// OS threads of the load generator (each with a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub load_threads: usize,
    /// Worker threads of the node's runtime (TOKIO_WORKER_THREADS); default: the node's own.
    #[arg(long)]
    pub node_threads: Option<usize>,
    /// Rounds of the priority runs (alone, then under the flood), for a median of noisy tails.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Skip the priority runs.
    #[arg(long)]
    pub no_priority: bool,
    /// The demo persona binary (default: next to this one).
    #[arg(long)]
    pub demo_bin: Option<PathBuf>,
    /// Print the results as JSON too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    run: String,
    concurrency: usize,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ok: u64,
    errors: u64,
}

impl Row {
    fn new(run: &str, concurrency: usize, r: &Run) -> Row {
        Row {
            run: run.to_owned(),
            concurrency,
            requests_per_s: r.per_s(),
            p50_ms: r.quantile_ms(0.5),
            p99_ms: r.quantile_ms(0.99),
            ok: r.ok,
            errors: r.errors,
        }
    }
}

const BODY: &str = r#"{"model":"MODEL","messages":[{"role":"user","content":"Say hello."}]}"#;

pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("where is this binary?")?;
    let demo = match &args.demo_bin {
        Some(p) => p.clone(),
        None => exe.with_file_name("mindmesh-demo-persona"),
    };
    anyhow::ensure!(demo.exists(), "demo persona binary not found at {} (use --demo-bin)", demo.display());
    let warmup = Duration::from_secs_f64(args.warmup_s);
    let duration = Duration::from_secs_f64(args.duration_s);
    let mut rows = Vec::new();
    println!(
        "host: {} cores, load average {}; load generator: {} thread(s); node runtime: {} worker thread(s)",
        cores(),
        load_average(),
        args.load_threads,
        args.node_threads.map_or_else(|| "default".to_owned(), |n| n.to_string())
    );

    // ---- overhead: direct vs gateway
    {
        let paced = args.paced_latency_ms.to_string();
        let mut personas = persona_toml("bench", &demo, &["--idle"], 50, 1024);
        if args.paced_latency_ms > 0 {
            personas += &persona_toml("paced", &demo, &["--idle", "--latency-ms", &paced], 50, 1024);
        }
        let gw = "[gateway]\nmax_in_flight = 4096\nmax_queued = 4096\n";
        let node = BenchNode::start(&exe, gw, &personas, args.node_threads).await?;
        let mut groups = vec![("bench", args.concurrency.clone())];
        if args.paced_latency_ms > 0 {
            groups.push(("paced", vec![args.concurrency.iter().copied().max().unwrap_or(64)]));
        }
        for (name, conns) in groups {
            let port = node.persona_port(name).await?;
            let pids =
                [("persona", node.persona_pid(name).await?), ("node", node.child.id()), ("load", std::process::id())];
            let body = BODY.replace("MODEL", name);
            let direct =
                Target::post_json(SocketAddr::from(([127, 0, 0, 1], port)), "/v1/chat/completions", None, &body);
            let via = Target::post_json(node.api, "/v1/chat/completions", Some(&node.token), &body);
            match name {
                "bench" => {
                    println!("\noverhead: demo persona (steady, no added latency), {} s per run", args.duration_s)
                }
                _ => println!(
                    "\noverhead: demo persona with {} ms added latency, {} s per run",
                    args.paced_latency_ms, args.duration_s
                ),
            }
            println!(
                "{:<10} {:>5} {:>12} {:>9} {:>9} {:>8}   CPU µs per request (persona / node / load generator)",
                "run", "conns", "req/s", "p50_ms", "p99_ms", "errors"
            );
            for c in conns {
                let cpu0 = cpu_us(&pids);
                let d = load::run(&direct, c, args.load_threads, warmup, duration).await?;
                let cpu1 = cpu_us(&pids);
                let g = load::run(&via, c, args.load_threads, warmup, duration).await?;
                let cpu2 = cpu_us(&pids);
                for (run, r, before, after) in [("direct", &d, &cpu0, &cpu1), ("gateway", &g, &cpu1, &cpu2)] {
                    let mut row = Row::new(run, c, r);
                    row.run = format!("{name}/{run}");
                    // the warm-up's requests are not counted but its CPU is: estimate them at the same rate
                    let served = (r.ok + r.errors) as f64 * (warmup + duration).as_secs_f64() / duration.as_secs_f64();
                    let per: Vec<String> = before
                        .iter()
                        .zip(after)
                        .map(|(b, a)| format!("{:.0}", a.saturating_sub(*b) as f64 / served.max(1.0)))
                        .collect();
                    println!(
                        "{:<10} {:>5} {:>12.0} {:>9.3} {:>9.3} {:>8}   {}",
                        run,
                        c,
                        row.requests_per_s,
                        row.p50_ms,
                        row.p99_ms,
                        row.errors,
                        per.join(" / ")
                    );
                    rows.push(row);
                }
                println!(
                    "  -> gateway adds {:+.3} ms at p50, keeps {:.1} % of direct throughput",
                    g.quantile_ms(0.5) - d.quantile_ms(0.5),
                    100.0 * g.per_s() / d.per_s().max(1e-9)
                );
            }
        }
        node.stop();
    }

    // ---- priority under saturation
    if !args.no_priority {
        let lat = args.priority_latency_ms.to_string();
        let flags = ["--idle", "--latency-ms", lat.as_str()];
        let personas = persona_toml("high", &demo, &flags, 90, 64) + &persona_toml("low", &demo, &flags, 10, 64);
        let gw = format!("[gateway]\nmax_in_flight = {}\nmax_queued = 4096\n", args.node_in_flight);
        let node = BenchNode::start(&exe, &gw, &personas, args.node_threads).await?;
        node.persona_port("high").await?;
        node.persona_port("low").await?;
        let high =
            Target::post_json(node.api, "/v1/chat/completions", Some(&node.token), &BODY.replace("MODEL", "high"));
        let low = Target::post_json(node.api, "/v1/chat/completions", Some(&node.token), &BODY.replace("MODEL", "low"));
        println!(
            "\npriority: personas at priority 90 and 10, {} ms each, node admits {} at once, {} s per run, {} rounds",
            args.priority_latency_ms, args.node_in_flight, args.duration_s, args.rounds
        );
        println!(
            "{:<28} {:>5} {:>10} {:>9} {:>9} {:>8}   gateway-measured p99 ms (max of 1 s intervals)",
            "run", "conns", "req/s", "p50_ms", "p99_ms", "errors"
        );
        let mut ratios = Vec::new();
        for round in 1..=args.rounds {
            let t0 = unix_ms();
            let alone = load::run(&high, args.high_concurrency, args.load_threads, warmup, duration).await?;
            let t1 = unix_ms();
            let flood = {
                let low = low.clone();
                let threads = args.load_threads;
                // the flood starts first and ends after the measured window
                tokio::spawn(async move { load::run(&low, 64, threads, Duration::ZERO, warmup * 2 + duration).await })
            };
            tokio::time::sleep(warmup / 2).await;
            let t2 = unix_ms();
            let loaded = load::run(&high, args.high_concurrency, args.load_threads, warmup, duration).await?;
            let t3 = unix_ms();
            let flood = flood.await.context("flood task")??;
            for (name, c, r, window) in [
                (format!("{round}: high alone"), args.high_concurrency, &alone, Some((t0, t1))),
                (format!("{round}: high under low flood"), args.high_concurrency, &loaded, Some((t2, t3))),
                (format!("{round}: low (the flood)"), 64, &flood, None),
            ] {
                let measured = match window {
                    Some((from, to)) => {
                        node.gateway_p99_max("high", from + 1000, to).await.map_or("-".into(), |v| format!("{v:.1}"))
                    }
                    None => String::new(),
                };
                let row = Row::new(&name, c, r);
                println!(
                    "{:<28} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>8}   {measured}",
                    row.run, c, row.requests_per_s, row.p50_ms, row.p99_ms, row.errors
                );
                rows.push(row);
            }
            let ratio = loaded.quantile_ms(0.99) / alone.quantile_ms(0.99);
            println!(
                "  -> round {round}: high-priority p99 under saturation is {ratio:.2}x its unloaded p99 (goal <= 2x)"
            );
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        let capacity = f64::from(args.node_in_flight) * 1000.0 / args.priority_latency_ms as f64;
        println!(
            "  -> median over {} rounds: {:.2}x (node capacity about {capacity:.0} req/s)",
            ratios.len(),
            ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
        );
        node.stop();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn persona_toml(name: &str, demo: &Path, flags: &[&str], priority: u8, max_concurrent: u32) -> String {
    let args: Vec<String> = flags.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[persona]]\nname = \"{name}\"\ncommand = {:?}\nargs = [{}]\nhealth_path = \"/health\"\n\
         [persona.budget]\ninference_queue_priority = {priority}\nmax_concurrent_inferences = {max_concurrent}\n\
         tokens_per_response = 16\n",
        demo.display().to_string(),
        args.join(", ")
    )
}

/// A node started as a child process with its own data dir; stopped (SIGTERM) when done.
pub(super) struct BenchNode {
    pub(super) _dir: tempfile_dir::TempDir,
    pub(super) child: Child,
    pub(super) api: SocketAddr,
    /// Sent with every request of `http` (and to be given to load generators).
    pub(super) http: reqwest::Client,
    pub(super) token: String,
}

impl BenchNode {
    pub(super) async fn start(
        exe: &Path,
        extra: &str,
        personas: &str,
        threads: Option<usize>,
    ) -> anyhow::Result<BenchNode> {
        let dir = tempfile_dir::TempDir::new()?;
        let data = dir.path().join("data");
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"bench\"\ndata_dir = {:?}\n[api]\nlisten = \"127.0.0.1:0\"\n{extra}{personas}",
                data.display().to_string()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("node.log"))?;
        let mut cmd = Command::new(exe);
        if let Some(n) = threads {
            cmd.env("TOKIO_WORKER_THREADS", n.to_string());
        }
        let child = cmd
            .args(["node", "start", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("start the node")?;
        let addr_file = data.join(mindmesh_node::API_ADDR_FILE);
        let deadline = Instant::now() + Duration::from_secs(30);
        let api = loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file)
                && let Ok(a) = a.trim().parse()
            {
                break a;
            }
            if Instant::now() > deadline {
                bail!("the node did not start; see {}", dir.path().join("node.log").display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // the API and the gateway want a token, even on loopback: the node's own local one
        let token = std::fs::read_to_string(data.join(mindmesh_node::local::LOCAL_TOKEN_FILE))
            .context("the node's local token")?
            .trim()
            .to_owned();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
        let http = reqwest::Client::builder().no_proxy().default_headers(headers).build()?;
        Ok(BenchNode { _dir: dir, child, api, http, token })
    }

    pub(super) async fn persona_pid(&self, name: &str) -> anyhow::Result<u32> {
        let url = format!("http://{}/api/v1/personas/{name}", self.api);
        let v: serde_json::Value = self.http.get(&url).send().await?.json().await?;
        v["pid"].as_u64().map(|p| p as u32).context("persona without a pid")
    }

    /// The highest p99 latency the gateway measured for a persona over a window's 1 s intervals.
    async fn gateway_p99_max(&self, name: &str, from_ms: u64, to_ms: u64) -> Option<f64> {
        let url = format!("http://{}/api/v1/personas/{name}/series?from_ms={from_ms}&to_ms={to_ms}", self.api);
        let v: serde_json::Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
        v["samples"].as_array()?.iter().filter_map(|s| s["latency_p99_ms"].as_f64()).reduce(f64::max)
    }

    /// Wait until the persona runs and is healthy; its port.
    pub(super) async fn persona_port(&self, name: &str) -> anyhow::Result<u16> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("http://{}/api/v1/personas/{name}", self.api);
            if let Ok(r) = self.http.get(&url).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["phase"] == "running"
                && let Some(p) = v["port"].as_u64()
            {
                return Ok(p as u16);
            }
            if Instant::now() > deadline {
                bail!("persona {name} did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) used so far by each process, in µs.
fn cpu_us(pids: &[(&str, u32)]) -> Vec<u64> {
    // SAFETY: sysconf has no preconditions
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    pids.iter()
        .map(|(_, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields 14 and 15 (utime, stime) are at 11 and 12 after the command name
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (t(11) + t(12)) * 1_000_000 / ticks
        })
        .collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// A temporary directory removed on drop (tempfile is a dev-dependency only).
pub(super) mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<TempDir> {
            let base = std::env::temp_dir();
            for _ in 0..16 {
                let p = base.join(format!("mindmesh-bench-{:016x}", rand::random::<u64>()));
                match std::fs::create_dir(&p) {
                    Ok(()) => return Ok(TempDir(p)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(std::io::Error::other("no free temporary directory name"))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
