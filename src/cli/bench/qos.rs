//! `mindmesh bench qos`: the budget-allocating brain in a closed loop (issue 15).
//!
//! One node (a child process) on this host, saturated on purpose: demo personas whose answers
//! are CPU work (`--cpu-ms`), two user-facing chat personas with bursty open-loop traffic and
//! four background personas that trickle, then flood (closed loop, more than the cores can
//! serve), then trickle again. The same timeline runs three times, each on a fresh node:
//!
//! - **fixed**: the budgets stay as the spec says (the brain only advises, `act = false`);
//! - **brain**: the leader's built-in analyst commits budget decisions through the node's own
//!   decision path (`[brain] act = true`), guardrails and all;
//! - **naive**: the brain only advises and this bench plays a fixed-threshold rule on the
//!   latest sample, as an operator script would: host CPU ≥ 85 % → every background persona to
//!   0.25×, below → back to its spec; no history, no hysteresis.
//!
//! Per row: user-facing latency p50/p99 unloaded, under the flood, and under the flood once
//! the brain has had `--settle-s` to react; user-facing errors; background throughput during
//! the flood; budget changes seen; and the time from the flood's end until every budget is
//! back to its spec (polled every 100 ms through the API).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::gateway::{BenchNode, cores, load_average};

/// The naive rule's threshold, the brain's own "saturated" level.
const NAIVE_CPU_PERCENT: f64 = 85.0;
/// The naive rule's throttle, the seed's "all background personas to 25 %".
const NAIVE_THROTTLE: f64 = 0.25;
/// Longest a bench request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most user requests in flight from the generator (an open loop must still be bounded).
const MAX_USER_IN_FLIGHT: usize = 512;

#[derive(Debug, Clone, clap::Args)]
pub struct QosArgs {
    /// Seconds of user traffic alone (background trickling) before the flood; the first
    /// `--warmup-s` of them are not measured.
    #[arg(long, default_value_t = 20.0)]
    pub unloaded_s: f64,
    /// Seconds at the start of the run that are not measured (the node and its personas
    /// warming up).
    #[arg(long, default_value_t = 3.0)]
    pub warmup_s: f64,
    /// Seconds the background personas flood.
    #[arg(long, default_value_t = 40.0)]
    pub flood_s: f64,
    /// Seconds after the flood, while budgets are watched going back to their spec.
    #[arg(long, default_value_t = 15.0)]
    pub after_s: f64,
    /// User-facing latency under the flood is also reported from this long after its start
    /// (the time a reactive policy needs to see the flood).
    #[arg(long, default_value_t = 6.0)]
    pub settle_s: f64,
    /// Seconds between two brain cycles (and two steps of the naive rule).
    #[arg(long, default_value_t = 2)]
    pub cycle_s: u64,
    /// The brain's clock runs this much faster than real time, so its 10-minute CPU window
    /// and its idle threshold fit a short run; history points are one real second apart.
    #[arg(long, default_value_t = 300.0)]
    pub time_speed: f64,
    /// The guardrails' hysteresis: cycles a cause must have been clear before a budget goes
    /// back (the goal, back within 2 cycles of the flood's end, needs at most 2).
    #[arg(long, default_value_t = 2)]
    pub hysteresis_cycles: u32,
    /// CPU time of one user-facing answer.
    #[arg(long, default_value_t = 25)]
    pub user_cpu_ms: u64,
    /// CPU time of one background answer.
    #[arg(long, default_value_t = 25)]
    pub background_cpu_ms: u64,
    /// Requests per second to each user-facing persona outside its bursts (Poisson).
    #[arg(long, default_value_t = 5.0)]
    pub user_rate_per_s: f64,
    /// Bursts: `--burst-x` times the rate for `--burst-s` out of every `--burst-every-s`.
    #[arg(long, default_value_t = 3.0)]
    pub burst_x: f64,
    /// Seconds each burst lasts.
    #[arg(long, default_value_t = 3.0)]
    pub burst_s: f64,
    /// Seconds from the start of one burst to the start of the next.
    #[arg(long, default_value_t = 10.0)]
    pub burst_every_s: f64,
    /// Requests per second to each background persona outside the flood (evenly spaced, so
    /// it never looks idle).
    #[arg(long, default_value_t = 2.0)]
    pub trickle_per_s: f64,
    /// Connections per background persona during the flood (each sends as fast as answered).
    #[arg(long, default_value_t = 4)]
    pub flood_connections: usize,
    /// Which rows to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "fixed,brain,naive")]
    pub rows: Vec<Policy>,
    /// Seed of the user traffic (the same arrivals in every row).
    #[arg(long, default_value_t = 15)]
    pub seed: u64,
    /// The demo persona binary (default: next to this one).
    #[arg(long)]
    pub demo_bin: Option<PathBuf>,
    /// Print the rows as JSON too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Budgets as the spec says.
    Fixed,
    /// The built-in analyst allocating.
    Brain,
    /// A fixed-threshold rule on the latest sample.
    Naive,
}

