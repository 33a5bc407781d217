//! Personas: add, list, show, remove, actions, throttle, budget — mesh-wide. Changes go to the
//! registry (committed by Raft from any node); the node a persona is placed on carries them
//! out, and requests about a persona on another node are forwarded to it, so any node answers
//! for the whole mesh.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use mindmesh_core::hibernate::Tier;
use mindmesh_core::placement::{loads, place};
use mindmesh_core::registry::{Actor, Command, Decided, DesiredPhase, Outcome, PersonaEntry, Registry};
use mindmesh_core::spec::parse_json;
use mindmesh_core::spec_diff;
use mindmesh_core::{Action, AnalystKind, BudgetPatch, Decision, Health, PersonaSpec, Phase};
use mindmesh_net::NetError;
use mindmesh_supervisor::PersonaStatus;
use serde::Deserialize;

use super::auth::Caller;
use super::types::{ActionRequest, ActionResponse, ApplyResponse, MAX_ACTION_WAIT_MS, PersonaView, ThrottleRequest};
use super::{ApiError, ApiState};
use crate::gateway::Gateway;

/// How long a change waits to show on this node after it is committed.
const LOCAL_EFFECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a non-admin caller sees of an env value.
pub const REDACTED: &str = "<redacted>";

/// A persona this node supervises, as it is here.
pub fn view(s: &PersonaStatus, now_ms: u64, gateway: &Gateway) -> PersonaView {
    let t = gateway.traffic(&s.name, now_ms).unwrap_or_default();
    PersonaView {
        name: s.name.clone(),
        node: None,
        desired: None,
        epoch: s.epoch,
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
        migrating_to: None,
        checkpoint_bytes: None,
        checkpoint_at_ms: None,
        spec: None,
        log_files: None,
        budget_spec: None,
        reload_ms: s.ready_ms,
        paused_s: s.paused_at_ms.map(|t| now_ms.saturating_sub(t) / 1000),
        adapter: s.adapter.clone(),
        adapters: s.adapters.clone(),
    }
}

/// A persona of the registry that this node does not run: what the registry and its node's
/// gossip say.
fn remote_view(
    entry: &PersonaEntry,
    node: Option<&str>,
    figures: Option<&mindmesh_core::snapshot::PersonaFigures>,
) -> PersonaView {
    PersonaView {
        name: entry.spec.name.clone(),
        node: node.map(str::to_owned),
        desired: Some(entry.phase.as_str().to_owned()),
        epoch: figures.map_or(0, |f| f.epoch),
        phase: figures.map_or(Phase::Pending, |f| f.phase),
        reason: entry.reason.clone(),
        pid: figures.and_then(|f| f.pid),
        restarts: figures.map_or(0, |f| f.restarts),
        health: figures.map_or(Health::Unknown, |f| f.health),
        importance: entry.spec.importance,
        model: entry.spec.model.clone(),
        rss_bytes: figures.map_or(0, |f| f.rss_bytes),
        cpu_percent: figures.map_or(0.0, |f| f.cpu_percent),
        throttle_multiplier: entry.budget.throttle_multiplier,
        budget: entry.budget.clone(),
        queue_depth: figures.map_or(0, |f| f.queue_depth),
        // the rest (gateway figures, files, checkpoint) only the owning node knows
        ..PersonaView::default()
    }
}

/// What only the registry knows: a migration under way, the last checkpoint.
fn mesh_fields(v: &mut PersonaView, entry: &PersonaEntry, reg: &Registry) {
    v.migrating_to = node_name(reg, entry.migrating_to);
    v.checkpoint_bytes = entry.checkpoint.as_ref().map(|c| c.state.len());
    v.checkpoint_at_ms = entry.checkpoint.as_ref().map(|c| c.at_ms);
}

fn node_name(reg: &Registry, id: Option<u64>) -> Option<String> {
    id.and_then(|id| reg.nodes.get(&id)).map(|n| n.info.name.clone())
}

