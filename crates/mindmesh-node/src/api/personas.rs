//! Personas: add, list, show, remove, actions, throttle, budget.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use mindmesh_core::spec::parse_json;
use mindmesh_core::{BudgetPatch, PersonaSpec, Phase};
use mindmesh_supervisor::{Act, PersonaStatus};
use serde::Deserialize;

use super::types::{ActionRequest, ActionResponse, PersonaView, ThrottleRequest};
use super::{ApiError, ApiState};
use crate::gateway::Gateway;

/// Longest an action request may ask to wait for its outcome.
const MAX_WAIT_MS: u64 = 120_000;

pub fn view(s: &PersonaStatus, now_ms: u64, gateway: &Gateway) -> PersonaView {
    let t = gateway.traffic(&s.name, now_ms).unwrap_or_default();
    PersonaView {
        name: s.name.clone(),
        phase: s.phase,
        reason: s.reason.clone(),
        pid: s.pid,
        port: s.port,
        restarts: s.restarts,
        health: s.health,
        importance: s.importance,
        model: s.model.clone(),
        rss_bytes: s.rss_bytes,
        peak_rss_bytes: s.peak_rss_bytes,
        cpu_percent: s.cpu_percent,
        uptime_s: s.started_at_ms.map(|t| now_ms.saturating_sub(t) / 1000),
        throttle_multiplier: s.budget.throttle_multiplier,
        budget: s.budget.clone(),
        queue_depth: t.queue_depth,
        in_flight: t.in_flight,
        requests_total: t.live.requests_total,
        errors_total: t.live.errors_total,
        last_activity_ms: t.live.last_activity_ms,
        idle_s: t.live.idle_ms.map(|ms| ms / 1000),
        burst_s: t.live.burst_ms.map(|ms| ms as f64 / 1000.0),
        spec: None,
    }
}

pub async fn list(State(st): State<ApiState>) -> Json<Vec<PersonaView>> {
    let now = st.clock.now_ms();
    let table = st.supervisor.status().borrow().clone();
    Json(table.values().map(|s| view(s, now, &st.gateway)).collect())
}

pub async fn show(State(st): State<ApiState>, Path(name): Path<String>) -> Result<Json<PersonaView>, ApiError> {
    let now = st.clock.now_ms();
    let status = st.supervisor.status().borrow().get(&name).cloned();
    let status = status.ok_or_else(|| ApiError::not_found(format!("persona {name:?} not found")))?;
    let mut v = view(&status, now, &st.gateway);
    v.spec = st.store.get_persona(&name).await?.map(|r| r.spec);
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddQuery {
    #[serde(default = "yes")]
    start: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/personas`: a spec as JSON, or TOML with `Content-Type: application/toml`.
pub async fn add(
    State(st): State<ApiState>,
    Query(q): Query<AddQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<PersonaView>), ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let is_toml = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("toml"));
    let spec = if is_toml { PersonaSpec::from_toml_str(text)? } else { PersonaSpec::from_json_str(text)? };
    let name = spec.name.clone();
    st.supervisor.add(spec, q.start).await?;
    let now = st.clock.now_ms();
    let status = st.supervisor.status().borrow().get(&name).cloned();
    let status = status.ok_or_else(|| ApiError::internal("added persona vanished"))?;
    Ok((StatusCode::CREATED, Json(view(&status, now, &st.gateway))))
}

pub async fn remove(State(st): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    st.control.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/personas/{name}/{action}` for restart, stop, start, hibernate, wake, kill.
pub async fn action(
    State(st): State<ApiState>,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActionResponse>, ApiError> {
    let req: ActionRequest = if body.is_empty() {
        ActionRequest::default()
    } else {
        parse_json(std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?)?
    };
    let (act, settled): (Act, &[Phase]) = match action.as_str() {
        "start" => (Act::Start, &[Phase::Running, Phase::Killed, Phase::Failed]),
        "stop" => (Act::Stop, &[Phase::Stopped]),
        "restart" => (Act::Restart, &[Phase::Running, Phase::Killed, Phase::Failed]),
        "hibernate" => (Act::Hibernate, &[Phase::Hibernating]),
        "wake" => {
            (Act::Wake { state: st.store.get_state(&name).await? }, &[Phase::Running, Phase::Killed, Phase::Failed])
        }
        "kill" => {
            let reason = req.reason.clone().unwrap_or_else(|| "operator".to_owned());
            (Act::Kill { reason }, &[Phase::Killed])
        }
        other => {
            return Err(ApiError::not_found(format!(
                "unknown action {other:?}: expected restart, stop, start, hibernate, wake or kill"
            )));
        }
    };
    let mut phase = st.control.act(&name, act).await?;
    if let Some(wait_ms) = req.wait_ms {
        let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        if action == "restart" {
            // a running persona passes through stopping/starting first: wait for that to begin
            let _ = st
                .supervisor
                .wait_for(&name, &[Phase::Starting, Phase::Stopping, Phase::Backoff], Duration::from_millis(50))
                .await;
        }
        phase = st.supervisor.wait_for(&name, settled, wait).await?;
    }
    Ok(Json(ActionResponse { persona: name, action, phase }))
}

pub async fn throttle(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PersonaView>, ApiError> {
    let req: ThrottleRequest =
        parse_json(std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?)?;
    let patch = BudgetPatch { throttle_multiplier: Some(req.multiplier), ..BudgetPatch::default() };
    st.control
        .set_budget(&name, patch)
        .await
        .map_err(|e| rename_field(e.into(), "budget.throttle_multiplier", "multiplier"))?;
    show(State(st), Path(name)).await
}

pub async fn budget(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PersonaView>, ApiError> {
    let patch: BudgetPatch =
        parse_json(std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?)?;
    if patch.is_empty() {
        return Err(ApiError::bad_request("the budget change is empty"));
    }
    st.control.set_budget(&name, patch).await?;
    show(State(st), Path(name)).await
}

fn rename_field(mut e: ApiError, from: &str, to: &str) -> ApiError {
    if e.param.as_deref() == Some(from) {
        e.param = Some(to.to_owned());
    }
    e
}
