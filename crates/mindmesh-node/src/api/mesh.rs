//! The mesh through the API: its members and leader (in `status`), the decision log, the
//! brain's last analysis (answered by the leader), and a node leaving the mesh.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use mindmesh_core::registry::Registry;
use mindmesh_net::MeshRole;
use serde::Deserialize;

use super::types::{DecisionView, DecisionsPage, LeaseView, MeshNodeView, MeshStatusView};
use super::{ApiError, ApiState};

const MAX_DECISIONS_PER_PAGE: usize = 1000;
const MAX_WAIT_MS: u64 = 60_000;

pub fn role_name(role: MeshRole) -> &'static str {
    match role {
        MeshRole::Leader => "leader",
        MeshRole::Candidate => "candidate",
        MeshRole::Follower => "follower",
        MeshRole::Learner => "learner",
        MeshRole::Joining => "joining",
        MeshRole::Shutdown => "shut down",
    }
}

/// The mesh as this node sees it: members from the registry and the Raft membership, their
/// freshness from gossip.
pub async fn mesh_status(st: &ApiState) -> MeshStatusView {
    let status = st.mesh.status();
    let reg = st.mesh.registry();
    let rows = st.mesh.mesh_view().await.unwrap_or_default();
    let nodes = reg
        .nodes
        .values()
        .map(|n| {
            let id = n.info.id;
            let row = rows.iter().find(|r| r.node_id == id);
            let role = if status.leader == Some(id) {
                "leader"
            } else if status.voters.iter().any(|(v, _)| *v == id) {
                "follower"
            } else if status.learners.iter().any(|(l, _)| *l == id) {
                "learner"
            } else {
                "gone"
            };
            MeshNodeView {
                name: n.info.name.clone(),
                id,
                address: n.info.api.clone(),
                p2p: n.info.addrs.clone(),
                role: role.to_owned(),
                last_seen_ms: row.map(|r| r.age_ms),
                healthy: row.is_some_and(|r| !r.stale),
                personas: reg.personas.values().filter(|p| p.node == Some(id)).count(),
                cpu_percent: row.map(|r| r.snapshot.host.cpu_percent),
                memory_used_bytes: row.map(|r| r.snapshot.host.memory_used_bytes),
                draining: n.draining,
            }
        })
        .collect();
    MeshStatusView {
        node_id: status.node_id,
        role: role_name(status.role).to_owned(),
        term: status.term,
        leader: status.leader.and_then(|l| reg.nodes.get(&l)).map(|n| n.info.name.clone()),
        leader_id: status.leader,
        leader_contact_age_ms: status.leader_contact_age_ms,
        lease: {
            let l = st.mesh.lease();
            let remaining =
                l.until.map(|u| u.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64);
            LeaseView { enforced: l.enforced, held: l.held, remaining_ms: remaining.filter(|_| l.held) }
        },
        nodes,
        listen: st.mesh.listen_addrs().to_vec(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    #[serde(default)]
    pub(crate) after: u64,
    /// Also answer (in `updated`) the decisions up to `after` whose verdict changed after this
    /// log index: `decisions --follow` updates its rows as outcomes land.
    pub(crate) updated_after: Option<u64>,
    pub(crate) limit: Option<usize>,
    pub(crate) persona: Option<String>,
    pub(crate) wait_ms: Option<u64>,
}

/// `GET /api/v1/decisions`: the decision log, oldest first; `wait_ms` waits for new ones.
pub async fn decisions(
    State(st): State<ApiState>,
    Query(q): Query<DecisionsQuery>,
) -> Result<Json<DecisionsPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_DECISIONS_PER_PAGE);
    if let Some(name) = &q.persona {
        // a typo answers 404, not an empty log; a removed persona's decisions stay readable
        let reg = st.mesh.registry();
        if !reg.personas.contains_key(name) && !reg.decisions_since(0).any(|d| &d.decision.persona == name) {
            return Err(ApiError {
                param: Some("persona".into()),
                ..ApiError::not_found(format!("no persona named {name:?}"))
            });
        }
    }
    if let Some(wait_ms) = q.wait_ms {
        let mut reg = st.mesh.watch_registry();
        let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        tokio::select! {
            _ = tokio::time::timeout(wait, reg.wait_for(|r| {
                r.next_decision_seq > q.after.saturating_add(1)
                    || q.updated_after.is_some_and(|i| r.decisions_updated_index > i)
            })) => {}
            _ = st.shutdown.cancelled() => {}
        }
    }
    let reg = st.mesh.registry();
    let decisions: Vec<DecisionView> = reg
        .decisions_since(q.after.saturating_add(1))
        .filter(|d| q.persona.as_deref().is_none_or(|p| d.decision.persona == p))
        .take(limit)
        .map(|d| decision_view(d, &reg))
        .collect();
    let last_seq = decisions.last().map_or(q.after, |d| d.seq);
    let updated = match q.updated_after {
        Some(i) => reg
            .decisions_updated_since(i)
            .filter(|d| d.seq <= q.after && q.persona.as_deref().is_none_or(|p| d.decision.persona == p))
            .map(|d| decision_view(d, &reg))
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(DecisionsPage { decisions, last_seq, updated, last_index: reg.decisions_updated_index }))
}

