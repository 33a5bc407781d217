//! The API's door: what a request must be before any handler sees it.
//!
//! [`guard`] runs for every request, routed or not:
//! 1. `Host` must name this node (an IP literal, `localhost`, its name, its advertised host, the
//!    machine's host name, or `api.allowed_hosts`): a page whose domain was rebound to this
//!    node's address (DNS rebinding) names its own domain and is refused;
//! 2. a request a browser made for another origin is refused: an `Origin` that is not this
//!    very node, or `Sec-Fetch-Site` other than `same-origin` / `none` (reads too: nothing here
//!    is meant for a web page, and reads show specs and the mesh);
//! 3. a body larger than `api.max_body_bytes` is refused by its declared length;
//! 4. the caller is authenticated — the Unix socket's peer, a mesh member's signed forward,
//!    or a bearer token — and put on the request as a [`Caller`].
//!
//! The dashboard (`/ui`) passes the same door. There a browser may also authenticate with a
//! session cookie from the login form (read scope, `/ui` paths only; see
//! [`crate::http::session`]); without one, a page answers 401 pointing to the login form,
//! and only the form itself and the style sheet and script are served to anyone.
//!
//! [`authorize`] runs on matched routes: the caller's scope must grant the route's (see
//! [`policy`]), a body must come with one of the route's content types (a browser can send
//! `text/plain` or a form to any origin without asking; never `application/json`), and every
//! state-changing request that was not refused leaves an `operator` event naming the token
//! that acted.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mindmesh_core::clock::Clock;
use mindmesh_core::config::Scope;
use mindmesh_core::event::{Event, EventKind};
use mindmesh_supervisor::Report;
use tokio::sync::mpsc;

use super::ApiError;
use super::auth::{Caller, Credentials};
use super::forward::{CALLER, ForwardKey};
use super::server::Peer;
use crate::http::session::{Sessions, session_ids};
use crate::local::LOCAL_TOKEN_FILE;

/// What a route needs: a scope, and the content types its body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub need: Scope,
    /// Empty: the route takes no body.
    pub accepts: &'static [&'static str],
    /// Served without a credential (the dashboard's login form and its static assets only).
    pub anonymous: bool,
}

const JSON: &[&str] = &["application/json"];
const SPEC: &[&str] = &["application/json", "application/toml"];
const NONE: &[&str] = &[];
/// The login form's body: a browser's form post (safe here only because the door refuses
/// other origins, which every browser names in `Origin` on a POST).
const FORM: &[&str] = &["application/x-www-form-urlencoded"];

/// The policy of a route, by method and route template; `None` for a route this table does
/// not know (refused to all but admin tokens: a new route must be added here to be usable).
pub fn policy(method: &Method, route: &str) -> Option<Policy> {
    let p = |need, accepts| Some(Policy { need, accepts, anonymous: false });
    let open = |accepts| Some(Policy { need: Scope::Read, accepts, anonymous: true });
    let read = matches!(*method, Method::GET | Method::HEAD);
    match (read, method, route) {
        (true, _, "/ui" | "/ui/personas/{name}" | "/ui/live") => p(Scope::Read, NONE),
        (true, _, "/ui/login" | "/ui/assets/{file}") => open(NONE),
        (false, &Method::POST, "/ui/login") => open(FORM),
        (false, &Method::POST, "/ui/logout") => p(Scope::Read, FORM),
        (
            true,
            _,
            "/api/v1/status"
            | "/api/v1/personas"
            | "/api/v1/personas/{name}"
            | "/api/v1/personas/{name}/series"
            | "/api/v1/events"
            | "/api/v1/decisions"
            | "/api/v1/brain"
            | "/api/v1/brain/snapshot"
            | "/metrics",
        ) => p(Scope::Read, NONE),
        (true, _, "/v1/models") => p(Scope::Inference, NONE),
        (false, &Method::POST, "/v1/chat/completions" | "/v1/completions") => p(Scope::Inference, JSON),
        (
            false,
            &Method::POST,
            "/api/v1/personas/{name}/throttle" | "/api/v1/personas/{name}/migrate" | "/api/v1/personas/{name}/{action}",
        ) => p(Scope::Operate, JSON),
        (false, &Method::PATCH, "/api/v1/personas/{name}/budget") => p(Scope::Operate, JSON),
        (false, &Method::POST, "/api/v1/personas") => p(Scope::Admin, SPEC),
        // a spec names the command a node runs: as adding one, an admin's change
        (false, &Method::PUT, "/api/v1/personas/{name}") => p(Scope::Admin, SPEC),
        (false, &Method::DELETE, "/api/v1/personas/{name}") => p(Scope::Admin, NONE),
        (false, &Method::POST, "/api/v1/nodes/{name}/drain" | "/api/v1/node/leave") => p(Scope::Admin, JSON),
        _ => None,
    }
}

