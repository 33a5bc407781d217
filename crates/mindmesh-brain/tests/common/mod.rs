//! A real HTTP server speaking OpenAI chat completions on loopback, answering from a script
//! of [`Reply`]s (the same script the in-memory twin takes) and recording request bodies.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use mindmesh_brain::llm::Reply;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Shared {
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
}

pub struct ScriptServer {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptServer {
    pub async fn start(script: Vec<Reply>) -> ScriptServer {
        let shared = Shared { script: Arc::new(Mutex::new(script.into())), ..Default::default() };
        let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptServer { addr, shared, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn push(&self, r: Reply) {
        self.shared.script.lock().unwrap().push_back(r);
    }

    /// Request bodies received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The same, as the bytes arrived (key order intact).
    pub fn raw_requests(&self) -> Vec<String> {
        self.shared.raw.lock().unwrap().clone()
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn chat(State(s): State<Shared>, raw: String) -> Response {
    let Ok(body) = serde_json::from_str::<Value>(&raw) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let model = body["model"].as_str().unwrap_or("scripted").to_owned();
    s.seen.lock().unwrap().push(body);
    s.raw.lock().unwrap().push(raw);
    let next = s.script.lock().unwrap().pop_front();
    let mut reply = next.unwrap_or(Reply::Http { status: 500, message: "script exhausted".into() });
    loop {
        match reply {
            Reply::Delay { ms, then } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                reply = *then;
            }
            Reply::Http { status, message } => {
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let err = json!({"error": {"message": message, "type": "scripted", "param": null, "code": null}});
                return (code, Json(err)).into_response();
            }
            Reply::Content { content, prompt_tokens, completion_tokens } => {
                return Json(json!({
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": 1_700_000_000u32,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop"
                    }],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}
                }))
                .into_response();
            }
        }
    }
}

/// A scenario of the brain's own suite.
pub fn scenario(name: &str) -> mindmesh_brain::scenario::Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(format!("{name}.json"));
    mindmesh_brain::scenario::load_file(&p).expect("own scenario loads")
}

/// A plan answering `action` for the named personas and `continue` for the rest.
pub fn plan(s: &mindmesh_brain::scenario::Scenario, special: &[(&str, &str)]) -> String {
    let items: Vec<Value> = s
        .view
        .personas
        .iter()
        .map(|p| {
            let action = special.iter().find(|(id, _)| *id == p.id).map_or("continue", |(_, a)| *a);
            json!({"persona": p.id, "reason": format!("scripted {action}"), "action": action, "target": null, "confidence": 0.8})
        })
        .collect();
    json!({ "decisions": items }).to_string()
}
