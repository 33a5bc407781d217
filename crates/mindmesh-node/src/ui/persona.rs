//! `GET /ui/personas/{name}?hours=H`: one persona over the last `H` hours of its stored
//! history (default and most: 24, the store's retention): memory with its fitted trend and
//! budget, latency p50/p99 against the response-time budget, errors by kind, queue, CPU, and
//! the decisions about it.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use mindmesh_core::metrics::PersonaSample;
use serde::Deserialize;

use super::overview::{decisions_table, label};
use super::svg::{PALETTE, Plot, Rule, Series, render};
use super::{data, error_page, escape, mib, page};
use crate::api::types::PersonaView;
use crate::api::{ApiError, ApiState};
use crate::http::auth::Caller;

pub const DEFAULT_HOURS: u64 = 24;
pub const MAX_HOURS: u64 = 24;
/// Points per plot line: one per two minutes over a day.
pub const POINTS: usize = 720;
/// Decisions listed under the plots.
const DECISIONS: usize = 100;
/// Longest persona name looked up (names are validated far shorter).
const MAX_NAME_BYTES: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaQuery {
    hours: Option<u64>,
}

/// `GET /ui/personas/{name}`.
pub async fn show(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Result<Query<PersonaQuery>, QueryRejection>,
) -> Response {
    let node = st.node_name.clone();
    match build(st, caller, name, q).await {
        Ok(r) => r,
        Err(e) => error_page(&node, e),
    }
}

async fn build(
    st: ApiState,
    caller: Caller,
    name: String,
    q: Result<Query<PersonaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let hours = q.hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError {
            param: Some("hours".into()),
            ..ApiError::bad_request(format!("hours must be 1 to {MAX_HOURS}"))
        });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!("a persona name is at most {MAX_NAME_BYTES} bytes")));
    }
    let status = data::status(&st).await;
    let Some(p) = status.personas.iter().find(|p| p.name == name) else {
        return Err(ApiError::not_found(format!("no persona named {name:?} in the mesh")));
    };
    let now = st.clock.now_ms();
    let from = now.saturating_sub(hours * 3_600_000);
    // this node's personas are read here; another node's are asked of it
    let owner_api = match p.node.as_deref() {
        Some(n) if n == &*st.node_name => None,
        Some(n) => st.mesh.registry().node_by_name(n).map(|e| e.info.api.clone()),
        None => None,
    };
    let samples = match (p.node.as_deref(), &owner_api) {
        (None, _) => Err("not placed on a node yet".to_owned()),
        (Some(n), None) if n != &*st.node_name => Err(format!("node {n} is not in the registry")),
        _ => data::series(&st, &caller, &name, owner_api.as_deref(), from, now, POINTS)
            .await
            .map(|s| s.samples)
            .map_err(|e| e.message),
    };
    let decisions = data::recent_decisions(&st, Some(&name), DECISIONS).await?;
    let brain = data::brain(&st, &caller).await;

    let mut body = String::with_capacity(64 * 1024);
    // another node's persona comes with gossip's figures only: its last sample fills in memory
    let mut p = p.clone();
    if let Some(last) = samples.as_ref().ok().and_then(|s| s.last())
        && p.rss_bytes == 0
    {
        p.rss_bytes = last.rss_bytes;
        p.peak_rss_bytes = p.peak_rss_bytes.max(last.peak_rss_bytes);
    }
    let p = &p;
    facts(&mut body, p, &brain);
    let _ = write!(
        body,
        "<section><h2>Last {hours} h <span class=\"count\">{ranges}</span></h2>",
        ranges =
            [1u64, 6, 24].iter().map(|h| format!("<a href=\"?hours={h}\">{h} h</a>")).collect::<Vec<_>>().join(" · ")
    );
    match &samples {
        Ok(s) => {
            let _ =
                write!(body, "<p class=\"facts\" id=\"samples\" data-samples=\"{}\">{} samples</p>", s.len(), s.len());
            body.push_str("<div class=\"plots\">");
            // a younger history than the range is drawn across the whole width
            let first = s.first().map_or(from, |f| f.ts_ms.saturating_sub(1000).max(from));
            for plot in plots(p, s, first, now) {
                body.push_str(&render(&plot));
            }
            body.push_str("</div>");
        }
        Err(why) => {
            let _ = write!(body, "<p class=\"error\">no history: {}</p>", escape(why));
        }
    }
    body.push_str("</section><section><h2>Decisions</h2>");
    decisions_table(&mut body, &decisions, now, false);
    body.push_str("</section>");
    Ok(page(StatusCode::OK, &name, &st.node_name, &body))
}

