//! `mindmesh persona …`: add, inspect and act on the personas of a node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use mindmesh_core::BudgetPatch;
use mindmesh_core::budget::{check_queue_priority, check_throttle_multiplier};
use mindmesh_core::hibernate::Tier;
use mindmesh_node::api::types::{
    ActionRequest, ActionResponse, ApplyResponse, DecisionsPage, MAX_ACTION_WAIT_MS, PersonaView, SeriesPage,
    ThrottleRequest,
};

use super::client::{ApiArgs, Client, seg};
use super::{duration, table, when};

/// `mindmesh persona …` with the node it talks to.
#[derive(Debug, clap::Args)]
pub struct PersonaArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: PersonaCommand,
}

#[derive(Debug, Subcommand)]
pub enum PersonaCommand {
    /// Add a persona from a spec file (TOML, or JSON by its .json extension). Desired state:
    /// a new entry, `running` (`stopped` with --no-start), placed on a node. Its command must
    /// resolve on that node, or nothing is added and the command fails with the reason.
    Add {
        /// The spec file.
        file: PathBuf,
        /// Register it without starting it.
        #[arg(long)]
        no_start: bool,
        /// Place it on this node (by name); default: the least loaded node of the mesh.
        #[arg(long)]
        node: Option<String>,
        /// Print the added persona as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a persona what a spec file says (TOML, or JSON by its .json extension; the format
    /// of `persona add` and of the config's `[[persona]]`): added if missing, else changed in
    /// place through the mesh. Prints the diff field by field (old → new). A budget-only
    /// change applies to the running process; any other field (command, args, env,
    /// working_dir, limits, …) starts a new one. An unchanged spec is a no-op, said so.
    Apply {
        /// The spec file.
        file: PathBuf,
        /// Show the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome as JSON (the diff in `changes`, with `restart` per field).
        #[arg(long)]
        json: bool,
    },
    /// List the personas of the mesh.
    List {
        /// Print the list as JSON (times in epoch milliseconds).
        #[arg(long)]
        json: bool,
    },
    /// Show one persona: status, budget, spec and recent metrics.
    Show {
        /// The persona's name.
        name: String,
        /// Print it as JSON (times in epoch milliseconds).
        #[arg(long)]
        json: bool,
    },
    /// Stop and forget a persona. Desired state: the entry is removed from the mesh.
    Remove {
        /// The persona's name.
        name: String,
    },
    /// Restart its process (drained first), saving nothing. Desired state: `running`, at a
    /// new epoch.
    Restart(ActionArgs),
    /// Stop its process gracefully (drained, SIGTERM, then SIGKILL after the grace). Desired
    /// state: `stopped` until `start`. A no-op, said so, if it is stopped already.
    Stop(ActionArgs),
    /// Start it (again). Desired state: `running` (a new epoch if it was down: this also lifts
    /// a crash loop the node stopped it for). A no-op, said so, if it runs already.
    Start(ActionArgs),
    /// Hibernate it: `--tier stopped` (the default) saves its state (if it offers the hook)
    /// and stops it; `--tier paused` freezes its process (SIGSTOP), memory kept. `wake`, or a
    /// request for it through the gateway, brings it back (from paused in milliseconds).
    /// Desired state: `hibernating` or `paused`.
    Hibernate {
        #[command(flatten)]
        args: ActionArgs,
        /// How deep: `paused` (frozen, memory kept, wakes in milliseconds) or `stopped`
        /// (state saved, process gone, wakes with a cold start).
        #[arg(long, value_parser = tier, default_value = "stopped")]
        tier: Tier,
    },
    /// Bring a hibernating persona back with the state it saved (a request through the
    /// gateway wakes it too). Desired state: `running`. A no-op, said so, if it runs already.
    Wake(ActionArgs),
    /// Stop it now (no drain) and keep it down until an operator starts it. Desired state:
    /// `killed`, with the reason.
    Kill {
        #[command(flatten)]
        args: ActionArgs,
        /// Why, for the decision log (default: "operator").
        #[arg(long)]
        reason: Option<String>,
    },
    /// Scale its CPU and gateway service rate (0.5 = half speed). Desired state: the budget's
    /// `throttle_multiplier`; the phase is left as it is.
    Throttle {
        /// The persona's name.
        name: String,
        /// The factor, above 0 and at most 10 (1 = unthrottled).
        #[arg(long, allow_negative_numbers = true, value_parser = multiplier)]
        multiplier: f64,
        /// Print the persona as JSON afterwards.
        #[arg(long)]
        json: bool,
    },
    /// Move it to another node with its state: drained, saved, stopped and released here,
    /// started there with that state; never running on both. Shows the progress. Desired
    /// state: placed on the target node (a new epoch); the phase is left as it is.
    Migrate {
        /// The persona's name.
        name: String,
        /// The target node's name.
        #[arg(long)]
        to: String,
        /// Return once the migration is committed.
        #[arg(long)]
        no_wait: bool,
        /// Longest wait for it to arrive, with a unit (`90s`, `5m`).
        #[arg(long, default_value = "2m", value_parser = duration::parse_positive)]
        timeout: Duration,
        /// Old spelling of `--timeout`, in seconds (kept for scripts).
        #[arg(long, hide = true, conflicts_with = "timeout")]
        timeout_s: Option<u64>,
        /// One JSON object per step.
        #[arg(long)]
        json: bool,
    },
    /// Change its budget at run time, without a restart. Desired state: the budget. The phase
    /// is left as it is: `--allowed-to-run false` stops the process while the mesh still
    /// wants it `running`, and `--allowed-to-run true` starts it again.
    Budget(BudgetArgs),
}

/// The budget fields an operator changes; each value is checked by the node's own rules
/// (`mindmesh_core::budget`) before anything is sent.
#[derive(Debug, clap::Args)]
pub struct BudgetArgs {
    /// The persona's name.
    pub name: String,
    /// Queue priority, 0–100: the gateway serves higher first.
    #[arg(long, allow_negative_numbers = true, value_parser = priority)]
    pub priority: Option<u8>,
    /// Longest a request through the gateway may take, with a unit (`45s`, `500ms`).
    #[arg(long, value_parser = response_timeout)]
    pub timeout: Option<Duration>,
    /// Old spelling of `--timeout`, in milliseconds (kept for scripts).
    #[arg(long, hide = true, conflicts_with = "timeout", allow_negative_numbers = true,
          value_parser = |s: &str| int_flag(s, |v| BudgetPatch { max_response_time_ms: Some(v), ..Default::default() }))]
    pub timeout_ms: Option<u64>,
    /// Most tokens per answer (a request's max_tokens is clamped to it).
    #[arg(long, allow_negative_numbers = true,
          value_parser = |s: &str| int_flag(s, |v| BudgetPatch { tokens_per_response: Some(v), ..Default::default() }))]
    pub max_tokens: Option<u32>,
    /// Requests in flight at once; the excess queues.
    #[arg(long, allow_negative_numbers = true,
          value_parser = |s: &str| int_flag(s, |v| BudgetPatch { max_concurrent_inferences: Some(v), ..Default::default() }))]
    pub max_concurrent: Option<u32>,
    /// The memory it is expected to stay within, in MiB (the brain judges against it).
    #[arg(long, allow_negative_numbers = true,
          value_parser = |s: &str| int_flag(s, |v| BudgetPatch { max_memory_mb: Some(v), ..Default::default() }))]
    pub max_memory_mb: Option<u64>,
    /// Throttle multiplier, above 0 and at most 10 (0.5 = half speed).
    #[arg(long, allow_negative_numbers = true, value_parser = multiplier)]
    pub multiplier: Option<f64>,
    /// false: every request is refused and the persona is not started.
    #[arg(long)]
    pub allowed_to_run: Option<bool>,
    /// Print the persona as JSON afterwards.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ActionArgs {
    /// The persona's name.
    pub name: String,
    /// Return at once instead of waiting for the action to settle.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the action to settle, with a unit (`45s`, `2m`); at most 2m, the
    /// node's own limit.
    #[arg(long, default_value = "60s", value_parser = action_wait)]
    pub timeout: Duration,
    /// Old spelling of `--timeout`, in milliseconds (kept for scripts).
    #[arg(long, hide = true, conflicts_with = "timeout",
          value_parser = |s: &str| action_wait(&format!("{s}ms")))]
    pub timeout_ms: Option<Duration>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--multiplier`, by the node's rule (a negative value is read as a value, then refused).
pub fn multiplier(s: &str) -> Result<f64, String> {
    let m: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    check_throttle_multiplier(m).map_err(|e| e.to_string())
}

/// `--priority`, by the node's rule.
pub fn priority(s: &str) -> Result<u8, String> {
    let v: i64 = s.trim().parse().map_err(|_| format!("{s:?} is not a whole number"))?;
    check_queue_priority(v).map_err(|e| e.to_string())
}

/// `--timeout` of `budget`: whole milliseconds, by the node's rule.
fn response_timeout(s: &str) -> Result<Duration, String> {
    let d = duration::parse(s)?;
    let ms = u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))?;
    BudgetPatch { max_response_time_ms: Some(ms), ..Default::default() }.check().map_err(|e| e.to_string())?;
    Ok(d)
}

/// How long an action may wait: above zero, at most what the node waits.
fn action_wait(s: &str) -> Result<Duration, String> {
    let d = duration::parse_positive(s)?;
    let max = Duration::from_millis(MAX_ACTION_WAIT_MS);
    if d > max {
        return Err(format!(
            "at most {} (the node waits no longer); use --no-wait and watch `persona show`",
            duration::show(max)
        ));
    }
    Ok(d)
}

/// A whole-number budget field, judged by the node's rules (a negative value is read as a
/// value and refused in the node's words).
fn int_flag<T>(s: &str, patch: impl Fn(T) -> BudgetPatch) -> Result<T, String>
where
    T: TryFrom<i128> + Default + Copy,
{
    let n: i128 = s.trim().parse().map_err(|_| format!("{s:?} is not a whole number"))?;
    let v = match T::try_from(n) {
        Ok(v) => v,
        Err(_) if n < 0 => {
            // below what the field holds: zero is the nearest value, judged as the node would
            patch(T::default()).check().map_err(|e| e.to_string())?;
            return Err(format!("must not be negative, got {n}"));
        }
        Err(_) => return Err(format!("{n} is too large")),
    };
    patch(v).check().map_err(|e| e.to_string())?;
    Ok(v)
}

pub async fn run(args: PersonaArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    match args.command {
        PersonaCommand::Add { file, no_start, node, json } => {
            let text = super::files::read_text(&file, super::files::MAX_SPEC_FILE_BYTES, "persona spec")?;
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
        PersonaCommand::Apply { file, dry_run, json } => {
            let text = super::files::read_text(&file, super::files::MAX_SPEC_FILE_BYTES, "persona spec")?;
            let file_name = file.to_string_lossy();
            // checked here first: the name is the path of the request, and a bad spec is told
            // in full before anything is sent
            let spec = mindmesh_core::PersonaSpec::check_file_contents(&file_name, &text).map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
                anyhow::anyhow!("{}: not a valid persona spec:\n{}", file.display(), lines.join("\n"))
            })?;
            let content_type = if file_name.ends_with(".json") { "application/json" } else { "application/toml" };
            let path = format!("/api/v1/personas/{}?dry_run={dry_run}", seg(&spec.name));
            let r: ApplyResponse = client.put_raw(&path, content_type, text).await?;
            if json {
                table::json(&r)?;
            } else {
                print_apply(&r);
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
            // the brain's budget decisions say (by their after values) what it set; the rest is
            // spec or operator
            let page: DecisionsPage =
                client.get(&format!("/api/v1/decisions?after=0&limit=1000&persona={}", seg(&name))).await?;
            let sources = budget_sources(&v, &page);
            if json {
                table::json(&serde_json::json!({ "persona": v, "budget_source": sources, "recent": series.samples }))?;
            } else {
                print_show(&v, &series, &sources);
            }
        }
        PersonaCommand::Remove { name } => {
            client.delete(&format!("/api/v1/personas/{}", seg(&name))).await?;
            println!("removed {name}");
        }
        PersonaCommand::Restart(a) => act(&client, "restart", a, None).await?,
        PersonaCommand::Stop(a) => act(&client, "stop", a, None).await?,
        PersonaCommand::Start(a) => act(&client, "start", a, None).await?,
        PersonaCommand::Hibernate { args, tier } => act_with(&client, "hibernate", args, None, Some(tier)).await?,
        PersonaCommand::Wake(a) => act(&client, "wake", a, None).await?,
        PersonaCommand::Kill { args, reason } => act(&client, "kill", args, reason).await?,
        PersonaCommand::Migrate { name, to, no_wait, timeout, timeout_s, json } => {
            let timeout = timeout_s.map_or(timeout, Duration::from_secs);
            super::moves::migrate(&client, &name, &to, !no_wait, timeout, json).await?
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
        PersonaCommand::Budget(b) => {
            let timeout_ms = b.timeout_ms.or(b.timeout.map(|d| d.as_millis() as u64));
            let patch = BudgetPatch {
                max_response_time_ms: timeout_ms,
                tokens_per_response: b.max_tokens,
                inference_queue_priority: b.priority,
                max_memory_mb: b.max_memory_mb,
                max_concurrent_inferences: b.max_concurrent,
                throttle_multiplier: b.multiplier,
                allowed_to_run: b.allowed_to_run,
            };
            anyhow::ensure!(
                !patch.is_empty(),
                "nothing to change: give at least one of --priority, --timeout, --max-tokens, --max-concurrent, \
                 --max-memory-mb, --multiplier, --allowed-to-run"
            );
            let v: PersonaView = client.patch(&format!("/api/v1/personas/{}/budget", seg(&b.name)), &patch).await?;
            if b.json {
                table::json(&v)?;
            } else {
                println!("{} budget: {}", v.name, budget_line(&v.budget));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn act(client: &Client, action: &str, a: ActionArgs, reason: Option<String>) -> anyhow::Result<()> {
    act_with(client, action, a, reason, None).await
}

/// `--tier`: a hibernation tier by name.
fn tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("{s:?} is not a tier: paused or stopped"))
}

async fn act_with(
    client: &Client,
    action: &str,
    a: ActionArgs,
    reason: Option<String>,
    tier: Option<Tier>,
) -> anyhow::Result<()> {
    let wait = a.timeout_ms.unwrap_or(a.timeout);
    // the default tier is left out: a node of an older version knows no `tier`
    let tier = tier.filter(|t| *t != Tier::Stopped);
    let req = ActionRequest { reason, wait_ms: (!a.no_wait).then_some(wait.as_millis() as u64), tier };
    let r: ActionResponse = client.post(&format!("/api/v1/personas/{}/{action}", seg(&a.name)), &req).await?;
    if a.json {
        table::json(&r)?;
    } else if let Some(note) = r.note.as_deref().filter(|_| !r.changed) {
        println!("{} {}: {note}", r.persona, r.action);
    } else {
        println!("{} {}: {}", r.persona, r.action, r.phase);
    }
    Ok(())
}

/// The diff, then what was (or would be) done.
fn print_apply(r: &ApplyResponse) {
    if !r.changed {
        println!("{}: unchanged, nothing to do", r.persona);
        return;
    }
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
    let rows: Vec<Vec<String>> = r
        .changes
        .iter()
        .map(|c| {
            let effect = if r.created {
                "new"
            } else if c.restart {
                "restart"
            } else {
                "in place"
            };
            vec![c.field.clone(), format!("{} → {}", show(&c.old), show(&c.new)), effect.to_owned()]
        })
        .collect();
    table::print(&["FIELD", "OLD → NEW", "EFFECT"], &rows);
    let on = r.node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default();
    let pid = r.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let what = match (r.dry_run, r.created, r.restart) {
        (true, true, _) => format!("dry run: {} would be added; nothing changed", r.persona),
        (true, false, true) => format!("dry run: {} would be restarted{on}; nothing changed", r.persona),
        (true, false, false) => format!("dry run: {} would be changed in place{on}; nothing changed", r.persona),
        (false, true, _) => format!("added {}{on}{pid}", r.persona),
        (false, false, true) => format!("applied: {} restarted{on}{pid}", r.persona),
        (false, false, false) => format!("applied: {} changed in place{on}, no restart{pid}", r.persona),
    };
    println!("{what}");
    if let Some(note) = &r.note {
        println!("note: {note}");
    }
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
                p.health.to_string(),
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

/// `[budget.min]` / `[budget.max]` in one line: `min throttle_multiplier 0.5; max
/// inference_queue_priority 90`.
fn envelope_line(e: &mindmesh_core::BudgetEnvelope) -> String {
    let side = |name: &str, b: &mindmesh_core::BudgetBound| {
        let p = b.to_patch();
        let set: Vec<String> = mindmesh_brain::budget::Field::ALL
            .into_iter()
            .filter_map(|f| f.of_patch(&p).map(|v| format!("{} {}", f.name(), f.format(v))))
            .collect();
        (!set.is_empty()).then(|| format!("{name} {}", set.join(", ")))
    };
    [side("min", &e.min), side("max", &e.max)].into_iter().flatten().collect::<Vec<_>>().join("; ")
}

