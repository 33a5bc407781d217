//! `GET /api/v1/status`: this node, its host, the mesh (members, leader, term) and every
//! persona of the mesh with the node it runs on.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::mesh::mesh_status;
use super::personas::all_views;
use super::types::NodeStatus;

pub async fn status(State(st): State<ApiState>) -> Json<NodeStatus> {
    let now = st.clock.now_ms();
    let personas = all_views(&st).await;
    let mesh = mesh_status(&st).await;
    let host = st.host.borrow().clone();
    let last_event_seq = *st.last_event_seq.borrow();
    let mut phases = BTreeMap::new();
    for p in &personas {
        *phases.entry(p.phase.as_str().to_owned()).or_insert(0) += 1;
    }
    Json(NodeStatus {
        node: st.node_name.to_string(),
        version: st.version.to_owned(),
        uptime_s: now.saturating_sub(st.started_ms) / 1000,
        api: st.api_addr.to_string(),
        data_dir: st.data_dir.to_string(),
        limits: st.supervisor.limits_enforcement().to_owned(),
        host,
        phases,
        personas,
        last_event_seq,
        mesh: Some(mesh),
    })
}
