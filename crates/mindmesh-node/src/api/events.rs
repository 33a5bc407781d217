//! `GET /api/v1/events?after=&limit=&persona=&wait_ms=`: the event log, oldest first. With
//! `wait_ms`, an empty answer waits (long poll) for the next event, so `events --follow`
//! sees events as they happen without hammering the node.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::types::EventsPage;
use super::{ApiError, ApiState};

const MAX_LIMIT: usize = 1000;
const MAX_WAIT_MS: u64 = 60_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    persona: Option<String>,
    wait_ms: Option<u64>,
}

pub async fn events(State(st): State<ApiState>, Query(q): Query<EventsQuery>) -> Result<Json<EventsPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    if let Some(name) = &q.persona {
        known_here(&st, name).await?;
    }
    if let Some(wait_ms) = q.wait_ms {
        let mut seq = st.last_event_seq.clone();
        let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        let _ = tokio::time::timeout(wait, seq.wait_for(|&s| s > q.after)).await;
    }
    let events = st.store.events(q.after, limit, q.persona.as_deref()).await?;
    let last_seq = events.last().map_or(q.after, |e| e.seq);
    Ok(Json(EventsPage { events, last_seq }))
}

/// A persona filter must name a persona: one of the mesh, one this node runs, or one the log
/// remembers (a removed persona's events stay readable). A typo answers 404 instead of an
/// empty log that looks like a quiet persona.
async fn known_here(st: &ApiState, name: &str) -> Result<(), ApiError> {
    let known = st.mesh.registry().personas.contains_key(name)
        || st.supervisor.status().borrow().contains_key(name)
        || !st.store.events(0, 1, Some(name)).await?.is_empty();
    if known {
        Ok(())
    } else {
        Err(ApiError { param: Some("persona".into()), ..ApiError::not_found(format!("no persona named {name:?}")) })
    }
}
