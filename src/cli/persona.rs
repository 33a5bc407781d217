//! `mindmesh persona …`: add, inspect and act on the personas of a node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use mindmesh_core::BudgetPatch;
use mindmesh_node::api::types::{ActionRequest, ActionResponse, PersonaView, SeriesPage, ThrottleRequest};

use super::client::{ApiArgs, Client, seg};
use super::table;

#[derive(Debug, Subcommand)]
pub enum PersonaCommand {
    /// Add a persona from a spec file (TOML, or JSON by its .json extension).
    Add {
        file: PathBuf,
        /// Register it without starting it.
        #[arg(long)]
        no_start: bool,
        /// Place it on this node (by name); default: the least loaded node of the mesh.
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the personas of the node.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one persona: status, budget, spec and recent metrics.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop and forget a persona.
    Remove {
        name: String,
    },
    Restart(ActionArgs),
    Stop(ActionArgs),
    Start(ActionArgs),
    /// Save its state (if it offers the hook) and stop it; `wake` brings it back.
    Hibernate(ActionArgs),
    Wake(ActionArgs),
    /// Stop it and keep it down until an operator starts it.
    Kill {
        #[command(flatten)]
        args: ActionArgs,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Scale its CPU and gateway service rate (0.5 = half speed).
    Throttle {
        name: String,
        #[arg(long)]
        multiplier: f64,
        #[arg(long)]
        json: bool,
    },
    /// Move it to another node with its state: drained, saved, stopped and released here,
    /// started there with that state; never running on both. Shows the progress.
    Migrate {
        name: String,
        /// The target node's name.
        #[arg(long)]
        to: String,
        /// Return once the migration is committed.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        #[arg(long)]
        json: bool,
    },
    /// Change its budget at run time, without a restart.
    Budget {
        name: String,
        #[arg(long)]
        priority: Option<u8>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        max_tokens: Option<u32>,
        #[arg(long)]
        max_concurrent: Option<u32>,
        #[arg(long)]
        max_memory_mb: Option<u64>,
        #[arg(long)]
        multiplier: Option<f64>,
        #[arg(long)]
        allowed_to_run: Option<bool>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ActionArgs {
    pub name: String,
    /// Return at once instead of waiting for the action to settle.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the action to settle.
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: PersonaCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(api)?;
    match cmd {
        PersonaCommand::Add { file, no_start, node, json } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let content_type =
                if file.extension().is_some_and(|e| e == "json") { "application/json" } else { "application/toml" };
            let on = node.as_deref().map(|n| format!("&node={}", seg(n))).unwrap_or_default();
            let path = format!("/api/v1/personas?start={}{on}", !no_start);
            let v: PersonaView = client.post_raw(&path, content_type, text).await?;
            if json {
                table::json(&v)?;
            } else {
                println!("added {} on {} ({})", v.name, v.node.as_deref().unwrap_or("no node yet"), v.phase);
            }
        }
        PersonaCommand::List { json } => {
            let list: Vec<PersonaView> = client.get("/api/v1/personas").await?;
            if json {
                table::json(&list)?;
            } else {
                print_list(&list);
            }
        }
        PersonaCommand::Show { name, json } => {
            let v: PersonaView = client.get(&format!("/api/v1/personas/{}", seg(&name))).await?;
            let series: SeriesPage =
                client.get(&format!("/api/v1/personas/{}/series?max_points=10", seg(&name))).await?;
            if json {
                table::json(&serde_json::json!({ "persona": v, "recent": series.samples }))?;
            } else {
                print_show(&v, &series);
            }
        }
        PersonaCommand::Remove { name } => {
            client.delete(&format!("/api/v1/personas/{}", seg(&name))).await?;
            println!("removed {name}");
        }
        PersonaCommand::Restart(a) => act(&client, "restart", a, None).await?,
        PersonaCommand::Stop(a) => act(&client, "stop", a, None).await?,
        PersonaCommand::Start(a) => act(&client, "start", a, None).await?,
        PersonaCommand::Hibernate(a) => act(&client, "hibernate", a, None).await?,
        PersonaCommand::Wake(a) => act(&client, "wake", a, None).await?,
        PersonaCommand::Kill { args, reason } => act(&client, "kill", args, reason).await?,
        PersonaCommand::Migrate { name, to, no_wait, timeout_s, json } => {
            super::moves::migrate(&client, &name, &to, !no_wait, std::time::Duration::from_secs(timeout_s), json)
                .await?
        }
        PersonaCommand::Throttle { name, multiplier, json } => {
            let v: PersonaView = client
                .post(&format!("/api/v1/personas/{}/throttle", seg(&name)), &ThrottleRequest { multiplier })
                .await?;
            if json {
                table::json(&v)?;
            } else {
                println!("{} throttle multiplier {}", v.name, v.throttle_multiplier);
            }
        }
        PersonaCommand::Budget {
            name,
            priority,
            timeout_ms,
            max_tokens,
            max_concurrent,
            max_memory_mb,
            multiplier,
            allowed_to_run,
            json,
        } => {
            let patch = BudgetPatch {
                max_response_time_ms: timeout_ms,
                tokens_per_response: max_tokens,
                inference_queue_priority: priority,
                max_memory_mb,
                max_concurrent_inferences: max_concurrent,
                throttle_multiplier: multiplier,
                allowed_to_run,
            };
            anyhow::ensure!(!patch.is_empty(), "nothing to change: give at least one of --priority, --timeout-ms, …");
            let v: PersonaView = client.patch(&format!("/api/v1/personas/{}/budget", seg(&name)), &patch).await?;
            if json {
                table::json(&v)?;
            } else {
                println!("{} budget: {}", v.name, serde_json::to_string(&v.budget)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn act(client: &Client, action: &str, a: ActionArgs, reason: Option<String>) -> anyhow::Result<()> {
    let req = ActionRequest { reason, wait_ms: (!a.no_wait).then_some(a.timeout_ms) };
    let r: ActionResponse = client.post(&format!("/api/v1/personas/{}/{action}", seg(&a.name)), &req).await?;
    if a.json {
        table::json(&r)?;
    } else {
        println!("{} {}: {}", r.persona, r.action, r.phase);
    }
    Ok(())
}

pub fn print_list(list: &[PersonaView]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.node.clone().unwrap_or_else(|| "-".into()),
                p.phase.to_string(),
                table::opt(p.pid),
                p.restarts.to_string(),
                table::mb(p.rss_bytes),
                format!("{:.1}", p.cpu_percent),
                format!("{:?}", p.health).to_lowercase(),
                table::duration_s(p.uptime_s),
                p.importance.as_str().to_owned(),
                p.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::print(
        &["NAME", "NODE", "PHASE", "PID", "RESTARTS", "RSS_MB", "CPU_%", "HEALTH", "UPTIME", "IMPORTANCE", "REASON"],
        &rows,
    );
}

fn print_show(v: &PersonaView, series: &SeriesPage) {
    println!("name:        {}", v.name);
    println!("node:        {}", v.node.as_deref().unwrap_or("-"));
    if let Some(d) = &v.desired {
        println!("desired:     {d} (epoch {})", v.epoch);
    }
    println!("phase:       {}{}", v.phase, v.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default());
    println!("pid:         {}   port: {}", table::opt(v.pid), table::opt(v.port));
    println!("health:      {:?}", v.health);
    println!("restarts:    {}", v.restarts);
    println!("uptime:      {}", table::duration_s(v.uptime_s));
    println!("rss:         {} MB (peak {} MB)", table::mb(v.rss_bytes), table::mb(v.peak_rss_bytes));
    println!("cpu:         {:.1} %", v.cpu_percent);
    println!("importance:  {}", v.importance.as_str());
    let b = &v.budget;
    println!(
        "budget:      priority {}  timeout {} ms  tokens {}  concurrency {}  memory {} MB  throttle x{}  allowed {}",
        b.inference_queue_priority,
        b.max_response_time_ms,
        b.tokens_per_response,
        b.max_concurrent_inferences,
        b.max_memory_mb,
        b.throttle_multiplier,
        b.allowed_to_run
    );
    if let Some(spec) = &v.spec {
        println!("command:     {} {}", spec.command, spec.args.join(" "));
    }
    if let Some(logs) = &v.log_files {
        println!("logs:        on {} (`mindmesh logs {}`)", logs.node, v.name);
        for f in &logs.files {
            println!("             {}  {} MB", f.path, table::mb(f.bytes));
        }
    }
    println!(
        "gateway:     {} requests ({} failed)  in flight {}  queued {}  last activity {}  idle {}  burst {}",
        v.requests_total,
        v.errors_total,
        v.in_flight,
        v.queue_depth,
        table::opt(v.last_activity_ms),
        table::duration_s(v.idle_s),
        table::opt(v.burst_s.map(|s| format!("{s:.1}s"))),
    );
    if !series.samples.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = series
            .samples
            .iter()
            .map(|s| {
                vec![
                    s.ts_ms.to_string(),
                    table::mb(s.rss_bytes),
                    format!("{:.1}", s.cpu_percent),
                    s.requests.to_string(),
                    s.errors.to_string(),
                    table::opt(s.latency_p50_ms.map(|v| format!("{v:.0}"))),
                    table::opt(s.latency_p99_ms.map(|v| format!("{v:.0}"))),
                    table::opt(s.ttft_p50_ms.map(|v| format!("{v:.0}"))),
                    s.queue_depth.to_string(),
                    s.in_flight.to_string(),
                    s.tokens_out.to_string(),
                    s.errors_by_kind.iter().map(|(k, n)| format!("{}={n}", k.label())).collect::<Vec<_>>().join(","),
                ]
            })
            .collect();
        table::print(
            &[
                "TS_MS",
                "RSS_MB",
                "CPU_%",
                "REQUESTS",
                "ERRORS",
                "P50_MS",
                "P99_MS",
                "TTFT_MS",
                "QUEUE",
                "IN_FLIGHT",
                "TOKENS",
                "ERROR_KINDS",
            ],
            &rows,
        );
    }
}