fn decision_view(d: &mindmesh_core::registry::DecisionRecord, reg: &Registry) -> DecisionView {
    use mindmesh_core::registry::{Actor, Verdict};
    let node_name = |id: &u64| reg.nodes.get(id).map_or_else(|| id.to_string(), |n| n.info.name.clone());
    let (executed_by, executed_at_ms, executed_ok, outcome) = match &d.verdict {
        Verdict::Executed { node, at_ms, detail } => {
            (Some(node_name(node)), Some(*at_ms), Some(true), Some(detail.clone()))
        }
        Verdict::Failed { node, at_ms, reason } => {
            (Some(node_name(node)), Some(*at_ms), Some(false), Some(reason.clone()))
        }
        Verdict::Refused { reason } => (None, None, None, Some(reason.clone())),
        Verdict::Pending | Verdict::Recorded | Verdict::Superseded { .. } => (None, None, None, None),
    };
    let (by_kind, token, via) = match &d.by {
        Actor::Analyst { .. } => ("analyst", None, None),
        Actor::Operator { token, via } => ("operator", Some(token.clone()), via.clone()),
        Actor::Failover => ("failover", None, None),
        Actor::Policy { .. } => ("policy", None, None),
    };
    DecisionView {
        seq: d.seq,
        persona: d.decision.persona.clone(),
        action: d.verb.clone(),
        effect: d.decision.action.as_str().to_owned(),
        target: d.decision.target.clone(),
        reason: d.decision.reason.clone(),
        confidence: d.decision.confidence,
        analyst: d.decision.analyst.as_str().to_owned(),
        by: d.by.describe(),
        by_kind: by_kind.to_owned(),
        token,
        via,
        cycle: d.decision.cycle,
        decided_at_ms: d.decided_at_ms,
        verdict: d.verdict.as_str().to_owned(),
        superseded_by: match d.verdict {
            Verdict::Superseded { by_seq } => by_seq,
            _ => None,
        },
        executed_by,
        executed_at_ms,
        executed_ok,
        outcome,
        updated_index: d.updated_index,
        count: d.repeats.saturating_add(1),
        last_seen_ms: d.last_seen_ms,
        budget_before: d.budget.as_ref().map(|c| c.before.clone()),
        budget_after: d.budget.as_ref().map(|c| c.after.clone()),
    }
}

/// A GET only the leader can answer: `None` on the leader itself; elsewhere the leader's answer,
/// forwarded with the caller's credentials, or 503 naming `what` is missing while no leader is
/// known.
async fn ask_leader(
    st: &ApiState,
    caller: &super::auth::Caller,
    uri: &OriginalUri,
    headers: &HeaderMap,
    what: &str,
) -> Option<Result<Response, ApiError>> {
    let status = st.mesh.status();
    if status.role == MeshRole::Leader {
        return None;
    }
    let reg = st.mesh.registry();
    let Some(api) = status.leader.and_then(|l| reg.nodes.get(&l)).map(|n| n.info.api.clone()) else {
        return Some(Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            format!("no leader is known: no {what}"),
        )));
    };
    let deadline = st.forward.default_deadline();
    Some(st.forward.forward(&api, Method::GET, &uri.0.to_string(), headers, Bytes::new(), caller, deadline).await)
}

/// `GET /api/v1/brain`: the leader's last analysis (asked of the leader by any node).
pub async fn brain(
    State(st): State<ApiState>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(answer) = ask_leader(&st, &caller, &uri, &headers, "analysis").await {
        return answer;
    }
    let report = st.brain.borrow().clone();
    match report {
        Some(r) => Ok(Json(serde_json::to_value(&*r).map_err(|e| ApiError::internal(e.to_string()))?).into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "warming_up",
            "the leader has not analysed the mesh yet",
        )),
    }
}

