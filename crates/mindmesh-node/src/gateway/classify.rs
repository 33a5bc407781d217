//! Classifying a persona's failed answer into an [`ErrorKind`] from its status and its
//! OpenAI-shaped error body (`error.code`, `error.type`, and the message's wording where
//! servers differ in codes).

use mindmesh_core::metrics::ErrorKind;
use serde::Deserialize;

/// Longest error body read to classify it; the rest is not needed to tell kinds apart.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
struct Body {
    #[serde(default)]
    error: Option<Detail>,
}

#[derive(Debug, Default, Deserialize)]
struct Detail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

pub fn classify(status: u16, body: &[u8]) -> ErrorKind {
    let detail = serde_json::from_slice::<Body>(body).ok().and_then(|b| b.error).unwrap_or_default();
    let code = match &detail.code {
        Some(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
        _ => String::new(),
    };
    let kind = detail.kind.unwrap_or_default().to_ascii_lowercase();
    let message = detail.message.unwrap_or_default().to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| code.contains(w) || kind.contains(w) || message.contains(w));
    if says(&["insufficient_quota", "quota"]) {
        return ErrorKind::Quota;
    }
    if says(&["context_length", "context length", "maximum context", "context window", "context size"]) {
        return ErrorKind::ContextLength;
    }
    match status {
        401 | 403 => ErrorKind::Auth,
        _ if says(&["invalid_api_key", "authentication"]) => ErrorKind::Auth,
        408 | 504 => ErrorKind::Timeout,
        400..=499 => ErrorKind::Upstream4xx(status),
        500..=599 if says(&["timeout", "timed out"]) => ErrorKind::Timeout,
        500..=599 => ErrorKind::Upstream5xx,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"error": {"message": message, "type": kind, "code": code}})).unwrap()
    }

    #[test]
    fn kinds_from_status_and_body() {
        // the shapes the demo persona injects, as OpenAI answers them
        assert_eq!(classify(504, &body("Request timed out", "timeout", Some("timeout"))), ErrorKind::Timeout);
        assert_eq!(classify(500, &body("The server had an error", "server_error", None)), ErrorKind::Upstream5xx);
        assert_eq!(
            classify(429, &body("Rate limit reached", "requests", Some("rate_limit_exceeded"))),
            ErrorKind::Upstream4xx(429)
        );
        assert_eq!(
            classify(401, &body("Incorrect API key", "invalid_request_error", Some("invalid_api_key"))),
            ErrorKind::Auth
        );
        assert_eq!(
            classify(429, &body("You exceeded your current quota", "insufficient_quota", Some("insufficient_quota"))),
            ErrorKind::Quota
        );
        assert_eq!(
            classify(400, &body("maximum context length", "invalid_request_error", Some("context_length_exceeded"))),
            ErrorKind::ContextLength
        );
        // llama.cpp words it differently and has no code
        assert_eq!(
            classify(400, &body("the request exceeds the available context size", "exceed_context_size_error", None)),
            ErrorKind::ContextLength
        );
        assert_eq!(
            classify(400, &body("'messages' must not be empty", "invalid_request_error", None)),
            ErrorKind::Upstream4xx(400)
        );
        assert_eq!(classify(404, b"not json"), ErrorKind::Upstream4xx(404));
        assert_eq!(classify(503, b""), ErrorKind::Upstream5xx);
        assert_eq!(classify(302, b""), ErrorKind::Other);
    }
}
