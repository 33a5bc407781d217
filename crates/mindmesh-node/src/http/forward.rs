//! Requests for a persona another node runs are passed to that node's API as they came (the
//! same method, path and body) and its answer streamed back, so an operator or an application
//! may talk to any node of the mesh. A forwarded request carries a header so it is never
//! forwarded twice (a registry that changed under it gives an error, not a loop).
//!
//! The caller's bearer token is not passed on (another node may not know it, and a secret
//! should travel no further than it must). Instead the forwarding node vouches for the caller:
//! it names them (token name, scope, itself) in `x-mindmesh-caller` and signs that, the
//! method, the path and a digest of the body with a key derived from the mesh key, which only
//! members hold. The receiving node checks the signature and its age, refuses a replay, and
//! acts with the caller's scope — never more than the caller had where they asked.
//!
//! Every forwarded request has a deadline, end to end (answer included): a node that accepts
//! connections but never answers (frozen, SIGSTOPped) costs its callers that long, no more.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hmac::{KeyInit, Mac};
use mindmesh_core::config::Scope;
use sha2::{Digest, Sha256};

use crate::http::ApiError;
use crate::http::auth::Caller;

/// Marks a request already forwarded once.
pub const FORWARDED: &str = "x-mindmesh-forwarded";
/// Who the forwarding node acts for: `v1;<ts_ms>;<nonce>;<scope>;<token name>;<node>`.
pub const CALLER: &str = "x-mindmesh-caller";
/// HMAC-SHA256 (hex) over the method, path, caller header and body digest.
pub const SIGNATURE: &str = "x-mindmesh-signature";
/// Most nodes a request passes through.
pub const MAX_HOPS: u32 = 2;
/// How old (or how far in the future, for clocks apart) a signed request may be.
const MAX_SKEW_MS: u64 = 120_000;
/// Signatures remembered against replay; past it the oldest are forgotten (they also expire).
const MAX_REMEMBERED: usize = 65_536;
/// What the answer may add to a budget: the hop and the other node's own bookkeeping.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

type HmacSha256 = hmac::Hmac<Sha256>;

/// The key nodes of one mesh sign forwarded requests with, derived from the mesh key.
#[derive(Clone)]
pub struct ForwardKey {
    key: [u8; 32],
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    set: HashSet<[u8; 32]>,
    order: VecDeque<(u64, [u8; 32])>,
}

impl ForwardKey {
    /// From the mesh key's secret (any length): a key of its own, so a signature never
    /// reveals anything usable against the private network.
    pub fn derive(mesh_secret: &[u8]) -> ForwardKey {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(mesh_secret).expect("HMAC takes any key length");
        mac.update(b"mindmesh api forwarding v1");
        ForwardKey { key: mac.finalize().into_bytes().into(), seen: Arc::default() }
    }

