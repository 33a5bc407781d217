//! `mindmesh brain eval --analyst llm` against a real HTTP server speaking OpenAI chat
//! completions, started by the test on loopback. The server answers each scenario from a
//! script: a good plan (applied), a plan that kills a `system` persona (turned into
//! investigate), invalid JSON and a timeout (both fall back to the built-in analyst, recorded
//! in the report).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

fn plan(personas: &[&str], special: &[(&str, &str)]) -> String {
    let items: Vec<Value> = personas
        .iter()
        .map(|p| {
            let a = special.iter().find(|(id, _)| id == p).map_or("continue", |(_, a)| *a);
            json!({"persona": p, "reason": format!("scripted {a}"), "action": a, "target": null, "confidence": 0.7})
        })
        .collect();
    json!({ "decisions": items }).to_string()
}

/// The personas the prompt asks about, from the answer schema's enum.
fn personas_of(body: &Value) -> Vec<String> {
    let schema = &body["response_format"]["json_schema"]["schema"];
    schema["properties"]["decisions"]["items"]["properties"]["persona"]["enum"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn chat(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    seen.0.lock().unwrap().push(body.clone());
    let personas = personas_of(&body);
    let ids: Vec<&str> = personas.iter().map(String::as_str).collect();
    let has = |id: &str| ids.contains(&id);
    let content = if has("llama-1") {
        plan(&ids, &[("llama-1", "restart")])
    } else if has("guard") {
        plan(&ids, &[("guard", "kill")])
    } else if has("embedder") {
        "I would restart the embedder, it looks tired.".to_owned()
    } else {
        // the hung-persona scenario: answer too late
        tokio::time::sleep(Duration::from_secs(5)).await;
        plan(&ids, &[])
    };
    Json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000u32, "model": "test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366}
    }))
}

async fn start() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_analyst_end_to_end() {
    let (addr, seen) = start().await;
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/mindmesh-brain/tests/scenarios");
    let dir = tempfile::tempdir().unwrap();
    for name in ["v-latency-one-replica", "v-permanent-system", "v-cache-step", "v-hung-no-probes"] {
        std::fs::copy(own.join(format!("{name}.json")), dir.path().join(format!("{name}.json"))).unwrap();
    }
    let report = dir.path().join("report.jsonl");
    let out = tokio::task::spawn_blocking({
        let (dir, report) = (dir.path().to_owned(), report.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_mindmesh"))
                .args(["brain", "eval", dir.to_str().unwrap(), "--analyst", "llm", "--json"])
                .args(["--report", report.to_str().unwrap()])
                .env("MINDMESH_LLM_BASE_URL", format!("http://{addr}/v1"))
                .env("MINDMESH_LLM_MODEL", "test-model")
                .env("MINDMESH_LLM_TIMEOUT_MS", "800")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let decisions: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let get = |scenario: &str, persona: &str| {
        decisions.iter().find(|d| d["scenario"] == scenario && d["persona"] == persona).unwrap().clone()
    };
    // the good plan is applied
    let d = get("v-latency-one-replica", "llama-1");
    assert_eq!(d["action"], "restart");
    assert!(d["reason"].as_str().unwrap().starts_with("llm: scripted restart"), "{d}");
    // killing a system persona becomes investigate, and says why
    let d = get("v-permanent-system", "guard");
    assert_eq!(d["action"], "investigate");
    assert!(d["reason"].as_str().unwrap().starts_with("guardrail system-persona: kill -> investigate"), "{d}");
    // invalid JSON and a timeout fall back to the built-in analyst
    let d = get("v-cache-step", "embedder");
    assert_eq!(d["action"], "continue");
    assert!(d["reason"].as_str().unwrap().starts_with("llm fallback (invalid)"), "{d}");
    let d = get("v-hung-no-probes", "planner");
    assert_eq!(d["action"], "restart", "the built-in analyst still sees the hang");
    assert!(d["reason"].as_str().unwrap().starts_with("llm fallback (timeout)"), "{d}");

    // the report records the analyst, fallbacks, tokens and latency per scenario
    let reports: Vec<Value> =
        std::fs::read_to_string(&report).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by = |name: &str| reports.iter().find(|r| r["scenario"] == name).unwrap()["report"].clone();
    let r = by("v-latency-one-replica");
    assert_eq!(r["analyst_used"], "llm");
    assert!(r["fallback"].is_null());
    assert_eq!(r["llm"]["prompt_tokens"], 321);
    assert_eq!(r["llm"]["completion_tokens"], 45);
    assert_eq!(r["llm"]["tokens_reported"], true);
    let r = by("v-cache-step");
    assert_eq!((r["analyst_used"].as_str(), r["fallback"]["kind"].as_str()), (Some("builtin"), Some("invalid")));
    let r = by("v-hung-no-probes");
    assert_eq!(r["fallback"]["kind"], "timeout");
    assert!(r["llm"]["latency_ms"].as_u64().unwrap() >= 800);
    let r = by("v-permanent-system");
    assert!(
        r["guardrails"].as_array().unwrap().iter().any(|g| g["persona"] == "guard" && g["rule"] == "system-persona")
    );

    // one request per scenario, for the configured model
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|b| b["model"] == "test-model"));
}
