use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Largest `max_body_bytes`: every body up to it is held in memory while it is parsed.
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// Shortest bearer token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest bearer token accepted (a header line, not a document).
pub const MAX_TOKEN_LEN: usize = 512;
/// Named tokens one node may hold.
pub const MAX_TOKENS: usize = 256;
/// The name the node's own local credential acts under (`<data_dir>/api.token`, the Unix socket).
pub const LOCAL_TOKEN_NAME: &str = "local";
/// The name the single `token` of older configs acts under (it has the admin scope).
pub const LEGACY_TOKEN_NAME: &str = "admin";
/// Longest timeout any `[api]` setting may name: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Most connections a node may be told to hold.
const MAX_CONNECTIONS: usize = 1_000_000;

/// What a token may do. Each scope is a set of routes (see `docs/security.md`); `operate`
/// includes `read`, `admin` includes everything. `inference` is only the OpenAI-compatible
/// gateway, so a key handed to an application cannot act on personas or read their specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Status, persona list and show (env values redacted), events, decisions, series,
    /// metrics, the brain's report.
    Read,
    /// `/v1/*` only: chat and text completions, models.
    Inference,
    /// `read` plus persona actions, throttle, budgets, migration.
    Operate,
    /// Everything: add and remove personas, drain and leave nodes, the gateway.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Inference => "inference",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "inference" => Some(Scope::Inference),
            "operate" => Some(Scope::Operate),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Does a token of this scope grant `needed`?
    pub fn grants(self, needed: Scope) -> bool {
        match (self, needed) {
            (Scope::Admin, _) => true,
            (Scope::Operate, Scope::Read | Scope::Operate) => true,
            (s, n) => s == n,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bearer token of this node: `[[api.tokens]]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// Who acts: recorded in the event log with every action taken with this token.
    pub name: String,
    pub scope: Scope,
    /// The secret itself, at least 16 characters.
    pub token: String,
}

impl std::fmt::Debug for NamedToken {
    // a config is logged at times: never its secrets
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedToken").field("name", &self.name).field("scope", &self.scope).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Loopback by default; any other address requires a token (`token` or `tokens`).
    pub listen: SocketAddr,
    /// One admin token (acts as "admin"); kept for older configs, `tokens` names several.
    pub token: Option<String>,
    /// Named tokens with scopes.
    pub tokens: Vec<NamedToken>,
    /// Write a local admin credential for the operator on this host: `<data_dir>/api.token`
    /// (mode 0600) and the Unix socket `<data_dir>/api.sock`, which the CLI finds by itself.
    pub local_token: bool,
    /// Host names (beyond IP literals, `localhost`, the node's name, its advertised host and
    /// the machine's host name) that requests may name in `Host`; an entry starting with a
    /// dot matches a domain suffix (`.svc.cluster.local`), `"*"` any (no defence against DNS
    /// rebinding: only behind a proxy that checks it).
    pub allowed_hosts: Vec<String>,
    /// `host:port` other nodes use to reach this API (forwarded requests, the gateway);
    /// default: the bound address, or the host's primary address if bound to all.
    pub advertise: Option<String>,
    /// Largest request body accepted on any route (specs, chat completions).
    pub max_body_bytes: usize,
    /// TCP connections held at once (fewer when the open-file limit is low); more are
    /// answered 503 and closed.
    pub max_connections: usize,
    /// Connections on the local Unix socket at once: the operator's reserve, which no TCP
    /// client can take.
    pub max_local_connections: usize,
    /// A request's head (request line and headers) must arrive within this, from its first
    /// byte.
    pub header_read_timeout_ms: u64,
    /// A connection with no request under way is closed after this long without one.
    pub idle_timeout_ms: u64,
    /// A request's body must arrive within this, from the end of its head.
    pub body_read_timeout_ms: u64,
    /// On shutdown, requests under way get this long to finish; idle and half-sent
    /// connections are closed at once.
    pub shutdown_grace_ms: u64,
    /// Longest a request forwarded to another node may take, end to end, when it has no
    /// budget of its own (gateway requests use their persona's response-time budget).
    pub forward_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            token: None,
            tokens: Vec::new(),
            local_token: true,
            allowed_hosts: Vec::new(),
            advertise: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_connections: 1024,
            max_local_connections: 32,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            forward_timeout_ms: 30_000,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.token {
            check_secret("token", t)?;
        }
        if self.tokens.len() > MAX_TOKENS {
            return Err(CoreError::invalid("tokens", format!("at most {MAX_TOKENS} tokens")));
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let field = |f: &str| format!("tokens[{i}].{f}");
            if !valid_name(&t.name) {
                return Err(CoreError::invalid(field("name"), "1 to 63 characters of a-z, A-Z, 0-9, '-', '_', '.'"));
            }
            if t.name == LOCAL_TOKEN_NAME || (self.token.is_some() && t.name == LEGACY_TOKEN_NAME) {
                return Err(CoreError::invalid(field("name"), format!("{:?} is the name of a built-in token", t.name)));
            }
            if !names.insert(t.name.as_str()) {
                return Err(CoreError::invalid(field("name"), format!("duplicate name {:?}", t.name)));
            }
            check_secret(&field("token"), &t.token)?;
            let reused =
                self.token.as_deref() == Some(t.token.as_str()) || self.tokens[..i].iter().any(|o| o.token == t.token);
            if reused {
                return Err(CoreError::invalid(field("token"), "the same secret as another token"));
            }
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() && self.tokens.is_empty() {
            return Err(CoreError::invalid(
                "token",
                format!("listening on {} (not loopback) requires a token (`token` or `[[api.tokens]]`)", self.listen),
            ));
        }
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.len() > 253 || h.contains(['/', ' ', ':']) {
                return Err(CoreError::invalid(format!("allowed_hosts[{i}]"), "a host name, without a port"));
            }
        }
        crate::bounds::within("max_body_bytes", self.max_body_bytes as u64, 1024, MAX_BODY_BYTES as u64)?;
        for (field, v) in
            [("max_connections", self.max_connections), ("max_local_connections", self.max_local_connections)]
        {
            if !(1..=MAX_CONNECTIONS).contains(&v) {
                return Err(CoreError::invalid(field, format!("must be within 1..={MAX_CONNECTIONS}")));
            }
        }
        for (field, v) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("shutdown_grace_ms", self.shutdown_grace_ms),
            ("forward_timeout_ms", self.forward_timeout_ms),
        ] {
            if !(100..=MAX_TIMEOUT_MS).contains(&v) {
                return Err(CoreError::invalid(field, format!("must be within 100..={MAX_TIMEOUT_MS}")));
            }
        }
        Ok(())
    }

    /// Every configured token with its name and scope: the legacy `token` as "admin", then
    /// `tokens` (the local credential is the node's, not the config's).
    pub fn named_tokens(&self) -> Vec<NamedToken> {
        let legacy = self.token.iter().map(|t| NamedToken {
            name: LEGACY_TOKEN_NAME.to_owned(),
            scope: Scope::Admin,
            token: t.clone(),
        });
        legacy.chain(self.tokens.iter().cloned()).collect()
    }
}

fn check_secret(field: &str, t: &str) -> Result<()> {
    if t.len() < MIN_TOKEN_LEN {
        return Err(CoreError::invalid(field, format!("must be at least {MIN_TOKEN_LEN} characters")));
    }
    if t.len() > MAX_TOKEN_LEN {
        return Err(CoreError::invalid(field, format!("must be at most {MAX_TOKEN_LEN} characters")));
    }
    // it travels in an HTTP header: visible ASCII only
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CoreError::invalid(field, "printable ASCII without spaces only"));
    }
    Ok(())
}

fn valid_name(n: &str) -> bool {
    (1..=63).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, scope: Scope, secret: &str) -> NamedToken {
        NamedToken { name: name.into(), scope, token: secret.into() }
    }

    #[test]
    fn scopes_grant_what_they_name() {
        use Scope::*;
        assert!(Admin.grants(Read) && Admin.grants(Inference) && Admin.grants(Operate) && Admin.grants(Admin));
        assert!(Operate.grants(Read) && Operate.grants(Operate));
        assert!(!Operate.grants(Inference) && !Operate.grants(Admin));
        assert!(Read.grants(Read) && !Read.grants(Operate) && !Read.grants(Inference));
        assert!(Inference.grants(Inference) && !Inference.grants(Read) && !Inference.grants(Operate));
    }

    #[test]
    fn named_tokens_are_checked() {
        let mut c = ApiConfig {
            tokens: vec![token("grafana", Scope::Read, "0123456789abcdef"), token("app", Scope::Inference, "x")],
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field(), Some("tokens[1].token"));
        c.tokens[1].token = "0123456789abcdef".into();
        assert_eq!(c.validate().unwrap_err().field(), Some("tokens[1].token"), "a reused secret");
        c.tokens[1].token = "fedcba9876543210".into();
        c.validate().unwrap();
        c.tokens[1].name = "grafana".into();
        assert_eq!(c.validate().unwrap_err().field(), Some("tokens[1].name"));
        c.tokens[1].name = "local".into();
        assert_eq!(c.validate().unwrap_err().field(), Some("tokens[1].name"));
        c.tokens[1].name = "has space".into();
        assert_eq!(c.validate().unwrap_err().field(), Some("tokens[1].name"));
        c.tokens[1].name = "app".into();
        c.tokens[1].token = "fedcba 9876543210".into();
        assert_eq!(c.validate().unwrap_err().field(), Some("tokens[1].token"));
    }

    #[test]
    fn off_loopback_any_token_will_do_and_the_legacy_one_is_admin() {
        let mut c = ApiConfig { listen: "0.0.0.0:7070".parse().unwrap(), ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("token"));
        c.tokens.push(token("app", Scope::Inference, "0123456789abcdef"));
        c.validate().unwrap();
        c.token = Some("fedcba9876543210".into());
        let all = c.named_tokens();
        assert_eq!(all[0].name, "admin");
        assert_eq!(all[0].scope, Scope::Admin);
        assert_eq!(all[1].name, "app");
        assert!(!format!("{:?}", all[1]).contains("0123456789abcdef"), "never logged");
    }

    #[test]
    fn timeouts_and_caps_are_bounded() {
        let c = ApiConfig { idle_timeout_ms: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("idle_timeout_ms"));
        let c = ApiConfig { header_read_timeout_ms: u64::MAX, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("header_read_timeout_ms"));
        let c = ApiConfig { max_connections: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("max_connections"));
        let c = ApiConfig { allowed_hosts: vec!["evil.example:80".into()], ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("allowed_hosts[0]"));
    }
}