/// May this request (method and literal path) reach its route without a credential? The
/// same routes as those [`policy`] marks `anonymous`, decided before routing.
pub fn anonymous(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD => path == "/ui/login" || path.starts_with("/ui/assets/"),
        Method::POST => path == "/ui/login",
        _ => false,
    }
}

/// Is this a dashboard path (where a session cookie counts)?
pub fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Which `Host` names this node answers to.
#[derive(Debug, Clone, Default)]
pub struct HostAllow {
    /// Lower case, without a port.
    names: Vec<String>,
    /// Lower case, with the leading dot.
    suffixes: Vec<String>,
    any: bool,
}

impl HostAllow {
    /// The node's own names and the configured extra ones (`.example.org`: a suffix; `*`: any).
    pub fn new<'a>(own: impl IntoIterator<Item = &'a str>, configured: &[String]) -> HostAllow {
        let mut allow = HostAllow { names: vec!["localhost".into()], ..HostAllow::default() };
        for n in own.into_iter().map(strip_port).filter(|n| !n.is_empty()) {
            allow.names.push(n.trim_end_matches('.').to_ascii_lowercase());
        }
        for c in configured {
            match c.as_str() {
                "*" => allow.any = true,
                s if s.starts_with('.') => allow.suffixes.push(s.to_ascii_lowercase()),
                s => allow.names.push(s.trim_end_matches('.').to_ascii_lowercase()),
            }
        }
        allow
    }

    /// May a request name `host` (a `Host` header value, with or without a port)?
    pub fn allows(&self, host: &str) -> bool {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        // an IP literal cannot be rebound: a page that reached us by one is at our address
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        self.any
            || bare.parse::<std::net::IpAddr>().is_ok()
            || self.names.contains(&name)
            || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }
}

