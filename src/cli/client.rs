//! A small client of the node's API for the operator commands: JSON in and out, the node's
//! error message surfaced as is.

use std::time::Duration;

use anyhow::{Context, bail};
use mindmesh_node::api::types::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The node's API, e.g. http://127.0.0.1:7070
    #[arg(long, global = true, env = "MINDMESH_API", default_value = "http://127.0.0.1:7070")]
    pub api: String,
    /// Bearer token. Not needed for a node of this host: its local credential (the Unix
    /// socket or the token file in its data dir) is found by itself.
    #[arg(long, global = true, env = "MINDMESH_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// How the node was reached, for error messages.
    via: String,
}

impl Client {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Client> {
        let base = args.api.trim_end_matches('/').to_owned();
        let base = if base.contains("://") { base } else { format!("http://{base}") };
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).no_proxy();
        let url = reqwest::Url::parse(&base).with_context(|| format!("--api {base:?} is not a URL"))?;
        let local = match (&args.token, url.host_str(), url.port_or_known_default()) {
            (None, Some(host), Some(port)) => mindmesh_node::local::discover(host, port),
            _ => None,
        };
        let (builder, token, via) = match local {
            // the node's own socket: its file permissions are the credential, and no TCP
            // client can take its connections
            Some(mindmesh_node::local::LocalAccess { socket: Some(socket), .. }) => {
                let via = format!("{base} (through {})", socket.display());
                (builder.unix_socket(socket), None, via)
            }
            _ => (builder, args.token.clone(), base.clone()),
        };
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(Client { http, base, token, via })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::PATCH, path).json(body)).await
    }

    pub async fn post_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<T> {
        self.send_raw(reqwest::Method::POST, path, content_type, body).await
    }

    pub async fn put_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<T> {
        self.send_raw(reqwest::Method::PUT, path, content_type, body).await
    }

    async fn send_raw<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<T> {
        let rb = self.request(method, path).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send(rb).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self.request(reqwest::Method::DELETE, path).send().await.with_context(|| self.unreachable())?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("{}", error_message(status, &text));
        }
        Ok(())
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = rb.send().await.with_context(|| self.unreachable())?;
        let status = resp.status();
        let text = resp.text().await.context("reading the node's answer")?;
        if !status.is_success() {
            bail!("{}", error_message(status, &text));
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer from the node: {text}"))
    }

    fn unreachable(&self) -> String {
        format!("cannot reach the node at {} (is `mindmesh node start` running? --api sets the address)", self.via)
    }
}

/// The node's error message, with the offending field when it names one.
fn error_message(status: reqwest::StatusCode, body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => match e.error.param {
            Some(p) => format!("{} ({status}; field: {p})", e.error.message),
            None => format!("{} ({status})", e.error.message),
        },
        Err(_) => format!("the node answered {status}: {body}"),
    }
}

/// Percent-encode a path segment (persona names are plain, but be safe).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