    fn mac(&self, method: &Method, path_and_query: &str, caller_header: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        let digest = Sha256::digest(body);
        for part in [method.as_str().as_bytes(), path_and_query.as_bytes(), caller_header.as_bytes(), &digest[..]] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The two headers a forwarded request carries.
    pub fn sign(
        &self,
        caller: &Caller,
        node: &str,
        now_ms: u64,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
    ) -> (String, String) {
        use rand::Rng;
        let nonce: u64 = rand::rng().random();
        let node: String =
            node.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
        let header = format!("v1;{now_ms};{nonce:016x};{};{};{node}", caller.scope, caller.token_name);
        let sig = self.mac(method, path_and_query, &header, body).finalize().into_bytes();
        (header, hex(&sig))
    }

    /// The caller a signed forwarded request acts for, or why it is refused.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Caller, &'static str> {
        let header = headers.get(CALLER).and_then(|v| v.to_str().ok()).ok_or("unreadable caller header")?;
        let sig = headers.get(SIGNATURE).and_then(|v| v.to_str().ok()).ok_or("a forwarded request must be signed")?;
        let sig = unhex(sig).ok_or("malformed signature")?;
        self.mac(method, path_and_query, header, body)
            .verify_slice(&sig)
            .map_err(|_| "bad signature (not a member of this mesh?)")?;
        let mut parts = header.splitn(6, ';');
        let (Some("v1"), Some(ts), Some(_nonce), Some(scope), Some(name), Some(node)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed caller header");
        };
        let ts: u64 = ts.parse().map_err(|_| "malformed caller header")?;
        if ts.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err("the signature has expired (or the nodes' clocks are more than 2 minutes apart)");
        }
        let scope = Scope::parse(scope).ok_or("malformed caller header")?;
        if name.is_empty() || node.is_empty() {
            return Err("malformed caller header");
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&sig[..32]);
        if !self.remember(id, ts + MAX_SKEW_MS, now_ms) {
            return Err("replayed");
        }
        Ok(Caller { token_name: name.into(), scope, via: Some(node.into()) })
    }

    /// False if this signature was seen already.
    fn remember(&self, id: [u8; 32], expires_ms: u64, now_ms: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(&(exp, old)) = seen.order.front() {
            if exp > now_ms && seen.order.len() < MAX_REMEMBERED {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&old);
        }
        if !seen.set.insert(id) {
            return false;
        }
        seen.order.push_back((expires_ms, id));
        true
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[derive(Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    key: ForwardKey,
    node: Arc<str>,
    /// For requests without a budget of their own.
    default_deadline: Duration,
    clock: Arc<dyn mindmesh_core::clock::Clock>,
}

impl Forwarder {
    pub fn new(
        key: ForwardKey,
        node: &str,
        default_deadline: Duration,
        clock: Arc<dyn mindmesh_core::clock::Clock>,
    ) -> Result<Self, crate::NodeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| crate::NodeError::io("HTTP client", std::io::Error::other(e)))?;
        Ok(Forwarder { http, key, node: node.into(), default_deadline, clock })
    }

    /// The key incoming forwarded requests are checked with.
    pub fn key(&self) -> &ForwardKey {
        &self.key
    }

    /// The end-to-end limit of a forwarded API request (not a gateway one).
    pub fn default_deadline(&self) -> Duration {
        self.default_deadline
    }

    /// How many nodes forwarded this request already (the header counts hops).
    pub fn hops(headers: &HeaderMap) -> u32 {
        headers.get(FORWARDED).map_or(0, |v| v.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(MAX_HOPS))
    }

    /// Pass the request to the node at `api` (`host:port`) on `caller`'s behalf and stream its
    /// answer back; all of it within `deadline` (plus a small margin for the hop).
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        api: &str,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
        caller: &Caller,
        deadline: Duration,
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
        // the original caller, whoever forwarded to us first
        let node = caller.via.as_deref().unwrap_or(&self.node);
        let (who, sig) = self.key.sign(caller, node, self.clock.now_ms(), &method, path_and_query, &body);
        let total = deadline + DEADLINE_MARGIN;
        let mut rb = self
            .http
            .request(method, &url)
            .timeout(total)
            .header(FORWARDED, (hops + 1).to_string())
            .header(CALLER, who)
            .header(SIGNATURE, sig)
            .body(body);
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            rb = rb.header(header::CONTENT_TYPE, ct);
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!("the persona's node at {api} did not answer within {} ms", total.as_millis()),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "unreachable",
                    format!("the persona's node at {api} is unreachable: {e}"),
                )
            }
        })?;
        let status = resp.status();
        let kept: Vec<(header::HeaderName, HeaderValue)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // the rest of the answer is still held to the deadline (reqwest's timeout covers the
        // body): a node that freezes halfway through ends the stream with an error
        let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
        *out.status_mut() = status;
        out.headers_mut().extend(kept);
        Ok(out)
    }
}

/// Headers about one connection, not the answer: never passed on.
const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"];

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(who: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CALLER, who.parse().unwrap());
        h.insert(SIGNATURE, sig.parse().unwrap());
        h
    }

    #[test]
    fn a_signed_caller_is_believed_once_and_only_by_the_mesh() {
        let key = ForwardKey::derive(b"the mesh key");
        let caller = Caller { token_name: "ops-bot".into(), scope: Scope::Operate, via: None };
        let now = 1_700_000_000_000;
        let (who, sig) = key.sign(&caller, "node a", now, &Method::POST, "/api/v1/personas/x/restart", b"{}");
        let h = headers(&who, &sig);
        let got = key.verify(&h, &Method::POST, "/api/v1/personas/x/restart", b"{}", now + 10).unwrap();
        assert_eq!(got.token_name.as_ref(), "ops-bot");
        assert_eq!(got.scope, Scope::Operate);
        assert_eq!(got.via.as_deref(), Some("node-a"));
        assert_eq!(key.verify(&h, &Method::POST, "/api/v1/personas/x/restart", b"{}", now + 20), Err("replayed"));

        let (who, sig) = key.sign(&caller, "a", now, &Method::POST, "/api/v1/personas/x/restart", b"{}");
        let h = headers(&who, &sig);
        // another body, path, method, mesh or time: refused
        assert!(key.verify(&h, &Method::POST, "/api/v1/personas/x/restart", b"{\"a\":1}", now).is_err());
        assert!(key.verify(&h, &Method::POST, "/api/v1/personas/y/restart", b"{}", now).is_err());
        assert!(key.verify(&h, &Method::DELETE, "/api/v1/personas/x/restart", b"{}", now).is_err());
        let other = ForwardKey::derive(b"another mesh");
        assert!(other.verify(&h, &Method::POST, "/api/v1/personas/x/restart", b"{}", now).is_err());
        assert!(key.verify(&h, &Method::POST, "/api/v1/personas/x/restart", b"{}", now + MAX_SKEW_MS + 1).is_err());
        // a raised scope breaks the signature
        let forged = headers(&who.replace(";operate;", ";admin;"), &sig);
        assert!(key.verify(&forged, &Method::POST, "/api/v1/personas/x/restart", b"{}", now).is_err());
        assert!(key.verify(&h, &Method::POST, "/api/v1/personas/x/restart", b"{}", now).is_ok());
    }
}