/// `host:port` → `host`, `[::1]:80` → `[::1]`, `::1` stays.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// What the door needs, shared by every request.
#[derive(Clone)]
pub struct Door {
    pub hosts: Arc<HostAllow>,
    pub credentials: Credentials,
    pub forward_key: ForwardKey,
    pub max_body_bytes: usize,
    pub clock: Arc<dyn Clock>,
    /// Where `operator` events go (the recorder writes them with the supervisor's).
    pub audit: mpsc::Sender<Report>,
    /// Told in a 401, so an operator knows where the local token is.
    pub local_token_hint: Option<Arc<str>>,
    /// The dashboard's browser sessions.
    pub sessions: Sessions,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// The checks every request passes; see the module's header.
pub async fn guard(State(door): State<Door>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !door.hosts.allows(host) {
            tracing::warn!(host, "refused a request for a host name this node does not answer to (DNS rebinding?)");
            return refuse(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!("this node does not answer to the host name {host:?} (add it to api.allowed_hosts)"),
            );
        }
    }
    if let Some(why) = cross_origin(headers) {
        tracing::warn!(why, path = %req.uri().path(), "refused a cross-origin request");
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!("requests from web pages of other origins are refused ({why})"),
        );
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|n: u64| n > door.max_body_bytes as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {} bytes (api.max_body_bytes)", door.max_body_bytes),
        );
    }
    if is_ui(req.uri().path()) {
        return ui_door(&door, req, next).await;
    }
    let (caller, req) = match authenticate(&door, req).await {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The dashboard's part of the door: a session cookie, else any credential the API takes;
/// without one, the login form and its assets are served and a page answers 401 in HTML
/// that leads a browser to the form.
async fn ui_door(door: &Door, mut req: Request, next: Next) -> Response {
    let now = door.clock.now_ms();
    let session = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(session_ids)
        .find_map(|id| door.sessions.caller(id, now));
    if let Some(caller) = session {
        req.extensions_mut().insert(caller);
        return next.run(req).await;
    }
    let presents = req.headers().contains_key(header::AUTHORIZATION) || req.headers().contains_key(CALLER);
    let local = matches!(req.extensions().get::<Peer>(), Some(Peer::Local { .. }));
    if !presents && !local {
        if anonymous(req.method(), req.uri().path()) {
            return next.run(req).await;
        }
        return sign_in_first();
    }
    match authenticate(door, req).await {
        Ok((caller, mut req)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(resp) => *resp,
    }
}

/// A dashboard page asked for without a credential: 401, and a page that leads to the form.
fn sign_in_first() -> Response {
    const PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
        <meta http-equiv=\"refresh\" content=\"0; url=/ui/login\"><title>mindmesh: sign in</title></head>\
        <body><p id=\"unauthorized\">Sign in first: <a href=\"/ui/login\">/ui/login</a>.</p></body></html>";
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-frame-options"), "DENY"),
        ],
        PAGE,
    )
        .into_response()
}

/// Why a browser's request is from another origin, if it is.
fn cross_origin(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Some("Sec-Fetch-Site is not same-origin");
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let Ok(origin) = origin.to_str() else { return Some("unreadable Origin") };
    let Some(authority) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return Some("an opaque or foreign Origin");
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let default_port = |a: &str| a.strip_suffix(":80").unwrap_or(a).to_ascii_lowercase();
    (default_port(authority) != default_port(host)).then_some("the Origin is not this node")
}

async fn authenticate(door: &Door, req: Request) -> Result<(Caller, Request), Box<Response>> {
    if matches!(req.extensions().get::<Peer>(), Some(Peer::Local { .. })) {
        // the socket is the node user's (mode 0600), and its peer was checked on accept
        return Ok((Caller::local(), req));
    }
    if req.headers().contains_key(CALLER) {
        return forwarded(door, req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if let Some(caller) = bearer.and_then(|t| door.credentials.authenticate(t.trim())) {
        return Ok((caller, req));
    }
    let hint = match &door.local_token_hint {
        Some(path) => format!("; on this host the node's admin token is in {path}"),
        None => String::new(),
    };
    let what = if bearer.is_some() { "the bearer token is not valid" } else { "a bearer token is required" };
    Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "unauthorized", format!("{what} (Authorization: Bearer …){hint}"))))
}

/// A request another node of the mesh forwarded: its signature covers the body, so the body
/// is read here first (bounded by the body limit).
async fn forwarded(door: &Door, req: Request) -> Result<(Caller, Request), Box<Response>> {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, door.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return Err(Box::new(refuse(StatusCode::BAD_REQUEST, "invalid", format!("cannot read the body: {e}"))));
        }
    };
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |p| p.as_str());
    match door.forward_key.verify(&parts.headers, &parts.method, path, &bytes, door.clock.now_ms()) {
        Ok(caller) => Ok((caller, Request::from_parts(parts, Body::from(bytes)))),
        Err(why) => {
            tracing::warn!(why, path, "refused a forwarded request");
            Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "unauthorized", format!("forwarded request refused: {why}"))))
        }
    }
}

