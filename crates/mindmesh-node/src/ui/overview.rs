//! `GET /ui?decisions=N`: the mesh (nodes, leader, lease, health), every persona (phase,
//! health, budget) and the last `N` decisions (default 50, at most 500).

use std::collections::HashMap;
use std::fmt::Write;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{ago, data, error_page, escape, mib, page, path_segment};
use crate::api::types::{DecisionView, MeshStatusView, PersonaView};
use crate::api::{ApiError, ApiState};
use crate::http::auth::Caller;

pub const DEFAULT_DECISIONS: usize = 50;
pub const MAX_DECISIONS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    decisions: Option<usize>,
}

async fn render(
    st: ApiState,
    caller: Caller,
    q: Result<Query<OverviewQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let n = q.decisions.unwrap_or(DEFAULT_DECISIONS);
    if !(1..=MAX_DECISIONS).contains(&n) {
        return Err(ApiError {
            param: Some("decisions".into()),
            ..ApiError::bad_request(format!("decisions must be 1 to {MAX_DECISIONS}"))
        });
    }
    let status = data::status(&st).await;
    let now = st.clock.now_ms();
    let brain = data::brain(&st, &caller).await;
    let decisions = data::recent_decisions(&st, None, n).await?;
    let mut body = String::with_capacity(16 * 1024);
    if let Some(mesh) = &status.mesh {
        mesh_section(&mut body, mesh, &brain, now);
    }
    personas_section(&mut body, &status.personas, &brain);
    let _ = write!(body, "<section><h2>Decisions <span class=\"count\">(last {n})</span></h2>");
    decisions_table(&mut body, &decisions, now, true);
    body.push_str("</section>");
    Ok(page(StatusCode::OK, "mesh", &st.node_name, &body))
}

/// `GET /ui`.
pub async fn show(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<OverviewQuery>, QueryRejection>,
) -> Response {
    let node = st.node_name.clone();
    render(st, caller, q).await.unwrap_or_else(|e| error_page(&node, e))
}

