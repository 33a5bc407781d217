//! The operator's dashboard, served by every node at `/ui`: the mesh, its personas, their
//! plots over the stored history and the decision log, rendered on the server as HTML with
//! inline SVG. It reads what the API reads (the handlers behind `status`, `series`,
//! `decisions` and `brain` are called here, not re-derived), works without JavaScript, and a
//! small script (served from the binary) reloads the page's data when the node says
//! something changed (server-sent events, [`live`]).
//!
//! Every route passes the API's door (`api::policy`): the same Host and Origin checks, and a
//! read-scope credential — a bearer token, or the session cookie of the login form
//! ([`login`]; see `crate::http::session` for what the cookie is and why).
//!
//! # Layout
//! - [`overview`]: `GET /ui` — the mesh, the personas, the latest decisions
//! - [`persona`]: `GET /ui/personas/{name}` — one persona: figures, plots, its decisions
//! - [`login`]: `GET`/`POST /ui/login`, `POST /ui/logout`
//! - [`live`]: `GET /ui/live` — server-sent events telling pages to refresh
//! - [`svg`]: the plots (pure, unit-tested)
//! - `assets/`: the style sheet and the live script, compiled in

mod data;
pub mod live;
pub mod login;
pub mod overview;
pub mod persona;
pub mod svg;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::{ApiError, ApiState};
use crate::http::auth::Credentials;
use crate::http::session::Sessions;

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/live.js");

/// What the login form needs besides the API's state.
#[derive(Clone)]
pub struct Login {
    pub credentials: Credentials,
    pub sessions: Sessions,
    /// The API's port: it names the session cookie.
    pub port: u16,
    /// The live streams open now (bounded).
    pub streams: live::Streams,
}

/// The dashboard's routes, for `api::router` to put behind its door.
pub fn routes(login: Login) -> Router<ApiState> {
    Router::new()
        .route("/ui", get(overview::show))
        .route("/ui/personas/{name}", get(persona::show))
        .route("/ui/live", get(live::events))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/{file}", get(asset))
        .layer(axum::Extension(login))
}

/// The headers of every page: nothing cached, framed, sniffed or leaked through `Referer` to
/// another origin (`same-origin`, not `no-referrer`: under that a browser sends its own form
/// posts with `Origin: null`, which the door refuses as foreign), and a content policy that allows only this node's own style sheet and script (no inline
/// script or style, no other origin): an injected tag could do nothing.
pub fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

/// A whole page: `title`, the node's name in the header, `body` inside `<main>`.
pub fn page(status: StatusCode, title: &str, node: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · mindmesh {node}</title><link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\
         <script src=\"/ui/assets/live.js\" defer></script></head><body>\
         <header><a href=\"/ui\" class=\"brand\">mindmesh</a> <span class=\"node\">node {node}</span>\
         <span id=\"live\" class=\"live\" title=\"live updates\"></span>\
         <form method=\"post\" action=\"/ui/logout\" class=\"logout\"><button type=\"submit\">sign out</button></form>\
         </header><main id=\"main\">{body}</main></body></html>",
        title = escape(title),
        node = escape(node),
    );
    html_response(status, html)
}

pub fn html_response(status: StatusCode, html: String) -> Response {
    secure((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

/// An API error as a page: its status and message, escaped.
pub fn error_page(node: &str, e: ApiError) -> Response {
    let body = format!(
        "<h1>{} {}</h1><p class=\"error\" data-code=\"{}\">{}</p><p><a href=\"/ui\">back to the mesh</a></p>",
        e.status.as_u16(),
        escape(e.status.canonical_reason().unwrap_or("")),
        escape(e.code),
        escape(&e.message)
    );
    page(e.status, "error", node, &body)
}

/// `GET /ui/assets/{file}`: the style sheet and the script, from the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, ct) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "live.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return secure(ApiError::not_found(format!("no asset {file:?}")).into_response()),
    };
    secure(([(header::CONTENT_TYPE, ct)], body).into_response())
}

/// Text for HTML (content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment for a URL (persona names are validated, but a link is built safely anyway).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `1536 MiB` style sizes.
pub fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m >= 10.0 { format!("{m:.0} MiB") } else { format!("{m:.1} MiB") }
}

/// `12 s ago`, `3 min ago`, `2.5 h ago`.
pub fn ago(now_ms: u64, at_ms: u64) -> String {
    let s = now_ms.saturating_sub(at_ms) / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        _ => format!("{:.1} h ago", s as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_paths_are_escaped() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(path_segment("chat-1_a.b"), "chat-1_a.b");
        assert_eq!(path_segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(ago(10_000, 5_000), "5 s ago");
        assert_eq!(ago(10_000_000, 0), "2.8 h ago");
    }
}
