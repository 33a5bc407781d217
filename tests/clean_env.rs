//! Issue 10, finding 4: personas inherited the node's whole environment, so its API token
//! (mesh-wide admin) and its LLM key were readable in every persona's `/proc/<pid>/environ`.
//! The real binary starts here with such secrets in its environment; every persona and the
//! fence guard are then read from `/proc`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{DEMO, MINDMESH, TestNode, wait_for, wait_for_async};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "node-admin-token-0123456789abcdef";
const LLM_KEY: &str = "sk-llm-key-that-must-stay-in-the-node";
const OTHER_SECRET: &str = "aws-secret-the-operator-never-listed";

/// The environment of a process, from `/proc`.
fn environ(pid: u32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn assert_no_secret(what: &str, env: &BTreeMap<String, String>) {
    for (k, v) in env {
        for secret in [TOKEN, LLM_KEY, OTHER_SECRET] {
            assert!(!v.contains(secret), "{what}: {k} holds a secret of the node: {env:?}");
        }
    }
    for k in ["MINDMESH_API_TOKEN", "MINDMESH_LLM_API_KEY", "AWS_SECRET_ACCESS_KEY", "MINDMESH_API"] {
        assert!(!env.contains_key(k), "{what}: {k} reached it: {env:?}");
    }
}

async fn persona(node: &TestNode, name: &str) -> Value {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let resp = client.get(node.url(&format!("/api/v1/personas/{name}"))).bearer_auth(TOKEN).send().await.unwrap();
    // 404 until the node has registered the personas of its config
    if resp.status() != 200 {
        return Value::Null;
    }
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn personas_and_the_fence_guard_never_see_the_nodes_secrets() {
    let spec = format!(
        "[[persona]]\nname = \"env-a\"\ncommand = \"{DEMO}\"\nhealth_path = \"/health\"\nenv = {{ MODEL_DIR = \"/models\", TZ = \"Europe/Paris\" }}\n\
         [[persona]]\nname = \"env-b\"\ncommand = \"{DEMO}\"\nargs = [\"--spawn-child\"]\nhealth_path = \"/health\"\n"
    );
    let extra = format!("[supervisor]\nenv_passthrough = [\"PATH\", \"HOME\", \"TZ\", \"HF_*\"]\n{spec}");
    let node = TestNode::start_with_env(
        &extra,
        &[
            ("MINDMESH_API_TOKEN", TOKEN),
            ("MINDMESH_LLM_API_KEY", LLM_KEY),
            ("AWS_SECRET_ACCESS_KEY", OTHER_SECRET),
            ("MINDMESH_API", "http://127.0.0.1:1"),
            ("TZ", "UTC"),
            ("HF_HOME", "/var/cache/hf"),
            ("LANG", "C.UTF-8"),
        ],
    );
    let mut seen = 0;
    for name in ["env-a", "env-b"] {
        let pid = wait_for_async(T, || async {
            let v = persona(&node, name).await;
            (v["phase"] == "running" && v["health"] == "healthy").then(|| v["pid"].as_u64()).flatten()
        })
        .await
        .unwrap_or_else(|| panic!("{name} never ran; log:\n{}", node.log())) as u32;
        let env = environ(pid);
        assert_no_secret(name, &env);
        // the contract
        assert_eq!(env.get("MINDMESH_PERSONA_ID").map(String::as_str), Some(name), "{env:?}");
        assert!(env.get("MINDMESH_PORT").is_some_and(|p| p.parse::<u16>().is_ok()), "{env:?}");
        assert_eq!(env.get("MINDMESH_EXE").map(String::as_str), Some(MINDMESH), "{env:?}");
        assert!(env.contains_key("MINDMESH_NODE_INSTANCE"), "{env:?}");
        // the configured allowlist, and nothing outside it
        assert!(env.contains_key("PATH"), "{env:?}");
        assert_eq!(env.get("HF_HOME").map(String::as_str), Some("/var/cache/hf"), "{env:?}");
        assert!(!env.contains_key("LANG"), "LANG is not in this node's passthrough list: {env:?}");
        assert!(!env.contains_key("RUST_LOG"), "{env:?}");
        let allowed = ["PATH", "HOME", "TZ", "HF_HOME", "MODEL_DIR"];
        for k in env.keys() {
            assert!(k.starts_with("MINDMESH_") || allowed.contains(&k.as_str()), "{name}: unexpected {k}: {env:?}");
        }
        if name == "env-a" {
            // the spec's env wins over the node's
            assert_eq!(env.get("TZ").map(String::as_str), Some("Europe/Paris"), "{env:?}");
            assert_eq!(env.get("MODEL_DIR").map(String::as_str), Some("/models"), "{env:?}");
        } else {
            assert_eq!(env.get("TZ").map(String::as_str), Some("UTC"), "{env:?}");
        }
        // and whatever the persona starts (a child in its group) has no more than it
        for child in children_of(pid) {
            assert_no_secret(&format!("{name}'s child {child}"), &environ(child));
            seen += 1;
        }
    }
    assert!(seen >= 1, "env-b's child process was not found");

    let guard_pid = wait_for(T, || {
        std::fs::read_to_string(node.data_dir().join("fence-guard.pid")).ok()?.trim().parse::<u32>().ok()
    })
    .expect("the fence guard runs beside the node");
    let env = environ(guard_pid);
    assert_no_secret("fence guard", &env);
    assert!(env.keys().all(|k| k == "RUST_LOG"), "the guard needs nothing but its log filter: {env:?}");
}

#[test]
fn a_passthrough_list_that_reaches_the_nodes_namespace_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[supervisor]\nenv_passthrough = [\"PATH\", \"MINDMESH_*\"]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(MINDMESH)
        .args(["node", "start", "--config"])
        .arg(&config)
        .env("MINDMESH_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("supervisor.env_passthrough[1]"), "{stderr}");
    assert!(!dir.path().join("data").join("api.addr").exists(), "the node must not have started");
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let want = pid.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 2..].split_whitespace().nth(1).map(str::to_owned)))
                .flatten()
                .is_some_and(|ppid| ppid == want)
        })
        .collect()
}
