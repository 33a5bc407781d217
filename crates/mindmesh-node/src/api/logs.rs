//! `GET /api/v1/personas/{name}/logs`: a persona's output, a page at a time, from the node
//! that runs it (any node forwards there) or, with `node=`, from the files another node kept
//! (a persona that moved). With `wait_ms`, a page at the end waits for new lines (long poll):
//! `mindmesh logs -f` is a series of such pages, so a follower holds no file open and no
//! buffer between pages, and followers are bounded in number.
//!
//! The cursor names the node its position is in: asked of another node (the persona moved
//! while it was followed), it begins at that node's oldest line, so the output continues.

use std::path::PathBuf;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use mindmesh_supervisor::logs::reader::{self, Filter, Page, Position, Start};
use mindmesh_supervisor::logs::{self, Stream};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::auth::Caller;
use super::types::{LogFilesView, LogsPage};
use super::{ApiError, ApiState};

/// Lines one page holds by default and at most.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 5000;
/// Most lines `tail` may ask for.
const MAX_TAIL: usize = 100_000;
/// Longest a page waits for new lines.
const MAX_WAIT_MS: u64 = 30_000;
/// How often a waiting page looks at the files again (`tail -f` does the same without inotify).
const POLL: Duration = Duration::from_millis(200);
/// Followers waiting at once on this node; beyond, a page answers 503 at once.
const MAX_WAITING: usize = 64;
static WAITING: Semaphore = Semaphore::const_new(MAX_WAITING);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    cursor: Option<String>,
    tail: Option<usize>,
    since_ms: Option<u64>,
    stream: Option<Stream>,
    limit: Option<usize>,
    wait_ms: Option<u64>,
    /// Read the files this node holds (default: the node that runs the persona).
    node: Option<String>,
}

pub fn logs_root(st: &ApiState) -> PathBuf {
    PathBuf::from(&*st.data_dir).join("logs")
}

/// The API address of the node that should answer: None for this one.
fn route(st: &ApiState, name: &str, node: Option<&str>) -> Result<Option<String>, ApiError> {
    let reg = st.mesh.registry();
    let me = st.mesh.node_id();
    let target = match node {
        Some(n) if n == &*st.node_name => return Ok(None),
        Some(n) => match reg.node_by_name(n) {
            Some(e) => e.info.id,
            None => {
                return Err(ApiError {
                    param: Some("node".into()),
                    ..ApiError::not_found(format!("no node named {n:?} in the mesh"))
                });
            }
        },
        None => match reg.personas.get(name).and_then(|e| e.node) {
            Some(id) => id,
            None => return Ok(None),
        },
    };
    if target == me {
        return Ok(None);
    }
    Ok(Some(reg.nodes.get(&target).map(|n| n.info.api.clone()).unwrap_or_default()))
}

pub async fn logs(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    uri: OriginalUri,
    headers: HeaderMap,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    mindmesh_core::spec::validate_name(&name)?;
    if let Some(api) = route(&st, &name, q.node.as_deref())? {
        // a follower's wait is part of the answer's time
        let waits = Duration::from_millis(q.wait_ms.unwrap_or(0).min(MAX_WAIT_MS)) + Duration::from_secs(5);
        let deadline = st.forward.default_deadline().max(waits);
        let path = uri.0.to_string();
        return st.forward.forward(&api, Method::GET, &path, &headers, Bytes::new(), &caller, deadline).await;
    }
    let dir = logs::files::persona_dir(&logs_root(&st), &name);
    let known = st.mesh.registry().personas.contains_key(&name) || st.supervisor.status().borrow().contains_key(&name);
    if !known && !dir.exists() {
        return Err(ApiError::not_found(format!("persona {name:?} not found")));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if q.tail.is_some_and(|n| n > MAX_TAIL) {
        return Err(ApiError {
            param: Some("tail".into()),
            ..ApiError::bad_request(format!("tail is at most {MAX_TAIL}"))
        });
    }
    let start = match q.cursor.as_deref() {
        Some(c) => match parse_cursor(c)? {
            (node, pos) if node == &*st.node_name => Start::At(pos),
            // a position on another node: the persona moved here; its lines here continue
            _ => Start::Oldest,
        },
        None => q.tail.map_or(Start::Oldest, Start::Tail),
    };
    let filter = Filter { stream: q.stream, since_ms: q.since_ms };
    let mut page = read(dir.clone(), start, filter, limit).await?;
    if let Some(wait_ms) = q.wait_ms.filter(|_| page.lines.is_empty() && page.at_end) {
        let _permit = WAITING.try_acquire().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("{MAX_WAITING} log followers already wait on this node; retry later"),
            )
        })?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        while page.lines.is_empty() && tokio::time::Instant::now() < deadline && !st.shutdown.is_cancelled() {
            tokio::time::sleep(POLL).await;
            let skipped = page.skipped;
            page = read(dir.clone(), Start::At(page.next), filter, limit).await?;
            page.skipped |= skipped;
        }
    }
    Ok(Json(LogsPage {
        persona: name,
        node: st.node_name.to_string(),
        lines: page.lines,
        cursor: format!("{}:{}:{}", st.node_name, page.next.seq, page.next.offset),
        at_end: page.at_end,
        skipped: page.skipped,
    })
    .into_response())
}

async fn read(dir: PathBuf, start: Start, filter: Filter, limit: usize) -> Result<Page, ApiError> {
    tokio::task::spawn_blocking(move || reader::read_page(&dir, start, filter, limit))
        .await
        .map_err(|e| ApiError::internal(format!("log reader: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot read the logs: {e}")))
}

/// `node:seq:offset` (node names hold no `:`).
fn parse_cursor(c: &str) -> Result<(&str, Position), ApiError> {
    let bad = || ApiError { param: Some("cursor".into()), ..ApiError::bad_request(format!("not a cursor: {c:?}")) };
    let mut parts = c.rsplitn(3, ':');
    let offset = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let seq = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let node = parts.next().ok_or_else(bad)?;
    Ok((node, Position { seq, offset }))
}

/// The log files this node holds for a persona (for `persona show`).
pub fn local_files(st: &ApiState, name: &str) -> LogFilesView {
    LogFilesView {
        node: st.node_name.to_string(),
        files: logs::files::list(&logs::files::persona_dir(&logs_root(st), name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_and_garbage_is_a_clear_error() {
        let (node, pos) = parse_cursor("node-a:3:4096").unwrap();
        assert_eq!((node, pos), ("node-a", Position { seq: 3, offset: 4096 }));
        for bad in ["", "3:4", "a:b:c", "a:1:-1", "a:99999999999999999999999:0"] {
            let e = parse_cursor(bad).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("cursor"), "{bad}");
        }
    }
}
