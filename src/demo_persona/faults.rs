//! Misbehaviour on the request path: which requests fail and how, and how slow answers are.
//! Randomness is a seeded counter-based sequence (splitmix64 of seed and draw number), so it
//! needs no lock and a run replays exactly with the same `--seed` and request order.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::demo_persona::flags::FaultKind;
use crate::demo_persona::openai::{ErrorBody, ErrorDetail};
use crate::demo_persona::state::AppState;

/// Added latency never exceeds this, however long the ramp has run.
pub const MAX_ADDED_LATENCY_MS: u64 = 600_000;

/// Every message carries a phrase a gateway can classify by (OpenAI's own wording where it
/// has one), and says the error was injected, so nobody mistakes it for a real outage.
pub struct ErrorShape {
    pub status: StatusCode,
    pub message: &'static str,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl FaultKind {
    pub fn shape(self) -> ErrorShape {
        match self {
            FaultKind::Timeout => ErrorShape {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: "Request timed out: the model did not answer in time (timeout injected by \
                          mindmesh-demo-persona)",
                kind: "timeout",
                param: None,
                code: Some("timeout"),
            },
            FaultKind::ServerError => ErrorShape {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "The server had an error while processing your request (internal server error \
                          injected by mindmesh-demo-persona)",
                kind: "server_error",
                param: None,
                code: None,
            },
            FaultKind::RateLimit => ErrorShape {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "Rate limit reached for requests: rate limit exceeded (injected by \
                          mindmesh-demo-persona)",
                kind: "requests",
                param: None,
                code: Some("rate_limit_exceeded"),
            },
            FaultKind::Auth => ErrorShape {
                status: StatusCode::UNAUTHORIZED,
                message: "Incorrect API key provided: invalid api key (injected by mindmesh-demo-persona)",
                kind: "invalid_request_error",
                param: None,
                code: Some("invalid_api_key"),
            },
            FaultKind::Quota => ErrorShape {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "You exceeded your current quota, please check your plan and billing details: \
                          quota exceeded (injected by mindmesh-demo-persona)",
                kind: "insufficient_quota",
                param: None,
                code: Some("insufficient_quota"),
            },
            FaultKind::ContextLength => ErrorShape {
                status: StatusCode::BAD_REQUEST,
                message: "This model's maximum context length was exceeded: context_length_exceeded, please \
                          reduce the length of the messages (injected by mindmesh-demo-persona)",
                kind: "invalid_request_error",
                param: Some("messages"),
                code: Some("context_length_exceeded"),
            },
        }
    }
}

/// An OpenAI-shaped error response.
pub fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = ErrorBody { error: ErrorDetail { message, kind, param, code } };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

/// A client error in the request itself (not injected).
pub fn invalid_request(message: &str, param: Option<&str>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message, "invalid_request_error", param, None)
}

/// The next number of the seeded sequence.
pub fn draw(state: &AppState) -> u64 {
    let n = state.draws.fetch_add(1, Ordering::Relaxed);
    splitmix64(state.seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether this request fails, and how. Draws nothing when no errors are configured, so a
/// steady persona's hot path stays a branch.
pub fn choose_fault(state: &AppState) -> Option<FaultKind> {
    let f = &state.flags;
    if f.error_rate <= 0.0 || f.error_kinds.is_empty() {
        return None;
    }
    if unit(draw(state)) >= f.error_rate {
        return None;
    }
    let i = (draw(state) % f.error_kinds.len() as u64) as usize;
    Some(f.error_kinds[i])
}

/// Answer with an injected fault; a timeout hangs first.
pub async fn inject(state: &AppState, kind: FaultKind) -> Response {
    state.errors_injected.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(kind = ?kind, "injecting an error");
    if kind == FaultKind::Timeout {
        tokio::time::sleep(Duration::from_millis(state.flags.hang_ms)).await;
    }
    let s = kind.shape();
    let mut resp = error_response(s.status, s.message, s.kind, s.param, s.code);
    if s.status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// Latency added before an answer: the base plus the ramp for the minutes since start.
pub fn added_latency(state: &AppState, now: Instant) -> Duration {
    let f = &state.flags;
    let minutes = now.saturating_duration_since(state.started).as_secs_f64() / 60.0;
    let ramp_ms = (f.latency_ramp_ms_per_min * minutes) as u64;
    Duration::from_millis(f.latency_ms.saturating_add(ramp_ms).min(MAX_ADDED_LATENCY_MS))
}

/// Compute for `--cpu-ms` of this thread's CPU time (not wall time: on a shared core the
/// answer takes longer, as a model's would), on a blocking thread so the runtime keeps serving.
pub async fn compute(state: &AppState) {
    let cpu_ms = state.flags.cpu_ms;
    if cpu_ms == 0 {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || burn_cpu(Duration::from_millis(cpu_ms))).await;
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec we own
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

fn burn_cpu(d: Duration) {
    let end = thread_cpu() + d;
    let mut x: u64 = 1;
    while thread_cpu() < end {
        for _ in 0..2000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
        }
    }
}

/// Sleep the added latency, skipping the timer entirely when there is none.
pub async fn delay(state: &AppState) {
    let d = added_latency(state, Instant::now());
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::demo_persona::flags::Flags;
    use crate::demo_persona::state::Restore;

    fn state(args: &[&str], seed: u64) -> AppState {
        let flags = Flags::try_parse_from(["p", "--port", "0"].iter().chain(args)).unwrap();
        AppState::new(flags, seed, Restore::Fresh, None).unwrap()
    }

    #[test]
    fn faults_follow_the_rate_and_replay_with_the_seed() {
        let run = |seed| {
            let s = state(&["--error-rate", "0.3", "--error-kinds", "429,401,quota"], seed);
            (0..2000).map(|_| choose_fault(&s)).collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let failed = a.iter().flatten().count();
        assert!((480..720).contains(&failed), "{failed} of 2000 at rate 0.3");
        for k in [FaultKind::RateLimit, FaultKind::Auth, FaultKind::Quota] {
            assert!(a.iter().flatten().filter(|&&x| x == k).count() > 100, "{k:?} rarely chosen");
        }
        let all = state(&["--error-rate", "1", "--error-kinds", "context_length"], 1);
        assert!((0..100).all(|_| choose_fault(&all) == Some(FaultKind::ContextLength)));
        let none = state(&[], 1);
        assert!((0..100).all(|_| choose_fault(&none).is_none()));
        assert_eq!(none.draws.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn compute_uses_its_cpu_time() {
        let s = state(&["--cpu-ms", "30"], 1);
        let t = std::time::Instant::now();
        compute(&s).await;
        // at least its CPU time of wall time; more only when the host is busy
        assert!(t.elapsed() >= Duration::from_millis(30), "{:?}", t.elapsed());
    }

    #[test]
    fn latency_ramps_and_is_capped() {
        let s = state(&["--latency-ms", "50", "--latency-ramp-ms-per-min", "600"], 1);
        assert_eq!(added_latency(&s, s.started), Duration::from_millis(50));
        assert_eq!(added_latency(&s, s.started + Duration::from_secs(30)), Duration::from_millis(350));
        let far = s.started + Duration::from_secs(1_000_000);
        assert_eq!(added_latency(&s, far), Duration::from_millis(MAX_ADDED_LATENCY_MS));
    }
}
