//! Browser sessions of the dashboard (`/ui`): a browser cannot send a bearer token by
//! itself, so an operator types one into the login form once and gets a session cookie.
//!
//! What the cookie is, and why:
//! - a random 256-bit id, never the token: cookies ignore ports, so every server on this host
//!   name sees it (another node, any local web server the browser visits); the id is worth
//!   nothing there, and here it is worth less than the token (below);
//! - it grants **read** scope only, whatever the token's scope, and only on `/ui` paths (the
//!   door ignores it elsewhere): a leaked or ridden cookie reads the dashboard and changes
//!   nothing;
//! - `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it),
//!   `Path=/ui`; it expires after [`SESSION_TTL_MS`] and logging out forgets it here;
//! - the node keeps only a digest of each id, at most [`MAX_SESSIONS`] (the oldest is
//!   forgotten first), in memory: a restart logs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mindmesh_core::config::Scope;
use sha2::{Digest, Sha256};

use super::auth::Caller;

/// Sessions a node keeps at once; past it the oldest is dropped.
pub const MAX_SESSIONS: usize = 256;
/// How long a session lasts from its login.
pub const SESSION_TTL_MS: u64 = 8 * 3_600_000;
/// Cookie names start with this; the node's port follows, so the nodes of one host (whose
/// cookies the browser keeps under one host name) do not overwrite each other's.
pub const COOKIE_PREFIX: &str = "mindmesh_ui_";
/// Longest `Cookie` header looked at: a browser's whole jar for the host, bounded.
const MAX_COOKIE_HEADER_BYTES: usize = 8192;

#[derive(Debug, Clone)]
struct Session {
    token_name: Arc<str>,
    expires_ms: u64,
}

/// The sessions of this node (shared by the door and the login form).
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Session>>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session for `token_name`; returns its id (the cookie's value).
    pub fn open(&self, token_name: Arc<str>, now_ms: u64) -> String {
        use rand::RngCore;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires_ms > now_ms);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires_ms).map(|(k, _)| *k) else { break };
            map.remove(&oldest);
        }
        map.insert(digest(&id), Session { token_name, expires_ms: now_ms.saturating_add(SESSION_TTL_MS) });
        id
    }

    /// The caller of a live session: read scope, named after the token that logged in.
    pub fn caller(&self, id: &str, now_ms: u64) -> Option<Caller> {
        // ids are 64 hex digits; anything else is not looked up
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.get(&digest(id)).filter(|s| s.expires_ms > now_ms)?;
        Some(Caller { token_name: format!("{} (ui)", s.token_name).into(), scope: Scope::Read, via: None })
    }

    /// Forget a session (logout).
    pub fn close(&self, id: &str) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(id));
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session ids a `Cookie` header carries under this module's names (a browser sends every
/// cookie of the host name; a node of another port's is simply unknown here).
pub fn session_ids(cookie_header: &str) -> impl Iterator<Item = &str> {
    let header = if cookie_header.len() > MAX_COOKIE_HEADER_BYTES { "" } else { cookie_header };
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.starts_with(COOKIE_PREFIX).then_some(value.trim_matches('"'))
    })
}

/// The cookie's name on a node whose API listens on `port`.
pub fn cookie_name(port: u16) -> String {
    format!("{COOKIE_PREFIX}{port}")
}

/// `Set-Cookie` for a new session (no `Secure`: the API is plain HTTP; see docs/security.md).
pub fn set_cookie(port: u16, id: &str) -> String {
    format!("{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}", cookie_name(port), SESSION_TTL_MS / 1000)
}

/// `Set-Cookie` that removes the session's cookie.
pub fn clear_cookie(port: u16) -> String {
    format!("{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0", cookie_name(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_reads_only_and_ends() {
        let s = Sessions::default();
        let id = s.open("ops".into(), 1_000);
        let c = s.caller(&id, 2_000).expect("a live session");
        assert_eq!(c.scope, Scope::Read, "a cookie never carries more than read");
        assert_eq!(&*c.token_name, "ops (ui)");
        assert!(s.caller(&id, 1_000 + SESSION_TTL_MS).is_none(), "expired");
        assert!(s.caller(&"0".repeat(64), 2_000).is_none(), "unknown");
        assert!(s.caller("short", 2_000).is_none());
        s.close(&id);
        assert!(s.caller(&id, 2_000).is_none(), "logged out");
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes_first() {
        let s = Sessions::default();
        let first = s.open("a".into(), 1);
        for t in 2..(MAX_SESSIONS as u64 + 10) {
            s.open("a".into(), t);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.caller(&first, 100).is_none(), "the oldest was dropped");
    }

    #[test]
    fn cookies_are_found_by_prefix() {
        let h = "theme=dark; mindmesh_ui_7070=abc; other=1; mindmesh_ui_7071=\"def\"";
        assert_eq!(session_ids(h).collect::<Vec<_>>(), ["abc", "def"]);
        assert_eq!(session_ids(&"x".repeat(MAX_COOKIE_HEADER_BYTES + 1)).count(), 0);
        let set = set_cookie(7070, "abc");
        for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "mindmesh_ui_7070=abc"] {
            assert!(set.contains(part), "{set}");
        }
    }
}
