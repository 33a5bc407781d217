//! `mindmesh persona migrate` and `mindmesh node drain`: ask the mesh to move personas, then
//! follow the move in the mesh's persona list until it is done, printing each step (or one
//! JSON line per step with `--json`).

use std::time::{Duration, Instant};

use anyhow::bail;
use mindmesh_core::Phase;
use mindmesh_node::api::types::PersonaView;

use super::client::{Client, seg};

const POLL: Duration = Duration::from_millis(200);

/// Where a persona stands in its move, as the list shows it.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    node: Option<String>,
    migrating_to: Option<String>,
    phase: Phase,
}

impl Step {
    fn of(v: &PersonaView) -> Step {
        Step { node: v.node.clone(), migrating_to: v.migrating_to.clone(), phase: v.phase }
    }

    fn describe(&self) -> String {
        let on = self.node.as_deref().unwrap_or("no node");
        match &self.migrating_to {
            Some(to) => format!("on {on}, {}: draining, saving its state, stopping (→ {to})", self.phase),
            None => format!("on {on}: {}", self.phase),
        }
    }
}

pub async fn migrate(
    client: &Client,
    name: &str,
    to: &str,
    wait: bool,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let r: serde_json::Value =
        client.post(&format!("/api/v1/personas/{}/migrate", seg(name)), &serde_json::json!({ "to": to })).await?;
    report(
        json,
        name,
        &format!("migration from {} to {to} committed", r["from"].as_str().unwrap_or("no node")),
        started,
    );
    if !wait {
        return Ok(());
    }
    let mut last: Option<Step> = None;
    loop {
        let list: Vec<PersonaView> = client.get("/api/v1/personas").await?;
        let Some(v) = list.iter().find(|p| p.name == name) else { bail!("persona {name} is gone") };
        let step = Step::of(v);
        if last.as_ref() != Some(&step) {
            report(json, name, &step.describe(), started);
            last = Some(step.clone());
        }
        let arrived = step.node.as_deref() == Some(to) && step.migrating_to.is_none();
        if arrived && settled(v) {
            let state = v.checkpoint_bytes.map_or("no state".to_owned(), |b| format!("{b} bytes of state"));
            report(json, name, &format!("done: {} on {to} with {state}", v.phase), started);
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{name} did not arrive on {to} within {} s ({})", timeout.as_secs(), step.describe());
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn drain(
    client: &Client,
    node: &str,
    undo: bool,
    wait: bool,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let r: serde_json::Value =
        client.post(&format!("/api/v1/nodes/{}/drain", seg(node)), &serde_json::json!({ "undo": undo })).await?;
    if undo {
        report(json, node, "no longer draining: it takes new personas again", started);
        return Ok(());
    }
    let personas = r["personas"].as_u64().unwrap_or(0);
    let stuck: Vec<(String, String)> = r["stuck"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|p| {
                    (p["persona"].as_str().unwrap_or("?").to_owned(), p["reason"].as_str().unwrap_or("").to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    if json {
        let stuck_json: Vec<serde_json::Value> =
            stuck.iter().map(|(p, why)| serde_json::json!({ "persona": p, "reason": why })).collect();
        let step = format!("draining: {personas} personas to move");
        let ms = started.elapsed().as_millis();
        println!("{}", serde_json::json!({ "subject": node, "step": step, "elapsed_ms": ms, "stuck": stuck_json }));
    } else {
        report(json, node, &format!("draining: {personas} personas to move"), started);
        for (p, why) in &stuck {
            report(json, node, &format!("cannot move {p}: {why}"), started);
        }
    }
    if !wait {
        return Ok(());
    }
    let stuck_names: std::collections::BTreeSet<&str> = stuck.iter().map(|(p, _)| p.as_str()).collect();
    let undo_hint = format!("it stays draining; `mindmesh node drain {node} --undo` takes new personas there again");
    if personas > 0 && stuck.len() as u64 >= personas {
        let names: Vec<&str> = stuck_names.iter().copied().collect();
        bail!("the drain of {node} cannot finish: nowhere to move {} ({undo_hint})", names.join(", "));
    }
    let mut last_left = usize::MAX;
    let mut moved: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    loop {
        let list: Vec<PersonaView> = client.get("/api/v1/personas").await?;
        let left: Vec<&PersonaView> = list.iter().filter(|p| p.node.as_deref() == Some(node)).collect();
        moved.extend(left.iter().map(|p| p.name.clone()));
        let moving = left.iter().filter(|p| p.migrating_to.is_some()).count();
        if left.len() != last_left {
            report(json, node, &format!("{} personas left ({moving} migrating)", left.len()), started);
            last_left = left.len();
        }
        // done when every persona that was here has settled where it went
        let unsettled = list.iter().filter(|p| moved.contains(&p.name) && !settled(p)).count();
        if left.is_empty() && unsettled == 0 {
            report(json, node, "drained", started);
            return Ok(());
        }
        // what could move has moved: the rest has nowhere to go (said at the start)
        if moving == 0 && !left.is_empty() && left.iter().all(|p| stuck_names.contains(p.name.as_str())) {
            let names: Vec<&str> = left.iter().map(|p| p.name.as_str()).collect();
            bail!("the drain of {node} cannot finish: nowhere to move {} ({undo_hint})", names.join(", "));
        }
        if started.elapsed() > timeout {
            bail!("{node} still has {} personas after {} s", left.len(), timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Running if the mesh wants it running, without a process otherwise.
fn settled(v: &PersonaView) -> bool {
    match v.desired.as_deref() {
        Some("running") => v.phase == Phase::Running,
        _ => !v.phase.has_process(),
    }
}

fn report(json: bool, subject: &str, what: &str, started: Instant) {
    let ms = started.elapsed().as_millis();
    if json {
        println!("{}", serde_json::json!({ "subject": subject, "step": what, "elapsed_ms": ms }));
    } else {
        println!("[{:>6.1} s] {subject}: {what}", ms as f64 / 1000.0);
    }
}
