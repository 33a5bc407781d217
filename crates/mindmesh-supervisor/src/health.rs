//! HTTP to a persona's port: the health probe (`GET <health_path>`: any 2xx is healthy;
//! anything else, or no answer in time, is not), and its hooks — state save, its own
//! metrics — each with a timeout and a cap on the body read.

use std::time::Duration;

/// One reusable HTTP client for all probes (connection pooling keeps probes cheap).
#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
}

impl Prober {
    pub fn new(timeout_ms: u64) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .pool_max_idle_per_host(1)
            .no_proxy()
            .build()?;
        Ok(Prober { http })
    }

    pub async fn probe(&self, port: u16, path: &str) -> bool {
        let url = format!("http://127.0.0.1:{port}{path}");
        matches!(self.http.get(&url).send().await, Ok(r) if r.status().is_success())
    }

    /// `POST /mindmesh/state/save`: the persona's state blob, if it offers the hook.
    pub async fn save_state(&self, port: u16, timeout: Duration, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
        let url = format!("http://127.0.0.1:{port}/mindmesh/state/save");
        let resp = self.http.post(&url).timeout(timeout).send().await.map_err(|e| e.to_string())?;
        read_hook_answer(resp, "state", max_bytes).await
    }

    /// `GET path`: the body of a 2xx answer (at most `max_bytes`), None if the path is not
    /// served. The persona's own metrics, read with its tick.
    pub async fn fetch(
        &self,
        port: u16,
        path: &str,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let resp = self.http.get(&url).timeout(timeout).send().await.map_err(|e| e.to_string())?;
        read_hook_answer(resp, "metrics", max_bytes).await
    }
}

/// The body of a hook's answer: None when the persona does not serve the hook, an error for
/// any other non-2xx answer or a body over `max_bytes` (read no further than the cap, so a
/// persona cannot make the node buffer an endless answer).
async fn read_hook_answer(mut resp: reqwest::Response, what: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
    let no_hook =
        [reqwest::StatusCode::NOT_FOUND, reqwest::StatusCode::METHOD_NOT_ALLOWED, reqwest::StatusCode::NOT_IMPLEMENTED];
    if no_hook.contains(&resp.status()) {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!("{what} hook answered {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(format!("{what} larger than {max_bytes} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(format!("{what} larger than {max_bytes} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
