//! The node's HTTP API (axum): personas and their actions, status, events, metric history
//! and `/metrics` for Prometheus, and the OpenAI-compatible gateway under `/v1/`. Every
//! request needs a credential (a scoped bearer token, the node's local one, or the local Unix
//! socket) and must come from this node's own origin; see [`policy`]. The server itself
//! bounds connections, time and bodies; see [`server`].

mod events;
mod logs;
pub(crate) mod mesh;
pub(crate) mod metrics;
pub(crate) mod personas;
pub mod policy;
pub mod server;
pub(crate) mod status;
pub mod types;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use mindmesh_core::clock::Clock;
use mindmesh_core::metrics::HostSample;
use mindmesh_net::MeshHandle;
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::SupervisorHandle;
use tokio::sync::watch;

pub use crate::http::{ApiError, auth, forward};

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
    pub clock: Arc<dyn Clock>,
    pub gateway: Gateway,
    pub mesh: MeshHandle,
    /// The leader's last analysis (this node's, when it leads).
    pub brain: watch::Receiver<Option<Arc<mindmesh_brain::CycleReport>>>,
    /// Asks the leader loop for a copy of the view its brain reads.
    pub snapshot: tokio::sync::mpsc::Sender<crate::mesh::leader::SnapshotRequest>,
    /// Counters and histograms of the node, the brain and the supervisor's events.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    pub forward: forward::Forwarder,
    /// Cancelled to stop the node (after it leaves the mesh).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Actions on personas go through here (it drains the gateway before a stop).
    pub control: Control,
}

/// The API's routes behind its door: every request passes [`policy::guard`] (host, origin,
/// credential), every routed one [`policy::authorize`] (scope, content type, audit).
/// `pages` are routes of a layer above (the dashboard, `/ui`), put behind the same door.
pub fn router(state: ApiState, door: policy::Door, pages: Router<ApiState>) -> Router {
    let max_body_bytes = door.max_body_bytes;
    let api = Router::new()
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/personas", get(personas::list).post(personas::add))
        .route("/api/v1/personas/{name}", get(personas::show).put(personas::apply).delete(personas::remove))
        .route("/api/v1/personas/{name}/throttle", post(personas::throttle))
        .route("/api/v1/personas/{name}/migrate", post(personas::migrate))
        .route("/api/v1/nodes/{name}/drain", post(mesh::drain))
        .route("/api/v1/personas/{name}/budget", patch(personas::budget))
        .route("/api/v1/personas/{name}/series", get(metrics::series))
        .route("/api/v1/personas/{name}/logs", get(logs::logs))
        .route("/api/v1/personas/{name}/{action}", post(personas::action))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/decisions", get(mesh::decisions))
        .route("/api/v1/brain", get(mesh::brain))
        .route("/api/v1/brain/snapshot", get(mesh::brain_snapshot))
        .route("/api/v1/node/leave", post(mesh::leave))
        .route("/metrics", get(metrics::prometheus))
        .merge(state.gateway.router())
        .merge(pages)
        .route_layer(axum::middleware::from_fn_with_state(door.clone(), policy::authorize))
        .fallback(|| async { ApiError::not_found("no such route") });
    api.layer(axum::middleware::from_fn_with_state(door, policy::guard))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
