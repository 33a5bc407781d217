//! The HTTP surface: routes, `/health`, `/v1/models`, the state hook, and the headers every
//! answer carries (`x-mindmesh-persona-id`, `x-mindmesh-state-restored`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::demo_persona::completions;
use crate::demo_persona::faults::error_response;
use crate::demo_persona::flags::Flags;
use crate::demo_persona::openai::{Model, ModelList};
use crate::demo_persona::state::{AppState, HEADER_PERSONA_ID, HEADER_STATE_RESTORED, Memory, Restore};

/// Largest request body: a long chat history fits, a runaway client does not.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(completions::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/mindmesh/state/save", post(save_state))
        .route("/mindmesh/metrics", get(crate::demo_persona::reported::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Add the persona's identity and restore outcome to a response.
pub fn tag(state: &AppState, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(HEADER_PERSONA_ID.clone(), state.persona_id_header.clone());
    h.insert(HEADER_STATE_RESTORED.clone(), state.restored_header.clone());
    resp
}

fn json<T: Serialize>(state: &AppState, status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => tag(
            state,
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
        ),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "server_error", None, None),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    persona_id: &'a str,
    pid: u32,
    uptime_ms: u64,
    /// Completion requests received by this process (answered or failed).
    requests_served: u64,
    /// The same, over the persona's life across restored states.
    requests_served_total: u64,
    /// Completion requests being answered now, and the most at once since start.
    in_flight: u64,
    max_in_flight: u64,
    errors_injected: u64,
    state_restored: bool,
    restore: &'a Restore,
    /// How many restores this persona's state has been through.
    restores: u64,
    memory: Memory,
    child_pid: Option<u32>,
    seed: u64,
    flags: &'a Flags,
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let h = Health {
        status: "ok",
        persona_id: &state.flags.persona_id,
        pid: state.pid,
        uptime_ms: state.started.elapsed().as_millis() as u64,
        requests_served: state.requests_served.load(Ordering::Relaxed),
        requests_served_total: state.requests_total(),
        in_flight: state.in_flight.load(Ordering::SeqCst),
        max_in_flight: state.max_in_flight.load(Ordering::SeqCst),
        errors_injected: state.errors_injected.load(Ordering::Relaxed),
        state_restored: state.restore.restored(),
        restore: &state.restore,
        restores: state.restores,
        memory: state.memory(),
        child_pid: state.child_pid(),
        seed: state.seed,
        flags: &state.flags,
    };
    json(&state, StatusCode::OK, &h)
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let list = ModelList {
        object: "list",
        data: [Model {
            id: &state.flags.persona_id,
            object: "model",
            created: state.started_unix_s,
            owned_by: "mindmesh-demo-persona",
        }],
    };
    json(&state, StatusCode::OK, &list)
}

/// The state hook of DESIGN.md: the blob a node keeps and hands back in `MINDMESH_STATE_FILE`.
async fn save_state(State(state): State<Arc<AppState>>) -> Response {
    let blob = state.snapshot();
    tracing::info!(requests_served = blob.requests_served, "state saved");
    json(&state, StatusCode::OK, &blob)
}

async fn not_found(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    let msg = format!(
        "Unknown request URL: {}. mindmesh-demo-persona serves /v1/chat/completions, /v1/completions, \
                       /v1/models, /health, /mindmesh/state/save and /mindmesh/metrics",
        uri.path()
    );
    tag(&state, error_response(StatusCode::NOT_FOUND, &msg, "invalid_request_error", None, Some("unknown_url")))
}
