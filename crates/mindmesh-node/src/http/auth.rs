//! Who is asking: the bearer token a request carries (one of the config's named tokens, or the
//! node's local one), the Unix socket it came through, or the signed identity a node of the
//! mesh forwarded with it. The answer, a [`Caller`], is put on every request as an extension:
//! handlers read it to record who acted and to pass it on when they forward.

use std::sync::Arc;

use mindmesh_core::config::{ApiConfig, LOCAL_TOKEN_NAME, Scope};

/// The identity and scope a request acts under. Every request that reaches a handler has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`local` for the node's own credential and Unix socket).
    pub token_name: Arc<str>,
    pub scope: Scope,
    /// The node that forwarded this request on the caller's behalf, if any.
    pub via: Option<Arc<str>>,
}

impl Caller {
    /// The operator on this host (local token or Unix socket).
    pub fn local() -> Caller {
        Caller { token_name: LOCAL_TOKEN_NAME.into(), scope: Scope::Admin, via: None }
    }

    /// `ops-bot (operate)`, or `ops-bot (operate) via node-a`: how the logs name who acted.
    pub fn describe(&self) -> String {
        match &self.via {
            Some(node) => format!("{} ({}) via {node}", self.token_name, self.scope),
            None => format!("{} ({})", self.token_name, self.scope),
        }
    }
}

/// Every bearer token this node accepts.
#[derive(Clone, Default)]
pub struct Credentials {
    tokens: Arc<[(Caller, Box<[u8]>)]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(c, _)| &*c.token_name).collect();
        f.debug_struct("Credentials").field("names", &names).finish()
    }
}

impl Credentials {
    /// The config's tokens, and the local one when the node keeps one.
    pub fn new(config: &ApiConfig, local: Option<String>) -> Credentials {
        let configured = config.named_tokens().into_iter().map(|t| {
            (Caller { token_name: t.name.into(), scope: t.scope, via: None }, t.token.into_bytes().into_boxed_slice())
        });
        let local = local.map(|t| (Caller::local(), t.into_bytes().into_boxed_slice()));
        Credentials { tokens: configured.chain(local).collect() }
    }

    /// The caller a presented bearer token names. Every token is compared, each in constant
    /// time, so the time taken tells nothing of which one (or how much of one) matched.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for (caller, secret) in self.tokens.iter() {
            if constant_time_eq(presented.as_bytes(), secret) && found.is_none() {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// Compare without leaking, through timing, how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::config::NamedToken;

    #[test]
    fn tokens_name_their_caller() {
        let config = ApiConfig {
            token: Some("legacy-admin-token-0001".into()),
            tokens: vec![NamedToken {
                name: "grafana".into(),
                scope: Scope::Read,
                token: "grafana-read-token-01".into(),
            }],
            ..Default::default()
        };
        let creds = Credentials::new(&config, Some("f".repeat(64)));
        assert_eq!(creds.authenticate("grafana-read-token-01").unwrap().scope, Scope::Read);
        let admin = creds.authenticate("legacy-admin-token-0001").unwrap();
        assert_eq!((&*admin.token_name, admin.scope), ("admin", Scope::Admin));
        assert_eq!(creds.authenticate(&"f".repeat(64)).unwrap(), Caller::local());
        assert_eq!(creds.authenticate("grafana-read-token-0"), None);
        assert_eq!(creds.authenticate(""), None);
        assert!(!format!("{creds:?}").contains("grafana-read-token"));
    }
}
