//! `mindmesh status`: the node at a glance.

use std::process::ExitCode;

use mindmesh_node::api::types::NodeStatus;

use super::client::{ApiArgs, Client};
use super::{persona, table};

pub async fn run(json: bool, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(api)?;
    let s: NodeStatus = client.get("/api/v1/status").await?;
    if json {
        table::json(&s)?;
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
    let phases: Vec<String> = s.phases.iter().map(|(p, n)| format!("{n} {p}")).collect();
    println!("personas:  {}", if phases.is_empty() { "none".to_owned() } else { phases.join(", ") });
    if !s.personas.is_empty() {
        println!();
        persona::print_list(&s.personas);
    }
    Ok(ExitCode::SUCCESS)
}