const USER: [&str; 2] = ["chat-a", "chat-b"];
const BACKGROUND: [&str; 4] = ["batch-1", "batch-2", "batch-3", "batch-4"];

#[derive(Debug, Serialize)]
struct Row {
    policy: Policy,
    user_unloaded_p50_ms: f64,
    user_unloaded_p99_ms: f64,
    user_flood_p50_ms: f64,
    user_flood_p99_ms: f64,
    /// Under the flood, from `settle_s` after its start.
    user_settled_p50_ms: f64,
    user_settled_p99_ms: f64,
    /// Flood p99 over unloaded p99 (goal ≤ 1.5).
    user_flood_p99_ratio: f64,
    user_settled_p99_ratio: f64,
    user_requests: u64,
    user_errors: u64,
    background_flood_per_s: f64,
    /// Budget changes seen (a persona's budget in force differing from the previous poll).
    budget_changes: u64,
    /// From the flood's end until every budget is back to its spec (0: none was away; None:
    /// not within `after_s`).
    restored_after_s: Option<f64>,
    restored_after_cycles: Option<f64>,
    host_load_average: String,
}

/// One user request: when it was sent (s since the row started), its latency, whether it
/// succeeded.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    latency_ms: f64,
    ok: bool,
}

pub async fn run(args: QosArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("where is this binary?")?;
    let demo = match &args.demo_bin {
        Some(p) => p.clone(),
        None => exe.with_file_name("mindmesh-demo-persona"),
    };
    anyhow::ensure!(demo.exists(), "demo persona binary not found at {} (use --demo-bin)", demo.display());
    anyhow::ensure!(args.unloaded_s > args.warmup_s && args.flood_s > args.settle_s, "the phases are too short");
    println!(
        "host: {} cores, load average {}; timeline: {} s unloaded ({} s warm-up), {} s flood, {} s after; \
         brain cycle {} s, time x{}, hysteresis {} cycles",
        cores(),
        load_average(),
        args.unloaded_s,
        args.warmup_s,
        args.flood_s,
        args.after_s,
        args.cycle_s,
        args.time_speed,
        args.hysteresis_cycles
    );
    println!(
        "personas: {} user-facing ({} ms CPU per answer, {}/s each, x{} bursts of {} s every {} s), {} background \
         ({} ms CPU per answer, {}/s trickle, flood {} connections each)",
        USER.len(),
        args.user_cpu_ms,
        args.user_rate_per_s,
        args.burst_x,
        args.burst_s,
        args.burst_every_s,
        BACKGROUND.len(),
        args.background_cpu_ms,
        args.trickle_per_s,
        args.flood_connections
    );
    let mut rows = Vec::new();
    for policy in args.rows.clone() {
        let row = run_row(&args, policy, &exe, &demo).await?;
        rows.push(row);
    }
    print_rows(&args, &rows);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn node_config(args: &QosArgs, policy: Policy, demo: &std::path::Path) -> (String, String) {
    let act = policy == Policy::Brain;
    let extra = format!(
        "[mesh]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n\
         [brain]\ncycle_s = {}\ntime_speed = {}\nhistory_resolution_s = {}\nact = {act}\n\
         [brain.guardrails]\nhysteresis_cycles = {}\n\
         [gateway]\nmax_in_flight = 64\nmax_queued = 4096\n",
        args.cycle_s,
        args.time_speed,
        // one point per real second
        args.time_speed.round().max(1.0) as u64,
        args.hysteresis_cycles
    );
    let persona = |name: &str, importance: &str, cpu_ms: u64, concurrency: u32| {
        format!(
            "[[persona]]\nname = \"{name}\"\ncommand = {:?}\nargs = [\"--idle\", \"--tokens\", \"8\", \"--cpu-ms\", \"{cpu_ms}\"]\n\
             health_path = \"/health\"\nimportance = \"{importance}\"\n\
             [persona.budget]\ninference_queue_priority = 50\nmax_concurrent_inferences = {concurrency}\n",
            demo.display().to_string()
        )
    };
    let mut personas = String::new();
    for u in USER {
        personas += &persona(u, "user_facing", args.user_cpu_ms, 4);
    }
    for b in BACKGROUND {
        // a batch worker: one answer at a time, one core's worth of demand while it floods
        personas += &persona(b, "background", args.background_cpu_ms, 1);
    }
    (extra, personas)
}

fn body(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello."}}]}}"#)
}

async fn run_row(args: &QosArgs, policy: Policy, exe: &std::path::Path, demo: &std::path::Path) -> anyhow::Result<Row> {
    let (extra, personas) = node_config(args, policy, demo);
    let node = BenchNode::start(exe, &extra, &personas, None).await?;
    for p in USER.iter().chain(&BACKGROUND) {
        node.persona_port(p).await?;
    }
    let spec: BTreeMap<String, serde_json::Value> = {
        let mut m = BTreeMap::new();
        for p in USER.iter().chain(&BACKGROUND) {
            m.insert(p.to_string(), budget_of(&node, p).await?.1);
        }
        m
    };
    let client = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build()?;
    let url = format!("http://{}/v1/chat/completions", node.api);
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let flood_from = Duration::from_secs_f64(args.unloaded_s);
    let flood_to = flood_from + Duration::from_secs_f64(args.flood_s);
    let end = flood_to + Duration::from_secs_f64(args.after_s);

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let background_ok = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut tasks = Vec::new();
    // user-facing: open loop, Poisson arrivals at a rate that bursts; the same seed every row
    for (i, u) in USER.iter().enumerate() {
        let (client, url, token, samples) = (client.clone(), url.clone(), node.token.clone(), samples.clone());
        let (body, stop, args) = (body(u), stop.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed + i as u64);
            let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_USER_IN_FLIGHT));
            let mut next = 0.0f64;
            // bursts of the two personas are offset by half a period
            let offset = i as f64 * args.burst_every_s / 2.0;
            loop {
                let phase = (next + offset) % args.burst_every_s;
                let rate = args.user_rate_per_s * if phase < args.burst_s { args.burst_x } else { 1.0 };
                next += -(1.0 - rng.random::<f64>()).ln() / rate.max(1e-3);
                let at = t0 + Duration::from_secs_f64(next);
                if at >= t0 + end {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(at.into()) => {}
                }
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    samples.lock().unwrap().push(Sample { at_s: next, latency_ms: f64::NAN, ok: false });
                    continue;
                };
                let (client, url, token, samples, body) =
                    (client.clone(), url.clone(), token.clone(), samples.clone(), body.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let ok = send(&client, &url, &token, body).await;
                    let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
                    samples.lock().unwrap().push(Sample { at_s: next, latency_ms, ok });
                    drop(permit);
                });
            }
        }));
    }
    // background: an even trickle outside the flood, a closed-loop flood inside it
    for b in BACKGROUND {
        let (client_t, url_t, token) = (client.clone(), url.clone(), node.token.clone());
        let (request, stop_t, trickle) = (body(b), stop.clone(), args.trickle_per_s);
        tasks.push(tokio::spawn(async move {
            let (client, url, stop) = (client_t, url_t, stop_t);
            let every = Duration::from_secs_f64(1.0 / trickle.max(1e-3));
            let mut at = t0;
            while at < t0 + end {
                if (t0 + flood_from..t0 + flood_to).contains(&at) {
                    at = t0 + flood_to;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(at.into()) => {}
                }
                let (client, url, token, request) = (client.clone(), url.clone(), token.clone(), request.clone());
                tokio::spawn(async move { send(&client, &url, &token, request).await });
                at += every;
            }
        }));
        for _ in 0..args.flood_connections {
            let (client, url, token, done) = (client.clone(), url.clone(), node.token.clone(), background_ok.clone());
            let (body, stop) = (body(b), stop.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until((t0 + flood_from).into()) => {}
                }
                while t0.elapsed() < flood_to && !stop.is_cancelled() {
                    if send(&client, &url, &token, body.clone()).await {
                        let at = t0.elapsed();
                        if at < flood_to {
                            done.lock().unwrap().push(at.as_secs_f64());
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }));
        }
    }
    // the naive rule, as an operator's script would run it
    let naive = (policy == Policy::Naive).then(|| {
        let (node_http, api, stop, spec) = (node.http.clone(), node.api, stop.clone(), spec.clone());
        let cycle = Duration::from_secs(args.cycle_s.max(1));
        tokio::spawn(async move {
            let mut last = host_cpu_ticks();
            let mut throttled = false;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let now = host_cpu_ticks();
                let busy = cpu_percent(last, now);
                last = now;
                // one decision per cycle, on the latest one-second sample
                if t0.elapsed().as_millis() % cycle.as_millis().max(1) >= 1000 {
                    continue;
                }
                let want = busy >= NAIVE_CPU_PERCENT;
                if want == throttled {
                    continue;
                }
                throttled = want;
                for b in BACKGROUND {
                    let spec_m = spec[b]["throttle_multiplier"].as_f64().unwrap_or(1.0);
                    let m = if want { NAIVE_THROTTLE } else { spec_m };
                    let url = format!("http://{api}/api/v1/personas/{b}/budget");
                    let patch = serde_json::json!({ "throttle_multiplier": m });
                    if let Err(e) = node_http.patch(&url).json(&patch).send().await {
                        tracing::warn!(error = %e, persona = b, "the naive rule could not set a budget");
                    }
                }
            }
        })
    });
    // every budget, every 100 ms: changes and when they are back to the spec
    let watch = {
        let (node_http, api, stop, spec) = (node.http.clone(), node.api, stop.clone(), spec.clone());
        tokio::spawn(async move {
            let mut last: BTreeMap<String, serde_json::Value> = spec.clone();
            let mut changes = 0u64;
            let mut last_away_s: Option<f64> = None;
            while !stop.is_cancelled() && t0.elapsed() < end {
                for p in USER.iter().chain(&BACKGROUND) {
                    let url = format!("http://{api}/api/v1/personas/{p}");
                    let Ok(r) = node_http.get(&url).send().await else { continue };
                    let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                    let b = v["budget"].clone();
                    if b.is_null() {
                        continue;
                    }
                    if last.get(*p) != Some(&b) {
                        changes += 1;
                        last.insert(p.to_string(), b.clone());
                    }
                    if spec.get(*p) != Some(&b) {
                        last_away_s = Some(t0.elapsed().as_secs_f64());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (changes, last_away_s)
        })
    };
    tokio::time::sleep_until((t0 + end).into()).await;
    let (changes, last_away_s) = watch.await.context("budget watcher")?;
    stop.cancel();
    if let Some(n) = naive {
        let _ = n.await;
    }
    for t in tasks {
        let _ = t.await;
    }
    // the last user requests may still be out: give them their timeout at most
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let expected = |s: &Vec<Sample>| s.len();
    let mut seen = expected(&samples.lock().unwrap());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = expected(&samples.lock().unwrap());
        if n == seen {
            break;
        }
        seen = n;
    }
    let load = load_average();
    if policy == Policy::Brain {
        print_budget_decisions(&node).await;
    }
    node.stop();

    let samples = samples.lock().unwrap().clone();
    let flood = (flood_from.as_secs_f64(), flood_to.as_secs_f64());
    let in_window = |from: f64, to: f64| -> (f64, f64, u64, u64) {
        let mut lat: Vec<f64> =
            samples.iter().filter(|s| s.ok && s.at_s >= from && s.at_s < to).map(|s| s.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        let all = samples.iter().filter(|s| s.at_s >= from && s.at_s < to).count() as u64;
        (quantile(&lat, 0.5), quantile(&lat, 0.99), all, all - lat.len() as u64)
    };
    let (u50, u99, ..) = in_window(args.warmup_s, flood.0);
    let (f50, f99, ..) = in_window(flood.0, flood.1);
    let (s50, s99, ..) = in_window(flood.0 + args.settle_s, flood.1);
    let (_, _, requests, errors) = in_window(args.warmup_s, f64::INFINITY);
    let background = background_ok.lock().unwrap().len() as f64 / args.flood_s;
    let restored_after_s = match last_away_s {
        None => Some(0.0),
        // away at the last poll of the run: not restored within it
        Some(t) if t >= end.as_secs_f64() - 0.5 => None,
        Some(t) => Some((t - flood.1).max(0.0)),
    };
    let row = Row {
        policy,
        user_unloaded_p50_ms: u50,
        user_unloaded_p99_ms: u99,
        user_flood_p50_ms: f50,
        user_flood_p99_ms: f99,
        user_settled_p50_ms: s50,
        user_settled_p99_ms: s99,
        user_flood_p99_ratio: f99 / u99,
        user_settled_p99_ratio: s99 / u99,
        user_requests: requests,
        user_errors: errors,
        background_flood_per_s: background,
        budget_changes: changes,
        restored_after_s,
        restored_after_cycles: restored_after_s.map(|s| s / args.cycle_s.max(1) as f64),
        host_load_average: load,
    };
    println!(
        "{:?}: user p99 unloaded {:.1} ms, flood {:.1} ms (x{:.2}), settled {:.1} ms (x{:.2}); background {:.1}/s; \
         {} budget changes; restored after {}",
        policy,
        u99,
        f99,
        row.user_flood_p99_ratio,
        s99,
        row.user_settled_p99_ratio,
        background,
        changes,
        restored_after_s.map_or("not within the run".into(), |s| format!("{s:.1} s"))
    );
    Ok(row)
}

async fn send(client: &reqwest::Client, url: &str, token: &str, body: String) -> bool {
    match client.post(url).bearer_auth(token).header("content-type", "application/json").body(body).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            // read the answer to its end: the request is served when its body is
            ok && r.bytes().await.is_ok()
        }
        Err(_) => false,
    }
}

