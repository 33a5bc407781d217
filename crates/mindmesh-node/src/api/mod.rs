//! The node's HTTP API (axum): personas and their actions, status, events, metric history
//! and `/metrics` for Prometheus, and the OpenAI-compatible gateway under `/v1/`. Loopback by
//! default; with a token configured every request must carry it as a bearer token (OpenAI
//! clients send it as their API key).

mod events;
mod mesh;
mod metrics;
mod personas;
mod status;
pub mod types;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use mindmesh_core::clock::Clock;
use mindmesh_core::metrics::HostSample;
use mindmesh_net::MeshHandle;
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::SupervisorHandle;
use tokio::sync::watch;

pub use crate::http::{ApiError, forward};

use crate::control::Control;
use crate::gateway::Gateway;

/// What every handler may read. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub node_name: Arc<str>,
    pub version: &'static str,
    pub started_ms: u64,
    pub api_addr: Arc<str>,
    pub data_dir: Arc<str>,
    pub supervisor: SupervisorHandle,
    pub store: StoreHandle,
    /// The `seq` of the last event the store holds; moves when events are written.
    pub last_event_seq: watch::Receiver<u64>,
    pub host: watch::Receiver<Option<HostSample>>,
    pub token: Option<Arc<str>>,
    pub clock: Arc<dyn Clock>,
    pub gateway: Gateway,
    pub mesh: MeshHandle,
    /// The leader's last analysis (this node's, when it leads).
    pub brain: watch::Receiver<Option<Arc<mindmesh_brain::CycleReport>>>,
    pub forward: forward::Forwarder,
    /// Cancelled to stop the node (after it leaves the mesh).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Actions on personas go through here (it drains the gateway before a stop).
    pub control: Control,
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/personas", get(personas::list).post(personas::add))
        .route("/api/v1/personas/{name}", get(personas::show).delete(personas::remove))
        .route("/api/v1/personas/{name}/throttle", post(personas::throttle))
        .route("/api/v1/personas/{name}/migrate", post(personas::migrate))
        .route("/api/v1/nodes/{name}/drain", post(mesh::drain))
        .route("/api/v1/personas/{name}/budget", patch(personas::budget))
        .route("/api/v1/personas/{name}/series", get(metrics::series))
        .route("/api/v1/personas/{name}/{action}", post(personas::action))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/decisions", get(mesh::decisions))
        .route("/api/v1/brain", get(mesh::brain))
        .route("/api/v1/node/leave", post(mesh::leave))
        .route("/metrics", get(metrics::prometheus))
        .merge(state.gateway.router())
        .fallback(|| async { ApiError::not_found("no such route") });
    // the check gets the token alone: cloning the whole state for every request costs the gateway
    api.layer(axum::middleware::from_fn_with_state(state.token.clone(), require_token))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn require_token(State(token): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    if let Some(token) = &token {
        let presented =
            req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Compare without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
