//! Metric history per persona and `/metrics` in Prometheus' text format.

use std::fmt::Write;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::types::SeriesPage;
use super::{ApiError, ApiState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    max_points: Option<usize>,
}

/// `GET /api/v1/personas/{name}/series`: the last hour by default.
pub async fn series(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<SeriesPage>, ApiError> {
    let to_ms = q.to_ms.unwrap_or_else(|| st.clock.now_ms());
    let from_ms = q.from_ms.unwrap_or(to_ms.saturating_sub(3_600_000));
    if from_ms > to_ms {
        return Err(ApiError { param: Some("from_ms".into()), ..ApiError::bad_request("from_ms is after to_ms") });
    }
    if !st.supervisor.status().borrow().contains_key(&name) {
        return Err(ApiError::not_found(format!("persona {name:?} not found")));
    }
    let samples = st.store.persona_series(&name, from_ms, to_ms, q.max_points.unwrap_or(500)).await?;
    Ok(Json(SeriesPage { persona: name, from_ms, to_ms, samples }))
}

/// `GET /metrics`: gauges per persona and for the host.
pub async fn prometheus(State(st): State<ApiState>) -> impl IntoResponse {
    let table = st.supervisor.status().borrow().clone();
    let traffic = st.gateway.all_traffic(st.clock.now_ms());
    let host = st.host.borrow().clone();
    let node = escape(&st.node_name);
    let mut out = String::with_capacity(256 + table.len() * 512);
    let mut gauge = |name: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{node=\"{node}\"{labels}}} {v}");
        }
    };
    let persona = |p: &str| format!(",persona=\"{}\"", escape(p));
    gauge(
        "mindmesh_persona_up",
        "1 if the persona is running",
        &mut table.values().map(|s| (persona(&s.name), f64::from(u8::from(s.phase.has_process())))),
    );
    gauge(
        "mindmesh_persona_rss_bytes",
        "Resident memory",
        &mut table.values().map(|s| (persona(&s.name), s.rss_bytes as f64)),
    );
    gauge(
        "mindmesh_persona_peak_rss_bytes",
        "Peak resident memory since start",
        &mut table.values().map(|s| (persona(&s.name), s.peak_rss_bytes as f64)),
    );
    gauge(
        "mindmesh_persona_cpu_percent",
        "CPU, 100 = one core",
        &mut table.values().map(|s| (persona(&s.name), f64::from(s.cpu_percent))),
    );
    gauge(
        "mindmesh_persona_restarts",
        "Automatic restarts since registration",
        &mut table.values().map(|s| (persona(&s.name), f64::from(s.restarts))),
    );
    gauge(
        "mindmesh_persona_throttle_multiplier",
        "Budget throttle multiplier",
        &mut table.values().map(|s| (persona(&s.name), s.budget.throttle_multiplier)),
    );
    let t = |s: &mindmesh_supervisor::PersonaStatus| traffic.get(&s.name).copied().unwrap_or_default();
    gauge(
        "mindmesh_persona_gateway_requests",
        "Requests through the gateway since the node started",
        &mut table.values().map(|s| (persona(&s.name), t(s).live.requests_total as f64)),
    );
    gauge(
        "mindmesh_persona_gateway_errors",
        "Failed requests through the gateway since the node started",
        &mut table.values().map(|s| (persona(&s.name), t(s).live.errors_total as f64)),
    );
    gauge(
        "mindmesh_persona_gateway_queue_depth",
        "Requests waiting in the node's queue",
        &mut table.values().map(|s| (persona(&s.name), f64::from(t(s).queue_depth))),
    );
    gauge(
        "mindmesh_persona_gateway_in_flight",
        "Requests in flight to the persona",
        &mut table.values().map(|s| (persona(&s.name), f64::from(t(s).in_flight))),
    );
    gauge(
        "mindmesh_persona_phase",
        "1 for the persona's current phase",
        &mut table.values().map(|s| (format!("{},phase=\"{}\"", persona(&s.name), s.phase), 1.0)),
    );
    if let Some(h) = host {
        gauge(
            "mindmesh_host_cpu_percent",
            "Host CPU, 0-100",
            &mut std::iter::once((String::new(), f64::from(h.cpu_percent))),
        );
        gauge(
            "mindmesh_host_memory_used_bytes",
            "Host memory in use",
            &mut std::iter::once((String::new(), h.memory_used_bytes as f64)),
        );
        gauge(
            "mindmesh_host_memory_total_bytes",
            "Host memory",
            &mut std::iter::once((String::new(), h.memory_total_bytes as f64)),
        );
    }
    let last = *st.last_event_seq.borrow();
    gauge(
        "mindmesh_events_last_seq",
        "Sequence number of the last event",
        &mut std::iter::once((String::new(), last as f64)),
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Label values escape backslash, quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
