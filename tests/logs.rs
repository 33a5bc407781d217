//! Persona output through `mindmesh logs`: lines with their stream and time, tail, since and
//! stream filters, rotation by size while the persona runs with a bounded number of files,
//! nothing lost across a node killed with -9, logs deleted with their persona.

mod common;

use std::time::Duration;

use common::{TestNode, wait_for};
use serde_json::Value;

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

/// `mindmesh logs -f` asked of a node that does not run the persona: each page is forwarded
/// to the owner, and new lines keep coming as the persona writes them.
#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_through_a_node_that_does_not_run_the_persona() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nodes = common::three_nodes("", "").await;
    let script = "i=0; while true; do echo \"out $i\"; i=$((i+1)); sleep 0.1; done";
    let spec = format!("name = \"talker\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\n");
    let (code, v) = nodes[0].post_raw("/api/v1/personas?node=b", "application/toml", &spec).await;
    assert_eq!(code, 201, "{v}");
    let v = nodes[0].wait_persona("talker", T, |v| v["phase"] == "running").await;
    // placed on b; on a loaded machine the mesh may have moved it since (a node declared lost):
    // what matters is that the node asked is not the one that runs it
    let names = ["a", "b", "c"];
    let at = names.iter().position(|n| v["node"] == *n).unwrap_or_else(|| panic!("on no node: {v}"));
    let (owner, asked) = (&nodes[at], &nodes[(at + 1) % 3]);

    let mut follow = std::process::Command::new(common::MINDMESH)
        .args(["--api", &asked.api, "logs", "-f", "talker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mindmesh logs -f");
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // the last line written when the follower started; then lines written after it must arrive
    let started = wait_for(T, || {
        let out = String::from_utf8_lossy(&owner.cli(&["logs", "talker", "--tail", "1"]).stdout).into_owned();
        numbers(&out, "out ").last().copied()
    })
    .expect("the owner has lines");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while seen.last().is_none_or(|&n| n < started + 20) && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.extend(numbers(&line, "out "));
        }
    }
    let _ = follow.kill();
    let out = follow.wait_with_output().unwrap();
    assert!(
        seen.last().is_some_and(|&n| n >= started + 20),
        "the follower through a did not stream b's new lines (last {:?}, started at {started}); stderr: {}\nlog a:\n{}",
        seen.last(),
        String::from_utf8_lossy(&out.stderr),
        asked.log()
    );
    assert_eq!(seen.first(), Some(&0), "from the first line: {:?}", &seen[..seen.len().min(5)]);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "in order, none missing or repeated: {seen:?}");
}
