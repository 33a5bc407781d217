//! `GET /ui/live`: server-sent events that tell an open page the node has news — the
//! registry changed (a decision, a verdict, a persona placed or moved), an event was logged,
//! or a tick passed (new samples for the plots). The page's script then reloads its own
//! content; the events carry counters only, never data, so nothing here needs rendering
//! twice.
//!
//! Bounded: at most [`MAX_STREAMS`] at once (more get 503), at most one event per
//! [`MIN_GAP_MS`], and each stream ends after [`MAX_STREAM_MS`] (the browser reconnects,
//! through the door again: an expired session stops there) or when the node stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Login, secure};
use crate::api::{ApiError, ApiState};

pub const MAX_STREAMS: usize = 32;
/// Fewest milliseconds between two events of one stream (a burst of changes is one event).
pub const MIN_GAP_MS: u64 = 2_000;
/// An event at least this often, for the plots' new samples.
pub const TICK_MS: u64 = 10_000;
/// A stream's longest life.
pub const MAX_STREAM_MS: u64 = 600_000;

/// The streams open now, shared by every request.
#[derive(Clone)]
pub struct Streams(Arc<Semaphore>);

impl Default for Streams {
    fn default() -> Self {
        Streams(Arc::new(Semaphore::new(MAX_STREAMS)))
    }
}

struct Live {
    st: ApiState,
    registry: tokio::sync::watch::Receiver<Arc<mindmesh_core::registry::Registry>>,
    events: tokio::sync::watch::Receiver<u64>,
    started: tokio::time::Instant,
    first: bool,
    _slot: OwnedSemaphorePermit,
}

/// `GET /ui/live`.
pub async fn events(State(st): State<ApiState>, Extension(login): Extension<Login>) -> Response {
    let Ok(slot) = Arc::clone(&login.streams.0).try_acquire_owned() else {
        tracing::warn!(max = MAX_STREAMS, "dashboard live streams at their cap");
        let e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_STREAMS} live streams are open already; the page still works without one"),
        );
        return secure(e.into_response());
    };
    let live = Live {
        registry: st.mesh.watch_registry(),
        events: st.last_event_seq.clone(),
        st,
        started: tokio::time::Instant::now(),
        first: true,
        _slot: slot,
    };
    secure(Sse::new(stream(live)).keep_alive(KeepAlive::default()).into_response())
}

fn stream(live: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(live, |mut l| async move {
        if !l.first {
            // coalesce a burst, then wait for news or the tick
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(MIN_GAP_MS)) => {}
                _ = l.st.shutdown.cancelled() => return None,
            }
            let tick = tokio::time::sleep(Duration::from_millis(TICK_MS.saturating_sub(MIN_GAP_MS)));
            tokio::select! {
                _ = tick => {}
                r = l.registry.changed() => { r.ok()?; }
                r = l.events.changed() => { r.ok()?; }
                _ = l.st.shutdown.cancelled() => return None,
            }
        }
        if l.started.elapsed() >= Duration::from_millis(MAX_STREAM_MS) {
            return None;
        }
        l.first = false;
        l.registry.borrow_and_update();
        l.events.borrow_and_update();
        let data = serde_json::json!({
            "at_ms": l.st.clock.now_ms(),
            "decisions": l.st.mesh.registry().next_decision_seq,
            "events": *l.st.last_event_seq.borrow(),
        });
        Some((Ok(Event::default().event("changed").data(data.to_string())), l))
    })
}
