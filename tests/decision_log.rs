//! The decision log is an audit trail (finding 5 of issue 11): each entry says who asked (the
//! operator's token), the verb as asked, and what became of it — a migrate the registry
//! refused is logged as refused, never as executed; `decisions --follow` shows outcomes as
//! they land. Real binary, real demo persona processes.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{MINDMESH, TestNode, demo_persona, http_raw};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);
const OPS: &str = "ops-bot-operate-token-01234567";
const ADMIN: &str = "ops-admin-admin-token-01234567";
/// Checkpoints every 300 ms: every one is a registry write after which the node reconciles and
/// reports on pending decisions — where a refused migrate used to be marked executed.
const CHECKPOINT_OFTEN: &str = "checkpoint_interval_ms = 300";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tokens() -> String {
    format!(
        "[[api.tokens]]\nname = \"ops-bot\"\nscope = \"operate\"\ntoken = \"{OPS}\"\n\
         [[api.tokens]]\nname = \"ops-admin\"\nscope = \"admin\"\ntoken = \"{ADMIN}\"\n"
    )
}

async fn call(node: &TestNode, token: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    http_raw("POST", &node.url(path), &[("authorization", auth.as_str())], Some(("application/json", body.to_string())))
        .await
}

async fn decisions(node: &TestNode, persona: &str) -> Vec<Value> {
    let (code, page) = node.get(&format!("/api/v1/decisions?after=0&limit=1000&persona={persona}")).await;
    assert_eq!(code, 200, "{page}");
    page["decisions"].as_array().cloned().unwrap_or_default()
}

/// The decision about `persona` with verb `action` once `cond` holds.
async fn wait_decision(node: &TestNode, persona: &str, action: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let all = decisions(node, persona).await;
        if let Some(d) = all.iter().find(|d| d["action"] == action && cond(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "no {action} decision as wanted: {all:?}\nlog:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `stop` was logged as `kill`, `start` as `wake`, by an "operator" without a name, and
/// `decisions --follow` printed "not yet" and never the outcome.
#[tokio::test(flavor = "multi_thread")]
async fn stop_and_start_are_logged_as_asked_in_the_tokens_name_and_follow_shows_the_outcome() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start(&(tokens() + &demo_persona("audited", &[], "")));
    node.wait_persona("audited", T, |v| v["phase"] == "running").await;

    // follow the log as JSON from before the stop
    let mut follow = Command::new(MINDMESH)
        .args(["--api", &node.api, "decisions", "--follow", "--json", "--persona", "audited"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run mindmesh decisions --follow");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap_or(Value::Null)).is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (code, v) = call(&node, OPS, "/api/v1/personas/audited/stop", json!({"wait_ms": 20000})).await;
    assert_eq!(code, 200, "{v}");
    let stop = wait_decision(&node, "audited", "stop", |d| d["verdict"] == "executed").await;
    assert_eq!(stop["effect"], "kill", "{stop}");
    assert_eq!((stop["by"].as_str(), stop["token"].as_str()), (Some("operator ops-bot"), Some("ops-bot")), "{stop}");
    assert_eq!(stop["executed_by"], "test", "{stop}");
    assert!(decisions(&node, "audited").await.iter().all(|d| d["action"] != "kill"), "no stop logged as a kill");

    let (code, v) = call(&node, OPS, "/api/v1/personas/audited/start", json!({"wait_ms": 20000})).await;
    assert_eq!(code, 200, "{v}");
    let start = wait_decision(&node, "audited", "start", |d| d["verdict"] == "executed").await;
    assert_eq!((start["effect"].as_str(), start["by"].as_str()), (Some("wake"), Some("operator ops-bot")), "{start}");
    assert!(decisions(&node, "audited").await.iter().all(|d| d["action"] != "wake"), "no start logged as a wake");

    // the follower printed the stop's row and, once it landed, its outcome
    let seq = stop["seq"].as_u64().unwrap();
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    let shown = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(row) if row["seq"] == seq && row["verdict"] == "executed" => break Some(row),
            Ok(row) => seen.push(row),
            Err(_) => break None,
        }
    };
    let _ = follow.kill();
    let _ = follow.wait();
    let shown = shown.unwrap_or_else(|| panic!("--follow never showed the stop executed; it printed {seen:?}"));
    assert_eq!((shown["action"].as_str(), shown["executed_by"].as_str()), (Some("stop"), Some("test")), "{shown}");
}

/// A migrate the node refused (409) was still logged — and once marked executed when the
/// node next reconciled the persona.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_migrate_is_logged_as_refused_and_never_as_executed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start_with_mesh(&(tokens() + &demo_persona("settled", &[], "")), CHECKPOINT_OFTEN);
    node.wait_persona("settled", T, |v| v["phase"] == "running").await;
    // it already runs on `test`: the registry refuses
    let (code, v) = call(&node, OPS, "/api/v1/personas/settled/migrate", json!({"to": "test"})).await;
    assert_eq!(code, 409, "{v}");
    let d = wait_decision(&node, "settled", "migrate", |_| true).await;
    assert_eq!(d["verdict"], "refused", "{d}");
    assert!(d["outcome"].as_str().unwrap_or_default().contains("already runs"), "{d}");
    assert_eq!(d["token"], "ops-bot", "{d}");
    // many checkpoints (each a reconcile and a report) later, still refused, never executed
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for d in decisions(&node, "settled").await.iter().filter(|d| d["action"] == "migrate") {
            assert_eq!((d["verdict"].as_str(), &d["executed_by"]), (Some("refused"), &Value::Null), "{d}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An operator's drain was logged as the failover planner's (`analyst: failover`).
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_is_logged_as_the_operators_drain_not_as_failover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let a = TestNode::start_in_mesh("a", &tokens(), "", None);
    a.wait_status(T, "a leads its new mesh", |s| common::mesh_leader(s).as_deref() == Some("a")).await;
    let b = TestNode::start_in_mesh("b", &tokens(), "", Some(&a.join_info().await));
    b.wait_status(T, "b is a member", |s| common::mesh_members(s) == 2 && common::mesh_leader(s).is_some()).await;
    let spec = json!({"name": "mover", "command": common::DEMO, "health_path": "/health"});
    let (code, v) = a.post("/api/v1/personas?node=a", spec).await;
    assert_eq!(code, 201, "{v}");
    a.wait_persona("mover", T, |v| v["phase"] == "running" && v["node"] == "a").await;

    let (code, v) = call(&b, ADMIN, "/api/v1/nodes/a/drain", json!({})).await;
    assert_eq!(code, 200, "{v}");
    let d = wait_decision(&a, "mover", "drain", |d| d["verdict"] == "executed").await;
    assert_eq!((d["by_kind"].as_str(), d["token"].as_str()), (Some("operator"), Some("ops-admin")), "{d}");
    assert_eq!(
        (d["analyst"].as_str(), d["effect"].as_str(), d["target"].as_str()),
        (Some("operator"), Some("migrate"), Some("b")),
        "{d}"
    );
    assert_eq!(d["executed_by"], "b", "{d}");
    let all = decisions(&a, "mover").await;
    assert!(all.iter().all(|d| d["analyst"] != "failover"), "a drain is not a failover: {all:?}");
}
