//! `GET /mindmesh/metrics`: what the persona reports of itself (the contract of
//! `mindmesh_core::reported`), with plausible figures: a prompt cache over the last
//! [`PROMPT_CACHE_SLOTS`] user messages (a repeated message is a hit, as a prefix cache would
//! serve it), KV-cache use from the requests in flight against [`KV_SLOTS`], and counters.
//! `--metrics` makes it answer garbage, an oversized body or a rate out of range instead, so a
//! node's refusal of each can be tested.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::demo_persona::flags::MetricsAnswer;
use crate::demo_persona::state::AppState;

/// User messages remembered for the prompt cache.
pub const PROMPT_CACHE_SLOTS: usize = 64;
/// Requests in flight that fill the "KV cache".
pub const KV_SLOTS: u64 = 8;
/// What `--metrics oversize` sends: more than any node reads (16 KiB).
const OVERSIZE_BYTES: usize = 1 << 20;

/// A ring of hashes of recent user messages.
#[derive(Default)]
pub struct PromptCache {
    ring: Mutex<(Vec<u64>, usize)>,
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
}

impl PromptCache {
    /// Look a message up, then remember it.
    pub fn touch(&self, hash: u64) {
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let (ring, next) = &mut *g;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if ring.contains(&hash) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if ring.len() < PROMPT_CACHE_SLOTS {
            ring.push(hash);
        } else {
            ring[*next] = hash;
            *next = (*next + 1) % PROMPT_CACHE_SLOTS;
        }
    }

    fn hit_rate(&self) -> Option<f64> {
        let n = self.lookups.load(Ordering::Relaxed);
        (n > 0).then(|| self.hits.load(Ordering::Relaxed) as f64 / n as f64)
    }
}

#[derive(Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_hit_rate: Option<f64>,
    kv_cache_usage: f64,
    adapters: Vec<String>,
    counters: std::collections::BTreeMap<&'static str, u64>,
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = match state.flags.metrics {
        MetricsAnswer::Ok => {
            let in_flight = state.in_flight.load(Ordering::SeqCst);
            let r = Report {
                cache_hit_rate: state.prompt_cache.hit_rate(),
                kv_cache_usage: (in_flight.min(KV_SLOTS) as f64) / KV_SLOTS as f64,
                adapters: Vec::new(),
                counters: [
                    ("requests_served", state.requests_served.load(Ordering::Relaxed)),
                    ("prompt_cache_hits", state.prompt_cache.hits.load(Ordering::Relaxed)),
                ]
                .into(),
            };
            serde_json::to_vec(&r).unwrap_or_default()
        }
        MetricsAnswer::Garbage => b"<html>this is not JSON</html>".to_vec(),
        MetricsAnswer::Oversize => {
            let mut b = b"{\"pad\": \"".to_vec();
            b.resize(OVERSIZE_BYTES, b'x');
            b.extend_from_slice(b"\"}");
            b
        }
        MetricsAnswer::OutOfRange => br#"{"cache_hit_rate": 7.5, "kv_cache_usage": -1}"#.to_vec(),
    };
    let ct = HeaderValue::from_static("application/json");
    crate::demo_persona::http::tag(&state, (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_message_hits_and_the_ring_forgets_old_ones() {
        let c = PromptCache::default();
        c.touch(1);
        c.touch(1);
        assert_eq!(c.hit_rate(), Some(0.5));
        for h in 2..(2 + PROMPT_CACHE_SLOTS as u64) {
            c.touch(h);
        }
        c.touch(1); // pushed out by then
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
    }
}
