//! What the pages show, read through the API's own handlers (so a page and `GET /api/v1/…`
//! never disagree), with the reads they forward to other nodes bounded in size and time.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::api::mesh::DecisionsQuery;
use crate::api::metrics::SeriesQuery;
use crate::api::types::{DecisionView, NodeStatus, SeriesPage};
use crate::api::{ApiError, ApiState};
use crate::http::auth::Caller;

/// Largest answer read from another node (a day of series at the page's resolution is far
/// smaller; the brain's report without features too).
const MAX_FORWARDED_BYTES: usize = 8 * 1024 * 1024;

/// `GET /api/v1/status`, as the API answers it.
pub async fn status(st: &ApiState) -> NodeStatus {
    crate::api::status::status(State(st.clone())).await.0
}

/// The last `n` decisions (of one persona, or all), newest first.
pub async fn recent_decisions(st: &ApiState, persona: Option<&str>, n: usize) -> Result<Vec<DecisionView>, ApiError> {
    // the log is read oldest first from `after`; for one persona, its rows are sparse, so the
    // whole log is paged through (bounded by the API's page limit per read)
    let next = st.mesh.registry().next_decision_seq;
    let mut after = if persona.is_some() { 0 } else { next.saturating_sub(n as u64 + 1) };
    let mut out: Vec<DecisionView> = Vec::new();
    loop {
        let q = DecisionsQuery {
            after,
            updated_after: None,
            limit: Some(1000),
            persona: persona.map(str::to_owned),
            wait_ms: None,
        };
        let page = crate::api::mesh::decisions(State(st.clone()), Query(q)).await?.0;
        let done = page.decisions.is_empty() || page.last_seq <= after;
        after = page.last_seq;
        out.extend(page.decisions);
        if out.len() > n {
            out.drain(..out.len() - n);
        }
        if done || after.saturating_add(1) >= next {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// The leader's last analysis (`GET /api/v1/brain`, forwarded to the leader by the handler).
pub async fn brain(st: &ApiState, caller: &Caller) -> Result<Value, ApiError> {
    let uri = OriginalUri("/api/v1/brain".parse().map_err(|_| ApiError::internal("brain uri"))?);
    let resp = crate::api::mesh::brain(State(st.clone()), Extension(caller.clone()), uri, HeaderMap::new()).await?;
    json_of(resp).await
}

/// A persona's stored samples over `[from_ms, to_ms]` at most `max_points` of them, from the
/// node that runs it (the series handler answers for this node's personas only, so another
/// node's are asked of it, on the caller's behalf).
pub async fn series(
    st: &ApiState,
    caller: &Caller,
    name: &str,
    owner_api: Option<&str>,
    from_ms: u64,
    to_ms: u64,
    max_points: usize,
) -> Result<SeriesPage, ApiError> {
    match owner_api {
        None => {
            let q = SeriesQuery { from_ms: Some(from_ms), to_ms: Some(to_ms), max_points: Some(max_points) };
            Ok(crate::api::metrics::series(State(st.clone()), Path(name.to_owned()), Query(q)).await?.0)
        }
        Some(api) => {
            let path = format!(
                "/api/v1/personas/{}/series?from_ms={from_ms}&to_ms={to_ms}&max_points={max_points}",
                super::path_segment(name)
            );
            let deadline = st.forward.default_deadline();
            let resp =
                st.forward.forward(api, Method::GET, &path, &HeaderMap::new(), Bytes::new(), caller, deadline).await?;
            let v = json_of(resp).await?;
            serde_json::from_value(v).map_err(|e| ApiError::internal(format!("the series of {name:?}: {e}")))
        }
    }
}

/// A handler's (or another node's) JSON answer; an error answer becomes an [`ApiError`] with
/// its status and message.
async fn json_of(resp: Response) -> Result<Value, ApiError> {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_FORWARDED_BYTES)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "unreadable", format!("reading the answer: {e}")))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "unreadable", format!("not JSON: {e}")))?;
    if status.is_success() {
        return Ok(v);
    }
    let message = v["error"]["message"].as_str().unwrap_or("an error without a message").to_owned();
    Err(ApiError::new(status, "upstream", message))
}
