//! The health probe: `GET <health_path>` on the persona's port, with a timeout. Any 2xx is
//! healthy; anything else, or no answer in time, is not.

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
        let no_hook = [
            reqwest::StatusCode::NOT_FOUND,
            reqwest::StatusCode::METHOD_NOT_ALLOWED,
            reqwest::StatusCode::NOT_IMPLEMENTED,
        ];
        if no_hook.contains(&resp.status()) {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("state hook answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Err(format!("state larger than {max_bytes} bytes"));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() as u64 > max_bytes {
            return Err(format!("state larger than {max_bytes} bytes"));
        }
        Ok(Some(body.to_vec()))
    }
}