/// Scope, content type and the audit record of one routed request; see the module's header.
pub async fn authorize(State(door): State<Door>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let method = req.method().clone();
    let policy = policy(&method, &route).unwrap_or(Policy { need: Scope::Admin, accepts: NONE, anonymous: false });
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        // only the door lets a request through without a caller, and only to these routes
        if policy.anonymous && anonymous(&method, req.uri().path()) {
            if let Err(resp) = check_content_type(req.headers(), &policy) {
                return *resp;
            }
            return next.run(req).await;
        }
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "no caller");
    };
    if !caller.scope.grants(policy.need) {
        return refuse(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "{method} {route} needs a token of scope {} (or admin); token {:?} has scope {}",
                policy.need, &*caller.token_name, caller.scope
            ),
        );
    }
    if let Err(resp) = check_content_type(req.headers(), &policy) {
        return *resp;
    }
    // the dashboard's posts (login, logout) change only sessions, logged by their handlers
    let acts = !matches!(method, Method::GET | Method::HEAD) && policy.need != Scope::Inference && !is_ui(&route);
    if !acts {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let persona = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) if route.starts_with("/api/v1/personas/") => {
            params.iter().find(|(k, _)| *k == "name").map(|(_, v)| v.to_owned()).unwrap_or_default()
        }
        _ => String::new(),
    };
    let what = format!("{method} {}", parts.uri.path());
    let resp = next.run(Request::from_parts(parts, body)).await;
    // a refusal (bad input, a conflict, not found) changed nothing: no action to record; an
    // error past the door (5xx) may have acted halfway, so it is recorded
    if resp.status().is_client_error() {
        return resp;
    }
    let detail = format!("{what} by {} → {}", caller.describe(), resp.status());
    tracing::info!(token = %caller.token_name, scope = %caller.scope, via = caller.via.as_deref(), %persona, action = %what, status = resp.status().as_u16(), "operator action");
    let event = Event::new(door.clock.now_ms(), &persona, EventKind::Operator, detail);
    if door.audit.send(Report::Event(event)).await.is_err() {
        tracing::error!("the event log is closed: an operator action went unrecorded");
    }
    resp
}

use axum::extract::FromRequestParts;

fn check_content_type(headers: &HeaderMap, policy: &Policy) -> Result<(), Box<Response>> {
    let declared = headers.get(header::CONTENT_TYPE).map(|v| {
        let v = v.to_str().unwrap_or("");
        v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
    });
    let has_body = headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let ok = match &declared {
        Some(ct) => policy.accepts.contains(&ct.as_str()),
        // no type: fine only without a body
        None => !has_body,
    };
    if ok {
        return Ok(());
    }
    let expected = if policy.accepts.is_empty() { "no body".to_owned() } else { policy.accepts.join(" or ") };
    Err(Box::new(refuse(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("Content-Type {:?} is not accepted here: send {expected}", declared.as_deref().unwrap_or("(none)")),
    )))
}

