//! One node supervising real demo persona processes: restarts, crash loops, hard limits,
//! throttling, hibernation, and a node killed with SIGKILL that finds its personas again.

mod common;

use std::time::Duration;

use common::{DEMO, TestNode, demo_persona, group_alive, pid_alive};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn phase(v: &Value) -> &str {
    v["phase"].as_str().unwrap_or("")
}

fn pid(v: &Value) -> Option<u32> {
    v["pid"].as_u64().map(|p| p as u32)
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn config_personas_start_at_once_and_a_crashed_one_restarts() {
    let quiet =
        format!("[[persona]]\nname = \"quiet\"\ncommand = \"{DEMO}\"\nargs = [\"--idle\"]\nhealth_path = \"/nope\"\n");
    let node = TestNode::start(
        &("[supervisor]\nstart_timeout_ms = 1000\n".to_owned() + &demo_persona("chat", &[], "") + &quiet),
    );
    let v = node.wait_persona("chat", T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    let first = pid(&v).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let v = node.wait_persona("chat", T, |v| phase(v) == "running" && pid(v).is_some_and(|p| p != first)).await;
    assert_eq!(v["restarts"], 1, "{v}");
    let k = kinds(&node.events("chat").await);
    for want in ["added", "spawn", "exit", "restart"] {
        assert!(k.contains(&want.to_owned()), "missing {want} in {k:?}");
    }
    let exit = node.events("chat").await.into_iter().find(|e| e["kind"] == "exit").unwrap();
    assert!(exit["detail"].as_str().unwrap().contains("signal 9"), "{exit}");
    // a persona with a health path that fails is probed and seen unhealthy, but keeps running
    node.wait_persona("quiet", T, |v| v["health"] == "unhealthy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persona_without_health_path_is_not_probed() {
    let spec = format!("[[persona]]\nname = \"plain\"\ncommand = \"{DEMO}\"\nargs = [\"--idle\"]\n");
    let node = TestNode::start(&spec);
    let v = node.wait_persona("plain", T, |v| phase(v) == "running").await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // past a health interval
    let v2 = node.persona("plain").await;
    assert_eq!(v2["health"], "unknown", "{v2}");
    assert_eq!(pid(&v), pid(&v2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_ends_killed_with_its_reason() {
    let node = TestNode::start(&demo_persona("crashy", &["--crash-after-s", "0.2"], ""));
    let v = node.wait_persona("crashy", T, |v| phase(v) == "killed").await;
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("crash loop"), "{v}");
    assert_eq!(v["restarts"], 3, "more than 3 restarts in 5 minutes: the 4th crash kills: {v}");
    let k = kinds(&node.events("crashy").await);
    assert!(k.contains(&"crash_loop".to_owned()), "{k:?}");
    // no more restarts until an operator acts
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(phase(&node.persona("crashy").await), "killed");
    let (code, _) = node.post("/api/v1/personas/crashy/start", json!({})).await;
    assert_eq!(code, 200);
    node.wait_persona("crashy", T, |v| pid(v).is_some() || phase(v) == "killed").await;
}

async fn memory_limit_kills(cgroups: &str) {
    let extra = format!("[supervisor]\ncgroups = \"{cgroups}\"\nmetrics_interval_ms = 200\n");
    let spec = demo_persona(
        "leaky",
        &["--leak-mb-per-min", "6000"],
        "restart = \"never\"\n[persona.limits]\nmemory_max_mb = 64",
    );
    let node = TestNode::start(&(extra + &spec));
    let v = node.wait_persona("leaky", T, |v| phase(v) == "failed").await;
    let reason = v["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("limit"), "{v}");
    let events = node.events("leaky").await;
    let hit = events.iter().find(|e| e["kind"] == "limit_hit").unwrap_or_else(|| panic!("{events:?}"));
    let detail = hit["detail"].as_str().unwrap();
    assert!(detail.contains("64 MB"), "{detail}");
    assert!(events.iter().any(|e| e["kind"] == "kill"), "{events:?}");
    let status = node.get("/api/v1/status").await.1;
    if cgroups == "off" {
        assert_eq!(status["limits"], "measured + signals");
        assert!(detail.contains("measured"), "{detail}");
    } else if status["limits"].as_str().unwrap().starts_with("cgroup") {
        assert!(detail.contains("cgroup"), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_memory_limit_kills_by_cgroup_where_available() {
    memory_limit_kills("auto").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_memory_limit_kills_by_measurement_without_cgroups() {
    memory_limit_kills("off").await;
}

async fn throttle_lowers_cpu(cgroups: &str) {
    let extra = format!("[supervisor]\ncgroups = \"{cgroups}\"\nmetrics_interval_ms = 500\n");
    let node = TestNode::start(&(extra + &demo_persona("hog", &["--cpu-hog-percent", "100"], "")));
    node.wait_persona("hog", T, |v| phase(v) == "running").await;
    let avg_cpu = |samples: &[Value]| {
        let v: Vec<f64> = samples.iter().filter_map(|s| s["cpu_percent"].as_f64()).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now_ms = |v: &Value| v["to_ms"].as_u64().unwrap();
    let before = node.get("/api/v1/personas/hog/series?max_points=1000").await.1;
    let t0 = now_ms(&before);
    let unthrottled: Vec<Value> = before["samples"].as_array().unwrap().iter().skip(2).cloned().collect();
    let out = node.cli(&["persona", "throttle", "hog", "--multiplier", "0.2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = node.get(&format!("/api/v1/personas/hog/series?max_points=1000&from_ms={}", t0 + 1000)).await.1;
    let throttled = after["samples"].as_array().unwrap().clone();
    let (u, t) = (avg_cpu(&unthrottled), avg_cpu(&throttled));
    // a loaded machine may give the hog well under a core; the cut must still be clear
    assert!(u > 35.0, "the hog should burn a good share of a core before: {u:.1} %");
    assert!(t < 30.0 && t < u * 0.6, "throttle to 0.2 should cut CPU: before {u:.1} %, after {t:.1} %");
    let v = node.persona("hog").await;
    assert_eq!(v["throttle_multiplier"], 0.2);
    let k = kinds(&node.events("hog").await);
    assert!(k.contains(&"throttle".to_owned()), "{k:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_lowers_cpu_by_cgroup_where_available() {
    throttle_lowers_cpu("auto").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_lowers_cpu_by_signals_without_cgroups() {
    throttle_lowers_cpu("off").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hibernate_then_wake_brings_the_state_back() {
    let node = TestNode::start(&demo_persona("sleepy", &[], ""));
    let v = node.wait_persona("sleepy", T, |v| v["health"] == "healthy").await;
    let port = v["port"].as_u64().unwrap();
    // give the persona something to remember
    for _ in 0..3 {
        let body = json!({"model": "sleepy", "messages": [{"role": "user", "content": "hi"}]});
        let (code, _) = common::http(
            "POST",
            &format!("http://127.0.0.1:{port}/v1/chat/completions"),
            Some(("application/json", body.to_string())),
        )
        .await;
        assert_eq!(code, 200);
    }
    let out = node.cli(&["persona", "hibernate", "sleepy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = node.persona("sleepy").await;
    assert_eq!(phase(&v), "hibernating", "{v}");
    assert!(pid(&v).is_none());
    let k = kinds(&node.events("sleepy").await);
    assert!(k.contains(&"state_saved".to_owned()), "{k:?}");
    let out = node.cli(&["persona", "wake", "sleepy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = node.wait_persona("sleepy", T, |v| v["health"] == "healthy").await;
    let port = v["port"].as_u64().unwrap();
    let (_, health) = common::http("GET", &format!("http://127.0.0.1:{port}/health"), None).await;
    assert_eq!(health["state_restored"], true, "{health}");
    assert!(health["requests_served_total"].as_u64().unwrap() >= 3, "state carries the count: {health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_with_sigkill_keeps_everything_and_adopts_its_personas() {
    let extra = "[supervisor]\nmetrics_interval_ms = 200\n";
    let mut node = TestNode::start(
        &(extra.to_owned() + &demo_persona("keep", &["--spawn-child"], "") + &demo_persona("gone", &[], "")),
    );
    let keep = node.wait_persona("keep", T, |v| v["health"] == "healthy").await;
    let gone = node.wait_persona("gone", T, |v| v["health"] == "healthy").await;
    let (keep_pid, gone_pid) = (pid(&keep).unwrap(), pid(&gone).unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await; // some samples
    let events_before = node.get("/api/v1/events?after=0&limit=1000").await.1["events"].as_array().unwrap().len();
    node.kill9();
    // while the node is down one persona dies too: it must be replaced, not forgotten
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(gone_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(pid_alive(keep_pid), "personas outlive their node");
    node.spawn();
    let keep2 = node.wait_persona("keep", T, |v| phase(v) == "running").await;
    assert_eq!(pid(&keep2), Some(keep_pid), "adopted, not restarted: {keep2}");
    let gone2 = node.wait_persona("gone", T, |v| phase(v) == "running" && v["health"] == "healthy").await;
    assert_ne!(pid(&gone2), Some(gone_pid));
    let events = node.get("/api/v1/events?after=0&limit=1000").await.1["events"].as_array().unwrap().clone();
    assert!(events.len() > events_before, "events kept and appended");
    assert!(events.iter().any(|e| e["kind"] == "adopt" && e["persona"] == "keep"));
    let series = node.get("/api/v1/personas/keep/series?max_points=1000").await.1;
    assert!(series["samples"].as_array().unwrap().len() >= 3, "series kept: {series}");
    // exactly one copy of each: no other process of this node claims either persona
    let copies = count_processes_with_env("MINDMESH_PERSONA_ID=keep", &node.data_dir());
    assert_eq!(copies, 1, "one copy of keep");
    // the adopted process is supervised: its death is noticed and it is restarted
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(keep_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let keep3 = node.wait_persona("keep", T, |v| phase(v) == "running" && pid(v).is_some_and(|p| p != keep_pid)).await;
    assert!(pid(&keep3).is_some());
    // its grandchild went with it: no orphan
    assert!(!group_alive(keep_pid), "group of the old keep still alive");
}

/// Group leaders whose environment names the persona and this node's instance marker.
fn count_processes_with_env(needle: &str, data_dir: &std::path::Path) -> usize {
    let instance = std::fs::read_to_string(data_dir.join("instance")).unwrap();
    let marker = format!("MINDMESH_NODE_INSTANCE={}", instance.trim());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
            let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
            let leader = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).is_ok_and(|g| g.as_raw() == pid);
            leader && vars.contains(&needle.as_bytes()) && vars.contains(&marker.as_bytes())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_node_shutdown_leave_no_orphan() {
    let mut node = TestNode::start(
        &(demo_persona("a", &["--spawn-child"], "") + &demo_persona("b", &["--spawn-child", "--ignore-sigterm"], "")),
    );
    let a = node.wait_persona("a", T, |v| v["health"] == "healthy").await;
    let b = node.wait_persona("b", T, |v| v["health"] == "healthy").await;
    let (pa, pb) = (pid(&a).unwrap(), pid(&b).unwrap());
    let out = node.cli(&["persona", "stop", "a"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(phase(&node.persona("a").await), "stopped");
    assert!(!group_alive(pa), "stop leaves no process of the group");
    let status = node.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(!group_alive(pb), "SIGTERM ignored: the grace period ends in SIGKILL of the whole group");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_specs_and_bad_input_get_4xx_and_change_nothing() {
    let node = TestNode::start(&demo_persona("ok", &["--idle"], ""));
    node.wait_persona("ok", T, |v| phase(v) == "running").await;
    let before = node.get("/api/v1/personas").await.1;
    let events_before = node.get("/api/v1/status").await.1["last_event_seq"].clone();

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": "x", "command": "", }), 400, "command"),
        (json!({"name": "x", "command": "y", "colour": 1}), 400, "colour"),
        (json!({"name": "x", "command": "y", "budget": {"max_memory_mb": -5}}), 400, "budget.max_memory_mb"),
        (
            json!({"name": "x", "command": "y", "budget": {"max_concurrent_inferences": 0}}),
            400,
            "budget.max_concurrent_inferences",
        ),
        (json!({"name": "Bad Name", "command": "y"}), 400, "name"),
        (json!({"name": "ok", "command": "y"}), 409, "name"),
    ];
    for (body, code, field) in cases {
        let (got, v) = node.post("/api/v1/personas", body.clone()).await;
        assert_eq!(got, code, "{body} -> {v}");
        assert_eq!(v["error"]["param"], field, "{body} -> {v}");
        assert!(!v["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    let (code, v) = node.post_raw("/api/v1/personas", "application/json", "{not json").await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = node
        .post_raw("/api/v1/personas", "application/toml", "name = \"t\"\ncommand = \"x\"\nrestart = \"sometimes\"")
        .await;
    assert_eq!((code, v["error"]["param"].as_str()), (400, Some("restart")), "{v}");
    let (code, _) = node.post("/api/v1/personas/ok/dance", json!({})).await;
    assert_eq!(code, 404);
    let (code, _) = node.post("/api/v1/personas/nobody/restart", json!({})).await;
    assert_eq!(code, 404);
    let (code, v) = node.post("/api/v1/personas/ok/throttle", json!({"multiplier": 0})).await;
    assert_eq!((code, v["error"]["param"].as_str()), (400, Some("multiplier")), "{v}");
    let (code, v) = node.patch("/api/v1/personas/ok/budget", json!({"inference_queue_priority": 101})).await;
    assert_eq!((code, v["error"]["param"].as_str()), (400, Some("budget.inference_queue_priority")), "{v}");
    let (code, v) = node.patch("/api/v1/personas/ok/budget", json!({"priority": 5})).await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = node.post_raw("/api/v1/personas/ok/kill", "application/json", "{\"reason\": 5}").await;
    assert_eq!(code, 400);

    let after = node.get("/api/v1/personas").await.1;
    let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
        v.as_array().unwrap().iter().map(|p| (p["name"].clone(), p["pid"].clone(), p["budget"].clone())).collect()
    };
    assert_eq!(strip(&before), strip(&after), "nothing changed");
    assert_eq!(node.get("/api/v1/status").await.1["last_event_seq"], events_before, "no events from bad input");

    // the CLI reports the node's message and exits non-zero
    let bad = node.dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"z\"\ncommand = \"\"\n").unwrap();
    let out = node.cli(&["persona", "add", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("command"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_reads_take_json_and_actions_work() {
    let node = TestNode::start("");
    let spec = node.dir.path().join("p.toml");
    std::fs::write(&spec, format!("name = \"cli\"\ncommand = \"{DEMO}\"\nhealth_path = \"/health\"\n")).unwrap();
    let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    node.wait_persona("cli", T, |v| v["health"] == "healthy").await;
    let out = node.cli(&["persona", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &list[0];
    for field in ["name", "phase", "pid", "restarts", "rss_bytes", "cpu_percent"] {
        assert!(p.get(field).is_some(), "{field} in {p}");
    }
    let out = node.cli(&["persona", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME") && text.contains("cli"), "{text}");
    let out = node.cli(&["persona", "restart", "cli", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["phase"], "running", "{r}");
    let out = node.cli(&["persona", "kill", "cli", "--reason", "testing"]);
    assert!(out.status.success());
    let v = node.persona("cli").await;
    assert_eq!((phase(&v), v["reason"].as_str()), ("killed", Some("testing")));
    let out = node.cli(&["status", "--json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["phases"]["killed"], 1, "{s}");
    let out = node.cli(&["events", "--json", "--persona", "cli"]);
    let lines = String::from_utf8_lossy(&out.stdout);
    assert!(lines.lines().any(|l| l.contains("\"kill\"")), "{lines}");
    let out = node.cli(&["persona", "remove", "cli"]);
    assert!(out.status.success());
    let out = node.cli(&["persona", "show", "cli"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let client = reqwest::Client::new();
    let metrics =
        client.get(node.url("/metrics")).bearer_auth(node.token()).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("# TYPE mindmesh_host_cpu_ratio gauge"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_api_needs_a_token_and_then_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::MINDMESH)
        .args(["node", "start", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("MINDMESH_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{}", String::from_utf8_lossy(&out.stderr));

    let node = TestNode::start("");
    drop(node);
    let mut node = TestNode::start("");
    node.kill9();
    // same config with a token and a non-loopback bind
    let cfg = std::fs::read_to_string(&node.config)
        .unwrap()
        .replace("127.0.0.1:0", "0.0.0.0:0")
        .replace("[api]\n", "[api]\ntoken = \"0123456789abcdef0123\"\n");
    std::fs::write(&node.config, cfg).unwrap();
    node.spawn();
    let port = node.api.rsplit(':').next().unwrap().to_owned();
    node.api = format!("http://127.0.0.1:{port}");
    let (code, _) = common::http_raw("GET", &node.url("/api/v1/status"), &[], None).await;
    assert_eq!(code, 401);
    let client = reqwest::Client::new();
    let r = client.get(node.url("/api/v1/status")).bearer_auth("0123456789abcdef0123").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(node.url("/api/v1/status")).bearer_auth("wrong-token-wrong-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
}
