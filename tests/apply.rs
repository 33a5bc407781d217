//! `mindmesh persona apply` on a real node: the diff field by field, a no-op said so, a dry
//! run that changes nothing, a budget change on the running process (same pid) and a spec
//! change that needs a new process (a new pid).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{DEMO, TestNode};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A persona spec file (the format of `persona add`), with `extra` TOML lines.
fn spec(dir: &Path, extra: &str) -> String {
    let path = dir.join("chat.toml");
    std::fs::write(&path, format!("name = \"chat\"\ncommand = \"{DEMO}\"\nhealth_path = \"/health\"\n{extra}\n"))
        .unwrap();
    path.display().to_string()
}

/// `persona apply` with its output; fails the test on a non-zero exit.
fn apply(node: &TestNode, args: &[&str]) -> String {
    let mut all = vec!["persona", "apply"];
    all.extend_from_slice(args);
    let out = node.cli(&all);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all:?}: {stdout}{stderr}\nlog:\n{}", node.log());
    stdout
}

fn pid(v: &Value) -> u64 {
    v["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_shows_the_diff_and_restarts_only_when_the_change_needs_it() {
    let node = TestNode::start("");
    node.wait_status(T, "a leader", |s| common::mesh_leader(s).is_some()).await;
    let dir = tempfile::tempdir().unwrap();

    // a persona that does not exist: a dry run says it would be added, and adds nothing
    let file = spec(dir.path(), "");
    let out = apply(&node, &[&file, "--dry-run"]);
    assert!(out.contains("would be added") && out.contains("command"), "{out}");
    assert_eq!(node.get("/api/v1/personas/chat").await.0, 404, "a dry run added it");

    let out = apply(&node, &[&file]);
    assert!(out.contains("added chat"), "{out}");
    let v = node.wait_persona("chat", T, |v| v["phase"] == "running" && v["pid"].is_u64()).await;
    let first = pid(&v);

    // the same spec again: nothing to do, said so, exit 0
    let out = apply(&node, &[&file]);
    assert!(out.contains("chat: unchanged, nothing to do"), "{out}");

    // a budget change: the diff, old → new, in place; a dry run changes nothing
    let file = spec(dir.path(), "[budget]\ninference_queue_priority = 90\n");
    let out = apply(&node, &[&file, "--dry-run"]);
    assert!(out.contains("budget.inference_queue_priority") && out.contains("50 → 90"), "{out}");
    assert!(out.contains("in place") && out.contains("nothing changed"), "{out}");
    let v = node.persona("chat").await;
    assert_eq!(v["budget"]["inference_queue_priority"], 50, "a dry run changed the budget: {v}");

    let out = apply(&node, &[&file]);
    assert!(out.contains("changed in place") && out.contains("no restart"), "{out}");
    let v = node.wait_persona("chat", T, |v| v["budget"]["inference_queue_priority"] == 90).await;
    assert_eq!(pid(&v), first, "a budget change restarted the process: {v}");

    // an env change needs a new process: the diff names the key, never the value
    let file = spec(dir.path(), "env = { GREETING = \"sekrit-hello\" }\n[budget]\ninference_queue_priority = 90\n");
    let out = node.cli(&["persona", "apply", &file, "--json"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["changed"].as_bool(), r["restart"].as_bool()), (Some(true), Some(true)), "{r}");
    assert_eq!(r["changes"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["changes"][0]["field"], "env.GREETING", "{r}");
    assert!(!r.to_string().contains("sekrit"), "the diff shows an env value: {r}");
    let v = node
        .wait_persona("chat", T, |v| v["phase"] == "running" && v["pid"].as_u64().is_some_and(|p| p != first))
        .await;
    assert_eq!(r["pid"].as_u64(), Some(pid(&v)), "the answer names the new process: {r} {v}");
    assert!(!common::pid_alive(first as u32), "the old process {first} still runs");

    // and that is now the spec: applying it again is a no-op
    let out = apply(&node, &[&file]);
    assert!(out.contains("unchanged"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_refuses_a_bad_spec_and_changes_nothing() {
    let node = TestNode::start(&common::demo_persona("chat", &[], ""));
    let v = node.wait_persona("chat", T, |v| v["phase"] == "running" && v["pid"].is_u64()).await;
    let dir = tempfile::tempdir().unwrap();
    // a command that does not resolve on the node: refused there, with the reason
    let path = dir.path().join("chat.toml");
    std::fs::write(&path, "name = \"chat\"\ncommand = \"/no/such/binary\"\n").unwrap();
    let out = node.cli(&["persona", "apply", &path.display().to_string()]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("not changed"), "{}", text(&out.stderr));
    // a spec that does not parse: refused before anything is sent, every problem listed
    std::fs::write(&path, "name = \"chat\"\ncommand = \"x\"\n[budget]\ninference_queue_priority = 900\n").unwrap();
    let out = node.cli(&["persona", "apply", &path.display().to_string()]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let after = node.persona("chat").await;
    assert_eq!((after["pid"].clone(), after["phase"].clone()), (v["pid"].clone(), v["phase"].clone()), "{after}");
}
