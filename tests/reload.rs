//! SIGHUP on a real node process: the config's `[[persona]]` list is read again and applied
//! (a new persona added, a budget change in place, an env change by a new process); a config
//! with problems is refused whole with its problems logged; a persona dropped from the file,
//! or added through the API, is kept.

mod common;

use std::time::Duration;

use common::{TestNode, demo_persona, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn hup(node: &TestNode) {
    let pid = node.child.as_ref().expect("running").id();
    kill(Pid::from_raw(pid as i32), Signal::SIGHUP).expect("SIGHUP");
}

/// Replace `from` by `to` in the node's config file.
fn edit(node: &TestNode, from: &str, to: &str) {
    let text = std::fs::read_to_string(&node.config).unwrap();
    assert!(text.contains(from), "{from:?} not in the config:\n{text}");
    std::fs::write(&node.config, text.replace(from, to)).unwrap();
}

/// Wait until the node's log holds `needle` `n` times.
fn wait_log(node: &TestNode, needle: &str, n: usize) -> String {
    wait_for(T, || {
        let log = node.log();
        (log.matches(needle).count() >= n).then_some(log)
    })
    .unwrap_or_else(|| panic!("{needle:?} ({n}x) not in the log:\n{}", node.log()))
}

fn pid(v: &Value) -> u64 {
    v["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_the_config_personas_and_refuses_a_bad_config() {
    let chat = demo_persona("chat", &[], "");
    let node = TestNode::start(&chat);
    let first = pid(&node.wait_persona("chat", T, |v| v["phase"] == "running" && v["pid"].is_u64()).await);
    // one added through the API: no reload touches it
    let dir = tempfile::tempdir().unwrap();
    let api_spec = dir.path().join("byapi.toml");
    std::fs::write(&api_spec, format!("name = \"byapi\"\ncommand = \"{}\"\n", common::DEMO)).unwrap();
    let out = node.cli(&["persona", "add", &api_spec.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // a second persona, and a budget change for the first: both applied, chat keeps its pid
    let chat_budget = demo_persona("chat", &[], "[persona.budget]\ninference_queue_priority = 90\n");
    edit(&node, &chat, &format!("{chat_budget}{}", demo_persona("second", &[], "")));
    hup(&node);
    node.wait_persona("second", T, |v| v["phase"] == "running").await;
    let v = node.wait_persona("chat", T, |v| v["budget"]["inference_queue_priority"] == 90).await;
    assert_eq!(pid(&v), first, "a budget change restarted chat: {v}");
    let log = wait_log(&node, "config reload: persona changed", 1);
    assert!(log.contains("config reload: persona added"), "{log}");
    assert!(log.contains("budget.inference_queue_priority: 50 -> 90"), "{log}");

    // a config with a problem: refused whole, the problem logged, nothing changed
    let broken = demo_persona("chat", &[], "[persona.budget]\ninference_queue_priority = 900\n");
    edit(&node, &chat_budget, &broken);
    hup(&node);
    let log = wait_log(&node, "config reload refused: nothing changed", 1);
    assert!(log.contains("inference_queue_priority"), "the problem's field is not logged:\n{log}");
    let v = node.persona("chat").await;
    assert_eq!((v["budget"]["inference_queue_priority"].as_u64(), pid(&v)), (Some(90), first), "{v}");

    // second dropped from the file, chat's env changed: chat restarts, second is kept
    let chat_env =
        demo_persona("chat", &[], "env = { GREETING = \"hello\" }\n[persona.budget]\ninference_queue_priority = 90\n");
    let text = std::fs::read_to_string(&node.config).unwrap();
    let text = text.replace(&broken, &chat_env).replace(&demo_persona("second", &[], ""), "");
    std::fs::write(&node.config, text).unwrap();
    hup(&node);
    let v = node
        .wait_persona("chat", T, |v| v["phase"] == "running" && v["pid"].as_u64().is_some_and(|p| p != first))
        .await;
    assert!(pid(&v) != first);
    let log = wait_log(&node, "no longer in the config, kept", 1);
    assert!(log.contains("restart=true"), "{log}");
    for name in ["second", "byapi"] {
        let (code, v) = node.get(&format!("/api/v1/personas/{name}")).await;
        assert_eq!(code, 200, "{name} was removed by a reload: {v}");
    }
    // the node still runs and answers after all of it
    assert!(node.child.as_ref().is_some_and(|c| common::pid_alive(c.id())));
}
