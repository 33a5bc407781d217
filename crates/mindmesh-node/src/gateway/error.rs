//! The gateway's own refusals and failures, in OpenAI's error shape (the same as the API's),
//! each with the error kind it counts as.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mindmesh_core::metrics::ErrorKind;

use super::admission::Refusal;
use crate::http::ApiError;

/// A failure the gateway answers itself.
#[derive(Debug)]
pub struct GatewayError {
    pub api: ApiError,
    /// How it counts in the persona's metrics; none for a request that named no persona.
    pub kind: Option<ErrorKind>,
    pub retry_after_s: Option<u32>,
}

impl GatewayError {
    fn new(status: StatusCode, code: &'static str, message: String, kind: Option<ErrorKind>) -> Self {
        GatewayError { api: ApiError::new(status, code, message), kind, retry_after_s: None }
    }

    pub fn bad_request(message: String, param: Option<&str>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request", message, None);
        e.api.param = param.map(str::to_owned);
        e
    }

    pub fn unknown_model(model: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            // the spec's own `model` field (the peer group, e.g. "qwen2.5-1.5b") is the usual
            // mistake: say what `model` means here
            format!(
                "The model `{model}` does not exist: `model` names a persona of the mesh, and none is \
                 called that (GET /v1/models lists them)"
            ),
            None,
        );
        e.api.param = Some("model".into());
        e
    }

    /// This node lost its lease: it serves none of its personas until it is back.
    pub fn fenced(persona: &str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_fenced",
            format!(
                "persona {persona:?}: this node has lost contact with its mesh's majority and serves nothing; retry on another node"
            ),
            Some(ErrorKind::ConnectionRefused),
        );
        e.retry_after_s = Some(1);
        e
    }

    /// Still being placed or moved when its time ran out.
    pub fn moving(persona: &str, limit_ms: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "persona_moving",
            format!("persona {persona:?} is being placed or moved and was not ready within {limit_ms} ms; retry"),
            Some(ErrorKind::Timeout),
        );
        e.retry_after_s = Some(1);
        e
    }

    pub fn timeout(persona: &str, limit_ms: u64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("persona {persona:?} did not answer within its budget's max_response_time_ms ({limit_ms} ms)"),
            Some(ErrorKind::Timeout),
        )
    }

    pub fn unreachable(persona: &str, kind: ErrorKind, detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "persona_unreachable",
            format!("persona {persona:?} could not be reached: {detail}"),
            Some(kind),
        )
    }

    pub fn refused(persona: &str, r: Refusal) -> Self {
        let rejected = Some(ErrorKind::Rejected);
        match r {
            Refusal::QueueFull { retry_after_s } => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!("the queue for persona {persona:?} is full; retry after {retry_after_s} s"),
                    rejected,
                );
                e.retry_after_s = Some(retry_after_s);
                e
            }
            // 503, not 403: nothing is wrong with the caller, the persona is down by its
            // operator's word until `allowed_to_run` is given back
            Refusal::NotAllowed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_allowed_to_run",
                format!(
                    "persona {persona:?} is not allowed to run (budget.allowed_to_run = false); \
                     `mindmesh persona budget {persona} --allowed-to-run true` lets it run again"
                ),
                rejected,
            ),
            Refusal::Unavailable { phase, reason } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "persona_unavailable",
                match reason {
                    Some(r) => format!("persona {persona:?} is {phase} ({r})"),
                    None => format!("persona {persona:?} is {phase}"),
                },
                rejected,
            ),
            Refusal::Gone => Self::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("persona {persona:?} was removed"),
                rejected,
            ),
            Refusal::Timeout { limit_ms, .. } => Self::timeout(persona, limit_ms),
            Refusal::WakeFailed(why) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "wake_failed",
                format!("persona {persona:?} is hibernating and could not be woken: {why}"),
                Some(ErrorKind::Other),
            ),
            // 503, not 429: the caller sent nothing wrong and not too much; this node has no
            // memory for the persona now. The leader hears of it (a `no_room` event) and may
            // place the persona where there is room.
            Refusal::NoRoom { retry_after_s, message } => {
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "insufficient_capacity",
                    format!(
                        "persona {persona:?} is hibernating and this node cannot wake it: {message}; \
                         retry after {retry_after_s} s"
                    ),
                    rejected,
                );
                e.retry_after_s = Some(retry_after_s);
                e
            }
            Refusal::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_stopping",
                "the node is shutting down".to_owned(),
                rejected,
            ),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut resp = self.api.into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The last SSE event of a stream cut short by its deadline: clients see an error, not a
/// stream that merely stops.
pub fn sse_timeout_event(persona: &str, limit_ms: u64) -> bytes::Bytes {
    let body = serde_json::json!({"error": {
        "message": format!("persona {persona:?} did not finish within its budget's max_response_time_ms ({limit_ms} ms)"),
        "type": "server_error",
        "param": null,
        "code": "timeout",
    }});
    bytes::Bytes::from(format!("data: {body}\n\n"))
}
