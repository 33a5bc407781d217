//! One request through the gateway: read the model and token limit, route, admit (at once or
//! through the queue), clamp tokens to the budget, forward over a pooled keep-alive connection,
//! and pass the answer back as it comes — measured, and cut at the budget's deadline.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mindmesh_core::metrics::ErrorKind;

use super::Gateway;
use super::classify::{MAX_ERROR_BODY_BYTES, classify};
use super::error::GatewayError;
use super::measure::{MeteredBody, Record};
use super::request::{Api, PeekError, clamp_tokens, peek};
use super::routing::{Route, route};

pub async fn chat(State(gw): State<Gateway>, body: Bytes) -> Response {
    serve(&gw, Api::Chat, body).await
}

pub async fn completions(State(gw): State<Gateway>, body: Bytes) -> Response {
    serve(&gw, Api::Completions, body).await
}

/// `GET /v1/models`: the personas of this node, as models.
pub async fn models(State(gw): State<Gateway>) -> Response {
    let table = gw.inner.status.borrow().clone();
    let data: Vec<serde_json::Value> = table
        .values()
        .map(|s| {
            serde_json::json!({
                "id": s.name,
                "object": "model",
                "created": s.started_at_ms.unwrap_or(0) / 1000,
                "owned_by": "mindmesh",
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

async fn serve(gw: &Gateway, api: Api, body: Bytes) -> Response {
    let arrived = Instant::now();
    let p = match peek(&body) {
        Ok(p) => p,
        Err(e) => {
            let param = (e == PeekError::MissingModel).then_some("model");
            return GatewayError::bad_request(e.to_string(), param).into_response();
        }
    };
    let model = p.model.as_deref().unwrap_or_default();
    let known = matches!(route(&gw.inner.status.borrow(), model), Route::Local(_));
    let gate = if known { gw.gate(model).await } else { None };
    let Some(gate) = gate else { return GatewayError::unknown_model(model).into_response() };
    let record = Record::begin(gate, gw.inner.clock.clone(), arrived);
    let persona = std::sync::Arc::clone(&record.gate().name);

    let permit = match gw.admit(record.gate(), arrived).await {
        Ok(p) => p,
        Err(refusal) => return fail(record, GatewayError::refused(&persona, refusal)),
    };
    let limit_ms = permit.budget.max_response_time_ms;
    let deadline = tokio::time::Instant::from_std(arrived) + Duration::from_millis(limit_ms);
    let upstream_body = match clamp_tokens(&body, &p, api, permit.budget.tokens_per_response) {
        Ok(Some(clamped)) => Bytes::from(clamped),
        Ok(None) => body.clone(),
        Err(e) => return GatewayError::bad_request(e.to_string(), None).into_response(),
    };
    let sse = p.streams();
    drop(p);

    let url = format!("http://127.0.0.1:{}{}", permit.port, api.path());
    let send = gw
        .inner
        .http
        .post(url)
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(upstream_body)
        .send();
    let resp = match tokio::time::timeout_at(deadline, send).await {
        Err(_) => return fail(record, GatewayError::timeout(&persona, limit_ms)),
        Ok(Err(e)) => {
            let kind = if e.is_connect() { ErrorKind::ConnectionRefused } else { ErrorKind::Other };
            let detail = error_chain(&e);
            tracing::warn!(%persona, port = permit.port, spawn_id = permit.spawn_id, error = %detail, "persona unreachable");
            return fail(record, GatewayError::unreachable(&persona, kind, &detail));
        }
        Ok(Ok(r)) => r,
    };

    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        return pass_error(resp, record, permit, deadline, &persona, limit_ms).await;
    }
    let resp: axum::http::Response<reqwest::Body> = resp.into();
    let (mut parts, upstream) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = MeteredBody::new(upstream, permit, record, deadline, limit_ms, sse);
    Response::from_parts(parts, Body::new(body))
}

fn fail(record: Record, e: GatewayError) -> Response {
    match e.kind {
        Some(kind) => record.fail(kind),
        None => drop(record),
    }
    e.into_response()
}

/// A persona's error answer: read (bounded, within the deadline) to classify it, then passed
/// on as it was.
async fn pass_error(
    mut resp: reqwest::Response,
    record: Record,
    permit: super::gate::Permit,
    deadline: tokio::time::Instant,
    persona: &str,
    limit_ms: u64,
) -> Response {
    let status = resp.status();
    let mut headers = std::mem::take(resp.headers_mut());
    let read = async {
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let room = MAX_ERROR_BODY_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok::<_, reqwest::Error>(buf)
    };
    let body = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => Vec::new(),
        Err(_) => return fail(record, GatewayError::timeout(persona, limit_ms)),
    };
    drop(permit);
    record.fail(classify(status.as_u16(), &body));
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Headers of one connection that must not be forwarded to another.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        h.remove(name);
    }
    h.remove("keep-alive");
}

/// reqwest's error with its causes ("error sending request: connection refused").
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}
