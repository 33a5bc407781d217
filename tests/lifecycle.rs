//! Desired state holds: what an operator (or a request) asks of a persona is what the mesh
//! keeps wanting, and what the node does. Each test is a finding of a newcomer using the verbs
//! for twenty minutes (issue 11), with the real binary and real demo persona processes.

mod common;

use std::time::{Duration, Instant};

use common::{DEMO, TestNode, demo_persona};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);

/// One test at a time: a mesh of three and its personas on two cores is load enough, and what
/// these tests check is what the node does, not how it copes with its neighbours' starvation.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Checkpoints every 300 ms: any registry write replans the node's personas, which is what
/// undid a wake by request within a few seconds.
const CHECKPOINT_OFTEN: &str = "checkpoint_interval_ms = 300";

fn phase(v: &Value) -> &str {
    v["phase"].as_str().unwrap_or("")
}

fn desired(v: &Value) -> &str {
    v["desired"].as_str().unwrap_or("")
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Finding 1: a hibernated persona woken by a request stays awake — the wake commits
/// `desired = running`, so the node does not hibernate it again a few seconds later.
#[tokio::test(flavor = "multi_thread")]
async fn a_wake_by_request_makes_desired_running_and_it_stays_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start_with_mesh(&demo_persona("sleepy", &[], ""), CHECKPOINT_OFTEN);
    node.wait_persona("sleepy", T, |v| phase(v) == "running" && desired(v) == "running").await;
    let out = node.cli(&["persona", "hibernate", "sleepy"]);
    assert!(out.status.success(), "{}", text(&out));
    node.wait_persona("sleepy", T, |v| phase(v) == "hibernating" && desired(v) == "hibernating").await;

    let (code, v) = node.chat("sleepy").await;
    assert_eq!(code, 200, "{v}");
    let v = node.wait_persona("sleepy", T, |v| desired(v) == "running" && phase(v) == "running").await;
    let pid = v["pid"].as_u64();
    // many checkpoints (each a registry write) later, it still runs, in the same process
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let v = node.persona("sleepy").await;
        assert_eq!((phase(&v), desired(&v), v["pid"].as_u64()), ("running", "running", pid), "{v}\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, v) = node.chat("sleepy").await;
    assert_eq!(code, 200, "{v}");
}

/// Finding 2: taking away `allowed_to_run` stops the persona (and the gateway says why);
/// giving it back brings back the phase the mesh wants.
#[tokio::test(flavor = "multi_thread")]
async fn restoring_allowed_to_run_restores_the_phase() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start(&demo_persona("gated", &[], ""));
    node.wait_persona("gated", T, |v| phase(v) == "running").await;
    let out = node.cli(&["persona", "budget", "gated", "--allowed-to-run", "false"]);
    assert!(out.status.success(), "{}", text(&out));
    node.wait_persona("gated", T, |v| phase(v) == "stopped").await;
    let (code, v) = node.chat("gated").await;
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["error"]["code"], "not_allowed_to_run", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("allowed_to_run"), "the refusal says why: {v}");

    let out = node.cli(&["persona", "budget", "gated", "--allowed-to-run", "true"]);
    assert!(out.status.success(), "{}", text(&out));
    let v = node.wait_persona("gated", T, |v| phase(v) == "running").await;
    assert_eq!(desired(&v), "running", "{v}");
    let (code, v) = node.chat("gated").await;
    assert_eq!(code, 200, "{v}");

    // a persona the operator stopped stays stopped when it is allowed again
    let out = node.cli(&["persona", "stop", "gated"]);
    assert!(out.status.success(), "{}", text(&out));
    for allowed in ["false", "true"] {
        let out = node.cli(&["persona", "budget", "gated", "--allowed-to-run", allowed]);
        assert!(out.status.success(), "{}", text(&out));
    }
    node.wait_persona("gated", T, |v| v["budget"]["allowed_to_run"] == true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = node.persona("gated").await;
    assert_eq!((phase(&v), desired(&v)), ("stopped", "stopped"), "{v}");
}

