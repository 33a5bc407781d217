//! `GET /api/v1/status`: the node at a glance.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::personas::view;
use super::types::NodeStatus;

pub async fn status(State(st): State<ApiState>) -> Json<NodeStatus> {
    let now = st.clock.now_ms();
    let table = st.supervisor.status().borrow().clone();
    let mut phases = BTreeMap::new();
    for s in table.values() {
        *phases.entry(s.phase.as_str().to_owned()).or_insert(0) += 1;
    }
    Json(NodeStatus {
        node: st.node_name.to_string(),
        version: st.version.to_owned(),
        uptime_s: now.saturating_sub(st.started_ms) / 1000,
        api: st.api_addr.to_string(),
        data_dir: st.data_dir.to_string(),
        limits: st.supervisor.limits_enforcement().to_owned(),
        host: st.host.borrow().clone(),
        phases,
        personas: table.values().map(|s| view(s, now, &st.gateway)).collect(),
        last_event_seq: *st.last_event_seq.borrow(),
    })
}
