//! Issue 10, finding 5: validated values that overflowed. Every number a client, an operator
//! or a config file gives the node has an upper bound checked at validation; paging
//! parameters saturate; files the CLI reads are size-limited. Each case runs against the real
//! binary.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEMO, MINDMESH, TestNode, demo_persona};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn names(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn overflowing_spec_and_budget_numbers_get_400_naming_the_field_and_change_nothing() {
    let node = TestNode::start(&demo_persona("steady", &[], ""));
    node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    let (_, before) = node.get("/api/v1/personas").await;
    let spec = |extra: Value| {
        let mut s = json!({"name": "big", "command": DEMO});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    for (extra, param) in [
        // 2^44 MB wrapped to a 0-byte memory limit
        (json!({"limits": {"memory_max_mb": 1u64 << 44}}), "limits.memory_max_mb"),
        // wrapped to 384 ms of idleness
        (json!({"hibernate_after_idle_s": 18_446_744_073_709_552u64}), "hibernate_after_idle_s"),
        // was placed on a 24 GB node
        (json!({"requests": {"memory_mb": u64::MAX}}), "requests.memory_mb"),
        (json!({"limits": {"cpu_max_percent": 1e300}}), "limits.cpu_max_percent"),
        (json!({"budget": {"max_response_time_ms": u64::MAX}}), "budget.max_response_time_ms"),
        (json!({"budget": {"max_concurrent_inferences": u32::MAX}}), "budget.max_concurrent_inferences"),
    ] {
        let (code, v) = node.post("/api/v1/personas", spec(extra.clone())).await;
        assert_eq!(code, 400, "{extra} was accepted: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    // a run-time budget change past a bound: refused before it reaches the registry (a
    // deadline of u64::MAX ms would overflow the gateway's clock at the next request)
    for (patch, param) in [
        (json!({"max_response_time_ms": u64::MAX}), "budget.max_response_time_ms"),
        (json!({"max_memory_mb": u64::MAX}), "budget.max_memory_mb"),
        (json!({"tokens_per_response": u32::MAX}), "budget.tokens_per_response"),
    ] {
        let (code, v) = node.patch("/api/v1/personas/steady/budget", patch.clone()).await;
        assert_eq!(code, 400, "{patch} was accepted: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (_, after) = node.get("/api/v1/personas").await;
    assert_eq!(names(&before), names(&after), "a refused spec added nothing");
    let v = node.persona("steady").await;
    assert_eq!(v["budget"]["max_response_time_ms"], 30_000, "{v}");
    // the node still serves: a chat through the gateway within the unchanged budget
    let (code, v) = common::http(
        "POST",
        &node.url("/v1/chat/completions"),
        Some((
            "application/json",
            json!({"model": "steady", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )),
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_past_the_end_of_a_log_is_empty_not_the_whole_log() {
    let node = TestNode::start(&demo_persona("steady", &[], ""));
    node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    // an operator's restart is a decision of the log
    let (code, v) = node.post("/api/v1/personas/steady/restart", json!({"reason": "bounds test"})).await;
    assert_eq!(code, 200, "{v}");
    let (code, page) = node.get("/api/v1/decisions?after=0&limit=1000").await;
    assert_eq!(code, 200);
    assert!(!page["decisions"].as_array().unwrap().is_empty(), "{page}");
    let max = u64::MAX;
    for path in [
        format!("/api/v1/decisions?after={max}"),
        format!("/api/v1/decisions?after={max}&limit={max}"),
        format!("/api/v1/events?after={max}"),
        format!("/api/v1/events?after={max}&limit={max}"),
    ] {
        let (code, page) = node.get(&path).await;
        assert_eq!(code, 200, "{path}: {page}");
        let items = page.get("decisions").or_else(|| page.get("events")).and_then(Value::as_array).unwrap();
        assert!(items.is_empty(), "{path} returned {} items: {page}", items.len());
        assert_eq!(page["last_seq"], max, "{path}: {page}");
    }
    // a limit past its bound is taken as the bound (1000), not as a request for everything
    let (code, page) = node.get(&format!("/api/v1/events?after=0&limit={max}")).await;
    assert_eq!(code, 200, "{page}");
    assert!(page["events"].as_array().unwrap().len() <= 1000);
}

/// Run the CLI, killing it if it has not finished within `deadline` (a read without end).
fn run_within(mut cmd: Command, deadline: Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run mindmesh");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {deadline:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reads_bounded_files_and_reports_overflowing_specs() {
    let node = TestNode::start("");
    let mut cmd = Command::new(MINDMESH);
    cmd.args(["--api", &node.api, "persona", "add", "/dev/zero"]);
    let out = run_within(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/dev/zero") && stderr.contains("larger than"), "{stderr}");

    let spec = node.dir.path().join("big.toml");
    std::fs::write(&spec, format!("name = \"big\"\ncommand = \"{DEMO}\"\n[limits]\nmemory_max_mb = 17592186044416\n"))
        .unwrap();
    let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an overflowing spec was added");
    assert!(stderr.contains("limits.memory_max_mb") && stderr.contains("at most"), "{stderr}");
    let (_, list) = node.get("/api/v1/personas").await;
    assert!(names(&list).is_empty(), "{list}");
}

#[test]
fn node_configs_with_overflowing_numbers_exit_1_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (section, key, value) in [
        // multiplied inside validation (`heartbeat_ms * 2`): a panic, exit 101, before
        ("mesh", "heartbeat_ms", "18446744073709551615"),
        ("mesh", "lease_renew_ms", "18446744073709551615"),
        // sized the supervisor's queues (`max_personas * 4 + 64`)
        ("supervisor", "max_personas", "4611686018427387904"),
        ("supervisor", "crash_loop_window_s", "18446744073709551615"),
        ("brain", "history_window_s", "18446744073709551615"),
    ] {
        let config = dir.path().join(format!("{key}.toml"));
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[{section}]\n{key} = {value}\n",
                dir.path().join(key).display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(MINDMESH);
        cmd.args(["node", "start", "--config"]).arg(&config);
        let out = run_within(cmd, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{section}.{key}: {stderr}");
        assert!(stderr.contains(&format!("{section}.{key}")), "{section}.{key}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // a config file that never ends
    let mut cmd = Command::new(MINDMESH);
    cmd.args(["node", "start", "--config", "/dev/zero"]);
    let out = run_within(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("larger than"), "{stderr}");
}
