//! `mindmesh brain …`: evaluate analysts on decision scenarios, and explain one scenario.
//!
//! `brain eval DIR [--analyst builtin|llm|naive] [--json]` reads every `*.json` in DIR
//! (format `mindmesh-scenario/1`), runs the analyst over each history as of its last sample
//! and scores the decisions; the naive baseline is shown beside it. Unreadable scenarios are
//! reported with file and reason, and the command exits non-zero.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use mindmesh_brain::eval::{self, EvalAnalyst, Judged, Summary};
use mindmesh_brain::scenario::{self, Scenario};
use mindmesh_brain::{Brain, CycleReport};
use mindmesh_core::config::{AnalystChoice, BrainConfig, NodeConfig};
use mindmesh_core::{Action, Decision};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnalystArg {
    /// The built-in statistical analyst.
    Builtin,
    /// The LLM analyst (its endpoint from `--config` or `MINDMESH_LLM_*`).
    Llm,
    /// The naive fixed-threshold baseline.
    Naive,
}

impl AnalystArg {
    fn eval(self) -> EvalAnalyst {
        match self {
            AnalystArg::Builtin => EvalAnalyst::Builtin,
            AnalystArg::Llm => EvalAnalyst::Llm,
            AnalystArg::Naive => EvalAnalyst::Naive,
        }
    }
    fn name(self) -> &'static str {
        match self {
            AnalystArg::Builtin => "builtin",
            AnalystArg::Llm => "llm",
            AnalystArg::Naive => "naive",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BrainCommand {
    /// Run an analyst over every scenario in DIR and score its decisions (an unlabelled one,
    /// such as a snapshot, is replayed and shown, not scored).
    Eval {
        /// Directory of `*.json` scenarios (format mindmesh-scenario/1), or one such file.
        dir: PathBuf,
        /// Which analyst decides; the naive baseline is always scored beside it.
        #[arg(long, value_enum, default_value = "builtin")]
        analyst: AnalystArg,
        /// One JSON object per persona per scenario on stdout, nothing else.
        #[arg(long)]
        json: bool,
        /// A node config file whose `[brain]` section (LLM endpoint, guardrails) applies;
        /// `MINDMESH_LLM_*` variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write each scenario's full cycle report (anomalies, health, LLM calls, fallbacks,
        /// guardrail changes) as JSON lines to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Exit 1 when accuracy is below this.
        #[arg(long)]
        min_accuracy: Option<f64>,
        /// Exit 1 when there are more disruptive false positives than this.
        #[arg(long)]
        max_disruptive_fp: Option<usize>,
    },
    /// Export the leader's live view (nodes, personas, series, events, budgets) as an
    /// unlabelled scenario that `brain explain` and `brain eval` replay.
    Snapshot {
        #[command(flatten)]
        api: super::client::ApiArgs,
        /// Write it to this file (replaced) rather than to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show what the built-in analyst sees and decides in one scenario: features, anomalies,
    /// health and the expected actions.
    Explain {
        /// The scenario file (format mindmesh-scenario/1).
        file: PathBuf,
        /// Print the cycle report with all features as JSON.
        #[arg(long)]
        json: bool,
        /// A node config file whose `[brain]` section applies (as for `eval`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub async fn run(cmd: BrainCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BrainCommand::Eval { dir, analyst, json, config, report, min_accuracy, max_disruptive_fp } => {
            eval_cmd(&dir, analyst, json, config.as_deref(), report.as_deref(), min_accuracy, max_disruptive_fp).await
        }
        BrainCommand::Explain { file, json, config } => explain_cmd(&file, json, config.as_deref()).await,
        BrainCommand::Snapshot { api, out } => snapshot_cmd(&api, out.as_deref()).await,
    }
}

impl BrainCommand {
    /// The node API arguments, for the commands that talk to a node.
    pub fn api_args(&mut self) -> Option<&mut super::client::ApiArgs> {
        match self {
            BrainCommand::Snapshot { api, .. } => Some(api),
            _ => None,
        }
    }
}

async fn snapshot_cmd(api: &super::client::ApiArgs, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let client = super::client::Client::new(api)?;
    let file: serde_json::Value = client.get("/api/v1/brain/snapshot").await?;
    let text = serde_json::to_string(&file)?;
    match out {
        Some(path) => {
            // whole or not at all: a replay never reads half a file
            let tmp = path.with_extension("json.partial");
            std::fs::write(&tmp, format!("{text}\n")).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
            let personas = file["personas"].as_array().map_or(0, Vec::len);
            eprintln!("wrote {} ({personas} personas); replay: mindmesh brain eval {0}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn brain_config(path: Option<&Path>) -> anyhow::Result<BrainConfig> {
    let mut cfg = match path {
        Some(p) => {
            let text = super::files::read_text(p, super::files::MAX_CONFIG_FILE_BYTES, "config")?;
            NodeConfig::from_toml_str(&text).with_context(|| format!("in {}", p.display()))?.brain
        }
        None => BrainConfig::default(),
    };
    cfg.apply_env(|k| std::env::var(k).ok()).context("LLM settings from the environment")?;
    Ok(cfg)
}

fn load(dir: &Path) -> Result<Vec<Scenario>, ExitCode> {
    // one file (a snapshot to replay) or a directory of them
    let loaded = if dir.is_file() {
        scenario::load_file(dir).map(|s| vec![s]).map_err(|e| vec![e])
    } else {
        scenario::load_dir(dir)
    };
    match loaded {
        Ok(s) => Ok(s),
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("error: {} unreadable scenario file(s); nothing evaluated", errors.len());
            Err(ExitCode::from(2))
        }
    }
}

struct Run {
    reports: Vec<CycleReport>,
    judged: Vec<Vec<Judged>>,
    summary: Summary,
}

async fn run_all(scenarios: &[Scenario], analyst: EvalAnalyst, cfg: &BrainConfig) -> Run {
    let make_llm = || {
        let mut c = cfg.clone();
        c.analyst = AnalystChoice::Llm;
        Brain::from_config(c)
    };
    let mut reports = Vec::with_capacity(scenarios.len());
    let mut judged = Vec::with_capacity(scenarios.len());
    for s in scenarios {
        let r = eval::run_scenario(s, analyst, cfg, &make_llm).await;
        judged.push(eval::judge(s, &r.decisions));
        reports.push(r);
    }
    let all: Vec<Judged> = judged.iter().flatten().cloned().collect();
    Run { reports, judged, summary: eval::summarize(&all) }
}

fn json_line(scenario: &str, d: &Decision) -> serde_json::Value {
    serde_json::json!({
        "scenario": scenario,
        "persona": d.persona,
        "action": d.action.as_str(),
        "target": d.target,
        "confidence": (f64::from(d.confidence) * 100.0).round() / 100.0,
        "reason": d.reason,
    })
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

#[allow(clippy::too_many_arguments)]
async fn eval_cmd(
    dir: &Path,
    analyst: AnalystArg,
    json: bool,
    config: Option<&Path>,
    report: Option<&Path>,
    min_accuracy: Option<f64>,
    max_fp: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let cfg = brain_config(config)?;
    let scenarios = match load(dir) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let main = run_all(&scenarios, analyst.eval(), &cfg).await;
    let naive =
        if analyst == AnalystArg::Naive { None } else { Some(run_all(&scenarios, EvalAnalyst::Naive, &cfg).await) };

    if let Some(path) = report {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for (s, r) in scenarios.iter().zip(&main.reports) {
            let line = serde_json::json!({"scenario": s.name, "file": s.path, "report": r});
            writeln!(f, "{line}")?;
        }
        f.flush()?;
    }

    let mut out = std::io::stdout().lock();
    if json {
        for (s, r) in scenarios.iter().zip(&main.reports) {
            for d in &r.decisions {
                writeln!(out, "{}", json_line(&s.name, d))?;
            }
        }
    } else {
        for ((s, r), judged) in scenarios.iter().zip(&main.reports).zip(&main.judged) {
            print_scenario(&mut out, s, r, judged)?;
        }
        print_summary(&mut out, analyst, &main, naive.as_ref(), scenarios.len())?;
    }
    out.flush()?;

    let s = &main.summary;
    let mut failed = false;
    if let Some(min) = min_accuracy
        && s.accuracy < min
    {
        eprintln!("error: accuracy {:.3} is below {min}", s.accuracy);
        failed = true;
    }
    if let Some(max) = max_fp
        && s.disruptive_false_positives > max
    {
        eprintln!("error: {} disruptive false positives, more than {max}", s.disruptive_false_positives);
        failed = true;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print_scenario(
    out: &mut impl std::io::Write,
    s: &Scenario,
    r: &CycleReport,
    judged: &[Judged],
) -> std::io::Result<()> {
    writeln!(
        out,
        "\n== {} ({} personas, {} nodes, every {} s; system health {}) ==",
        s.name,
        s.view.personas.len(),
        s.view.nodes.len(),
        s.interval_ms / 1000,
        r.system_health
    )?;
    if let Some(f) = &r.fallback {
        writeln!(out, "   llm fallback ({}): {}", f.kind, cut(&f.reason, 160))?;
    }
    if let Some(l) = &r.llm {
        writeln!(
            out,
            "   llm: {} in {} ms, {} prompt + {} completion tokens{}",
            l.outcome,
            l.latency_ms,
            l.prompt_tokens,
            l.completion_tokens,
            if l.tokens_reported { "" } else { " (estimated)" }
        )?;
    }
    writeln!(
        out,
        "{:<18} {:<12} {:<8} {:>5} {:>6}  {:<22} {:<6} reason",
        "persona", "action", "target", "conf", "health", "accept", "result"
    )?;
    for (j, h) in judged.iter().zip(&r.health) {
        let (action, target, conf, reason) = match &j.decision {
            Some(d) => {
                (d.action.as_str(), d.target.clone().unwrap_or_else(|| "-".into()), d.confidence, d.reason.as_str())
            }
            None => ("(none)", "-".into(), 0.0, ""),
        };
        let result = if !j.labelled {
            "-"
        } else if j.correct {
            "ok"
        } else if j.disruptive_fp {
            "FP!"
        } else if j.missed {
            "missed"
        } else {
            "wrong"
        };
        let accept = j.accept.iter().map(|a| a.as_str()).collect::<Vec<_>>().join("|");
        writeln!(
            out,
            "{:<18} {:<12} {:<8} {:>5.2} {:>6}  {:<22} {:<6} {}",
            cut(&j.persona, 18),
            action,
            cut(&target, 8),
            conf,
            h.score,
            cut(&accept, 22),
            result,
            cut(reason, 140)
        )?;
    }
    Ok(())
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

fn print_summary(
    out: &mut impl std::io::Write,
    analyst: AnalystArg,
    main: &Run,
    naive: Option<&Run>,
    scenarios: usize,
) -> std::io::Result<()> {
    let mut cols: Vec<(&str, &Summary)> = vec![(analyst.name(), &main.summary)];
    if let Some(n) = naive {
        cols.push(("naive", &n.summary));
    }
    writeln!(out, "\n== summary: {} scenarios, {} personas ==", scenarios, main.summary.personas)?;
    write!(out, "{:<28}", "")?;
    for (name, _) in &cols {
        write!(out, "{name:>16}")?;
    }
    writeln!(out)?;
    let row = |out: &mut dyn std::io::Write, label: &str, f: &dyn Fn(&Summary) -> String| -> std::io::Result<()> {
        write!(out, "{label:<28}")?;
        for (_, s) in &cols {
            write!(out, "{:>16}", f(s))?;
        }
        writeln!(out)
    };
    row(out, "accuracy", &|s| format!("{:.3}", s.accuracy))?;
    row(out, "correct", &|s| format!("{}/{}", s.correct, s.personas))?;
    row(out, "disruptive false positives", &|s| s.disruptive_false_positives.to_string())?;
    row(out, "missed", &|s| s.missed.to_string())?;
    writeln!(out, "precision / recall per action:")?;
    for a in Action::ALL {
        if cols.iter().all(|(_, s)| !s.per_action.contains_key(&a)) {
            continue;
        }
        row(out, &format!("  {a}"), &|s| {
            let sc = s.per_action.get(&a).copied().unwrap_or_default();
            format!("{} / {}", fmt_opt(sc.precision()), fmt_opt(sc.recall()))
        })?;
    }
    if analyst == AnalystArg::Llm {
        let calls: Vec<_> = main.reports.iter().filter_map(|r| r.llm.as_ref()).collect();
        let fallbacks = main.reports.iter().filter(|r| r.fallback.is_some()).count();
        let ok = calls.iter().filter(|c| c.outcome == "ok").count();
        let lat: u64 = calls.iter().map(|c| c.latency_ms).sum();
        let pt: u64 = calls.iter().map(|c| u64::from(c.prompt_tokens)).sum();
        let changed: usize = main.reports.iter().map(|r| r.guardrails.len()).sum();
        writeln!(
            out,
            "llm: {} calls, {} valid plans, {} fallbacks, mean latency {} ms, mean prompt {} tokens, {} decisions changed by guardrails",
            calls.len(),
            ok,
            fallbacks,
            if calls.is_empty() { 0 } else { lat / calls.len() as u64 },
            if calls.is_empty() { 0 } else { pt / calls.len() as u64 },
            changed
        )?;
    }
    Ok(())
}

async fn explain_cmd(file: &Path, json: bool, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = brain_config(config)?;
    let s = match scenario::load_file(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut brain = Brain::builtin(cfg.clone());
    for t in s.priming_times(cfg.guardrails.hysteresis_cycles) {
        brain.prime(&s.view, t);
    }
    brain.keep_features(true);
    let r = brain.analyse(&s.view, s.end_ms).await;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{}: {}", s.name, s.description)?;
    for n in &r.nodes {
        writeln!(
            out,
            "node {}: {} cores, cpu {:.0}% (usually {:.0}%), memory {:.0}%{}{}",
            n.id,
            n.cpu_cores,
            n.cpu_recent_percent,
            n.cpu_base_percent,
            100.0 * n.memory_frac,
            if n.memory_pressure { " MEMORY PRESSURE" } else { "" },
            if n.cpu_saturated { " CPU SATURATED" } else { "" }
        )?;
    }
    writeln!(out, "mesh: {:?}", r.mesh)?;
    let features = r.features.as_ref().map(|f| &f.personas);
    for (i, d) in r.decisions.iter().enumerate() {
        match s.expect.get(&d.persona) {
            Some(e) => writeln!(out, "\n-- {} => {} (expected {:?}: {})", d.persona, d.action, e.accept, e.why)?,
            None => writeln!(out, "\n-- {} => {} (unlabelled)", d.persona, d.action)?,
        }
        writeln!(out, "   reason: {}", d.reason)?;
        for a in &r.health[i].anomalies {
            writeln!(out, "   anomaly {} ({}): {}", a.kind.as_str(), a.severity.as_str(), a.description)?;
        }
        if let Some(f) = features.and_then(|f| f.get(i)) {
            writeln!(out, "   memory {}", serde_json::to_string(&f.memory)?)?;
            writeln!(out, "   latency {}", serde_json::to_string(&f.latency)?)?;
            writeln!(out, "   errors {}", serde_json::to_string(&f.errors)?)?;
            writeln!(out, "   activity {}", serde_json::to_string(&f.activity)?)?;
            writeln!(
                out,
                "   restarts {} cpu {} uptime_h {:.1}",
                serde_json::to_string(&f.restarts)?,
                serde_json::to_string(&f.cpu)?,
                f.uptime_ms.unwrap_or(0) as f64 / 3.6e6
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