/// Every persona of the mesh: this node's with their full figures, the others' from gossip.
pub async fn all_views(st: &ApiState) -> Vec<PersonaView> {
    let now = st.clock.now_ms();
    let reg = st.mesh.registry();
    let me = st.mesh.node_id();
    let table = st.supervisor.status().borrow().clone();
    let rows = st.mesh.mesh_view().await.unwrap_or_default();
    let mut out: Vec<PersonaView> = Vec::new();
    for (name, entry) in &reg.personas {
        let node = node_name(&reg, entry.node);
        let mut v = match table.get(name) {
            Some(s) if entry.node == Some(me) => {
                let mut v = view(s, now, &st.gateway);
                v.node = node;
                v.desired = Some(entry.phase.as_str().to_owned());
                v
            }
            _ => {
                let figures = entry.node.and_then(|id| {
                    rows.iter()
                        .find(|r| r.node_id == id)
                        .and_then(|r| r.snapshot.personas.iter().find(|p| &p.name == name))
                });
                remote_view(entry, node.as_deref(), figures)
            }
        };
        mesh_fields(&mut v, entry, &reg);
        out.push(v);
    }
    // what runs here without being in the registry (yet, or any more)
    for (name, s) in table.iter() {
        if !reg.personas.contains_key(name) {
            let mut v = view(s, now, &st.gateway);
            v.node = Some(st.node_name.to_string());
            out.push(v);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub async fn list(State(st): State<ApiState>) -> Json<Vec<PersonaView>> {
    Json(all_views(&st).await)
}

/// The node that runs `name`, if it is another one: `Some(api address)`.
fn elsewhere(st: &ApiState, name: &str) -> Option<String> {
    let reg = st.mesh.registry();
    let entry = reg.personas.get(name)?;
    let owner = entry.node?;
    if owner == st.mesh.node_id() {
        return None;
    }
    Some(reg.nodes.get(&owner).map(|n| n.info.api.clone()).unwrap_or_default())
}

pub async fn show(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(api) = elsewhere(&st, &name) {
        let deadline = st.forward.default_deadline();
        return st
            .forward
            .forward(&api, Method::GET, &uri.0.to_string(), &headers, Bytes::new(), &caller, deadline)
            .await;
    }
    let now = st.clock.now_ms();
    let reg = st.mesh.registry();
    let status = st.supervisor.status().borrow().get(&name).cloned();
    let mut v = match (status, reg.personas.get(&name)) {
        (Some(s), entry) => {
            let mut v = view(&s, now, &st.gateway);
            v.node = Some(st.node_name.to_string());
            v.desired = entry.map(|e| e.phase.as_str().to_owned());
            v
        }
        (None, Some(entry)) => remote_view(entry, node_name(&reg, entry.node).as_deref(), None),
        (None, None) => return Err(ApiError::not_found(format!("persona {name:?} not found"))),
    };
    if let Some(entry) = reg.personas.get(&name) {
        mesh_fields(&mut v, entry, &reg);
    }
    v.spec = match st.store.get_persona(&name).await? {
        Some(r) => Some(r.spec),
        None => reg.personas.get(&name).map(|e| e.spec.clone()),
    };
    v.log_files = Some(super::logs::local_files(&st, &name));
    // the budget its spec starts from (the registry's spec: a budget change never rewrites it)
    v.budget_spec = reg.personas.get(&name).map(|e| e.spec.budget.clone());
    // a spec's env is where a persona's own secrets (API keys) live: only admins read them
    if !caller.scope.grants(mindmesh_core::config::Scope::Admin)
        && let Some(spec) = v.spec.as_mut()
    {
        spec.env.values_mut().for_each(|v| *v = REDACTED.to_owned());
    }
    Ok(Json(v).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddQuery {
    #[serde(default = "yes")]
    start: bool,
    /// Place it on this node (by name); default: the least loaded live node.
    node: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/personas`: a spec as JSON, or TOML with `Content-Type: application/toml`.
pub async fn add(
    State(st): State<ApiState>,
    Query(q): Query<AddQuery>,
    headers: HeaderMap,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = parse_spec(&headers, &body)?;
    create(&st, spec, q, &headers, &caller, body).await
}

/// A spec as JSON, or TOML with `Content-Type: application/toml`.
fn parse_spec(headers: &HeaderMap, body: &Bytes) -> Result<PersonaSpec, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let is_toml = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("toml"));
    Ok(if is_toml { PersonaSpec::from_toml_str(text)? } else { PersonaSpec::from_json_str(text)? })
}

/// Add a persona that does not exist yet: placed, its command checked where it will run
/// (forwarded there with `body`, the spec as sent), committed.
async fn create(
    st: &ApiState,
    spec: PersonaSpec,
    q: AddQuery,
    headers: &HeaderMap,
    caller: &Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = spec.name.clone();
    let reg = st.mesh.registry();
    if reg.personas.contains_key(&name) || st.supervisor.status().borrow().contains_key(&name) {
        return Err(ApiError {
            param: Some("name".into()),
            ..ApiError::new(StatusCode::CONFLICT, "exists", format!("persona {name:?} already exists"))
        });
    }
    // a node just started may not be a member of its own registry yet (its join commits a
    // moment later): wait for that briefly rather than find no node to place on
    let me = st.mesh.node_id();
    let reg = if reg.nodes.contains_key(&me) {
        reg
    } else {
        let mut registry = st.mesh.watch_registry();
        let joined = tokio::time::timeout(LOCAL_EFFECT_TIMEOUT, registry.wait_for(|r| r.nodes.contains_key(&me))).await;
        match joined {
            Ok(Ok(r)) => r.clone(),
            _ => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "joining",
                    "this node has not joined its mesh yet: try again in a moment",
                ));
            }
        }
    };
    let node = match &q.node {
        Some(n) => reg.node_by_name(n).map(|e| e.info.id).ok_or_else(|| ApiError {
            param: Some("node".into()),
            ..ApiError::bad_request(format!("no node named {n:?} in the mesh"))
        })?,
        None => {
            let rows = st.mesh.mesh_view().await.unwrap_or_default();
            // this node is live by definition, even before its own row reaches its mesh view
            let live = |id| id == me || rows.iter().any(|r| r.node_id == id && !r.stale);
            place(&spec, &loads(&reg, live))
                .map_err(|e| ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "no_room", e.to_string()))?
        }
    };
    // The command must resolve where the persona will run: checked there before anything is
    // committed, so a typo is refused with the spawn's own reason instead of being added and
    // killed as a crash loop a second later. (It can still vanish later: then the node reports
    // the failed spawn and the crash loop as before.)
    if node != st.mesh.node_id() {
        let target = reg.nodes.get(&node).map(|n| (n.info.name.clone(), n.info.api.clone()));
        let (target_name, api) = target.ok_or_else(|| ApiError::internal("the chosen node left the mesh"))?;
        let path = format!("/api/v1/personas?start={}&node={target_name}", q.start);
        return st
            .forward
            .forward(&api, Method::POST, &path, headers, body, caller, st.forward.default_deadline())
            .await;
    }
    st.supervisor.check_command(&spec).await.map_err(|e| {
        let mut e = ApiError::from(e);
        e.message = format!("persona {name:?} not added: {} (node {})", e.message, st.node_name);
        e
    })?;
    propose(st, Command::put_persona(spec, Some(node))).await?;
    if !q.start {
        propose(st, Command::SetPhase { name: name.clone(), phase: DesiredPhase::Stopped, reason: None }).await?;
    }
    let reg = st.mesh.registry();
    let entry = reg.personas.get(&name).cloned();
    if node == st.mesh.node_id() {
        let mut status = st.supervisor.status();
        let _ = tokio::time::timeout(LOCAL_EFFECT_TIMEOUT, status.wait_for(|t| t.contains_key(&name))).await;
        let s = st.supervisor.status().borrow().get(&name).cloned();
        if let Some(s) = s {
            let mut v = view(&s, st.clock.now_ms(), &st.gateway);
            v.node = Some(st.node_name.to_string());
            v.desired = entry.as_ref().map(|e| e.phase.as_str().to_owned());
            return Ok((StatusCode::CREATED, Json(v)).into_response());
        }
    }
    let entry = entry.ok_or_else(|| ApiError::internal("the added persona is not in the registry"))?;
    Ok((StatusCode::CREATED, Json(remote_view(&entry, node_name(&reg, Some(node)).as_deref(), None))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Answer with the diff and change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Longest a created persona's answer may be (a [`PersonaView`]) when `apply` reads it back.
const MAX_VIEW_BYTES: usize = 1 << 20;

/// `PUT /api/v1/personas/{name}`: make the persona what the spec says. A missing one is added
/// (as `POST /api/v1/personas` would); an existing one gets the spec in place through the
/// registry (a committed `PutPersona`, keeping its node, phase and generation), and its node
/// applies it: a budget-only change on the running process, any other change by a new process
/// (see `mindmesh_core::spec_diff`). The answer is the diff, field by field; an unchanged spec
/// is a no-op that says so. Forwarded to the node that runs it, which checks a new command
/// and waits (bounded) for the change to show.
pub async fn apply(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<ApplyQuery>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = parse_spec(&headers, &body)?;
    if spec.name != name {
        return Err(ApiError {
            param: Some("name".into()),
            ..ApiError::bad_request(format!("the spec names {:?}, the path {name:?}", spec.name))
        });
    }
    let reg = st.mesh.registry();
    let Some(entry) = reg.personas.get(&name).cloned() else {
        let mut r = ApplyResponse {
            persona: name.clone(),
            created: true,
            changed: true,
            restart: false,
            dry_run: q.dry_run,
            changes: spec_diff::diff(None, &spec),
            node: None,
            pid: None,
            note: None,
        };
        if q.dry_run {
            return Ok(Json(r).into_response());
        }
        let added = create(&st, spec, AddQuery { start: true, node: None }, &headers, &caller, body).await?;
        if !added.status().is_success() {
            return Ok(added);
        }
        let bytes = axum::body::to_bytes(added.into_body(), MAX_VIEW_BYTES)
            .await
            .map_err(|e| ApiError::internal(format!("reading the added persona: {e}")))?;
        if let Ok(v) = serde_json::from_slice::<PersonaView>(&bytes) {
            r.node = v.node;
            r.pid = v.pid;
        }
        return Ok((StatusCode::CREATED, Json(r)).into_response());
    };
    if let Some(api) = elsewhere(&st, &name) {
        let deadline = st.forward.default_deadline() + LOCAL_EFFECT_TIMEOUT;
        return st.forward.forward(&api, Method::PUT, &uri.0.to_string(), &headers, body, &caller, deadline).await;
    }
    // the budget as it is now (an operator or the brain may have changed it since the spec)
    let mut old = entry.spec.clone();
    old.budget = entry.budget.clone();
    let changes = spec_diff::diff(Some(&old), &spec);
    let restart = !spec_diff::keeps_process(&changes);
    let me = st.mesh.node_id();
    let before = st.supervisor.status().borrow().get(&name).cloned();
    let mut r = ApplyResponse {
        persona: name.clone(),
        created: false,
        changed: !changes.is_empty(),
        restart,
        dry_run: q.dry_run,
        changes,
        node: node_name(&reg, entry.node),
        pid: before.as_ref().and_then(|s| s.pid),
        note: None,
    };
    if !r.changed || q.dry_run {
        return Ok(Json(r).into_response());
    }
    let here = entry.node == Some(me);
    if here && restart {
        st.supervisor.check_command(&spec).await.map_err(|e| {
            let mut e = ApiError::from(e);
            e.message = format!("persona {name:?} not changed: {} (node {})", e.message, st.node_name);
            e
        })?;
    }
    let budget = spec.budget.clone();
    propose(&st, Command::put_persona(spec, entry.node)).await?;
    tracing::info!(
        persona = %name,
        restart,
        fields = %r.changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>().join(","),
        "persona spec applied"
    );
    let Some(before) = before.filter(|_| here) else { return Ok(Json(r).into_response()) };
    let mut status = st.supervisor.status();
    let old_pid = before.pid;
    let shown = status.wait_for(|t| {
        t.get(&name).is_some_and(|s| match (restart, old_pid) {
            // a new process, up (or the reason it is not: a failed start shows as its phase)
            (true, Some(old)) => s.pid.is_some_and(|p| p != old) || matches!(s.phase, Phase::Failed | Phase::Killed),
            _ => s.budget == budget,
        })
    });
    match tokio::time::timeout(LOCAL_EFFECT_TIMEOUT, shown).await {
        Ok(Ok(t)) => r.pid = t.get(&name).and_then(|s| s.pid),
        _ => {
            r.note = Some(format!(
                "committed; not yet in effect on {} after {} s (see `mindmesh persona show {name}`)",
                st.node_name,
                LOCAL_EFFECT_TIMEOUT.as_secs()
            ))
        }
    }
    Ok(Json(r).into_response())
}

pub async fn remove(State(st): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let reg = st.mesh.registry();
    let local = st.supervisor.status().borrow().contains_key(&name);
    if !reg.personas.contains_key(&name) {
        if local {
            // not the mesh's (any more): just this node's
            st.control.remove(&name).await?;
            return Ok(StatusCode::NO_CONTENT);
        }
        return Err(ApiError::not_found(format!("persona {name:?} not found")));
    }
    propose(&st, Command::RemovePersona { name: name.clone() }).await?;
    if local {
        let mut status = st.supervisor.status();
        let _ = tokio::time::timeout(LOCAL_EFFECT_TIMEOUT, status.wait_for(|t| !t.contains_key(&name))).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The node's name.
    to: String,
}

/// `POST /api/v1/personas/{name}/migrate`: move a persona to another node with its state. The
/// registry orders the steps (drain, save, stop, release on the source; start with the state
/// on the target), so it never runs on both; `GET /api/v1/personas` shows the progress.
pub async fn migrate(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<MigrateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reg = st.mesh.registry();
    let entry = reg.personas.get(&name).ok_or_else(|| ApiError::not_found(format!("persona {name:?} not found")))?;
    let target = reg.node_by_name(&req.to).ok_or_else(|| ApiError {
        param: Some("to".into()),
        ..ApiError::not_found(format!("no node {:?} in the mesh", req.to))
    })?;
    if target.draining {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("node {:?} is being drained", req.to)));
    }
    let from = node_name(&reg, entry.node);
    let mut decision =
        Decision::new(&name, Action::Migrate, format!("operator: migrate to {}", req.to), 1.0, AnalystKind::Operator);
    decision.target = Some(req.to.clone());
    let change = Command::Migrate { name: name.clone(), to: target.info.id };
    decide(&st, &caller, "migrate", decision, change).await?;
    Ok(Json(serde_json::json!({ "persona": name, "from": from, "to": req.to })))
}

/// `POST /api/v1/personas/{name}/{action}` for restart, stop, start, hibernate, wake, kill.
pub async fn action(
    State(st): State<ApiState>,
    Path((name, action)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ActionRequest = if body.is_empty() {
        ActionRequest::default()
    } else {
        parse_json(std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?)?
    };
    if req.tier.is_some() && action != "hibernate" {
        return Err(ApiError { param: Some("tier".into()), ..ApiError::bad_request("only hibernate takes a tier") });
    }
    let tier = req.tier.unwrap_or_default();
    let settled: &[Phase] = match action.as_str() {
        "start" | "restart" | "wake" => &[Phase::Running, Phase::Killed, Phase::Failed],
        "stop" => &[Phase::Stopped, Phase::Failed, Phase::Killed],
        // a paused tier asked of a persona with no process ends in the deeper one
        "hibernate" if tier == Tier::Paused => &[Phase::Paused, Phase::Hibernating],
        "hibernate" => &[Phase::Hibernating],
        "kill" => &[Phase::Killed],
        other => {
            return Err(ApiError::not_found(format!(
                "unknown action {other:?}: expected restart, stop, start, hibernate, wake or kill"
            )));
        }
    };
    if let Some(api) = elsewhere(&st, &name) {
        // the other node waits as long as asked, and answers after
        let waits = Duration::from_millis(req.wait_ms.unwrap_or(0).min(MAX_ACTION_WAIT_MS)) + Duration::from_secs(5);
        let deadline = st.forward.default_deadline().max(waits);
        return st.forward.forward(&api, Method::POST, &uri.0.to_string(), &headers, body, &caller, deadline).await;
    }
    let reg = st.mesh.registry();
    let entry = reg.personas.get(&name).ok_or_else(|| ApiError::not_found(format!("persona {name:?} not found")))?;
    if matches!(action.as_str(), "start" | "restart" | "wake") && !entry.budget.allowed_to_run {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{name} is not allowed to run (budget.allowed_to_run = false)"),
        ));
    }
    let local = st.supervisor.status().borrow().get(&name).map(|s| s.phase);
    if let Some(phase) = already(&action, tier, entry.phase, local) {
        // as `systemctl start` of an active unit: nothing to do, and nothing recorded
        let note = format!("{name} is already {phase}: nothing done");
        return Ok(
            Json(ActionResponse { persona: name, action, phase, changed: false, note: Some(note) }).into_response()
        );
    }
    // a start or wake here needs memory: admitted first (idle personas evicted to make room),
    // or refused before anything is committed
    if matches!(action.as_str(), "start" | "wake")
        && entry.node == Some(st.mesh.node_id())
        && local.is_some_and(|p| !p.has_process())
        && let Err(n) = st.control.admit(&name).await
    {
        let message = format!("{action} of {name} refused: {}; retry after {} s", n.message, n.retry_after_s);
        let mut resp = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "insufficient_capacity", message).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&n.retry_after_s.to_string()) {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return Ok(resp);
    }
    let reason = req.reason.clone();
    let set = |phase| Command::SetPhase { name: name.clone(), phase, reason: None };
    let bump = Command::BumpGeneration { name: name.clone(), expected: entry.generation };
    let (cmd, starts) = match action.as_str() {
        // a persona the mesh already wants running starts again at a new epoch (which also
        // lifts a crash loop the node stopped it for)
        "start" | "wake" if entry.phase == DesiredPhase::Running => (bump, true),
        "start" | "wake" => (set(DesiredPhase::Running), true),
        "restart" => (bump, true),
        "stop" => (set(DesiredPhase::Stopped), false),
        "hibernate" => (set(tier.desired()), false),
        _ => (
            Command::SetPhase {
                name: name.clone(),
                phase: DesiredPhase::Killed,
                reason: Some(reason.unwrap_or_else(|| "operator".to_owned())),
            },
            false,
        ),
    };
    // an operator's action is a decision like the brain's: durable, ordered, auditable — and
    // logged with the verb the operator used (the action is what the mesh does about it)
    let act = match action.as_str() {
        "start" | "wake" => Action::Wake,
        "restart" => Action::Restart,
        "stop" | "kill" => Action::Kill,
        _ => Action::Hibernate,
    };
    let why = req.reason.clone().unwrap_or_else(|| format!("operator: {action}"));
    let decision = Decision::new(&name, act, why, 1.0, AnalystKind::Operator);
    let outcome = decide(&st, &caller, &action, decision, cmd).await?;
    let mut phase = st.supervisor.status().borrow().get(&name).map_or(Phase::Pending, |s| s.phase);
    if let Some(wait_ms) = req.wait_ms
        && entry.node == Some(st.mesh.node_id())
    {
        let wait = Duration::from_millis(wait_ms.min(MAX_ACTION_WAIT_MS));
        let deadline = tokio::time::Instant::now() + wait;
        let mut status = st.supervisor.status();
        let epoch = match outcome {
            Outcome::Persona { epoch, .. } if starts => epoch,
            _ => 0,
        };
        let moved = status.wait_for(|t| {
            t.get(&name).is_some_and(|s| {
                s.epoch >= epoch && (epoch > 0 || !s.phase.has_process() || settled.contains(&s.phase))
            })
        });
        let _ = tokio::time::timeout_at(deadline, moved).await;
        let reached = status.wait_for(|t| t.get(&name).is_some_and(|s| settled.contains(&s.phase)));
        match tokio::time::timeout_at(deadline, reached).await {
            Ok(Ok(t)) => phase = t.get(&name).map_or(phase, |s| s.phase),
            _ => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!("{action} of {name} did not settle within {wait_ms} ms"),
                ));
            }
        }
    }
    Ok(Json(ActionResponse { persona: name, action, phase, changed: true, note: None }).into_response())
}

/// The phase that makes `action` a no-op: the mesh already wants what it asks, and this node
/// (which runs the persona) already has it so. A persona wanted running but down here (a crash
/// loop the node stopped, a failed start) does start again.
fn already(action: &str, tier: Tier, desired: DesiredPhase, local: Option<Phase>) -> Option<Phase> {
    let local = local?;
    let holds = match action {
        "hibernate" => desired == tier.desired() && local == tier.phase(),
        "start" | "wake" => desired == DesiredPhase::Running && matches!(local, Phase::Running | Phase::Starting),
        "stop" => desired == DesiredPhase::Stopped && matches!(local, Phase::Stopped | Phase::Pending),
        "kill" => desired == DesiredPhase::Killed && local == Phase::Killed,
        _ => false,
    };
    holds.then_some(local)
}

pub async fn throttle(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ThrottleRequest =
        parse_json(std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?)?;
    let patch = BudgetPatch { throttle_multiplier: Some(req.multiplier), ..BudgetPatch::default() };
    let rename = Some(("budget.throttle_multiplier", "multiplier"));
    change_budget(st, name, patch, (method, uri), (headers, caller), body, rename).await
}

pub async fn budget(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch: BudgetPatch =
        parse_json(std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?)?;
    if patch.is_empty() {
        return Err(ApiError::bad_request("the budget change is empty"));
    }
    change_budget(st, name, patch, (method, uri), (headers, caller), body, None).await
}

async fn change_budget(
    st: ApiState,
    name: String,
    patch: BudgetPatch,
    (method, uri): (Method, OriginalUri),
    (headers, caller): (HeaderMap, Caller),
    body: Bytes,
    rename: Option<(&str, &str)>,
) -> Result<Response, ApiError> {
    let reg = st.mesh.registry();
    let entry = reg.personas.get(&name).ok_or_else(|| ApiError::not_found(format!("persona {name:?} not found")))?;
    // checked here so a bad value names its field and changes nothing anywhere
    let budget = entry.budget.patched(&patch).map_err(|e| {
        let mut e: ApiError = e.within("budget").into();
        if let Some((from, to)) = rename
            && e.param.as_deref() == Some(from)
        {
            e.param = Some(to.to_owned());
        }
        e
    })?;
    if let Some(api) = elsewhere(&st, &name) {
        let deadline = st.forward.default_deadline();
        return st.forward.forward(&api, method, &uri.0.to_string(), &headers, body, &caller, deadline).await;
    }
    propose(&st, Command::SetBudget { name: name.clone(), patch }).await?;
    if entry.node == Some(st.mesh.node_id()) {
        let mut status = st.supervisor.status();
        let _ = tokio::time::timeout(
            LOCAL_EFFECT_TIMEOUT,
            status.wait_for(|t| t.get(&name).is_some_and(|s| s.budget == budget)),
        )
        .await;
    }
    show(State(st), Path(name), Extension(caller), uri, headers).await
}

/// Commit a change to the registry; the errors an operator can act on are told apart.
/// Who an operator's request names in the decision log: its token, and the node that
/// forwarded it.
pub fn actor(caller: &Caller) -> Actor {
    Actor::Operator { token: caller.token_name.to_string(), via: caller.via.as_deref().map(str::to_owned) }
}

/// Commit an operator's decision and the change it asks for as one entry, and answer the
/// change's own outcome: a change the registry refuses is logged as refused (never as
/// executed) and answers 409 with the reason.
pub async fn decide(
    st: &ApiState,
    caller: &Caller,
    verb: &str,
    decision: Decision,
    change: Command,
) -> Result<Outcome, ApiError> {
    let decided = Decided { decision, by: actor(caller), verb: verb.to_owned(), change: Some(change) };
    let outcome = propose(st, Command::Decide { decisions: vec![decided], at_ms: st.clock.now_ms() }).await?;
    match outcome.of_change(0) {
        Some(Outcome::Rejected { reason }) => Err(ApiError::new(StatusCode::CONFLICT, "rejected", reason.clone())),
        Some(o) => Ok(o.clone()),
        None => Err(ApiError::internal("the registry answered no outcome for the change")),
    }
}

pub async fn propose(st: &ApiState, cmd: Command) -> Result<Outcome, ApiError> {
    match st.mesh.propose(cmd).await {
        Ok(o) => Ok(o),
        Err(NetError::Rejected(reason)) => Err(ApiError::new(StatusCode::CONFLICT, "rejected", reason)),
        Err(e @ (NetError::NoLeader | NetError::Timeout(_) | NetError::Unreachable(_))) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            format!("the mesh cannot commit changes now ({e}): is a quorum of its nodes up?"),
        )),
        Err(e) => Err(ApiError::internal(format!("mesh: {e}"))),
    }
}
