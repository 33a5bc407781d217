//! The brain on a live node (issue 14): a snapshot of the leader's view replays to the same
//! decisions under `brain eval`; an unchanged watch is one line of the decision log; and the
//! demo, on a compressed timeline with its traffic, does what its comments promise.
//!
//! Time is compressed two ways: the brain's clock runs `time_speed` times faster (its
//! windows, hysteresis and cooldowns in brain minutes), and the demo personas misbehave that
//! much faster in real time, so the brain sees the demo's real rates (a 30 MB/min leak, a
//! 200 ms/min ramp) in its own minutes.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestNode, demo_persona};
use serde_json::Value;

/// Brain minutes per real minute.
const SPEED: f64 = 6.0;
const DISRUPTIVE: [&str; 4] = ["restart", "hibernate", "kill", "migrate"];

fn brain(speed: f64) -> String {
    format!("[brain]\ncycle_s = 1\ntime_speed = {speed}\nhistory_resolution_s = 10\n")
}

async fn report(node: &TestNode) -> Option<Value> {
    let (code, r) = node.get("/api/v1/brain").await;
    (code == 200).then_some(r)
}

fn actions(report: &Value) -> BTreeMap<String, String> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["persona"].as_str().unwrap().to_owned(), d["action"].as_str().unwrap().to_owned()))
        .collect()
}

/// A command that reads files, not a node.
fn offline(args: &[&str]) -> std::process::Output {
    Command::new(common::MINDMESH).args(args).output().expect("run mindmesh")
}