/// The budget in force and the spec's, from `persona show`.
async fn budget_of(node: &BenchNode, name: &str) -> anyhow::Result<(serde_json::Value, serde_json::Value)> {
    let url = format!("http://{}/api/v1/personas/{name}", node.api);
    let v: serde_json::Value = node.http.get(&url).send().await?.json().await?;
    let spec = if v["budget_spec"].is_null() { v["budget"].clone() } else { v["budget_spec"].clone() };
    Ok((v["budget"].clone(), spec))
}

/// The brain's budget decisions of the row, in order, for the record.
async fn print_budget_decisions(node: &BenchNode) {
    let url = format!("http://{}/api/v1/decisions?after=0&limit=1000", node.api);
    let Ok(r) = node.http.get(&url).send().await else { return };
    let Ok(v) = r.json::<serde_json::Value>().await else { return };
    for d in v["decisions"].as_array().into_iter().flatten() {
        if d["action"] != "budget" {
            continue;
        }
        let reason = d["reason"].as_str().unwrap_or("");
        let tail = reason.find("budget ").map_or(reason, |i| &reason[i..]);
        println!("  #{:<4} {:<8} {tail}", d["seq"].as_u64().unwrap_or(0), d["persona"].as_str().unwrap_or("?"));
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// (busy, total) jiffies of the host from `/proc/stat`.
fn host_cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

fn cpu_percent(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    100.0 * b.0.saturating_sub(a.0) as f64 / total as f64
}

fn print_rows(args: &QosArgs, rows: &[Row]) {
    println!(
        "\n{:<7} {:>23} {:>23} {:>23} {:>8} {:>14} {:>8} {:>16}",
        "row",
        "user unloaded p50/p99",
        "user flood p50/p99",
        "settled p50/p99",
        "errors",
        "background/s",
        "changes",
        "back to spec"
    );
    let fixed_bg = rows.iter().find(|r| r.policy == Policy::Fixed).map(|r| r.background_flood_per_s);
    for r in rows {
        let bg_share = fixed_bg.map_or(String::new(), |f| format!(" ({:.0}%)", 100.0 * r.background_flood_per_s / f));
        println!(
            "{:<7} {:>23} {:>23} {:>23} {:>8} {:>14} {:>8} {:>16}",
            format!("{:?}", r.policy).to_lowercase(),
            format!("{:.1} / {:.1} ms", r.user_unloaded_p50_ms, r.user_unloaded_p99_ms),
            format!("{:.1} / {:.1} ms x{:.2}", r.user_flood_p50_ms, r.user_flood_p99_ms, r.user_flood_p99_ratio),
            format!("{:.1} / {:.1} ms x{:.2}", r.user_settled_p50_ms, r.user_settled_p99_ms, r.user_settled_p99_ratio),
            format!("{}/{}", r.user_errors, r.user_requests),
            format!("{:.1}{bg_share}", r.background_flood_per_s),
            r.budget_changes,
            r.restored_after_s
                .map_or("not in run".into(), |s| format!("{s:.1} s ({:.1} cyc)", s / args.cycle_s.max(1) as f64)),
        );
    }
    println!(
        "goals: user-facing p99 under the flood <= 1.5x unloaded; background >= 50% of fixed; budgets back to spec \
         within 2 cycles ({} s) of the flood's end",
        2 * args.cycle_s
    );
}
