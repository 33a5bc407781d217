//! `mindmesh status`: the node and its mesh at a glance — members with their role, the leader
//! and term, every persona with the node it runs on, and the brain's last view of the mesh.

use std::process::ExitCode;

use mindmesh_node::api::types::NodeStatus;

use super::client::{ApiArgs, Client};
use super::{persona, table};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Print the status as JSON (with the brain's summary under `brain`).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let client = Client::new(&args.api)?;
    let s: NodeStatus = client.get("/api/v1/status").await?;
    // the leader's analysis, if there is one yet (not an error when there is not)
    let brain: Option<serde_json::Value> = client.get("/api/v1/brain").await.ok();
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let Some(b) = &brain {
            v["brain"] = summary(b);
        }
        table::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("node:      {} (mindmesh {}), up {}", s.node, s.version, table::duration_s(Some(s.uptime_s)));
    println!("api:       {}", s.api);
    println!("data dir:  {}", s.data_dir);
    println!("limits:    {}", s.limits);
    if let Some(h) = &s.host {
        println!(
            "host:      cpu {:.1} % of {} cores, memory {} / {} MB",
            h.cpu_percent,
            h.cpu_cores,
            table::mb(h.memory_used_bytes),
            table::mb(h.memory_total_bytes)
        );
    }
    if let Some(m) = &s.mesh {
        println!(
            "mesh:      this node is {} (term {}); leader: {}",
            m.role,
            m.term,
            m.leader.as_deref().unwrap_or("none known")
        );
        println!();
        let rows: Vec<Vec<String>> = m
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.role.clone(),
                    n.address.clone(),
                    n.last_seen_ms.map_or_else(|| "never".into(), |ms| format!("{:.1}s ago", ms as f64 / 1000.0)),
                    if n.healthy { "ok".into() } else { "STALE".into() },
                    n.personas.to_string(),
                    n.cpu_percent.map_or_else(|| "-".into(), |c| format!("{c:.0}")),
                ]
            })
            .collect();
        table::print(&["NODE", "ROLE", "ADDRESS", "LAST_SEEN", "HEALTH", "PERSONAS", "CPU_%"], &rows);
    }
    if let Some(b) = &brain {
        let sum = summary(b);
        println!();
        println!(
            "brain:     system health {}/100, analyst {}, cycle {}{}",
            sum["system_health"],
            sum["analyst"].as_str().unwrap_or("?"),
            sum["cycle"],
            sum["fallback"].as_str().map(|f| format!(" (fell back: {f})")).unwrap_or_default()
        );
        for a in sum["anomalies"].as_array().into_iter().flatten() {
            println!("  {}", a.as_str().unwrap_or_default());
        }
    }
    let phases: Vec<String> = s.phases.iter().map(|(p, n)| format!("{n} {p}")).collect();
    println!();
    println!("personas:  {}", if phases.is_empty() { "none".to_owned() } else { phases.join(", ") });
    if !s.personas.is_empty() {
        println!();
        persona::print_list(&s.personas);
    }
    Ok(ExitCode::SUCCESS)
}

/// The brain's report, cut to what an operator reads at a glance: health, analyst, and the
/// personas with anomalies (score and what was seen).
fn summary(report: &serde_json::Value) -> serde_json::Value {
    let mut anomalies = Vec::new();
    for h in report["health"].as_array().into_iter().flatten() {
        let list = h["anomalies"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            continue;
        }
        let what: Vec<String> = list
            .iter()
            .map(|a| format!("{} ({})", a["kind"].as_str().unwrap_or("?"), a["severity"].as_str().unwrap_or("?")))
            .collect();
        anomalies.push(serde_json::Value::from(format!(
            "{}: health {}/100, {}",
            h["persona"].as_str().unwrap_or("?"),
            h["score"],
            what.join(", ")
        )));
    }
    serde_json::json!({
        "system_health": report["system_health"],
        "analyst": report["analyst_used"],
        "cycle": report["cycle"],
        "fallback": report["fallback"]["reason"],
        "anomalies": anomalies,
        "health": report["health"],
    })
}
