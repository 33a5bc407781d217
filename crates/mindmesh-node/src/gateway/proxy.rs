//! One request through the gateway: read the model and token limit, route, admit (at once or
//! through the queue), clamp tokens to the budget, forward over a pooled keep-alive connection,
//! and pass the answer back as it comes — measured, and cut at the budget's deadline.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use mindmesh_core::metrics::ErrorKind;

use super::Gateway;
use super::admission::Refusal;
use super::classify::{MAX_ERROR_BODY_BYTES, classify};
use super::error::GatewayError;
use super::measure::{MeteredBody, Record};
use super::request::{Api, PeekError, clamp_tokens, peek, select_adapter};
use super::routing::{MeshRoute, Route, route};
use super::upstream::{self, UpstreamError, read_to_end};
use crate::http::auth::Caller;

pub async fn chat(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&gw, Api::Chat, &headers, body, &caller).await
}

pub async fn completions(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&gw, Api::Completions, &headers, body, &caller).await
}

/// `GET /v1/models`: the personas of the mesh (this node's, and those the registry places on
/// other nodes), as models.
pub async fn models(State(gw): State<Gateway>) -> Response {
    let table = gw.inner.status.borrow().clone();
    let mut models: std::collections::BTreeMap<String, u64> =
        table.values().map(|s| (s.name.clone(), s.started_at_ms.unwrap_or(0) / 1000)).collect();
    if let Some(r) = &gw.inner.remote {
        let reg = r.registry.borrow().clone();
        for name in reg.personas.keys() {
            models.entry(name.clone()).or_insert(0);
        }
    }
    let data: Vec<serde_json::Value> = models
        .into_iter()
        .map(|(id, created)| serde_json::json!({ "id": id, "object": "model", "created": created, "owned_by": "mindmesh" }))
        .collect();
    axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

/// The response-time budget of a persona the registry does not know (yet).
const DEFAULT_BUDGET_MS: u64 = 30_000;

/// Longest wait for this node's registry to catch up before forwarding a forwarded request.
const CATCH_UP: Duration = Duration::from_secs(1);

enum Where {
    Local,
    /// Another node's API, and the persona's response-time budget.
    Remote(String, u64),
}

/// Route the request, waiting (within the persona's response-time budget) while it is being
/// placed, migrating or starting here, so a move drops nothing: the request goes where the
/// persona is once it is there.
async fn where_to(gw: &Gateway, model: &str, arrived: Instant, hops: u32) -> Result<Where, GatewayError> {
    let Some(r) = &gw.inner.remote else {
        return match route(&gw.inner.status.borrow(), None, model) {
            Route::Local(_) => Ok(Where::Local),
            _ => Err(GatewayError::unknown_model(model)),
        };
    };
    let mut registry = r.registry.clone();
    let mut status = gw.inner.status.clone();
    let mut may_run = r.may_run.clone();
    let mut limit_ms = None;
    // a forwarded request that this node would forward again: this node's registry may lag the
    // sender's (a persona that just moved here); give it a moment to catch up first
    let mut catch_up = hops > 0;
    loop {
        let reg = registry.borrow_and_update().clone();
        let m = MeshRoute { registry: &reg, me: r.me, may_run: *may_run.borrow_and_update() };
        // owned, so no watch borrow is held across an await
        let decided = match route(&status.borrow_and_update(), Some(m), model) {
            Route::Local(_) => Some(Ok(Where::Local)),
            Route::Remote { api } => {
                let budget_ms = reg.personas.get(model).map_or(DEFAULT_BUDGET_MS, |e| e.budget.max_response_time_ms);
                Some(Ok(Where::Remote(api, budget_ms)))
            }
            Route::Unknown => Some(Err(GatewayError::unknown_model(model))),
            Route::Fenced => Some(Err(GatewayError::fenced(model))),
            Route::Wait => None,
        };
        match decided {
            Some(Ok(Where::Remote(..))) if catch_up => {
                catch_up = false;
                let _ = tokio::time::timeout(CATCH_UP, registry.changed()).await;
                continue;
            }
            Some(done) => return done,
            None => {}
        }
        let limit = *limit_ms.get_or_insert_with(|| {
            reg.personas.get(model).map_or(DEFAULT_BUDGET_MS, |e| e.budget.max_response_time_ms)
        });
        let deadline = deadline_after(arrived, limit);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Err(GatewayError::moving(model, limit)),
            _ = registry.changed() => {}
            _ = status.changed() => {}
            _ = may_run.changed() => {}
        }
    }
}

