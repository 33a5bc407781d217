//! Three real node processes on loopback, joined into one mesh over libp2p: one leader, one
//! registry everywhere, writes from any node, a leader killed and replaced without losing a
//! committed decision, a node that catches up after a restart, a node with the wrong key kept
//! out, and a leaking persona restarted by a decision the leader committed.

mod common;

use std::time::Duration;

use common::TestNode;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);

/// One mesh at a time: nine nodes (with leases, gossip and personas) on two cores starve each
/// other's 100 ms Raft heartbeats into election storms, which is not what these tests test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

use common::{mesh_leader as leader, mesh_members as members, mesh_persona as persona, three_nodes as three};

#[tokio::test(flavor = "multi_thread")]
async fn join_replicate_survive_the_leader_and_catch_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut nodes = three("", "").await;
    // one leader, the same one seen by all
    let mut leaders = Vec::new();
    for n in &nodes {
        leaders.push(leader(&n.get("/api/v1/status").await.1).unwrap());
    }
    leaders.dedup();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    let first_leader = leaders[0].clone();

    // a write sent to a follower is forwarded to the leader; the persona runs where it is placed
    let follower = (0..3).find(|&i| ["a", "b", "c"][i] != first_leader).unwrap();
    let spec = json!({"name": "chat", "command": common::DEMO, "args": ["--idle"], "health_path": "/health"});
    let (code, v) = nodes[follower].post("/api/v1/personas?node=c", spec).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["node"], "c");
    for n in &nodes {
        n.wait_status(T, "the persona replicated and running on c", |s| {
            persona(s, "chat").is_some_and(|p| p["node"] == "c" && p["phase"] == "running")
        })
        .await;
    }
    // an operator's restart is a decision of the log, carried out by c
    let (code, v) = nodes[0].post("/api/v1/personas/chat/restart", json!({"reason": "test restart"})).await;
    assert_eq!(code, 200, "{v}");
    let decision = |n: &TestNode| {
        let n_api = n.url("/api/v1/decisions?after=0&limit=100");
        async move {
            let (_, page) = common::http("GET", &n_api, None).await;
            page["decisions"].as_array().cloned().unwrap_or_default()
        }
    };
    let d = common::wait_for_async(T, || async {
        decision(&nodes[1]).await.into_iter().find(|d| d["reason"] == "test restart" && d["executed_by"] == "c")
    })
    .await
    .unwrap_or_else(|| panic!("the restart decision, executed by c; c's log:\n{}", nodes[2].log()));
    assert_eq!(d["analyst"], "operator");

    // the leader dies: a new one is elected, and nothing committed is lost
    let li = ["a", "b", "c"].iter().position(|n| *n == first_leader).unwrap();
    nodes[li].kill9();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    for &i in &survivors {
        nodes[i].wait_status(T, "a new leader", |s| leader(s).is_some_and(|l| l != first_leader)).await;
    }
    for &i in &survivors {
        let ds = decision(&nodes[i]).await;
        assert!(ds.iter().any(|d| d["reason"] == "test restart"), "decision kept on {i}: {ds:?}");
        let s = nodes[i].get("/api/v1/status").await.1;
        assert!(persona(&s, "chat").is_some(), "persona kept");
    }

    // while the old leader is down the mesh moves on; back, it catches up
    let writer = survivors[0];
    let spec = json!({"name": "late", "command": common::DEMO, "args": ["--idle"]});
    let (code, v) = nodes[writer].post(&format!("/api/v1/personas?node={}", ["a", "b", "c"][survivors[1]]), spec).await;
    assert_eq!(code, 201, "{v}");
    nodes[li].spawn();
    nodes[li].wait_status(T, "the restarted node caught up", |s| persona(s, "late").is_some() && members(s) == 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_the_wrong_mesh_key_cannot_join() {
    let _one = ONE_AT_A_TIME.lock().await;
    let a = TestNode::start_in_mesh("a", "", "connect_timeout_ms = 500", None);
    a.wait_status(T, "a leads", |s| leader(s).as_deref() == Some("a")).await;
    let mut join = a.join_info().await;
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::MINDMESH)
        .args(["mesh", "init", "--out"])
        .arg(other.path().join("other.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    join.key = other.path().join("other.key");
    let intruder = TestNode::start_in_mesh("x", "", "connect_timeout_ms = 500", Some(&join));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = a.get("/api/v1/status").await.1;
    assert_eq!(members(&s), 1, "the intruder is not a member: {s}");
    let s = intruder.get("/api/v1/status").await.1;
    assert!(leader(&s).is_none(), "the intruder knows no leader: {s}");
}

/// A flood of handshakes the node cannot complete (what a peer without the mesh key, or any
/// stranger on the port, produces) is warned about, but at most once per 10 s, with a count of
/// the rest: the log of the real binary shows one warning for forty refusals.
#[tokio::test(flavor = "multi_thread")]
async fn refused_handshakes_are_warned_about_at_a_bounded_rate() {
    use std::io::Write;
    let _one = ONE_AT_A_TIME.lock().await;
    let a = TestNode::start_in_mesh("a", "", "connect_timeout_ms = 500", None);
    a.wait_status(T, "a leads", |s| leader(s).as_deref() == Some("a")).await;
    let join = a.join_info().await;
    // /ip4/127.0.0.1/tcp/PORT/p2p/…
    let port: u16 = join.addr.split('/').nth(4).and_then(|p| p.parse().ok()).expect("a tcp port in the address");
    let refusals = || a.log().matches("inbound handshake refused").count();
    let started = std::time::Instant::now();
    for i in 0..40u8 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the mesh port accepts TCP");
        // a private-network nonce and then bytes no key decrypts into a handshake
        let _ = s.write_all(&[i.wrapping_mul(91); 96]);
    }
    common::wait_for(Duration::from_secs(20), || (refusals() >= 1).then_some(()))
        .unwrap_or_else(|| panic!("no warning for refused handshakes; log:\n{}", a.log()));
    // give every refusal time to be processed, within the same warning interval
    tokio::time::sleep(Duration::from_secs(2)).await;
    let windows = 1 + started.elapsed().as_secs() as usize / 10;
    let log = a.log();
    let warned = refusals();
    assert!(warned <= windows, "{warned} warnings in {} windows of 10 s for 40 refusals:\n{log}", windows);
    assert!(log.contains("WARN"), "the refusal is a warning:\n{log}");
    // the node is unharmed
    let (code, _) = a.get("/api/v1/status").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leak_on_a_follower_is_restarted_by_the_leaders_decision() {
    let _one = ONE_AT_A_TIME.lock().await;
    // the brain's clock runs 120x: an hour of history in 30 s; one analysis a second
    let brain = "[brain]\ncycle_s = 1\ntime_speed = 120\nhistory_resolution_s = 60\n";
    let nodes = three(brain, "").await;
    let s = nodes[0].get("/api/v1/status").await.1;
    let lead = leader(&s).unwrap();
    let host = ["a", "b", "c"].into_iter().find(|n| *n != lead).unwrap();
    // two steady peers and one that leaks, all on the same follower, same model
    for (name, args) in [
        ("steady-1", vec!["--tokens", "4"]),
        ("steady-2", vec!["--tokens", "4"]),
        ("leaky", vec!["--tokens", "4", "--leak-mb-per-min", "240", "--leak-max-mb", "2048"]),
    ] {
        let spec = json!({
            "name": name, "command": common::DEMO, "args": args, "health_path": "/health",
            "model": "demo", "importance": "background",
            "budget": {"max_memory_mb": 1024}
        });
        let (code, v) = nodes[0].post(&format!("/api/v1/personas?node={host}"), spec).await;
        assert_eq!(code, 201, "{v}");
    }
    let owner = &nodes[["a", "b", "c"].iter().position(|n| *n == host).unwrap()];
    let before = owner.wait_persona("leaky", T, |v| v["phase"] == "running").await;
    // a request a second to each: in use, so judged on its memory, not hibernated as idle
    let (url, token) = (nodes[0].url("/v1/chat/completions"), nodes[0].token());
    let traffic = tokio::spawn(async move {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        loop {
            for model in ["steady-1", "steady-2", "leaky"] {
                let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
                let _ = client.post(&url).bearer_auth(&token).json(&body).send().await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let pid_before = before["pid"].as_u64();
    let d = common::wait_for_async(Duration::from_secs(150), || async {
        let (_, page) = nodes[0].get("/api/v1/decisions?after=0&limit=1000").await;
        page["decisions"].as_array().cloned().unwrap_or_default().into_iter().find(|d| {
            d["persona"] == "leaky" && d["action"] == "restart" && d["analyst"] == "builtin" && d["executed_by"] == host
        })
    })
    .await
    .unwrap_or_else(|| panic!("no executed restart decision for the leak; leader log:\n{}", nodes[0].log()));
    traffic.abort();
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("memory") || reason.contains("MB"), "a reason a person can read: {reason}");
    let after = owner.wait_persona("leaky", T, |v| v["phase"] == "running" && v["pid"].as_u64() != pid_before).await;
    assert!(after["pid"].as_u64() != pid_before);
    // the steady peers were left alone
    let (_, page) = nodes[0].get("/api/v1/decisions?after=0&limit=1000").await;
    let disrupted: Vec<&Value> = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["persona"] != "leaky"
                && ["restart", "kill", "hibernate", "migrate"].contains(&d["action"].as_str().unwrap())
        })
        .collect();
    assert!(disrupted.is_empty(), "steady peers untouched: {disrupted:?}");
    let out = nodes[1].cli(&["decisions"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("leaky") && text.contains(&format!("executed by {host}")), "{text}");
}
