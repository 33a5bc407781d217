//! Memory-aware admission with real processes: a node declares memory for a few personas
//! (`[node.capacity] memory_mb`), each persona requests its share (`requests.memory_mb`), and
//! a request for a hibernated persona that does not fit evicts the least valuable idle
//! persona to the stopped tier and is served; with nothing evictable (a system persona, the
//! others answering requests) it is answered 503 with `Retry-After`, the wake is not tried,
//! and a `no_room` event says why. An operator's wake is admitted the same way.

mod common;

use std::time::Duration;

use common::{TestNode, demo_persona};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);

fn phase(v: &Value) -> &str {
    v["phase"].as_str().unwrap_or("")
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A chat through the gateway: status, `Retry-After`, body.
async fn chat(node: &TestNode, model: &str) -> (u16, Option<String>, Value) {
    chat_at(node.url("/v1/chat/completions"), node.token(), model).await
}

async fn chat_at(url: String, token: String, model: &str) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    let r = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (code, retry, r.json().await.unwrap_or(Value::Null))
}

/// A demo persona requesting 100 MB, with more spec lines.
fn persona(name: &str, args: &[&str], extra: &str) -> String {
    demo_persona(name, args, &format!("{extra}\n[persona.requests]\nmemory_mb = 100\n"))
}

/// The value of the `/metrics` sample whose line starts with `sample` (name and labels).
async fn metric(node: &TestNode, sample: &str) -> f64 {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client.get(node.url("/metrics")).bearer_auth(node.token()).send().await.unwrap();
    let text = r.text().await.unwrap();
    let value = text.lines().find_map(|l| l.strip_prefix(sample)?.trim().parse().ok());
    value.unwrap_or_else(|| panic!("no {sample} in the scrape:\n{text}"))
}

async fn hibernated(node: &TestNode, name: &str) {
    let out = node.cli(&["persona", "hibernate", name]);
    assert!(out.status.success(), "{}", text(&out));
    node.wait_persona(name, T, |v| phase(v) == "hibernating").await;
}

/// Four personas of 100 MB on a node with 350 MB: three run, one is hibernated. A request for
/// it evicts the background persona (the least valuable; the system persona is never a
/// candidate and the user-facing one was just used) and is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_wake_that_does_not_fit_evicts_the_least_valuable_idle_persona() {
    let node = TestNode::start(&format!(
        "[node.capacity]\nmemory_mb = 350\n{}{}{}{}",
        persona("sys", &[], "importance = \"system\""),
        persona("fg", &[], ""),
        persona("bg", &[], "importance = \"background\""),
        persona("late", &[], ""),
    ));
    for name in ["sys", "fg", "bg", "late"] {
        node.wait_persona(name, T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    }
    hibernated(&node, "late").await;
    let (code, _, body) = chat(&node, "fg").await;
    assert_eq!(code, 200, "{body}");

    // 300 MB held of 350: `late` needs 100, so one must go
    let (code, _, body) = chat(&node, "late").await;
    assert_eq!(code, 200, "served after the eviction: {body}");
    node.wait_persona("late", T, |v| phase(v) == "running").await;
    let v = node.wait_persona("bg", T, |v| phase(v) == "hibernating").await;
    assert_eq!(v["desired"], "running", "evicted here, still wanted: a request wakes it again: {v}");
    let evict = node.events("bg").await.into_iter().find(|e| e["kind"] == "evict").expect("an evict event on bg");
    let detail = evict["detail"].as_str().unwrap_or_default();
    for want in ["to stopped", "for late", "frees 100 MB", "background"] {
        assert!(detail.contains(want), "{want:?} in {detail}");
    }
    for kept in ["sys", "fg"] {
        let v = node.persona(kept).await;
        assert_eq!(phase(&v), "running", "{kept} kept: {v}");
        assert!(node.events(kept).await.iter().all(|e| e["kind"] != "evict"), "{kept} never evicted");
    }
    assert_eq!(metric(&node, "mindmesh_persona_evictions_total{node=\"test\",persona=\"bg\"}").await, 1.0);
    assert_eq!(metric(&node, "mindmesh_events_total{node=\"test\",kind=\"evict\"}").await, 1.0);
}

/// Three personas of 100 MB on a node with 250 MB: a system persona and a slow one run, the
/// third is hibernated. While the slow one answers a request, nothing may be evicted: the
/// request for the third gets 503 with `Retry-After`, the wake is not tried, and a `no_room`
/// event names what was kept and why. Once the slow answer is done, the slow persona is the
/// one evicted (never the system one) and the request is served.
#[tokio::test(flavor = "multi_thread")]
async fn with_nothing_evictable_the_wake_is_refused_with_503_and_retry_after() {
    let node = TestNode::start(&format!(
        "[node.capacity]\nmemory_mb = 250\nretry_after_s = 7\n{}{}{}",
        persona("sys", &[], "importance = \"system\""),
        persona("slow", &["--latency-ms", "6000"], ""),
        persona("want", &[], ""),
    ));
    for name in ["sys", "slow", "want"] {
        node.wait_persona(name, T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    }
    hibernated(&node, "want").await;
    let spawns = |events: &[Value]| events.iter().filter(|e| e["kind"] == "spawn").count();
    let want_spawns = spawns(&node.events("want").await);

    let in_flight = tokio::spawn(chat_at(node.url("/v1/chat/completions"), node.token(), "slow"));
    node.wait_persona("slow", T, |v| v["in_flight"].as_u64() == Some(1)).await;
    let (code, retry, body) = chat(&node, "want").await;
    assert_eq!((code, retry.as_deref()), (503, Some("7")), "{body}");
    assert_eq!(body["error"]["code"], "insufficient_capacity", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("needs 100 MB") && message.contains("retry after 7 s"), "{message}");

    // an operator's wake is admitted the same way, and refused before anything is committed
    let (code, v) = node.post("/api/v1/personas/want/wake", json!({})).await;
    assert_eq!((code, v["error"]["code"].as_str()), (503, Some("insufficient_capacity")), "{v}");

    // not woken, nobody evicted, and the refusal is on the record (and in the metrics)
    let v = node.persona("want").await;
    assert_eq!((phase(&v), v["desired"].as_str()), ("hibernating", Some("hibernating")), "{v}");
    let events = node.events("want").await;
    assert_eq!(spawns(&events), want_spawns, "no wake was tried: {events:?}");
    let no_room = events.iter().find(|e| e["kind"] == "no_room").expect("a no_room event");
    let detail = no_room["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("sys 100 MB: system persona") && detail.contains("slow 100 MB: requests in flight"),
        "{detail}"
    );
    for kept in ["sys", "slow"] {
        assert_eq!(phase(&node.persona(kept).await), "running");
        assert!(node.events(kept).await.iter().all(|e| e["kind"] != "evict"), "{kept} was evicted");
    }
    assert_eq!(metric(&node, "mindmesh_persona_no_room_total{node=\"test\",persona=\"want\"}").await, 2.0);

    // the slow answer ends; the retry evicts the slow persona, never the system one
    let (code, _, body) = in_flight.await.unwrap();
    assert_eq!(code, 200, "the request in flight was not cut: {body}");
    let (code, _, body) = chat(&node, "want").await;
    assert_eq!(code, 200, "{body}");
    node.wait_persona("slow", T, |v| phase(v) == "hibernating").await;
    assert_eq!(phase(&node.persona("sys").await), "running");
    assert!(node.events("sys").await.iter().all(|e| e["kind"] != "evict"));
}
