//! Hibernation tiers with real processes: `paused` freezes the persona's process group
//! (SIGSTOP), keeps its memory and its PID, is never taken for a hang, and thaws on a request
//! in the same process; a paused persona stopped or hibernated deeper is thawed so it can act
//! on its SIGTERM (no SIGKILL needed) and save its state.

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

/// The state letter of `/proc/<pid>/stat` (`T`: stopped by a signal).
fn proc_state(pid: u64) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 2..].chars().next()).unwrap_or('?')
}

fn hibernate(node: &TestNode, name: &str, tier: &str) {
    let out = node.cli(&["persona", "hibernate", name, "--tier", tier]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_persona_keeps_its_process_and_a_request_thaws_it() {
    // probes every 200 ms: a frozen process probed would turn unhealthy within the pause
    let node = TestNode::start(&format!(
        "[supervisor]\nhealth_interval_ms = 200\n{}",
        demo_persona("frozen", &[], "restart = \"always\"")
    ));
    let v = node.wait_persona("frozen", T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    let pid = v["pid"].as_u64().unwrap();
    let restarts = v["restarts"].as_u64();

    hibernate(&node, "frozen", "paused");
    let v = node.wait_persona("frozen", T, |v| phase(v) == "paused").await;
    assert_eq!((v["pid"].as_u64(), v["desired"].as_str()), (Some(pid), Some("paused")), "{v}");
    assert!(v["paused_s"].as_u64().is_some() && v["reload_ms"].as_u64().is_some(), "{v}");
    assert_eq!(proc_state(pid), 'T', "the process is frozen");
    let list = node.cli(&["persona", "list"]);
    assert!(text(&list).lines().any(|l| l.starts_with("frozen") && l.contains("paused")), "{}", text(&list));
    // many probe intervals later: still paused, still healthy, not restarted
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = node.persona("frozen").await;
    assert_eq!((phase(&v), v["health"].as_str(), v["restarts"].as_u64()), ("paused", Some("healthy"), restarts), "{v}");
    // pausing again changes nothing and says so
    let out = node.cli(&["persona", "hibernate", "frozen", "--tier", "paused", "--json"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(r["changed"], false, "{r}");

    // a request is held, the process thawed, and the answer comes from the same process
    let (code, body) = node.chat("frozen").await;
    assert_eq!(code, 200, "{body}");
    let v = node.wait_persona("frozen", T, |v| phase(v) == "running" && v["desired"] == "running").await;
    assert_eq!((v["pid"].as_u64(), v["restarts"].as_u64()), (Some(pid), restarts), "thawed, not restarted: {v}");
    assert_ne!(proc_state(pid), 'T');
    let events = node.events("frozen").await;
    assert!(
        events.iter().any(|e| e["kind"] == "wake" && e["detail"].as_str().is_some_and(|d| d.contains("resumed"))),
        "the thaw is an event: {events:?}"
    );
    assert_eq!(events.iter().filter(|e| e["kind"] == "spawn").count(), 1, "one process in all");

    // paused, then stopped: the group is thawed after its SIGTERM and exits by itself
    hibernate(&node, "frozen", "paused");
    node.wait_persona("frozen", T, |v| phase(v) == "paused").await;
    let out = node.cli(&["persona", "stop", "frozen"]);
    assert!(out.status.success(), "{}", text(&out));
    node.wait_persona("frozen", T, |v| phase(v) == "stopped").await;
    assert!(!common::pid_alive(pid as u32));
    let exit = node.events("frozen").await.into_iter().rev().find(|e| e["kind"] == "exit").expect("an exit event");
    assert!(!exit["detail"].as_str().unwrap_or_default().contains("signal 9"), "no SIGKILL was needed: {exit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_persona_hibernated_deeper_saves_its_state_and_a_request_brings_it_back() {
    let node = TestNode::start(&demo_persona("deep", &[], ""));
    let v = node.wait_persona("deep", T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    let pid = v["pid"].as_u64().unwrap();
    hibernate(&node, "deep", "paused");
    node.wait_persona("deep", T, |v| phase(v) == "paused").await;
    hibernate(&node, "deep", "stopped");
    let v = node.wait_persona("deep", T, |v| phase(v) == "hibernating" && v["desired"] == "hibernating").await;
    assert!(v["pid"].is_null(), "{v}");
    assert!(!common::pid_alive(pid as u32));
    // the event is stored a moment after the phase shows
    let saved = common::wait_for_async(T, || async {
        node.events("deep").await.iter().any(|e| e["kind"] == "state_saved").then_some(())
    })
    .await;
    assert!(saved.is_some(), "thawed to save its state: {:?}", node.events("deep").await);
    let (code, body) = node.chat("deep").await;
    assert_eq!(code, 200, "{body}");
    let v = node.wait_persona("deep", T, |v| phase(v) == "running").await;
    assert_ne!(v["pid"].as_u64(), Some(pid), "a cold start: {v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_hibernate_takes_a_tier_and_only_a_running_persona_pauses() {
    let node = TestNode::start(&demo_persona("p", &[], ""));
    node.wait_persona("p", T, |v| phase(v) == "running").await;
    let (code, v) = node.post("/api/v1/personas/p/stop", json!({"tier": "paused"})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = node.post("/api/v1/personas/p/hibernate", json!({"tier": "asleep"})).await;
    assert_eq!(code, 400, "an unknown tier: {v}");
    let out = node.cli(&["persona", "hibernate", "p", "--tier", "frozen"]);
    assert!(!out.status.success() && text(&out).contains("paused or stopped"), "{}", text(&out));
    // a stopped persona has nothing to freeze: it ends in the deeper tier
    let out = node.cli(&["persona", "stop", "p"]);
    assert!(out.status.success(), "{}", text(&out));
    hibernate(&node, "p", "paused");
    let v = node.wait_persona("p", T, |v| phase(v) == "hibernating").await;
    assert_eq!(v["desired"], "paused", "{v}");
    let (code, body) = node.chat("p").await;
    assert_eq!(code, 200, "{body}");
}

/// The idle policy picks the tier: a persona whose cold start is slow (here 1.2 s before it
/// serves) and whose idle limit is short is paused; one that starts at once is stopped; and a
/// persona left paused for four idle limits goes on to stopped.
#[tokio::test(flavor = "multi_thread")]
async fn the_idle_policy_pauses_a_slow_starter_and_stops_a_quick_one() {
    let slow = format!(
        "[[persona]]\nname = \"slow\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"sleep 1.2; exec '{}'\"]\n\
         health_path = \"/health\"\nhibernate_after_idle_s = 2\n",
        common::DEMO
    );
    let node = TestNode::start(&(slow + &demo_persona("quick", &[], "hibernate_after_idle_s = 2")));
    let v = node.wait_persona("slow", T, |v| phase(v) == "paused").await;
    assert!(v["pid"].as_u64().is_some(), "{v}");
    node.wait_persona("quick", T, |v| phase(v) == "hibernating").await;
    let (code, body) = node.chat("slow").await;
    assert_eq!(code, 200, "{body}");
    // idle again: paused again, then (after four limits paused) stopped
    node.wait_persona("slow", T, |v| phase(v) == "paused").await;
    node.wait_persona("slow", T, |v| phase(v) == "hibernating").await;
    let events = node.events("slow").await;
    assert!(
        events.iter().any(|e| e["kind"] == "hibernate" && e["detail"].as_str().is_some_and(|d| d.contains("paused")))
    );
}