async fn decisions(node: &TestNode) -> Vec<Value> {
    let (code, page) = node.get("/api/v1/decisions?after=0&limit=1000").await;
    assert_eq!(code, 200, "{page}");
    page["decisions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_replays_to_the_live_decisions_and_a_repeated_watch_is_one_line() {
    // two steady replicas and one persona far over a (tiny) memory budget but not growing: a
    // watch (`investigate`) every cycle, never anything disruptive
    let mut extra = brain(30.0);
    for name in ["steady-1", "steady-2"] {
        extra += &demo_persona(name, &["--tokens", "4"], "model = \"chat\"");
    }
    extra += &demo_persona("fat", &["--tokens", "4"], "model = \"sum\"\n[persona.budget]\nmax_memory_mb = 2");
    let node = TestNode::start(&extra);
    // 30 s is 15 brain minutes: enough history for every judgement from the data at hand
    let steady = common::wait_for_async(Duration::from_secs(120), || async {
        let r = report(&node).await?;
        let a = actions(&r);
        (a.get("fat").map(String::as_str) == Some("investigate") && a.len() == 3).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("no watch on the persona over its budget; log:\n{}", node.log()));
    assert!(steady["system_health"].as_u64().unwrap() < 100, "a persona over budget is no perfect health: {steady}");

    let file = node.dir.path().join("moment.json");
    let mut matched = None;
    for _ in 0..3 {
        let before = actions(&report(&node).await.unwrap());
        let out = node.cli(&["brain", "snapshot", "--out", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let after = actions(&report(&node).await.unwrap());
        let snap: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(snap["format"], "mindmesh-scenario/1");
        assert!(snap.get("expect").is_none(), "a snapshot is unlabelled");
        assert_eq!(snap["personas"].as_array().unwrap().len(), 3);

        let out = offline(&["brain", "eval", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let replayed: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["persona"].as_str().unwrap().to_owned(), v["action"].as_str().unwrap().to_owned()))
            .collect();
        // the live brain decided on either side of the copy; the replay must agree with it
        if replayed == before || replayed == after {
            matched = Some(replayed);
            break;
        }
        eprintln!("replay {replayed:?}, live {before:?} / {after:?}: the mesh moved, again");
    }
    let replayed = matched.expect("the replay of a snapshot decides as the live brain did");
    assert_eq!(replayed["fat"], "investigate");
    // and explain reads it too
    let out = offline(&["brain", "explain", file.to_str().unwrap()]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("(unlabelled)"));

    // the watch, decided every cycle, is one record with a count
    let fat = common::wait_for_async(Duration::from_secs(30), || async {
        let log = decisions(&node).await;
        // (its budget moves, an idle persona giving its priority back, are lines of their own)
        let fat: Vec<Value> = log.into_iter().filter(|d| d["persona"] == "fat" && d["action"] != "budget").collect();
        assert_eq!(fat.len(), 1, "one line for an unchanged watch: {fat:?}");
        (fat[0]["count"].as_u64().unwrap() > 3).then(|| fat[0].clone())
    })
    .await
    .expect("the watch counted every cycle");
    assert!(fat["last_seen_ms"].as_u64().unwrap() > fat["decided_at_ms"].as_u64().unwrap(), "{fat}");
    let out = node.cli(&["decisions"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fat") && text.contains("x, last "), "{text}");
}

/// `mindmesh demo traffic` against the node, in the background.
fn traffic(node: &TestNode, rate: &str, duration: &str) -> Child {
    Command::new(common::MINDMESH)
        .args(["demo", "traffic", "--api", &node.api, "--rate", rate, "--duration", duration, "--timeout", "10s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo traffic")
}

/// The demo's personas as `deploy/examples/demo.toml` has them, with what changes over time
/// made `SPEED` times faster.
fn compressed_demo() -> String {
    let fast = |x: f64| format!("{}", (x * SPEED).round());
    let chat = "model = \"demo-chat\"\nimportance = \"user_facing\"\nrestart = \"always\"\n[persona.limits]\nmemory_max_mb = 256\n[persona.budget]\nmax_response_time_ms = 10000";
    let mut c = brain(SPEED);
    for name in ["chat-steady", "chat-peer"] {
        c += &demo_persona(name, &["--tokens", "48", "--token-delay-ms", "15", "--latency-ms", "20"], chat);
    }
    c += &demo_persona(
        "leaky-summarizer",
        &["--leak-mb-per-min", &fast(30.0), "--tokens", "96", "--token-delay-ms", "5"],
        "model = \"demo-summarize\"\nimportance = \"background\"\nrestart = \"on-failure\"\n[persona.limits]\nmemory_max_mb = 512\n[persona.budget]\nmax_memory_mb = 200",
    );
    c += &demo_persona(
        "slowing-translator",
        &["--latency-ms", "30", "--latency-ramp-ms-per-min", &fast(200.0)],
        "model = \"demo-chat\"\nimportance = \"user_facing\"\nrestart = \"on-failure\"\n[persona.budget]\nmax_response_time_ms = 5000",
    );
    c += &demo_persona(
        "flaky-api",
        &["--error-rate", "0.2", "--error-kinds", "429,5xx,timeout", "--hang-ms", "60000"],
        "model = \"demo-remote\"\nkind = \"api\"\nimportance = \"user_facing\"\nrestart = \"on-failure\"\n[persona.budget]\nmax_response_time_ms = 3000",
    );
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compressed_demo_does_what_its_comments_promise() {
    let node = TestNode::start(&compressed_demo());
    node.wait_status(Duration::from_secs(60), "the demo personas running", |s| {
        s["personas"].as_array().is_some_and(|p| p.len() == 5 && p.iter().all(|p| p["phase"] == "running"))
    })
    .await;
    // 10 brain minutes is 100 s; traffic a little faster than the demo's 1/s so each brain
    // minute carries as many requests as a real one would at 1/s
    let mut load = traffic(&node, &format!("{SPEED}"), "200s");
    let wanted = |log: &[Value]| {
        let did = |p: &str, acts: &[&str]| {
            log.iter().any(|d| d["persona"] == p && acts.contains(&d["action"].as_str().unwrap()))
        };
        did("leaky-summarizer", &["restart"])
            && did("slowing-translator", &["restart", "investigate"])
            && did("flaky-api", &["throttle", "restart", "investigate"])
    };
    let worst_health = AtomicU64::new(100);
    let log = common::wait_for_async(Duration::from_secs(200), || async {
        if let Some(r) = report(&node).await {
            worst_health.fetch_min(r["system_health"].as_u64().unwrap_or(100), Ordering::Relaxed);
        }
        let log = decisions(&node).await;
        wanted(&log).then_some(log)
    })
    .await;
    let _ = load.kill();
    let _ = load.wait();
    let log = log.unwrap_or_else(|| {
        let out = node.cli(&["decisions"]);
        panic!("the demo's decisions did not all come:\n{}\nlog:\n{}", String::from_utf8_lossy(&out.stdout), node.log())
    });
    let text = String::from_utf8_lossy(&node.cli(&["decisions"]).stdout).into_owned();
    eprintln!("{text}");
    let first = |p: &str| log.iter().find(|d| d["persona"] == p && d["action"] != "continue").unwrap();
    // the leak: restarted before its hard limit, the reason saying how fast and how near
    let leak = log.iter().find(|d| d["persona"] == "leaky-summarizer" && d["action"] == "restart").unwrap();
    let reason = leak["reason"].as_str().unwrap();
    assert!(reason.contains("MB/min") && reason.contains("hard limit"), "{reason}");
    // the translator against its peer, the API by its error mix
    let slow = first("slowing-translator");
    assert!(slow["reason"].as_str().unwrap().contains("replicas"), "{slow}");
    let flaky = first("flaky-api");
    assert!(flaky["reason"].as_str().unwrap().contains("errors"), "{flaky}");
    // the steady chats are left alone
    let touched: Vec<&Value> = log
        .iter()
        .filter(|d| {
            d["persona"].as_str().unwrap().starts_with("chat-") && DISRUPTIVE.contains(&d["action"].as_str().unwrap())
        })
        .collect();
    assert!(touched.is_empty(), "steady chats untouched: {touched:?}\n{text}");
    assert!(worst_health.load(Ordering::Relaxed) < 100, "system health fell while personas leaked and failed\n{text}");
}
