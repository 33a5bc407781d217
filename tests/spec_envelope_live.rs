//! The spec's budget envelope and scheduled maintenance through the real binary: a persona
//! added with `[budget.max]` and `[maintenance]` is stored with them (registry wire version 5)
//! and `persona show` tells them, as JSON and as text; a bound on the wrong side of the budget
//! is refused, naming its field, and nothing is committed.

mod common;

use std::time::Duration;

use common::{DEMO, TestNode};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_envelope_and_maintenance_go_through_persona_add_and_show() {
    let node = TestNode::start("");
    node.wait_status(T, "a leader", |s| common::mesh_leader(s).is_some()).await;
    let spec = node.dir.path().join("chat.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"chat\"\ncommand = \"{DEMO}\"\nhealth_path = \"/health\"\nimportance = \"user_facing\"\n\
             [budget]\ninference_queue_priority = 60\n[budget.max]\ninference_queue_priority = 90\n\
             [budget.min]\nthrottle_multiplier = 0.5\n[maintenance]\nrestart_after_inferences = 10000\n"
        ),
    )
    .unwrap();
    let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let out = node.cli(&["persona", "show", "chat", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let spec_json = &v["persona"]["spec"];
    assert_eq!(spec_json["budget"]["inference_queue_priority"], 60, "{spec_json}");
    assert_eq!(spec_json["budget"]["max"]["inference_queue_priority"], 90, "{spec_json}");
    assert_eq!(spec_json["budget"]["min"]["throttle_multiplier"], 0.5, "{spec_json}");
    assert_eq!(spec_json["maintenance"]["restart_after_inferences"], 10000, "{spec_json}");
    // the budget in force is the spec's: the envelope only bounds what the brain may set
    assert_eq!(v["persona"]["budget"]["inference_queue_priority"], 60, "{v}");

    let out = node.cli(&["persona", "show", "chat"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("max inference_queue_priority 90"), "{said}");
    assert!(said.contains("min throttle_multiplier 0.50x"), "{said}");
    assert!(said.contains("restart after 10000 inferences"), "{said}");

    // a ceiling below the budget is refused where it is read, naming the field
    let bad = node.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("name = \"bad\"\ncommand = \"{DEMO}\"\n[budget.max]\ninference_queue_priority = 40\n"),
    )
    .unwrap();
    let out = node.cli(&["persona", "add", bad.to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("budget.max.inference_queue_priority"), "{said}");
    assert_eq!(node.get("/api/v1/personas/bad").await.0, 404);
}