fn mesh_section(out: &mut String, mesh: &MeshStatusView, brain: &Result<Value, ApiError>, now: u64) {
    let lease = if !mesh.lease.enforced {
        "not enforced".to_owned()
    } else if mesh.lease.held {
        format!("held, {} ms left", mesh.lease.remaining_ms.unwrap_or(0))
    } else {
        "<strong class=\"bad\">lapsed: this node runs no persona</strong>".to_owned()
    };
    let analysis = match brain {
        Ok(b) => format!(
            "system health <strong>{}</strong>/100, cycle {}, analyst {}",
            b["system_health"].as_u64().unwrap_or(0),
            b["cycle"].as_u64().unwrap_or(0),
            escape(b["analyst_used"].as_str().unwrap_or("?"))
        ),
        Err(e) => format!("no analysis: {}", escape(&e.message)),
    };
    let _ = write!(
        out,
        "<section><h2>Mesh</h2><p class=\"facts\" id=\"mesh-facts\">leader <strong id=\"leader\">{leader}</strong>, \
         term {term}; this node is {role}; lease {lease}; {analysis}</p>\
         <table id=\"nodes\"><thead><tr><th>node</th><th>role</th><th>health</th><th>last heard</th>\
         <th>personas</th><th>CPU</th><th>memory</th><th>address</th></tr></thead><tbody>",
        leader = escape(mesh.leader.as_deref().unwrap_or("none known")),
        term = mesh.term,
        role = escape(&mesh.role),
    );
    for n in &mesh.nodes {
        let health = if n.draining {
            "<span class=\"warn\">draining</span>"
        } else if n.healthy || n.id == mesh.node_id {
            "<span class=\"ok\">healthy</span>"
        } else {
            "<span class=\"bad\">not heard</span>"
        };
        let heard = match n.last_seen_ms {
            _ if n.id == mesh.node_id => "this node".to_owned(),
            Some(age) => ago(now, now.saturating_sub(age)),
            None => "never".to_owned(),
        };
        let _ = write!(
            out,
            "<tr class=\"node-row\" data-node=\"{name}\"><td>{name}</td><td class=\"role-{role}\">{role}</td><td>{health}</td>\
             <td>{heard}</td><td>{personas}</td><td>{cpu}</td><td>{mem}</td><td><code>{addr}</code></td></tr>",
            name = escape(&n.name),
            role = escape(&n.role),
            personas = n.personas,
            cpu = n.cpu_percent.map_or_else(|| "–".to_owned(), |c| format!("{c:.0}%")),
            mem = n.memory_used_bytes.map_or_else(|| "–".to_owned(), mib),
            addr = escape(&n.address),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// The brain's health score per persona, from its last report.
fn scores(brain: &Result<Value, ApiError>) -> HashMap<String, (u64, String)> {
    let mut out = HashMap::new();
    if let Ok(b) = brain {
        for h in b["health"].as_array().into_iter().flatten() {
            let anomalies: Vec<&str> = h["anomalies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["description"].as_str())
                .take(3)
                .collect();
            if let Some(p) = h["persona"].as_str() {
                out.insert(p.to_owned(), (h["score"].as_u64().unwrap_or(0), anomalies.join("; ")));
            }
        }
    }
    out
}

pub fn label<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

fn personas_section(out: &mut String, personas: &[PersonaView], brain: &Result<Value, ApiError>) {
    let scores = scores(brain);
    let _ = write!(
        out,
        "<section><h2>Personas <span class=\"count\">({})</span></h2>\
         <table id=\"personas\"><thead><tr><th>persona</th><th>node</th><th>phase</th><th>health</th>\
         <th>brain</th><th>memory / budget</th><th>CPU</th><th>queue</th><th>requests (errors)</th>\
         <th>restarts</th><th>budget</th></tr></thead><tbody>",
        personas.len()
    );
    if personas.is_empty() {
        out.push_str("<tr><td colspan=\"11\" class=\"empty\">no personas yet</td></tr>");
    }
    for p in personas {
        let budget_bytes = mindmesh_core::bounds::mb_to_bytes(p.budget.max_memory_mb);
        let over = p.rss_bytes > budget_bytes;
        let (score, why) = scores.get(&p.name).cloned().unwrap_or((0, String::new()));
        let brain_cell = if scores.contains_key(&p.name) {
            let class = match score {
                80.. => "ok",
                50..80 => "warn",
                _ => "bad",
            };
            format!("<span class=\"{class}\" title=\"{}\">{score}</span>", escape(&why))
        } else {
            "–".to_owned()
        };
        let phase = p.phase.as_str();
        let desired = match p.desired.as_deref() {
            Some(d) if d != phase => format!(" <span class=\"desired\">→ {}</span>", escape(d)),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr class=\"persona-row\" data-persona=\"{name}\"><td><a href=\"/ui/personas/{link}\">{name}</a></td>\
             <td>{node}</td><td class=\"phase phase-{phase}\">{phase}{desired}</td><td class=\"health-{health}\">{health}</td>\
             <td>{brain_cell}</td><td class=\"{mem_class}\">{rss} / {budget_mb} MiB</td><td>{cpu:.0}%</td>\
             <td>{queue} + {inflight}</td><td>{req} ({err})</td><td>{restarts}</td>\
             <td class=\"budget\">{rt} ms · prio {prio} · ×{throttle} · {conc} at once{allowed}</td></tr>",
            name = escape(&p.name),
            link = path_segment(&p.name),
            node = escape(p.node.as_deref().unwrap_or("unplaced")),
            health = escape(&label(&p.health)),
            mem_class = if over { "bad" } else { "" },
            rss = mib(p.rss_bytes),
            budget_mb = p.budget.max_memory_mb,
            cpu = p.cpu_percent,
            queue = p.queue_depth,
            inflight = p.in_flight,
            req = p.requests_total,
            err = p.errors_total,
            restarts = p.restarts,
            rt = p.budget.max_response_time_ms,
            prio = p.budget.inference_queue_priority,
            throttle = p.budget.throttle_multiplier,
            conc = p.budget.max_concurrent_inferences,
            allowed =
                if p.budget.allowed_to_run { "" } else { " · <strong class=\"bad\">not allowed to run</strong>" },
        );
    }
    out.push_str("</tbody></table></section>");
}

/// The decision log's rows, newest first; `with_persona`: a column naming the persona.
pub fn decisions_table(out: &mut String, decisions: &[DecisionView], now: u64, with_persona: bool) {
    out.push_str("<table id=\"decisions\"><thead><tr><th>#</th><th>when</th>");
    if with_persona {
        out.push_str("<th>persona</th>");
    }
    out.push_str("<th>action</th><th>by</th><th>reason</th><th>confidence</th><th>outcome</th></tr></thead><tbody>");
    if decisions.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"empty\">no decisions yet</td></tr>",
            7 + usize::from(with_persona)
        );
    }
    for d in decisions {
        let outcome = match (d.verdict.as_str(), &d.executed_by, &d.outcome) {
            (v, Some(node), Some(o)) => format!("{} by {}: {}", escape(v), escape(node), escape(o)),
            (v, None, Some(o)) => format!("{}: {}", escape(v), escape(o)),
            (v, _, None) => escape(v),
        };
        let class = match d.executed_ok {
            Some(true) => "ok",
            Some(false) => "bad",
            None if d.verdict == "refused" => "warn",
            None => "",
        };
        let action = if d.effect.is_empty() || d.effect == d.action {
            escape(&d.action)
        } else {
            format!("{} <span class=\"effect\">({})</span>", escape(&d.action), escape(&d.effect))
        };
        let repeats = if d.count > 1 { format!(" <span class=\"count\">×{}</span>", d.count) } else { String::new() };
        let _ = write!(
            out,
            "<tr class=\"decision-row\" data-seq=\"{seq}\"><td>{seq}</td><td>{when}</td>",
            seq = d.seq,
            when = ago(now, d.decided_at_ms),
        );
        if with_persona {
            let _ = write!(
                out,
                "<td><a href=\"/ui/personas/{}\">{}</a></td>",
                path_segment(&d.persona),
                escape(&d.persona)
            );
        }
        let _ = write!(
            out,
            "<td>{action}{repeats}</td><td>{by}</td><td class=\"reason\">{reason}</td><td>{conf:.0}%</td>\
             <td class=\"outcome {class}\">{outcome}</td></tr>",
            by = escape(if d.by.is_empty() { &d.analyst } else { &d.by }),
            reason = escape(&d.reason),
            conf = d.confidence * 100.0,
        );
    }
    out.push_str("</tbody></table>");
}
