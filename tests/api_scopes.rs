//! Scoped tokens (finding 6 of issue 10): an application given the gateway key can chat and do
//! nothing else; a monitoring token reads and scrapes and changes nothing; an operator token
//! acts on personas but adds or removes none; the event log names the token behind every
//! action, also when another node of the mesh forwarded it.

mod common;

use std::time::Duration;

use common::{TestNode, demo_persona, http_raw};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const APP: &str = "app-inference-token-0123456789";
const GRAFANA: &str = "grafana-read-token-0123456789";
const OPS: &str = "ops-bot-operate-token-01234567";
const ADMIN: &str = "legacy-admin-token-0123456789";

fn tokens() -> String {
    format!(
        "token = \"{ADMIN}\"\n\
         [[api.tokens]]\nname = \"app\"\nscope = \"inference\"\ntoken = \"{APP}\"\n\
         [[api.tokens]]\nname = \"grafana\"\nscope = \"read\"\ntoken = \"{GRAFANA}\"\n\
         [[api.tokens]]\nname = \"ops-bot\"\nscope = \"operate\"\ntoken = \"{OPS}\"\n"
    )
}

fn chat_persona(name: &str) -> String {
    demo_persona(name, &["--tokens", "3"], "[persona.env]\nUPSTREAM_API_KEY = \"sk-the-personas-own-secret\"\n")
}

async fn call(node: &TestNode, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| ("application/json", b.to_string()));
    http_raw(method, &node.url(path), &[("authorization", auth.as_str())], body).await
}

