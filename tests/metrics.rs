//! `/metrics` as Prometheus sees it: a real node's scrape passes `promtool check metrics`, the
//! shipped rules pass `promtool check rules` and their unit tests (`promtool test rules`), and
//! requests of the official `openai` Python SDK land in the gateway's histograms.
//!
//! promtool comes from Debian's `prometheus` package, the SDK from pip; `.ci/run` installs
//! both. Under CI a missing tool fails these tests; elsewhere they say so and skip.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestNode, demo_persona, missing};

const T: Duration = Duration::from_secs(30);
/// A read-scoped token: what a Prometheus server holds.
const SCRAPER: &str = "prometheus-read-token-0123456789";
const APP: &str = "app-inference-token-0123456789ab";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn have_promtool() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        missing("promtool is not installed (Debian: apt-get install prometheus)");
    }
    ok
}

fn node_with_chat() -> TestNode {
    TestNode::start(&format!(
        "token = \"admin-token-0123456789abcdefgh\"\n\
         [[api.tokens]]\nname = \"prometheus\"\nscope = \"read\"\ntoken = \"{SCRAPER}\"\n\
         [[api.tokens]]\nname = \"app\"\nscope = \"inference\"\ntoken = \"{APP}\"\n{}",
        demo_persona("chat", &["--tokens", "4", "--token-delay-ms", "20"], "")
    ))
}