async fn serve(gw: &Gateway, api: Api, headers: &HeaderMap, body: Bytes, caller: &Caller) -> Response {
    let arrived = Instant::now();
    let p = match peek(&body) {
        Ok(p) => p,
        Err(e) => {
            let param = (e == PeekError::MissingModel).then_some("model");
            return GatewayError::bad_request(e.to_string(), param).into_response();
        }
    };
    let model = p.model.as_deref().unwrap_or_default();
    let hops = crate::http::forward::Forwarder::hops(headers);
    // a request that waited here while its persona migrated away finds it hibernated and not
    // ours to wake: it is routed again, to where the persona went
    let mut rerouted = false;
    let (record, permit) = loop {
        let gate = match where_to(gw, model, arrived, hops).await {
            Ok(Where::Local) => gw.gate(model).await,
            Ok(Where::Remote(target, budget_ms)) => {
                let Some(r) = &gw.inner.remote else { return GatewayError::unknown_model(model).into_response() };
                // measured and held to its budget by the node that runs it; held to what is
                // left of it here too, should that node freeze
                let left = Duration::from_millis(budget_ms).saturating_sub(arrived.elapsed());
                let sent = r.forward.forward(&target, Method::POST, api.path(), headers, body, caller, left);
                return match sent.await {
                    Ok(resp) => resp,
                    Err(e) => e.into_response(),
                };
            }
            Err(e) => return e.into_response(),
        };
        let Some(gate) = gate else { return GatewayError::unknown_model(model).into_response() };
        let record = Record::begin(gate, gw.inner.clock.clone(), arrived);
        match gw.admit(record.gate(), arrived).await {
            Ok(permit) => break (record, permit),
            Err(Refusal::WakeFailed(_)) if !rerouted && gw.moved_away(model) => {
                rerouted = true;
                drop(record);
            }
            Err(refusal) => {
                let persona = std::sync::Arc::clone(&record.gate().name);
                return fail(record, GatewayError::refused(&persona, refusal));
            }
        }
    };
    let persona = std::sync::Arc::clone(&record.gate().name);
    let limit_ms = permit.budget.max_response_time_ms;
    let deadline = deadline_after(arrived, limit_ms);
    let upstream_body = match clamp_tokens(&body, &p, api, permit.budget.tokens_per_response) {
        Ok(Some(clamped)) => Bytes::from(clamped),
        Ok(None) => body.clone(),
        Err(e) => return GatewayError::bad_request(e.to_string(), None).into_response(),
    };
    // an adapter persona is served by its base's server, with the adapter selected
    let upstream_body = match permit.lora {
        Some((id, scale)) => match select_adapter(&upstream_body, id, scale) {
            Ok(b) => Bytes::from(b),
            Err(e) => return GatewayError::bad_request(e.to_string(), None).into_response(),
        },
        None => upstream_body,
    };
    let sse = p.streams();
    drop(p);

    let send = upstream::send(
        std::sync::Arc::clone(&record.gate().pool),
        permit.port,
        api.path(),
        &upstream_body,
        gw.inner.connect_timeout,
    );
    let (head, mut upstream) = match tokio::time::timeout_at(deadline, send).await {
        Err(_) => return fail(record, GatewayError::timeout(&persona, limit_ms)),
        Ok(Err(e)) => {
            let kind = match &e {
                UpstreamError::Connect(_) => ErrorKind::ConnectionRefused,
                _ => ErrorKind::Other,
            };
            let detail = e.to_string();
            tracing::warn!(%persona, port = permit.port, spawn_id = permit.spawn_id, error = %detail, "persona unreachable");
            return fail(record, GatewayError::unreachable(&persona, kind, &detail));
        }
        Ok(Ok(answer)) => answer,
    };

    if head.status.is_client_error() || head.status.is_server_error() {
        // an error answer: read (bounded, within the deadline) to classify it, pass it on as it was
        let body = match tokio::time::timeout_at(deadline, read_to_end(&mut upstream, MAX_ERROR_BODY_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => Vec::new(),
            Err(_) => return fail(record, GatewayError::timeout(&persona, limit_ms)),
        };
        drop(upstream);
        drop(permit);
        record.fail(classify(head.status.as_u16(), &body));
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = head.status;
        *out.headers_mut() = head.headers;
        return out;
    }
    let body = MeteredBody::new(upstream, permit, record, deadline, limit_ms, sse);
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = head.status;
    *out.headers_mut() = head.headers;
    out
}

fn fail(record: Record, e: GatewayError) -> Response {
    match e.kind {
        Some(kind) => record.fail(kind),
        None => drop(record),
    }
    e.into_response()
}

/// `arrived` plus a budget's time. Budgets are bounded at validation (an hour at most); the
/// check keeps a budget from an older store from panicking on an `Instant` overflow.
fn deadline_after(arrived: std::time::Instant, limit_ms: u64) -> tokio::time::Instant {
    let arrived = tokio::time::Instant::from_std(arrived);
    arrived
        .checked_add(Duration::from_millis(limit_ms))
        .unwrap_or_else(|| arrived + Duration::from_millis(mindmesh_core::bounds::MAX_RESPONSE_TIME_MS))
}