/// How long the leader loop may take to copy its view (it answers between cycles).
const SNAPSHOT_WAIT_MS: u64 = 30_000;

/// `GET /api/v1/brain/snapshot`: the leader's live view (nodes, personas, series, events,
/// budgets) as an unlabelled `mindmesh-scenario/1`, for `brain explain` and `brain eval` to
/// replay the moment (asked of the leader by any node).
pub async fn brain_snapshot(
    State(st): State<ApiState>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(answer) = ask_leader(&st, &caller, &uri, &headers, "view").await {
        return answer;
    }
    let busy = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the leader's brain loop did not answer");
    let (tx, rx) = tokio::sync::oneshot::channel();
    st.snapshot.try_send(tx).map_err(|_| busy())?;
    let live = tokio::time::timeout(Duration::from_millis(SNAPSHOT_WAIT_MS), rx)
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    if live.view.personas.iter().all(|p| p.series.is_empty()) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "warming_up", "the leader has no samples yet"));
    }
    let name = format!("snapshot-{}-{}", st.node_name, live.at_ms);
    let description = format!(
        "the live view of leader {} at {} ms since the epoch (times here are seconds from its first sample); unlabelled",
        st.node_name, live.at_ms
    );
    let file = mindmesh_brain::scenario::export(&live.view, &name, &description, live.resolution_ms);
    Ok(Json(file).into_response())
}

/// `POST /api/v1/node/leave`: take this node out of the mesh (its personas are unassigned,
/// the leader places them elsewhere), then stop it.
pub async fn leave(State(st): State<ApiState>) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    st.mesh
        .leave()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", format!("cannot leave: {e}")))?;
    tracing::info!("left the mesh; stopping");
    st.shutdown.cancel();
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "node": st.node_name.to_string(), "left": true }))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Stop draining: the node takes new personas again.
    #[serde(default)]
    undo: bool,
}

/// `POST /api/v1/nodes/{name}/drain`: migrate every persona off a node, a few at a time, each
/// with its state (the leader plans it); nothing new is placed there until `undo`.
pub async fn drain(
    State(st): State<ApiState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: DrainRequest = if body.is_empty() {
        DrainRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("drain request: {e}")))?
    };
    let reg = st.mesh.registry();
    let node = reg.node_by_name(&name).ok_or_else(|| ApiError::not_found(format!("no node {name:?} in the mesh")))?;
    let id = node.info.id;
    // the drain's migrations are logged in the name of who asked for it
    let by = super::personas::actor(&caller);
    super::personas::propose(&st, mindmesh_core::registry::Command::Drain { id, draining: !req.undo, by }).await?;
    let reg = st.mesh.registry();
    let personas = reg.personas_on(id).count();
    let stuck = if req.undo { Vec::new() } else { nowhere_to_go(&st, &reg, id).await };
    if !stuck.is_empty() {
        tracing::warn!(node = %name, stuck = stuck.len(), "drain: some personas have nowhere to go");
    }
    let stuck: Vec<serde_json::Value> = stuck
        .into_iter()
        .map(|(persona, reason)| serde_json::json!({ "persona": persona, "reason": reason }))
        .collect();
    Ok(Json(serde_json::json!({ "node": name, "draining": !req.undo, "personas": personas, "stuck": stuck })))
}

/// The personas of a draining node that no other node can take now, with the reason — placed
/// one after another, as the leader's planner would, so room one takes is gone for the next.
async fn nowhere_to_go(st: &ApiState, reg: &Registry, node: u64) -> Vec<(String, String)> {
    let rows = st.mesh.mesh_view().await.unwrap_or_default();
    let me = st.mesh.node_id();
    // gossip does not list this node itself: it is live
    let live = |id| id == me || rows.iter().any(|r| r.node_id == id && !r.stale);
    let mut loads = mindmesh_core::placement::loads(reg, live);
    let mut stuck = Vec::new();
    for (name, p) in reg.personas_on(node) {
        match mindmesh_core::placement::place_index(&p.spec, &loads) {
            Ok(i) => loads[i].add(&p.spec),
            Err(e) => stuck.push((name.clone(), format!("no other node can take it: {e}"))),
        }
    }
    stuck
}