fn facts(out: &mut String, p: &PersonaView, brain: &Result<serde_json::Value, ApiError>) {
    let health = brain
        .as_ref()
        .ok()
        .and_then(|b| b["health"].as_array()?.iter().find(|h| h["persona"].as_str() == Some(p.name.as_str())).cloned());
    let _ = write!(
        out,
        "<section><h1 id=\"persona\" data-persona=\"{name}\">{name}</h1><p class=\"facts\">on <strong>{node}</strong>, \
         phase <strong class=\"phase phase-{phase}\">{phase}</strong>{reason}, health {health}, importance {imp}, \
         {rss} (peak {peak}), {restarts} restarts, {req} requests ({err} failed)</p>\
         <p class=\"facts\">budget: {mem} MiB memory, {rt} ms per response, {tok} tokens per response, \
         priority {prio}, {conc} at once, throttle ×{thr}{allowed}</p>",
        name = escape(&p.name),
        node = escape(p.node.as_deref().unwrap_or("no node yet")),
        phase = p.phase.as_str(),
        reason = p.reason.as_deref().map_or_else(String::new, |r| format!(" ({})", escape(r))),
        health = escape(&label(&p.health)),
        imp = escape(&label(&p.importance)),
        rss = mib(p.rss_bytes),
        peak = mib(p.peak_rss_bytes),
        restarts = p.restarts,
        req = p.requests_total,
        err = p.errors_total,
        mem = p.budget.max_memory_mb,
        rt = p.budget.max_response_time_ms,
        tok = p.budget.tokens_per_response,
        prio = p.budget.inference_queue_priority,
        conc = p.budget.max_concurrent_inferences,
        thr = p.budget.throttle_multiplier,
        allowed = if p.budget.allowed_to_run { "" } else { ", <strong class=\"bad\">not allowed to run</strong>" },
    );
    if let Some(h) = health {
        let _ = write!(
            out,
            "<p class=\"facts\">the brain's score: <strong>{}</strong>/100",
            h["score"].as_u64().unwrap_or(0)
        );
        let anomalies: Vec<String> = h["anomalies"]
            .as_array()
            .into_iter()
            .flatten()
            .take(10)
            .map(|a| format!("<li>{}</li>", escape(a["description"].as_str().unwrap_or(""))))
            .collect();
        if anomalies.is_empty() {
            out.push_str(", no anomalies</p>");
        } else {
            let _ = write!(out, "</p><ul class=\"anomalies\">{}</ul>", anomalies.concat());
        }
    }
    out.push_str("</section>");
}

/// The persona's plots over `[from_ms, to_ms]`.
pub fn plots(p: &PersonaView, samples: &[PersonaSample], from_ms: u64, to_ms: u64) -> Vec<Plot> {
    let mb = mindmesh_core::bounds::mb_to_bytes(1) as f64;
    let at = |s: &PersonaSample| s.ts_ms as f64;
    let line = |label: &str, color, f: &dyn Fn(&PersonaSample) -> f64| Series {
        label: label.to_owned(),
        color,
        points: samples.iter().map(|s| (at(s), f(s))).collect(),
        dashed: false,
    };
    let opt = |v: Option<f32>| v.map_or(f64::NAN, f64::from);
    let base = |id: &str, title: &str, unit: &str| Plot {
        id: id.to_owned(),
        title: title.to_owned(),
        unit: unit.to_owned(),
        from_ms,
        to_ms,
        ..Plot::default()
    };

    // memory, its fitted line (the brain's least squares over what is shown) and the budget
    let rss = line("rss", PALETTE[0], &|s| s.rss_bytes as f64 / mb);
    let mut memory = base("memory", "Memory", "MiB");
    let fit = mindmesh_brain::stats::linreg(rss.points.iter().map(|&(x, y)| (x, y, 1.0)));
    memory.series.push(rss);
    if let (Some(f), Some(first), Some(last)) = (fit, samples.first(), samples.last()) {
        let per_hour = f.slope * 3_600_000.0;
        memory.series.push(Series {
            label: format!("trend {per_hour:+.1} MiB/h, r² {:.2}", f.r2),
            color: PALETTE[1],
            points: vec![(at(first), f.at(at(first))), (at(last), f.at(at(last)))],
            dashed: true,
        });
    }
    memory.rules.push(Rule {
        label: format!("budget {} MiB", p.budget.max_memory_mb),
        y: p.budget.max_memory_mb as f64,
        color: "#c00",
    });

    let mut latency = base("latency", "Latency", "ms");
    latency.series.push(line("p50", PALETTE[0], &|s| opt(s.latency_p50_ms)));
    latency.series.push(line("p99", PALETTE[1], &|s| opt(s.latency_p99_ms)));
    latency.rules.push(Rule {
        label: format!("budget {} ms", p.budget.max_response_time_ms),
        y: p.budget.max_response_time_ms as f64,
        color: "#c00",
    });

    let mut errors = base("errors", "Errors by kind", "per sample");
    let mut kinds: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        for (kind, _) in &s.errors_by_kind {
            kinds.entry(kind.label()).or_default();
        }
    }
    for s in samples {
        for (kind, points) in kinds.iter_mut() {
            let n: u32 = s.errors_by_kind.iter().filter(|(k, _)| &k.label() == kind).map(|(_, n)| *n).sum();
            points.push((at(s), f64::from(n)));
        }
    }
    errors.series.push(line("all", PALETTE[6], &|s| f64::from(s.errors)));
    for (i, (kind, points)) in kinds.into_iter().enumerate() {
        errors.series.push(Series { label: kind, color: PALETTE[(i + 1) % 6], points, dashed: false });
    }

    let mut queue = base("queue", "Queue", "requests");
    queue.series.push(line("waiting", PALETTE[0], &|s| f64::from(s.queue_depth)));
    queue.series.push(line("in flight", PALETTE[2], &|s| f64::from(s.in_flight)));

    let mut cpu = base("cpu", "CPU", "% of one core");
    cpu.series.push(line("cpu", PALETTE[2], &|s| f64::from(s.cpu_percent)));

    vec![memory, latency, errors, queue, cpu]
}