/// Every route but the gateway's, with a body each accepts.
fn api_routes(persona: &str, node: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let spec = json!({"name": "added", "command": common::DEMO, "args": []});
    vec![
        ("GET", "/api/v1/status".into(), None),
        ("GET", "/api/v1/personas".into(), None),
        ("GET", format!("/api/v1/personas/{persona}"), None),
        ("GET", format!("/api/v1/personas/{persona}/series"), None),
        ("GET", "/api/v1/events".into(), None),
        ("GET", "/api/v1/decisions".into(), None),
        ("GET", "/api/v1/brain".into(), None),
        ("GET", "/metrics".into(), None),
        ("POST", "/api/v1/personas".into(), Some(spec)),
        ("POST", format!("/api/v1/personas/{persona}/restart"), Some(json!({}))),
        ("POST", format!("/api/v1/personas/{persona}/kill"), Some(json!({}))),
        ("POST", format!("/api/v1/personas/{persona}/throttle"), Some(json!({"multiplier": 0.5}))),
        ("POST", format!("/api/v1/personas/{persona}/migrate"), Some(json!({"to": node}))),
        ("PATCH", format!("/api/v1/personas/{persona}/budget"), Some(json!({"inference_queue_priority": 10}))),
        ("PUT", format!("/api/v1/personas/{persona}"), Some(json!({"name": persona, "command": common::DEMO}))),
        ("DELETE", format!("/api/v1/personas/{persona}"), None),
        ("POST", format!("/api/v1/nodes/{node}/drain"), Some(json!({}))),
        ("POST", "/api/v1/node/leave".into(), Some(json!({}))),
    ]
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

/// The persona is as it was: running, same process, same budget, no operator event.
async fn unchanged(node: &TestNode, name: &str, pid: &Value) {
    let v = node.persona(name).await;
    assert_eq!((&v["phase"], &v["pid"]), (&json!("running"), pid), "{v}");
    assert_eq!(v["budget"]["inference_queue_priority"], 50, "{v}");
    assert_eq!(v["throttle_multiplier"], 1.0, "{v}");
    let (_, page) = node.get("/api/v1/events?after=0&limit=1000").await;
    let acted: Vec<&Value> = page["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "operator").collect();
    assert!(acted.is_empty(), "{acted:?}");
    let (_, s) = node.get("/api/v1/status").await;
    assert_eq!(s["personas"].as_array().unwrap().len(), 1, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inference_token_chats_and_gets_403_everywhere_else() {
    let node = TestNode::start(&format!("{}{}", tokens(), chat_persona("chat")));
    let v = node.wait_persona("chat", T, |v| v["health"] == "healthy").await;
    let pid = v["pid"].clone();

    let (code, answer) = call(&node, APP, "POST", "/v1/chat/completions", Some(ask("chat"))).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 3, "{answer}");
    let (code, _) =
        call(&node, APP, "POST", "/v1/completions", Some(json!({"model": "chat", "prompt": "x", "max_tokens": 2})))
            .await;
    assert_eq!(code, 200);
    let (code, models) = call(&node, APP, "GET", "/v1/models", None).await;
    assert_eq!((code, &models["data"][0]["id"]), (200, &json!("chat")));

    for (method, path, body) in api_routes("chat", "test") {
        let (code, v) = call(&node, APP, method, &path, body).await;
        assert_eq!(code, 403, "{method} {path} with an inference token: {v}");
        assert_eq!(v["error"]["code"], "insufficient_scope", "{v}");
        assert!(!v.to_string().contains("sk-the-personas-own-secret"));
    }
    unchanged(&node, "chat", &pid).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_token_scrapes_metrics_and_changes_nothing() {
    let node = TestNode::start(&format!("{}{}", tokens(), chat_persona("chat")));
    let v = node.wait_persona("chat", T, |v| v["health"] == "healthy").await;
    let pid = v["pid"].clone();

    // what Prometheus does
    let r = reqwest::Client::new().get(node.url("/metrics")).bearer_auth(GRAFANA).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE mindmesh_host_cpu_ratio gauge"), "{text}");
    assert!(text.contains("# TYPE mindmesh_gateway_request_duration_seconds histogram"), "{text}");
    assert!(text.contains("persona=\"chat\""), "{text}");

    for (method, path, body) in api_routes("chat", "test") {
        let (code, v) = call(&node, GRAFANA, method, &path, body).await;
        if method == "GET" {
            // the brain may not have run yet (503): what matters is that it is not refused
            assert!(code == 200 || path == "/api/v1/brain", "{method} {path} with a read token: {code} {v}");
            assert_ne!(code, 403, "{path}");
            if path == "/api/v1/personas/chat" {
                assert_eq!(v["spec"]["env"]["UPSTREAM_API_KEY"], "<redacted>", "a persona's secret is an admin's: {v}");
            }
        } else {
            assert_eq!(code, 403, "{method} {path} with a read token: {v}");
        }
    }
    let (code, _) = call(&node, GRAFANA, "POST", "/v1/chat/completions", Some(ask("chat"))).await;
    assert_eq!(code, 403, "reading is not chatting");
    unchanged(&node, "chat", &pid).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operate_acts_admin_adds_and_the_event_log_names_each_token() {
    let node = TestNode::start(&format!("{}{}", tokens(), chat_persona("chat")));
    node.wait_persona("chat", T, |v| v["health"] == "healthy").await;

    let (code, v) = call(&node, OPS, "POST", "/api/v1/personas/chat/restart", Some(json!({"wait_ms": 20000}))).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) =
        call(&node, OPS, "PATCH", "/api/v1/personas/chat/budget", Some(json!({"inference_queue_priority": 70}))).await;
    assert_eq!((code, &v["budget"]["inference_queue_priority"]), (200, &json!(70)), "{v}");
    assert_eq!(v["spec"]["env"]["UPSTREAM_API_KEY"], "<redacted>", "{v}");
    let spec = json!({"name": "added", "command": common::DEMO, "args": []});
    for (method, path, body) in [
        ("POST", "/api/v1/personas", Some(spec.clone())),
        ("PUT", "/api/v1/personas/chat", Some(json!({"name": "chat", "command": common::DEMO}))),
        ("DELETE", "/api/v1/personas/chat", None),
        ("POST", "/api/v1/nodes/test/drain", Some(json!({}))),
        ("POST", "/api/v1/node/leave", Some(json!({}))),
        ("POST", "/v1/chat/completions", Some(ask("chat"))),
    ] {
        let (code, v) = call(&node, OPS, method, path, body).await;
        assert_eq!(code, 403, "{method} {path} with an operate token: {v}");
    }
    // the old single token is the admin
    let (code, v) = call(&node, ADMIN, "POST", "/api/v1/personas", Some(spec)).await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = call(&node, ADMIN, "GET", "/api/v1/personas/chat", None).await;
    assert_eq!((code, &v["spec"]["env"]["UPSTREAM_API_KEY"]), (200, &json!("sk-the-personas-own-secret")));
    // a bad token is no one
    let (code, _) = call(&node, "ops-bot-operate-token-01234568", "POST", "/api/v1/personas/chat/restart", None).await;
    assert_eq!(code, 401);
    // an unsigned claim to be a forwarding node is no one either
    let (code, v) = http_raw(
        "POST",
        &node.url("/api/v1/personas/chat/kill"),
        &[
            ("x-mindmesh-caller", "v1;0;00;admin;root;other-node"),
            ("x-mindmesh-signature", &"0".repeat(64)),
            ("x-mindmesh-forwarded", "1"),
        ],
        Some(("application/json", "{}".into())),
    )
    .await;
    assert_eq!(code, 401, "{v}");

    let (_, page) = node.get("/api/v1/events?after=0&limit=1000").await;
    let acted: Vec<String> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "operator")
        .map(|e| format!("{} {}", e["persona"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    let has = |persona: &str, what: &str, who: &str| {
        acted.iter().any(|a| a.starts_with(persona) && a.contains(what) && a.contains(who))
    };
    assert!(has("chat", "POST /api/v1/personas/chat/restart", "by ops-bot (operate) → 200"), "{acted:#?}");
    assert!(has("chat", "PATCH /api/v1/personas/chat/budget", "by ops-bot (operate) → 200"), "{acted:#?}");
    assert!(has("", "POST /api/v1/personas", "by admin (admin) → 201"), "{acted:#?}");
    // refused requests changed nothing and are not actions
    assert_eq!(acted.len(), 3, "{acted:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_request_keeps_its_callers_scope_and_name() {
    // only the node the caller talks to knows the tokens: the other believes it, signed
    let a = TestNode::start_in_mesh("a", &tokens(), "", None);
    a.wait_status(T, "a leads", |s| common::mesh_leader(s).as_deref() == Some("a")).await;
    let b = TestNode::start_in_mesh("b", "", "", Some(&a.join_info().await));
    a.wait_status(T, "b joined", |s| common::mesh_members(s) == 2).await;
    let spec = json!({"name": "far", "command": common::DEMO, "args": ["--tokens", "3"], "health_path": "/health",
        "env": {"UPSTREAM_API_KEY": "sk-the-personas-own-secret"}});
    let (code, v) = call(&a, ADMIN, "POST", "/api/v1/personas?node=b", Some(spec)).await;
    assert_eq!(code, 201, "{v}");
    b.wait_persona("far", T, |v| v["health"] == "healthy").await;

    // through a, acting on b's persona
    let (code, v) = call(&a, GRAFANA, "GET", "/api/v1/personas/far", None).await;
    assert_eq!((code, &v["node"]), (200, &json!("b")), "{v}");
    assert_eq!(v["spec"]["env"]["UPSTREAM_API_KEY"], "<redacted>", "b answered with the reader's scope: {v}");
    let (code, v) = call(&a, ADMIN, "GET", "/api/v1/personas/far", None).await;
    assert_eq!(v["spec"]["env"]["UPSTREAM_API_KEY"], "sk-the-personas-own-secret", "{code} {v}");
    let (code, v) = call(&a, APP, "POST", "/v1/chat/completions", Some(ask("far"))).await;
    assert_eq!(code, 200, "an inference token's chat reaches b: {v}");
    let (code, _) = call(&a, GRAFANA, "POST", "/api/v1/personas/far/restart", Some(json!({}))).await;
    assert_eq!(code, 403);
    let (code, v) = call(&a, OPS, "POST", "/api/v1/personas/far/restart", Some(json!({}))).await;
    assert_eq!(code, 200, "{v}");
    // b's own log says who, through which node
    let events = b.events("far").await;
    let acted: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "operator").filter_map(|e| e["detail"].as_str()).collect();
    assert!(acted.iter().any(|d| d.contains("restart") && d.contains("by ops-bot (operate) via a")), "{acted:?}");
    // b knows none of a's tokens itself
    let (code, _) = call(&b, OPS, "GET", "/api/v1/status", None).await;
    assert_eq!(code, 401);
}
