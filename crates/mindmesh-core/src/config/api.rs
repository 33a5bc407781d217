use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Largest `max_body_bytes`: every body up to it is held in memory while it is parsed.
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// Shortest bearer token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Loopback by default; any other address requires `token`.
    pub listen: SocketAddr,
    /// Bearer token required on every request when set.
    pub token: Option<String>,
    /// `host:port` other nodes use to reach this API (forwarded requests, the gateway);
    /// default: the bound address, or the host's primary address if bound to all.
    pub advertise: Option<String>,
    /// Largest request body accepted (specs, chat completions).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            token: None,
            advertise: None,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.token
            && t.len() < MIN_TOKEN_LEN
        {
            return Err(CoreError::invalid("token", format!("must be at least {MIN_TOKEN_LEN} characters")));
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(CoreError::invalid(
                "token",
                format!("listening on {} (not loopback) requires a token", self.listen),
            ));
        }
        crate::bounds::within("max_body_bytes", self.max_body_bytes as u64, 1024, MAX_BODY_BYTES as u64)?;
        Ok(())
    }
}
