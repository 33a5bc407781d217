//! Signing a browser in and out: the form takes a token (any scope that can read), the node
//! answers with a session cookie that can only read the dashboard. The token travels once, in
//! a POST body (never a URL, never a log line), and is not kept by the browser.

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mindmesh_core::config::Scope;
use serde::Deserialize;

use super::{Login, escape, html_response, secure};
use crate::api::ApiState;
use crate::http::session::{clear_cookie, session_ids, set_cookie};

/// Longest token the form takes (configured tokens are far shorter).
const MAX_TOKEN_BYTES: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    token: String,
}

fn form_page(status: StatusCode, node: &str, message: Option<&str>) -> Response {
    let message =
        message.map_or_else(String::new, |m| format!("<p class=\"error\" id=\"login-error\">{}</p>", escape(m)));
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sign in · mindmesh {node}</title><link rel=\"stylesheet\" href=\"/ui/assets/style.css\"></head>\
         <body><main class=\"login\"><h1>mindmesh <span class=\"node\">node {node}</span></h1>{message}\
         <form method=\"post\" action=\"/ui/login\" id=\"login\">\
         <label for=\"token\">API token (any token that can read)</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required maxlength=\"{MAX_TOKEN_BYTES}\">\
         <button type=\"submit\">sign in</button></form>\
         <p class=\"hint\">The session this opens can only read the dashboard, lasts 8 hours, and ends when you \
         sign out or the node restarts. On this host, the node's own token is in <code>api.token</code> in its \
         data directory.</p></main></body></html>",
        node = escape(node),
    );
    html_response(status, html)
}

/// `GET /ui/login`.
pub async fn form(State(st): State<ApiState>) -> Response {
    form_page(StatusCode::OK, &st.node_name, None)
}

/// `POST /ui/login` (`application/x-www-form-urlencoded`, `token=…`).
pub async fn submit(
    State(st): State<ApiState>,
    Extension(login): Extension<Login>,
    form: Result<axum::Form<LoginForm>, FormRejection>,
) -> Response {
    let token = match form {
        Ok(axum::Form(f)) => f.token,
        Err(e) => {
            return form_page(StatusCode::BAD_REQUEST, &st.node_name, Some(&format!("the form is not readable: {e}")));
        }
    };
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return form_page(
            StatusCode::BAD_REQUEST,
            &st.node_name,
            Some(&format!("a token is 1 to {MAX_TOKEN_BYTES} bytes")),
        );
    }
    let Some(caller) = login.credentials.authenticate(token.trim()) else {
        // the token itself is never logged
        tracing::warn!("dashboard sign-in refused: not a valid token");
        return form_page(StatusCode::UNAUTHORIZED, &st.node_name, Some("That token is not valid here."));
    };
    if !caller.scope.grants(Scope::Read) {
        tracing::warn!(token = %caller.token_name, scope = %caller.scope, "dashboard sign-in refused: the token cannot read");
        return form_page(
            StatusCode::FORBIDDEN,
            &st.node_name,
            Some(&format!("Token {:?} has scope {}: the dashboard needs read.", &*caller.token_name, caller.scope)),
        );
    }
    let id = login.sessions.open(caller.token_name.clone(), st.clock.now_ms());
    tracing::info!(token = %caller.token_name, sessions = login.sessions.len(), "dashboard sign-in");
    secure(
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, "/ui".to_owned()), (header::SET_COOKIE, set_cookie(login.port, &id))],
        )
            .into_response(),
    )
}

/// `POST /ui/logout`: forget the session here and in the browser.
pub async fn logout(Extension(login): Extension<Login>, headers: HeaderMap) -> Response {
    let mut ended = 0;
    for value in headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for id in session_ids(value) {
            login.sessions.close(id);
            ended += 1;
        }
    }
    tracing::info!(ended, "dashboard sign-out");
    secure(
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, "/ui/login".to_owned()), (header::SET_COOKIE, clear_cookie(login.port))],
        )
            .into_response(),
    )
}