async fn wait_running(node: &TestNode) {
    let deadline = Instant::now() + T;
    loop {
        let r = reqwest::Client::new().get(node.url("/api/v1/personas/chat")).bearer_auth(SCRAPER).send().await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["phase"] == "running"
        {
            return;
        }
        assert!(Instant::now() < deadline, "chat never ran\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(node: &TestNode) -> String {
    let r = reqwest::Client::new().get(node.url("/metrics")).bearer_auth(SCRAPER).send().await.unwrap();
    assert_eq!(r.status(), 200, "a read token scrapes");
    r.text().await.unwrap()
}

/// The value of the one sample whose line starts with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

async fn chat(node: &TestNode, stream: bool) {
    let body = serde_json::json!({
        "model": "chat", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let r = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(APP)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_passes_promtool_with_counters_histograms_and_the_mesh() {
    if !have_promtool() {
        return;
    }
    let node = node_with_chat();
    wait_running(&node).await;
    chat(&node, false).await;
    chat(&node, true).await;
    let text = scrape(&node).await;

    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    // promtool prints lint problems and exits non-zero on them: none is allowed
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}\n--- scrape:\n{text}");

    for (name, kind) in [
        ("mindmesh_build_info", "gauge"),
        ("mindmesh_gateway_requests_total", "counter"),
        ("mindmesh_gateway_errors_total", "counter"),
        ("mindmesh_persona_restarts_total", "counter"),
        ("mindmesh_gateway_request_duration_seconds", "histogram"),
        ("mindmesh_gateway_time_to_first_token_seconds", "histogram"),
        ("mindmesh_gateway_queue_wait_seconds", "histogram"),
        ("mindmesh_persona_spawn_ready_seconds", "histogram"),
        ("mindmesh_mesh_term", "gauge"),
        ("mindmesh_mesh_lease_held", "gauge"),
        ("mindmesh_mesh_members_healthy", "gauge"),
        ("mindmesh_mesh_commit_duration_seconds", "histogram"),
        ("mindmesh_brain_decisions_total", "counter"),
        ("mindmesh_brain_llm_fallbacks_total", "counter"),
        ("mindmesh_host_cpu_ratio", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} as a {kind}:\n{text}");
    }
    let label = "node=\"test\",persona=\"chat\"";
    assert_eq!(value(&text, &format!("mindmesh_gateway_requests_total{{{label}}}")), Some(2.0), "{text}");
    for stream in ["false", "true"] {
        let count = format!("mindmesh_gateway_request_duration_seconds_count{{{label},stream=\"{stream}\"}}");
        assert_eq!(value(&text, &count), Some(1.0), "{count}\n{text}");
    }
    assert!(value(&text, "mindmesh_persona_spawn_ready_seconds_count{node=\"test\"}").is_some_and(|n| n >= 1.0));
    assert!(
        value(&text, "mindmesh_mesh_commit_duration_seconds_count{node=\"test\"}").is_some_and(|n| n >= 1.0),
        "registering the persona committed: {text}"
    );
    assert_eq!(value(&text, "mindmesh_mesh_has_leader{node=\"test\"}"), Some(1.0));
    assert_eq!(value(&text, "mindmesh_mesh_role{node=\"test\",role=\"leader\"}"), Some(1.0));
    // every family is documented
    let docs = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(docs.contains(&format!("`{name}`")), "{name} is not in docs/metrics.md");
    }
    // no label holds anything unbounded: every persona label is a persona of the node
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(i) = line.find("persona=\"") {
            assert!(line[i..].starts_with("persona=\"chat\""), "{line}");
        }
    }
}

#[test]
fn the_shipped_rules_pass_promtool_and_their_unit_tests() {
    if !have_promtool() {
        return;
    }
    let (ok, out) = promtool(&["check", "rules", "deploy/prometheus/rules.yml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "deploy/prometheus/rules.test.yml"], None);
    assert!(ok, "promtool test rules:\n{out}");
    // the token file is the deployment's: only the syntax is checked here
    let (ok, out) = promtool(&["check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml"], None);
    assert!(ok, "promtool check config:\n{out}");
    // the dashboard is JSON, and every series it or a rule reads is documented (so a renamed
    // metric cannot leave a panel or an alert silently empty)
    let dash = std::fs::read_to_string(repo().join("deploy/grafana/mindmesh.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    assert!(v["panels"].as_array().is_some_and(|p| p.len() >= 8), "panels");
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/rules.yml")).unwrap();
    let docs = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let mut names = metric_names(&dash);
    names.extend(metric_names(&rules));
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        assert!(
            docs.contains(&format!("`{family}`")),
            "{name} is read by a rule or the dashboard but not in docs/metrics.md"
        );
    }
}

/// Every `mindmesh_…` or `mindmesh_…:…` name in a text.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("mindmesh_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        out.insert(tail[..end].trim_end_matches(':').to_owned());
        rest = &tail[end..];
    }
    out
}

/// The SDK's own requests, plain and streamed, each in the latency and TTFT histograms.
const PY_CLIENT: &str = r#"
import os, sys
import openai
client = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0)
r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
assert r.choices[0].message.content, r
text = ""
for chunk in client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
assert text, "the stream carried no text"
print("openai", openai.__version__, "ok")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_python_sdk_s_requests_land_in_the_latency_and_ttft_histograms() {
    let has_sdk = Command::new("python3").args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !has_sdk {
        missing("the openai Python SDK is not installed (pip install openai)");
        return;
    }
    let node = node_with_chat();
    wait_running(&node).await;
    let out = Command::new("python3")
        .args(["-c", PY_CLIENT])
        .env("BASE_URL", node.url("/v1"))
        .env("API_KEY", APP)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the SDK failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = scrape(&node).await;
    let label = "node=\"test\",persona=\"chat\"";
    for hist in ["mindmesh_gateway_request_duration_seconds", "mindmesh_gateway_time_to_first_token_seconds"] {
        for stream in ["false", "true"] {
            let count = format!("{hist}_count{{{label},stream=\"{stream}\"}}");
            assert_eq!(value(&text, &count), Some(1.0), "{count}\n{text}");
            let inf = format!("{hist}_bucket{{{label},stream=\"{stream}\",le=\"+Inf\"}}");
            assert_eq!(value(&text, &inf), Some(1.0), "{inf}");
        }
    }
    // a stream's first token comes before its last
    let sum = |h: &str| value(&text, &format!("{h}_sum{{{label},stream=\"true\"}}")).unwrap();
    assert!(
        sum("mindmesh_gateway_time_to_first_token_seconds") < sum("mindmesh_gateway_request_duration_seconds"),
        "{text}"
    );
    assert_eq!(value(&text, &format!("mindmesh_gateway_queue_wait_seconds_count{{{label}}}")), Some(2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_errors_and_brain_cycles_move_their_counters() {
    let node = TestNode::start(&format!(
        "token = \"admin-token-0123456789abcdefgh\"\n\
         [[api.tokens]]\nname = \"prometheus\"\nscope = \"read\"\ntoken = \"{SCRAPER}\"\n\
         [[api.tokens]]\nname = \"app\"\nscope = \"inference\"\ntoken = \"{APP}\"\n\
         [brain]\ncycle_s = 1\n{}{}{}",
        demo_persona("chat", &["--tokens", "2"], ""),
        demo_persona("crashy", &["--crash-after-s", "0.5", "--crash-abort"], ""),
        demo_persona("flaky", &["--error-rate", "1", "--error-kinds", "5xx"], ""),
    ));
    wait_running(&node).await;
    let deadline = Instant::now() + T;
    let mut sent = false;
    loop {
        if !sent {
            let body = serde_json::json!({"model": "flaky", "messages": [{"role": "user", "content": "hi"}]});
            let r = reqwest::Client::new().post(node.url("/v1/chat/completions")).bearer_auth(APP).json(&body).send();
            sent = r.await.is_ok_and(|r| r.status().is_server_error());
        }
        let text = scrape(&node).await;
        let get = |series: &str| value(&text, series).unwrap_or(0.0);
        let restarts = get("mindmesh_persona_restarts_total{node=\"test\",persona=\"crashy\",reason=\"signal\"}");
        let errors = get("mindmesh_gateway_errors_total{node=\"test\",persona=\"flaky\",kind=\"upstream_5xx\"}");
        let cycles = get("mindmesh_brain_cycles_total{node=\"test\"}");
        let decided: f64 = text
            .lines()
            .filter(|l| l.starts_with("mindmesh_brain_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if restarts >= 1.0 && errors == 1.0 && cycles >= 1.0 && decided >= 1.0 {
            let chat_restarts: f64 = text
                .lines()
                .filter(|l| l.starts_with("mindmesh_persona_restarts_total{node=\"test\",persona=\"chat\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            assert_eq!(chat_restarts, 0.0, "only crashy restarts");
            assert!(get("mindmesh_events_total{node=\"test\",kind=\"restart\"}") >= 1.0);
            assert!(get("mindmesh_brain_cycle_duration_seconds_count{node=\"test\"}") >= 1.0);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "restarts {restarts}, errors {errors}, cycles {cycles}, decisions {decided}\n{text}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
