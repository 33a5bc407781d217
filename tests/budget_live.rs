//! Budget decisions on a live node (issue 15): a user-facing persona nobody asks gives its
//! priority back — a `budget` decision in `mindmesh decisions` (and `--json`) with its before
//! and after as fields of the record, carried out by the node (the gateway's budget in force changes) — and gets it back once it
//! is in use again, after the cause has been clear for the hysteresis cycles.
//!
//! Real binary, real demo persona processes. The brain's clock runs `SPEED` times faster, so
//! ten idle brain minutes pass in ten real seconds.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, demo_persona};
use serde_json::{Value, json};

const SPEED: f64 = 60.0;
const T: Duration = Duration::from_secs(120);

async fn decisions(node: &TestNode, persona: &str) -> Vec<Value> {
    let (code, page) = node.get(&format!("/api/v1/decisions?after=0&limit=1000&persona={persona}")).await;
    assert_eq!(code, 200, "{page}");
    page["decisions"].as_array().cloned().unwrap_or_default()
}

/// The first `budget` decision about `persona` whose reason contains `says`.
async fn wait_budget(node: &TestNode, persona: &str, says: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let all = decisions(node, persona).await;
        if let Some(d) =
            all.iter().find(|d| d["action"] == "budget" && d["reason"].as_str().is_some_and(|r| r.contains(says)))
        {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "no budget decision saying {says:?}: {all:#?}\nlog:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The row of decision `seq` in `mindmesh decisions --json` (one JSON object a line).
fn json_row(node: &TestNode, seq: u64) -> Value {
    let out = node.cli(&["decisions", "--persona", "desk", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["seq"].as_u64() == Some(seq))
        .unwrap_or_else(|| panic!("decision {seq} not in `decisions --json`: {text}"))
}

fn priority(v: &Value) -> Option<u64> {
    v["budget"]["inference_queue_priority"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_persona_gives_its_priority_back_and_gets_it_again_when_used() {
    let brain = format!("[brain]\ncycle_s = 1\ntime_speed = {SPEED}\nhistory_resolution_s = 60\n");
    let spec = "importance = \"user_facing\"\n[persona.budget]\ninference_queue_priority = 50\n";
    let node = TestNode::start(&(brain + &demo_persona("desk", &["--tokens", "4"], spec)));
    node.wait_persona("desk", T, |v| v["phase"] == "running").await;

    // nobody asks: after ten brain minutes it is idle and gives its priority back
    let down = wait_budget(&node, "desk", "priority 50->10").await;
    let reason = down["reason"].as_str().unwrap();
    assert!(reason.contains("idle"), "the fact that drove it: {reason}");
    node.wait_persona("desk", T, |v| priority(v) == Some(10)).await;
    let out = node.cli(&["decisions", "--persona", "desk"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("budget") && text.contains("50->10"), "`mindmesh decisions` shows it: {text}");
    assert_eq!(
        (down["budget_before"].clone(), down["budget_after"].clone()),
        (json!({"inference_queue_priority": 50}), json!({"inference_queue_priority": 10})),
        "before and after are fields of the record: {down:#}"
    );
    let row = json_row(&node, down["seq"].as_u64().unwrap());
    assert_eq!(row["budget_before"]["inference_queue_priority"], 50, "`decisions --json`: {row:#}");
    assert_eq!(row["budget_after"]["inference_queue_priority"], 10, "`decisions --json`: {row:#}");
    let out = node.cli(&["persona", "show", "desk"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inference_queue_priority by brain"), "`persona show` says who set it: {text}");

    // in use again: the cause has gone, and after the hysteresis cycles the priority returns
    let (url, token) = (node.url("/v1/chat/completions"), node.token());
    let traffic = tokio::spawn(async move {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        loop {
            let body = json!({"model": "desk", "messages": [{"role": "user", "content": "hi"}]});
            let _ = client.post(&url).bearer_auth(&token).json(&body).send().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let up = wait_budget(&node, "desk", "priority 10->50").await;
    traffic.abort();
    let reason = up["reason"].as_str().unwrap();
    assert!(reason.contains("cleared"), "reverted because its cause cleared: {reason}");
    assert!(up["seq"].as_u64() > down["seq"].as_u64(), "{up} after {down}");
    node.wait_persona("desk", T, |v| priority(v) == Some(50)).await;
    let out = node.cli(&["decisions", "--persona", "desk"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10->50"), "{text}");
    let row = json_row(&node, up["seq"].as_u64().unwrap());
    assert_eq!(
        (row["budget_before"].clone(), row["budget_after"].clone()),
        (json!({"inference_queue_priority": 10}), json!({"inference_queue_priority": 50})),
        "the revert's before and after: {row:#}"
    );
    let out = node.cli(&["persona", "show", "desk"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("all as the spec says"), "back to the spec: {text}");
}
