//! Persona output through `mindmesh logs`: lines with their stream and time, tail, since and
//! stream filters, rotation by size while the persona runs with a bounded number of files,
//! nothing lost across a node killed with -9, logs deleted with their persona; and in a mesh,
//! `logs -f` on a node that does not run the persona, carrying on across a migration while
//! the old node's files stay readable.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{MINDMESH, TestNode, wait_for, wait_for_async};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);

/// One test at a time: a mesh's 100 ms heartbeats starve on two busy cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A persona that writes a numbered line to stdout and one to stderr every `every_s`.
fn talker(name: &str, every_s: &str, extra: &str) -> String {
    let script = format!("i=0; while true; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); sleep {every_s}; done");
    format!("[[persona]]\nname = \"{name}\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\n{extra}\n")
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers of `prefix N` lines, in order.
fn numbers(text: &str, prefix: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.strip_prefix(prefix)?.trim().parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_tail_filter_rotate_survive_a_node_kill_and_go_with_their_persona() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut node =
        TestNode::start(&format!("[logs]\nmax_file_bytes = 8192\nmax_files = 3\n{}", talker("talker", "0.02", "")));
    // enough lines to rotate several times (each record is ~40 bytes: 8 KiB holds ~200)
    let text = wait_for(T, || {
        // until the persona is registered the answer is a 404
        let out = node.cli(&["logs", "talker", "--tail", "5"]);
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        (numbers(&out, "out ").last().is_some_and(|&n| n > 400)).then_some(out)
    })
    .expect("the talker's lines reach `mindmesh logs`");
    assert_eq!(text.lines().count(), 5, "{text}");

    let dir = node.data_dir().join("logs").join("talker");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert!(files.len() <= 3 && !files.is_empty(), "rotated, at most 3 files: {files:?}");
    assert!(files.iter().all(|&len| len <= 8192), "{files:?}");

    // streams apart, each in order with no line missing in a page
    let err = stdout_of(&node.cli(&["logs", "talker", "--stderr", "--tail", "50"]));
    let errs = numbers(&err, "err ");
    assert_eq!(errs.len(), 50, "{err}");
    assert!(errs.windows(2).all(|w| w[1] == w[0] + 1), "{errs:?}");
    assert!(numbers(&err, "out ").is_empty());
    // --json carries the stream and a time; --since drops what is older
    let json = stdout_of(&node.cli(&["logs", "talker", "--tail", "4", "--json"]));
    let lines: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for l in &lines {
        assert!(l["stream"] == "stdout" || l["stream"] == "stderr", "{l}");
        assert!(l["ts_ms"].as_u64().unwrap().abs_diff(now_ms) < 60_000, "{l}");
        assert_eq!(l["node"], "test");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recent = stdout_of(&node.cli(&["logs", "talker", "--since", "1s", "--json"]));
    let oldest = recent.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["ts_ms"].as_u64().unwrap()).min();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(oldest.is_some_and(|t| now_ms - t < 5_000), "only the last second or so: {oldest:?}");

    // show names the files
    let (_, shown) = node.get("/api/v1/personas/talker").await;
    let files = shown["log_files"]["files"].as_array().expect("log files in show");
    assert!(files.iter().all(|f| f["path"].as_str().unwrap().starts_with(dir.to_str().unwrap())), "{shown}");

    // bad input is a clear error
    let (code, v) = node.get("/api/v1/personas/talker/logs?cursor=nonsense").await;
    assert_eq!((code, v["error"]["param"].as_str()), (400, Some("cursor")), "{v}");
    let (code, _) = node.get("/api/v1/personas/..%2Fetc/logs").await;
    assert_eq!(code, 400);
    let (code, _) = node.get("/api/v1/personas/nobody/logs").await;
    assert_eq!(code, 404);
    let out = node.cli(&["logs", "talker", "--since", "5 parsecs"]);
    assert!(!out.status.success());

    // kill -9 the node: the persona runs on, its output waits in the FIFO, the restarted
    // node adopts it and nothing written meanwhile is lost
    let before = numbers(&stdout_of(&node.cli(&["logs", "talker", "--stdout", "--tail", "1"])), "out ")[0];
    node.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.spawn();
    let after = wait_for(T, || {
        let out = stdout_of(&node.cli(&["logs", "talker", "--stdout", "--tail", "2000"]));
        let n = numbers(&out, "out ");
        n.last().is_some_and(|&last| last > before + 150).then_some(n)
    })
    .expect("lines after the restart");
    let from = after.iter().position(|&n| n == before).expect("the line before the kill is still there");
    let span = &after[from..];
    assert!(span.windows(2).all(|w| w[1] == w[0] + 1), "no line lost across the node's death: {span:?}");

    // removed: its logs go with it
    let (code, v) = node.delete("/api/v1/personas/talker").await;
    assert!(code == 200 || code == 204, "{code} {v}");
    assert!(wait_for(T, || (!dir.exists()).then_some(())).is_some(), "logs of a removed persona are deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_from_a_node_that_does_not_run_the_persona_and_across_a_migration() {
    let _one = ONE_AT_A_TIME.lock().await;
    // what is tested is the logs' path, not Raft's timings: slow, forgiving ones keep the mesh
    // whole on two cores loaded by other builds
    let slow = "heartbeat_ms = 250\nelection_timeout_min_ms = 1500\nelection_timeout_max_ms = 3000\n\
                lease_ms = 6000\nlease_renew_ms = 500\nfailover_after_ms = 60000\nfencing = false\n";
    let a = TestNode::start_in_mesh("a", "", slow, None);
    a.wait_status(T, "a leads its new mesh", |s| common::mesh_leader(s).as_deref() == Some("a")).await;
    let join = a.join_info().await;
    let b = TestNode::start_in_mesh("b", "", slow, Some(&join));
    let c = TestNode::start_in_mesh("c", "", slow, Some(&join));
    // members (voters or learners: either serves and forwards) that agree on the leader
    for n in [&a, &b, &c] {
        n.wait_status(T, "three members and a leader", |s| {
            common::mesh_members(s) == 3 && common::mesh_leader(s).is_some()
        })
        .await;
    }
    let nodes = [a, b, c];
    let spec = json!({"name": "far", "command": "/bin/sh", "args": ["-c",
        "i=0; while true; do echo \"far $i\"; i=$((i+1)); sleep 0.1; done"]});
    let (code, v) = nodes[0].post("/api/v1/personas?node=c", spec).await;
    assert_eq!(code, 201, "{v}");

    // follow from a, which does not run it
    let mut follower = Command::new(MINDMESH)
        .args(["--api", &nodes[0].api, "logs", "-f", "far"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let read_until = |seen: &mut Vec<String>, cond: &dyn Fn(&[String]) -> bool, what: &str| {
        let deadline = std::time::Instant::now() + T;
        while !cond(seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(l) => seen.push(l),
                Err(_) if std::time::Instant::now() < deadline => {}
                Err(_) => panic!("{what}: not within {T:?}; saw {seen:?}"),
            }
        }
    };
    read_until(&mut seen, &|s| numbers(&s.join("\n"), "far ").len() >= 20, "lines of a persona on c, followed from a");
    let first = numbers(&seen.join("\n"), "far ");
    assert!(first.windows(2).all(|w| w[1] == w[0] + 1), "in order: {first:?}");

    // migrate to b: the follower carries on with b's lines (the new process counts from 0)
    let (code, v) = nodes[0].post("/api/v1/personas/far/migrate", json!({"to": "b"})).await;
    assert_eq!(code, 200, "{v}");
    let mark = seen.len();
    read_until(
        &mut seen,
        &|s| {
            let later = numbers(&s[mark..].join("\n"), "far ");
            later.windows(2).any(|w| w[1] < w[0]) && later.last().is_some_and(|&n| n >= 10)
        },
        "the follower carries on with the new node's lines",
    );
    let _ = follower.kill();
    let _ = follower.wait();

    // the old node's lines stay readable there
    let old = stdout_of(&nodes[1].cli(&["logs", "far", "--node", "c"]));
    assert!(numbers(&old, "far ").len() >= 20, "{old}");
    let placed = wait_for_async(T, || async {
        let (_, v) = nodes[2].get("/api/v1/personas/far").await;
        (v["node"] == "b").then_some(v)
    })
    .await
    .expect("placed on b");
    assert_eq!(placed["log_files"]["node"], "b");
}
