//! Failover, fencing and migration with real node processes on loopback: a node SIGKILLed has
//! its persona restored elsewhere from its last checkpoint (and its old process fenced by the
//! guard); a frozen node's personas stop by its lease and stay stopped when it returns; an
//! operator's `migrate` and `node drain` move personas with their state while requests keep
//! flowing through the gateway, none dropped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestNode, mesh_leader, mesh_persona, three_nodes};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);
/// Checkpoint often, so the test does not wait for the 10 s default.
const MESH: &str = "checkpoint_interval_ms = 300";
const NAMES: [&str; 3] = ["a", "b", "c"];

/// One mesh at a time: leases are timing, and nine nodes with their personas on two cores
/// starve each other's heartbeats (what these tests measure is failover, not starvation).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn index_of(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).unwrap()
}

/// A node that does not lead, and the leader.
async fn roles(nodes: &[TestNode]) -> (String, String) {
    let s = nodes[0].get("/api/v1/status").await.1;
    let lead = mesh_leader(&s).unwrap();
    let other = NAMES.iter().find(|n| **n != lead).unwrap().to_string();
    (other, lead)
}

async fn add_keeper(via: &TestNode, name: &str, node: &str) {
    let spec = json!({"name": name, "command": common::DEMO, "args": ["--tokens", "4"], "health_path": "/health"});
    let (code, v) = via.post(&format!("/api/v1/personas?node={node}"), spec).await;
    assert_eq!(code, 201, "{v}");
}

/// A chat request through a node's gateway: the status and whether the persona said it was
/// restored from a saved state.
async fn chat(node: &TestNode, model: &str, text: &str) -> (u16, Option<String>) {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    match client.post(node.url("/v1/chat/completions")).bearer_auth(node.token()).json(&body).send().await {
        Ok(r) => {
            let restored =
                r.headers().get("x-mindmesh-state-restored").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (r.status().as_u16(), restored)
        }
        Err(_) => (0, None),
    }
}

/// Where `name` runs, as `node`'s status shows it: (node, phase, pid).
async fn placement(node: &TestNode, name: &str) -> Option<(String, String, Option<u64>)> {
    let s = node.get("/api/v1/status").await.1;
    let p = mesh_persona(&s, name)?;
    Some((p["node"].as_str()?.to_owned(), p["phase"].as_str()?.to_owned(), p["pid"].as_u64()))
}