/// Finding 3: `start` on a running persona changes nothing and says so (as systemd and pm2 do),
/// where it used to restart it.
#[tokio::test(flavor = "multi_thread")]
async fn start_on_a_running_persona_is_a_no_op_that_says_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start(&demo_persona("steady", &[], ""));
    let v = node.wait_persona("steady", T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    let (pid, restarts) = (v["pid"].as_u64(), v["restarts"].as_u64());
    for verb in ["start", "wake"] {
        let out = node.cli(&["persona", verb, "steady"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("already running"), "{verb}: {}", text(&out));
        let out = node.cli(&["persona", verb, "steady", "--json"]);
        let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
        assert_eq!(r["changed"], false, "{r}");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let v = node.persona("steady").await;
    assert_eq!((v["pid"].as_u64(), v["restarts"].as_u64(), phase(&v)), (pid, restarts, "running"), "{v}");
    let started = node.events("steady").await.iter().filter(|e| e["kind"] == "spawn").count();
    assert_eq!(started, 1, "one process in all");

    // a persona that is down does start
    let out = node.cli(&["persona", "stop", "steady"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = node.cli(&["persona", "start", "steady", "--json"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!((r["changed"].as_bool(), r["phase"].as_str()), (Some(true), Some("running")), "{r}");
}

/// Finding 4: `node leave` ends the node's process, with success, once it has left: under the
/// shipped systemd unit (`Restart=on-failure`) the service is then inactive, not "active" with
/// its ports closed.
#[tokio::test(flavor = "multi_thread")]
async fn node_leave_makes_the_process_exit_zero() {
    let _one = ONE_AT_A_TIME.lock().await;
    // two nodes are enough (the second a learner): a mesh of three on a loaded 2-core host is
    // a test of starvation, not of leaving
    let a = TestNode::start_in_mesh("a", "", "", None);
    a.wait_status(T, "a leads its new mesh", |s| common::mesh_leader(s).as_deref() == Some("a")).await;
    let mut b = TestNode::start_in_mesh("b", "", "", Some(&a.join_info().await));
    b.wait_status(T, "b is a member and knows the leader", |s| {
        common::mesh_members(s) == 2 && common::mesh_leader(s).as_deref() == Some("a")
    })
    .await;
    let out = b.cli(&["node", "leave"]);
    assert!(out.status.success(), "{}", text(&out));
    let child = b.child.as_mut().expect("b runs");
    let status = common::wait_for(T, || child.try_wait().ok().flatten())
        .unwrap_or_else(|| panic!("b did not exit after leaving; log:\n{}", b.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", b.log());
    b.child = None;
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd/mindmesh.service")).unwrap();
    assert!(unit.lines().any(|l| l.trim() == "Restart=on-failure"), "a clean exit must not be restarted");
    // the mesh goes on without it
    a.wait_status(T, "one member left", |s| common::mesh_members(s) == 1).await;
}

/// Finding 6: a persona whose command does not exist is refused when it is added — with the
/// reason, a non-zero exit, and nothing committed — instead of "added (backoff)" and a crash
/// loop a second later.
#[tokio::test(flavor = "multi_thread")]
async fn adding_a_persona_whose_command_does_not_resolve_fails_clearly() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start("");
    node.wait_status(T, "a leader", |s| common::mesh_leader(s).is_some()).await;
    let dir = node.dir.path();
    let not_exec = dir.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let cases = [
        ("missing-abs", "/nonexistent/mindmesh-no-such-binary".to_owned(), "no such file"),
        ("missing-path", "mindmesh-no-such-binary-on-path".to_owned(), "not found"),
        ("not-exec", not_exec.display().to_string(), "not executable"),
        ("a-dir", dir.display().to_string(), "directory"),
    ];
    for (name, command, says) in &cases {
        let spec = dir.join(format!("{name}.toml"));
        std::fs::write(&spec, format!("name = \"{name}\"\ncommand = \"{command}\"\n")).unwrap();
        let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
        let said = text(&out).to_lowercase();
        assert!(!out.status.success(), "{name}: {said}");
        assert!(said.contains(says), "{name}: expected {says:?} in {said}");
        assert!(said.contains(&command.to_lowercase()), "{name}: names the command: {said}");
        let (code, v) = node.get(&format!("/api/v1/personas/{name}")).await;
        assert_eq!(code, 404, "{name} must not be committed: {v}");
    }
    // a command that does resolve is added as before, on PATH too
    let spec = dir.join("ok.toml");
    std::fs::write(&spec, format!("name = \"ok\"\ncommand = \"{DEMO}\"\n")).unwrap();
    let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    node.wait_persona("ok", T, |v| phase(v) == "running").await;
    std::fs::write(&spec, "name = \"sleeper\"\ncommand = \"sleep\"\nargs = [\"600\"]\n").unwrap();
    let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Finding 6, across nodes: a persona added through one node for another is checked where it
/// will run (the request goes to the owner), and refused there with the owner named.
#[tokio::test(flavor = "multi_thread")]
async fn a_persona_added_through_another_node_is_checked_on_its_own_node() {
    let _one = ONE_AT_A_TIME.lock().await;
    let a = TestNode::start_in_mesh("a", "", "", None);
    a.wait_status(T, "a leads its new mesh", |s| common::mesh_leader(s).as_deref() == Some("a")).await;
    let b = TestNode::start_in_mesh("b", "", "", Some(&a.join_info().await));
    b.wait_status(T, "b is a member", |s| common::mesh_members(s) == 2 && common::mesh_leader(s).is_some()).await;
    let missing = json!({"name": "far-typo", "command": "/nonexistent/mindmesh-far"});
    let (code, v) = a.post("/api/v1/personas?node=b", missing).await;
    assert_eq!((code, v["error"]["code"].as_str()), (422, Some("command_not_runnable")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("node b"), "{v}");
    assert_eq!(a.get("/api/v1/personas/far-typo").await.0, 404);
    let good = json!({"name": "far", "command": DEMO, "health_path": "/health"});
    let (code, v) = a.post("/api/v1/personas?node=b", good).await;
    assert_eq!(code, 201, "{v}");
    b.wait_persona("far", T, |v| phase(v) == "running" && v["node"] == "b").await;
}

/// Finding 7: draining a node whose personas have nowhere to go says so at once — which
/// personas, and why — instead of waiting silently for its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_with_nowhere_to_go_says_so_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start(&(demo_persona("stuck-1", &[], "") + &demo_persona("stuck-2", &[], "")));
    node.wait_persona("stuck-1", T, |v| phase(v) == "running").await;
    node.wait_persona("stuck-2", T, |v| phase(v) == "running").await;
    let started = Instant::now();
    let out = node.cli(&["node", "drain", "test", "--timeout-s", "300"]);
    let took = started.elapsed();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(took < Duration::from_secs(30), "answered after {took:?}: {said}");
    for name in ["stuck-1", "stuck-2"] {
        assert!(said.contains(name), "names {name}: {said}");
    }
    assert!(said.contains("no other node"), "says why: {said}");
    // the personas keep running where they are; the node stays draining until undone
    assert_eq!(phase(&node.persona("stuck-1").await), "running");
    let out = node.cli(&["node", "drain", "test", "--json", "--no-wait", "--timeout-s", "5"]);
    let first: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("null"))
        .unwrap_or(Value::Null);
    assert!(first["stuck"].as_array().is_some_and(|s| s.len() == 2), "{}", text(&out));
    let out = node.cli(&["node", "drain", "test", "--undo"]);
    assert!(out.status.success(), "{}", text(&out));
}