/// `[maintenance]` in one line: `restart after 10000 inferences or 24.0 h up`.
fn maintenance_line(m: &mindmesh_core::spec::Maintenance) -> String {
    let mut when = Vec::new();
    if let Some(n) = m.restart_after_inferences {
        when.push(format!("{n} inferences"));
    }
    if let Some(s) = m.restart_after_s {
        when.push(format!("{:.1} h up", s as f64 / 3600.0));
    }
    format!("restart after {} since the process started (decided by the brain)", when.join(" or "))
}

/// The budget in one line, each value with its unit.
fn budget_line(b: &mindmesh_core::Budget) -> String {
    format!(
        "priority {}  timeout {}  tokens {}  concurrency {}  memory {} MB  throttle x{}  allowed to run: {}",
        b.inference_queue_priority,
        duration::show(Duration::from_millis(b.max_response_time_ms)),
        b.tokens_per_response,
        b.max_concurrent_inferences,
        b.max_memory_mb,
        b.throttle_multiplier,
        if b.allowed_to_run { "yes" } else { "no" },
    )
}

/// Each adjustable budget field in force with where it comes from (spec, brain, operator).
fn budget_sources(v: &PersonaView, page: &DecisionsPage) -> std::collections::BTreeMap<&'static str, &'static str> {
    use mindmesh_brain::budget::{self, Field};
    let Some(spec) = v.budget_spec.as_ref() else { return Default::default() };
    let mut mine: Vec<_> = page
        .decisions
        .iter()
        .filter(|d| d.by_kind == "analyst" && d.action == "budget")
        .filter_map(|d| Some((d.seq, d.budget_after.as_ref()?)))
        .collect();
    mine.sort_by_key(|(seq, _)| *seq);
    let brain = budget::brain_values(mine.into_iter().map(|(_, after)| after));
    Field::ALL.into_iter().map(|f| (f.name(), budget::source(f, &v.budget, spec, &brain).as_str())).collect()
}