async fn wait_checkpoint(node: &TestNode, name: &str, after_ms: u64) {
    common::wait_for_async(T, || async {
        let v = node.persona(name).await;
        (v["checkpoint_at_ms"].as_u64()? > after_ms).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no checkpoint of {name}: {}", node.log()));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_node_s_persona_comes_back_elsewhere_with_its_last_checkpoint() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut nodes = three_nodes("", MESH).await;
    let (victim, lead) = roles(&nodes).await;
    let v = index_of(&victim);
    add_keeper(&nodes[0], "keeper", &victim).await;
    let running = nodes[v].wait_persona("keeper", T, |p| p["phase"] == "running").await;
    let old_pid = running["pid"].as_u64().unwrap() as u32;
    let l = index_of(&lead);
    for text in ["remember the blue door", "and the red key"] {
        assert_eq!(chat(&nodes[l], "keeper", text).await.0, 200, "served through the leader's gateway");
    }
    let sent_ms = now_ms();
    wait_checkpoint(&nodes[l], "keeper", sent_ms).await;

    let killed = Instant::now();
    nodes[v].kill9();
    // its old process outlives the node only until the node's lease runs out: the guard fences it
    let fenced = common::wait_for(Duration::from_secs(5), || (!common::pid_alive(old_pid)).then_some(()));
    assert!(fenced.is_some(), "the dead node's persona was still running 5 s later");
    let fenced_after = killed.elapsed();
    let (to, _, _) = common::wait_for_async(T, || async {
        placement(&nodes[l], "keeper").await.filter(|(n, phase, _)| *n != victim && phase == "running")
    })
    .await
    .unwrap_or_else(|| panic!("keeper never ran elsewhere; leader log:\n{}", nodes[l].log()));
    let failed_over = killed.elapsed();
    println!("old process fenced after {fenced_after:?}; running on {to} after {failed_over:?}");
    assert!(fenced_after < failed_over, "never two at once: fenced before started elsewhere");

    // restored from the checkpoint, not blank
    let (code, restored) = chat(&nodes[l], "keeper", "what did I say?").await;
    assert_eq!(code, 200);
    assert_eq!(restored.as_deref(), Some("true"), "the new process started from the last checkpoint");
    // the failover is in the decision log, with its reason, carried out by the new node
    let (_, page) = nodes[l].get("/api/v1/decisions?after=0&limit=1000").await;
    let d = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["persona"] == "keeper" && d["analyst"] == "failover")
        .cloned()
        .unwrap_or_else(|| panic!("no failover decision: {page}"));
    assert!(d["reason"].as_str().unwrap().contains(&format!("node {victim} silent")), "{d}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_node_stops_its_personas_by_its_lease_and_does_not_resurrect_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nodes = three_nodes("", MESH).await;
    let (victim, lead) = roles(&nodes).await;
    let (v, l) = (index_of(&victim), index_of(&lead));
    add_keeper(&nodes[0], "held", &victim).await;
    let running = nodes[v].wait_persona("held", T, |p| p["phase"] == "running").await;
    let old_pid = running["pid"].as_u64().unwrap() as u32;
    assert_eq!(chat(&nodes[l], "held", "before the pause").await.0, 200);

    // freeze the node: it can neither renew its lease nor stop anything itself
    let node_pid = Pid::from_raw(nodes[v].child.as_ref().unwrap().id() as i32);
    kill(node_pid, Signal::SIGSTOP).unwrap();
    let frozen = Instant::now();
    let fenced = common::wait_for(Duration::from_secs(5), || (!common::pid_alive(old_pid)).then_some(()));
    let fenced_after = frozen.elapsed();
    let moved = common::wait_for_async(T, || async {
        placement(&nodes[l], "held").await.filter(|(n, phase, _)| *n != victim && phase == "running")
    })
    .await;
    let moved_after = frozen.elapsed();
    kill(node_pid, Signal::SIGCONT).unwrap();
    assert!(fenced.is_some(), "the frozen node's persona kept running past its lease");
    let (to, _, _) = moved.unwrap_or_else(|| panic!("held never ran elsewhere; leader log:\n{}", nodes[l].log()));
    println!("fenced after {fenced_after:?}; running on {to} after {moved_after:?}");
    assert!(fenced_after < moved_after, "never two at once");

    // back: it catches up with the registry and, meanwhile and after, runs nothing that is no
    // longer its own
    let back = Instant::now();
    let mut caught_up = None;
    while back.elapsed() < Duration::from_secs(15) {
        let (_, list) = nodes[v].get("/api/v1/personas").await;
        let here = list.as_array().unwrap().iter().find(|p| p["name"] == "held").cloned().unwrap_or(Value::Null);
        if here["node"] == victim.as_str() {
            assert!(here["pid"].is_null() && here["phase"] != "running", "resurrected on {victim}: {here}");
        }
        if here["node"] == to.as_str() && caught_up.is_none() {
            caught_up = Some(back.elapsed());
        }
        if caught_up.is_some_and(|c| back.elapsed() > c + Duration::from_secs(3)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = caught_up.unwrap_or_else(|| panic!("{victim} never caught up:\n{}", nodes[v].log()));
    println!("{victim} caught up with the registry {caught_up:?} after it was resumed");
    // and its gateway sends requests for it to where it runs now
    assert_eq!(chat(&nodes[v], "held", "after the pause").await.0, 200);
}

/// Requests in a loop through one gateway until stopped: how many were sent and how many failed.
fn load(node: &TestNode, model: &'static str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    let url = node.url("/v1/chat/completions");
    let token = node.token();
    tokio::spawn(async move {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let sent = AtomicU64::new(0);
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let body = json!({"model": model, "messages": [{"role": "user", "content": "keep going"}]});
            sent.fetch_add(1, Ordering::Relaxed);
            match client.post(&url).bearer_auth(&token).json(&body).send().await {
                Ok(r) if r.status() == 200 => {
                    let _ = r.bytes().await;
                }
                Ok(r) => failures.push(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                Err(e) => failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (sent.load(Ordering::Relaxed), failures)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_drain_move_personas_with_their_state_and_drop_no_request() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nodes = three_nodes("", MESH).await;
    add_keeper(&nodes[0], "mover", "b").await;
    add_keeper(&nodes[0], "sitter", "c").await;
    nodes[1].wait_persona("mover", T, |p| p["phase"] == "running").await;
    nodes[2].wait_persona("sitter", T, |p| p["phase"] == "running").await;
    assert_eq!(chat(&nodes[0], "mover", "remember the green gate").await.0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = [load(&nodes[0], "mover", stop.clone()), load(&nodes[1], "sitter", stop.clone())];
    tokio::time::sleep(Duration::from_millis(500)).await;

    // migrate b → c through the CLI, which follows it to the end
    let out = nodes[0].cli(&["persona", "migrate", "mover", "--to", "c", "--timeout-s", "60"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("committed") && text.contains("done: running on c"), "progress shown: {text}");
    let (node, phase, _) = placement(&nodes[0], "mover").await.unwrap();
    assert_eq!((node.as_str(), phase.as_str()), ("c", "running"));
    let (code, restored) = chat(&nodes[0], "mover", "still there?").await;
    assert_eq!((code, restored.as_deref()), (200, Some("true")), "it moved with its state");

    // drain c: both personas leave it, with their state, a few at a time
    let out = nodes[0].cli(&["node", "drain", "c", "--timeout-s", "90"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("drained"), "{text}");
    for name in ["mover", "sitter"] {
        let (node, phase, _) = placement(&nodes[0], name).await.unwrap();
        assert!(node != "c" && phase == "running", "{name} on {node} ({phase})");
    }
    let s = nodes[0].get("/api/v1/status").await.1;
    let c = s["mesh"]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "c").unwrap();
    assert_eq!(c["draining"], true);

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for (t, model) in traffic.into_iter().zip(["mover", "sitter"]) {
        let (sent, failures) = t.await.unwrap();
        println!("{model}: {sent} requests during the moves, {} failed", failures.len());
        assert!(sent > 20, "traffic flowed during the moves");
        assert!(failures.is_empty(), "no request dropped while {model} moved: {failures:?}");
    }
}
