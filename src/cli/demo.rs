//! `mindmesh demo traffic`: the requests the demo's comments assume. The demo personas only
//! misbehave when asked (a slowdown, a failing upstream, a leak that grows per request all
//! need traffic), and the brain only judges what the gateway sees; this sends about one
//! request a second to each persona through the gateway, as users would.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Subcommand;
use mindmesh_node::api::types::PersonaView;

use super::client::{ApiArgs, Client, seg};

/// Requests to one persona still waiting for an answer: a persona that hangs gets no more
/// than this many at once (the rest of its ticks are skipped and counted).
const MAX_IN_FLIGHT_PER_PERSONA: u64 = 8;
/// How often the persona list is read again (the demo registers its personas as it starts).
const REFRESH: Duration = Duration::from_secs(10);
/// How often a line of counts is printed.
const REPORT: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Send the demo's traffic: about one chat request a second to each persona through the
    /// gateway (`<api>/v1/chat/completions`, model = the persona's name), until stopped.
    /// Personas set to hibernate when idle are left idle unless named with --persona.
    Traffic(TrafficArgs),
}

impl DemoCommand {
    pub fn api_args(&mut self) -> Option<&mut ApiArgs> {
        match self {
            DemoCommand::Traffic(t) => Some(&mut t.api),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct TrafficArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Requests per second to each persona.
    #[arg(long, default_value_t = 1.0, value_parser = rate)]
    pub rate: f64,
    /// Only these personas (repeat the flag); the default is every persona not meant to idle.
    #[arg(long)]
    pub persona: Vec<String>,
    /// Stop after this long (e.g. 10m); the default is to run until interrupted.
    #[arg(long, value_name = "DURATION", value_parser = super::duration::parse_positive)]
    pub duration: Option<Duration>,
    /// Give up on one request after this long.
    #[arg(long, default_value = "30s", value_parser = super::duration::parse_positive)]
    pub timeout: Duration,
}

fn rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of requests per second"))?;
    if r.is_finite() && (0.01..=100.0).contains(&r) { Ok(r) } else { Err("the rate is 0.01 to 100 per second".into()) }
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    in_flight: AtomicU64,
}

pub async fn run(cmd: DemoCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DemoCommand::Traffic(args) => traffic(args).await,
    }
}

/// The personas to ask: the named ones, or every persona that is not meant to idle.
async fn targets(client: &Client, named: &[String], idle_ones: &mut BTreeMap<String, bool>) -> BTreeSet<String> {
    if !named.is_empty() {
        return named.iter().cloned().collect();
    }
    let Ok(list) = client.get::<Vec<PersonaView>>("/api/v1/personas").await else { return BTreeSet::new() };
    let mut out = BTreeSet::new();
    for p in list {
        if !idle_ones.contains_key(&p.name) {
            // the spec says whether idling is its point (`hibernate_after_idle_s`)
            let Ok(full) = client.get::<PersonaView>(&format!("/api/v1/personas/{}", seg(&p.name))).await else {
                continue;
            };
            let idles = full.spec.as_ref().is_some_and(|s| s.hibernate_after_idle_s.is_some());
            idle_ones.insert(p.name.clone(), idles);
        }
        if idle_ones.get(&p.name) == Some(&false) && p.desired.as_deref() != Some("killed") {
            out.insert(p.name);
        }
    }
    out
}

async fn traffic(args: TrafficArgs) -> anyhow::Result<ExitCode> {
    let client = Arc::new(Client::new(&args.api)?);
    let started = Instant::now();
    let mut idle_ones = BTreeMap::new();
    let mut counts: BTreeMap<String, Arc<Counts>> = BTreeMap::new();
    let mut names = targets(&client, &args.persona, &mut idle_ones).await;
    if names.is_empty() {
        anyhow::bail!("no persona to send requests to (is the demo node running? `mindmesh status`)");
    }
    eprintln!(
        "sending {} request(s)/s to each of {} through {}/v1 (Ctrl-C stops)",
        args.rate,
        names.iter().cloned().collect::<Vec<_>>().join(", "),
        args.api.api.trim_end_matches('/')
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut refreshed, mut reported) = (Instant::now(), Instant::now());
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if refreshed.elapsed() >= REFRESH {
            let fresh = targets(&client, &args.persona, &mut idle_ones).await;
            if !fresh.is_empty() {
                names = fresh;
            }
            refreshed = Instant::now();
        }
        for name in &names {
            let c = counts.entry(name.clone()).or_default().clone();
            if c.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT_PER_PERSONA {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            n += 1;
            let body = serde_json::json!({
                "model": name,
                "messages": [{"role": "user", "content": format!("demo request {n}: summarize the last hour")}],
                "max_tokens": 32,
            });
            let (client, timeout) = (client.clone(), args.timeout);
            c.sent.fetch_add(1, Ordering::Relaxed);
            c.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let answer =
                    tokio::time::timeout(timeout, client.post::<_, serde_json::Value>("/v1/chat/completions", &body))
                        .await;
                let counter = if matches!(answer, Ok(Ok(_))) { &c.ok } else { &c.failed };
                counter.fetch_add(1, Ordering::Relaxed);
                c.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        if reported.elapsed() >= REPORT {
            print_counts(&counts, started);
            reported = Instant::now();
        }
    }
    print_counts(&counts, started);
    Ok(ExitCode::SUCCESS)
}

fn print_counts(counts: &BTreeMap<String, Arc<Counts>>, started: Instant) {
    let line: Vec<String> = counts
        .iter()
        .map(|(name, c)| {
            let skipped = c.skipped.load(Ordering::Relaxed);
            format!(
                "{name} {}/{} ok, {} failed{}",
                c.ok.load(Ordering::Relaxed),
                c.sent.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                if skipped > 0 { format!(" ({skipped} skipped: too many waiting)") } else { String::new() }
            )
        })
        .collect();
    println!("[{:>4} s] {}", started.elapsed().as_secs(), line.join(", "));
}