/// What a persona last reported of itself, on one line.
fn reported_line(r: &mindmesh_core::reported::ReportedMetrics) -> String {
    let share = |v: Option<f32>| v.map_or("-".to_owned(), |x| format!("{:.0} %", x * 100.0));
    let mut parts =
        vec![format!("cache hit {}", share(r.cache_hit_rate)), format!("kv cache {}", share(r.kv_cache_usage))];
    if !r.adapters.is_empty() {
        parts.push(format!("adapters {}", r.adapters.join(",")));
    }
    parts.extend(r.counters.iter().map(|(k, v)| format!("{k}={v}")));
    parts.join("  ")
}

fn print_show(v: &PersonaView, series: &SeriesPage, sources: &std::collections::BTreeMap<&'static str, &'static str>) {
    let now = when::now_ms();
    println!("name:        {}", v.name);
    println!("node:        {}", v.node.as_deref().unwrap_or("-"));
    if let Some(d) = &v.desired {
        println!("desired:     {d} (epoch {})", v.epoch);
    }
    println!("phase:       {}{}", v.phase, v.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default());
    if let Some(to) = &v.migrating_to {
        println!("migrating:   to {to}");
    }
    println!("pid:         {}   port: {}", table::opt(v.pid), table::opt(v.port));
    println!("health:      {}", v.health);
    println!("restarts:    {}", v.restarts);
    println!("uptime:      {}", table::duration_s(v.uptime_s));
    if let Some(ms) = v.reload_ms {
        // what the idle policy weighs between the paused and stopped tiers
        println!("cold start:  {ms} ms (spawn to healthy)");
    }
    if v.paused_s.is_some() {
        println!("paused for:  {}", table::duration_s(v.paused_s));
    }
    println!("rss:         {} MB (peak {} MB)", table::mb(v.rss_bytes), table::mb(v.peak_rss_bytes));
    println!("cpu:         {:.1} %", v.cpu_percent);
    if let Some(r) = &v.reported {
        println!("reported:    {}", reported_line(r));
    }
    if v.metrics_refused > 0 {
        println!("  refused:   {} answers of its metrics path (garbage, oversized or late)", v.metrics_refused);
    }
    println!("importance:  {}", v.importance.as_str());
    if let Some(m) = &v.model {
        println!("model:       {m}");
    }
    println!("budget:      {}", budget_line(&v.budget));
    let moved: Vec<String> =
        sources.iter().filter(|(_, s)| **s != "spec").map(|(f, s)| format!("{f} by {s}")).collect();
    if !sources.is_empty() {
        println!(
            "  source:    {} (the brain reconsiders every cycle; its changes return to the spec once their cause has cleared)",
            if moved.is_empty() {
                "all as the spec says".to_string()
            } else {
                format!("{}; the rest as the spec says", moved.join(", "))
            }
        );
    }
    if let Some(spec) = &v.spec {
        if !spec.envelope.is_empty() {
            println!(
                "  envelope:  {} (what the brain may set; open fields: lower, never above the spec)",
                envelope_line(&spec.envelope)
            );
        }
        if !spec.maintenance.is_empty() {
            println!("maintenance: {}", maintenance_line(&spec.maintenance));
        }
        println!("command:     {} {}", spec.command, spec.args.join(" "));
    }
    if let Some(logs) = &v.log_files {
        println!("logs:        on {} (`mindmesh logs {}`)", logs.node, v.name);
        for f in &logs.files {
            println!("             {}  {} MB", f.path, table::mb(f.bytes));
        }
    }
    if let Some(bytes) = v.checkpoint_bytes {
        println!("checkpoint:  {bytes} bytes, {}", when::local_ago(v.checkpoint_at_ms, now));
    }
    println!(
        "gateway:     {} requests ({} failed)  in flight {}  queued {}  idle {}  burst {}",
        v.requests_total,
        v.errors_total,
        v.in_flight,
        v.queue_depth,
        table::duration_s(v.idle_s),
        table::opt(v.burst_s.map(|s| format!("{s:.1}s"))),
    );
    println!("last active: {}", when::local_ago(v.last_activity_ms, now));
    if !series.samples.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = series
            .samples
            .iter()
            .map(|s| {
                vec![
                    when::local(s.ts_ms),
                    when::ago(s.ts_ms, now),
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
                "TIME",
                "AGO",
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