/// Where the 401 says the local token is.
pub fn token_hint(data_dir: &std::path::Path) -> Arc<str> {
    data_dir.join(LOCAL_TOKEN_FILE).display().to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_the_nodes_own() {
        let allow = HostAllow::new(["node-a", "mindmesh-0.mindmesh.ns.svc:7070"], &[".corp.example".into()]);
        for ok in [
            "127.0.0.1:7070",
            "[::1]:7070",
            "10.0.0.5",
            "localhost:7070",
            "LOCALHOST",
            "node-a:7070",
            "mindmesh-0.mindmesh.ns.svc",
            "api.corp.example:7070",
            "localhost.",
        ] {
            assert!(allow.allows(ok), "{ok}");
        }
        for refused in ["evil.example:7070", "127.0.0.1.nip.io:7070", "corp.example.evil", "node-a.evil", ""] {
            assert!(!allow.allows(refused), "{refused}");
        }
        assert!(HostAllow::new([], &["*".into()]).allows("evil.example"));
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    #[test]
    fn other_origins_are_told_apart_from_this_node() {
        assert_eq!(cross_origin(&h(&[("host", "127.0.0.1:7070")])), None, "curl, the CLI");
        assert_eq!(cross_origin(&h(&[("host", "127.0.0.1:7070"), ("origin", "http://127.0.0.1:7070")])), None);
        assert_eq!(cross_origin(&h(&[("host", "localhost"), ("origin", "http://localhost:80")])), None);
        assert_eq!(cross_origin(&h(&[("host", "x:1"), ("sec-fetch-site", "none")])), None, "typed in the bar");
        for bad in [
            vec![("host", "127.0.0.1:7070"), ("origin", "http://evil.example")],
            vec![("host", "127.0.0.1:7070"), ("origin", "http://127.0.0.1:3000")],
            vec![("host", "127.0.0.1:7070"), ("origin", "null")],
            vec![("host", "127.0.0.1:7070"), ("sec-fetch-site", "cross-site")],
            vec![("host", "127.0.0.1:7070"), ("sec-fetch-site", "same-site")],
        ] {
            assert!(cross_origin(&h(&bad)).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn bodies_need_the_routes_content_type() {
        let json = policy(&Method::POST, "/api/v1/personas/{name}/{action}").unwrap();
        assert!(check_content_type(&h(&[("content-type", "application/json; charset=utf-8")]), &json).is_ok());
        assert!(check_content_type(&h(&[]), &json).is_ok(), "no body, no type");
        assert!(check_content_type(&h(&[("content-length", "2")]), &json).is_err(), "a body without a type");
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            assert!(check_content_type(&h(&[("content-type", bad), ("content-length", "2")]), &json).is_err());
        }
        let spec = policy(&Method::POST, "/api/v1/personas").unwrap();
        assert!(check_content_type(&h(&[("content-type", "application/toml")]), &spec).is_ok());
    }

    #[test]
    fn every_route_has_a_policy_and_writes_are_never_read_scope() {
        assert_eq!(policy(&Method::GET, "/metrics").unwrap().need, Scope::Read);
        assert_eq!(policy(&Method::POST, "/v1/chat/completions").unwrap().need, Scope::Inference);
        assert_eq!(policy(&Method::POST, "/api/v1/personas").unwrap().need, Scope::Admin);
        assert_eq!(policy(&Method::POST, "/api/v1/personas/{name}/{action}").unwrap().need, Scope::Operate);
        assert_eq!(policy(&Method::POST, "/api/v1/node/leave").unwrap().need, Scope::Admin);
        assert_eq!(policy(&Method::POST, "/api/v1/status"), None);
        assert_eq!(policy(&Method::PUT, "/api/v1/personas/{name}/budget"), None);
    }

    #[test]
    fn the_dashboard_reads_and_only_its_login_is_open() {
        for route in ["/ui", "/ui/personas/{name}", "/ui/live"] {
            let p = policy(&Method::GET, route).unwrap();
            assert_eq!((p.need, p.anonymous), (Scope::Read, false), "{route}");
        }
        assert!(policy(&Method::GET, "/ui/login").unwrap().anonymous);
        assert!(policy(&Method::POST, "/ui/login").unwrap().anonymous);
        assert!(!policy(&Method::POST, "/ui/logout").unwrap().anonymous);
        assert_eq!(policy(&Method::DELETE, "/ui"), None);
        assert!(anonymous(&Method::GET, "/ui/login") && anonymous(&Method::GET, "/ui/assets/style.css"));
        for (m, path) in [(Method::GET, "/ui"), (Method::GET, "/ui/personas/x"), (Method::POST, "/ui/logout")] {
            assert!(!anonymous(&m, path), "{m} {path}");
        }
        assert!(is_ui("/ui") && is_ui("/ui/live") && !is_ui("/uix") && !is_ui("/api/v1/status"));
    }
}
