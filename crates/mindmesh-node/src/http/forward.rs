//! Requests for a persona another node runs are passed to that node's API as they came (the
//! same method, path, body and bearer token) and its answer streamed back, so an operator or
//! an application may talk to any node of the mesh. A forwarded request carries a header so
//! it is never forwarded twice (a registry that changed under it gives an error, not a loop).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use crate::http::ApiError;

/// Marks a request already forwarded once.
pub const FORWARDED: &str = "x-mindmesh-forwarded";
/// Most nodes a request passes through.
pub const MAX_HOPS: u32 = 2;

#[derive(Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    token: Option<String>,
}

impl Forwarder {
    pub fn new(token: Option<String>) -> Result<Self, crate::NodeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| crate::NodeError::io("HTTP client", std::io::Error::other(e)))?;
        Ok(Forwarder { http, token })
    }

    /// Was this request forwarded to us by another node?
    /// How many nodes forwarded this request already (the header counts hops).
    pub fn hops(headers: &HeaderMap) -> u32 {
        headers.get(FORWARDED).map_or(0, |v| v.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(MAX_HOPS))
    }

    /// Pass the request to the node at `api` (`host:port`) and stream its answer back.
    pub async fn forward(
        &self,
        api: &str,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        // a second hop lets a node whose registry is ahead correct one that lagged (a persona
        // that just moved); a third would be nodes disagreeing in a loop
        let hops = Self::hops(headers);
        if hops >= MAX_HOPS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "moved",
                "the persona is not on the node this request was forwarded to (the registry is changing); retry",
            ));
        }
        if api.is_empty() {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unreachable", "its node has no API address"));
        }
        let url = format!("http://{api}{path_and_query}");
        let mut rb = self.http.request(method, &url).header(FORWARDED, (hops + 1).to_string()).body(body);
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            rb = rb.header(header::CONTENT_TYPE, ct);
        }
        // the caller's token, else ours (the mesh shares one token)
        match headers.get(header::AUTHORIZATION) {
            Some(a) => rb = rb.header(header::AUTHORIZATION, a),
            None => {
                if let Some(t) = &self.token {
                    rb = rb.bearer_auth(t);
                }
            }
        }
        let resp = rb.send().await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "unreachable",
                format!("the persona's node at {api} is unreachable: {e}"),
            )
        })?;
        let status = resp.status();
        let kept: Vec<(header::HeaderName, HeaderValue)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
        *out.status_mut() = status;
        out.headers_mut().extend(kept);
        Ok(out)
    }
}

/// Headers about one connection, not the answer: never passed on.
const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"];
