//! Persona-reported metrics with real processes: a demo persona's `GET /mindmesh/metrics` is
//! read with the supervisor's tick and reaches `persona show` (text and JSON) and the series
//! API; answers that are garbage, oversized or out of range are refused and counted, and the
//! persona that gave them goes on serving, untouched.

mod common;

use std::time::Duration;

use common::{TestNode, demo_persona};
use serde_json::Value;

const T: Duration = Duration::from_secs(40);
const METRICS: &str = "metrics_path = \"/mindmesh/metrics\"";

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn reported_metrics_reach_show_and_the_series_and_bad_answers_are_refused() {
    let personas = [
        demo_persona("good", &[], METRICS),
        demo_persona("garbage", &["--metrics", "garbage"], METRICS),
        demo_persona("huge", &["--metrics", "oversize"], METRICS),
        demo_persona("wild", &["--metrics", "out-of-range"], METRICS),
        // no metrics path: never asked
        demo_persona("quiet", &[], ""),
    ];
    let node = TestNode::start(&format!(
        "[supervisor]\nmetrics_interval_ms = 200\nreported_metrics_every_ticks = 2\n{}",
        personas.concat()
    ));
    for name in ["good", "garbage", "huge", "wild", "quiet"] {
        node.wait_persona(name, T, |v| v["phase"] == "running" && v["health"] == "healthy").await;
    }
    // the same message twice: the second is a prompt-cache hit
    for _ in 0..2 {
        let (code, body) = node.chat("good").await;
        assert_eq!(code, 200, "{body}");
    }
    let v = node
        .wait_persona("good", T, |v| v["reported"]["counters"]["requests_served"].as_u64().is_some_and(|n| n >= 2))
        .await;
    let r = &v["reported"];
    assert_eq!(r["cache_hit_rate"].as_f64(), Some(0.5), "{v}");
    assert!(r["kv_cache_usage"].as_f64().is_some_and(|k| (0.0..=1.0).contains(&k)), "{v}");
    assert_eq!(r["counters"]["prompt_cache_hits"].as_u64(), Some(1), "{v}");
    assert_eq!(v["metrics_refused"].as_u64(), Some(0), "{v}");
    let show = node.cli(&["persona", "show", "good"]);
    assert!(text(&show).contains("reported:    cache hit 50 %"), "{}", text(&show));
    let show = node.cli(&["persona", "show", "good", "--json"]);
    let j: Value = serde_json::from_slice(&show.stdout).unwrap_or_else(|_| panic!("{}", text(&show)));
    let shown = j.get("persona").unwrap_or(&j);
    assert_eq!(shown["reported"]["cache_hit_rate"].as_f64(), Some(0.5), "{j}");

    // stored with the series
    let stored = common::wait_for_async(T, || async {
        let (_, page) = node.get("/api/v1/personas/good/series?max_points=100000").await;
        page["samples"]
            .as_array()?
            .iter()
            .rev()
            .find(|s| s["reported"]["cache_hit_rate"].as_f64() == Some(0.5))
            .cloned()
    })
    .await
    .expect("a stored sample carries the report");
    assert_eq!(stored["reported"]["counters"]["prompt_cache_hits"].as_u64(), Some(1), "{stored}");

    // garbage, 1 MiB and a rate of 7.5: each refused, counted, never shown; the persona serves on
    for name in ["garbage", "huge", "wild"] {
        let v = node.wait_persona(name, T, |v| v["metrics_refused"].as_u64().is_some_and(|n| n >= 2)).await;
        assert!(v["reported"].is_null(), "{name}: {v}");
        assert_eq!(
            (v["phase"].as_str(), v["health"].as_str(), v["restarts"].as_u64()),
            (Some("running"), Some("healthy"), Some(0)),
            "{name}: {v}"
        );
        let (code, body) = node.chat(name).await;
        assert_eq!(code, 200, "{name}: {body}");
        let show = node.cli(&["persona", "show", name]);
        assert!(text(&show).contains("refused:"), "{}", text(&show));
    }
    let v = node.persona("quiet").await;
    assert_eq!((v["reported"].is_null(), v["metrics_refused"].as_u64()), (true, Some(0)), "{v}");
}
