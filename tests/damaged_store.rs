//! Issue 10, finding 3: a damaged store. A node whose `mindmesh.redb` is truncated, zeroed or
//! overwritten exits non-zero with a message that names the file and what to do (it used to
//! panic, exit 101, or run on as a zombie that persisted nothing); a member whose store is gone
//! refuses to start instead of voting as if it had never voted; a store that fails under a
//! running node stops the node and its personas instead of letting it acknowledge work it cannot
//! keep. `mindmesh store check` tells a sound file from a damaged one. Each case runs the real
//! binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{MINDMESH, TestNode, demo_persona, pid_alive, wait_for};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn store_file(node: &TestNode) -> PathBuf {
    node.data_dir().join("mindmesh.redb")
}

/// A node that ran a persona and stopped cleanly: a store with records, events and Raft state.
async fn stopped_node_with_a_store() -> TestNode {
    let mut node = TestNode::start(&demo_persona("steady", &[], ""));
    node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    let status = node.terminate();
    assert!(status.success(), "clean stop: {status:?}");
    node
}

/// Start the node on its data dir and expect it to refuse: returns how it exited and what it
/// said. A node that starts serving instead fails the test.
fn start_expecting_refusal(node: &TestNode, extra_args: &[&str]) -> (ExitStatus, String) {
    let addr_file = node.data_dir().join("api.addr");
    let _ = std::fs::remove_file(&addr_file);
    let err_path = node.dir.path().join("refused.log");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = Command::new(MINDMESH)
        .args(["node", "start", "--config"])
        .arg(&node.config)
        .args(extra_args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn mindmesh");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        if addr_file.exists() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the node started (or hung) on a damaged store; its log:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A clean refusal: non-zero, not a panic (101) nor a signal, naming the file and the way out.
fn assert_clean_refusal(status: ExitStatus, log: &str, file: &Path) {
    assert!(!status.success(), "exit 0 on a damaged store; log:\n{log}");
    assert!(status.code().is_some(), "killed by a signal: {status:?}; log:\n{log}");
    assert_ne!(status.code(), Some(101), "it panicked; log:\n{log}");
    assert!(!log.contains("panicked"), "a panic on the way; log:\n{log}");
    assert!(log.contains(&file.display().to_string()), "the message does not name {}:\n{log}", file.display());
    assert!(log.contains("mindmesh store check"), "the message does not say what to do:\n{log}");
}

/// `mindmesh store check --data-dir DIR --json`: its exit status and report.
fn store_check(data_dir: &Path) -> (ExitStatus, Value) {
    let out = Command::new(MINDMESH)
        .args(["store", "check", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run mindmesh store check");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "store check printed no JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status, report)
}

/// Damage the stopped node's store with `damage`, then check that the node refuses to start
/// and `store check` calls the file damaged (it called it sound before).
async fn refuses_a_damaged_store(damage: impl FnOnce(&Path)) {
    let node = stopped_node_with_a_store().await;
    let file = store_file(&node);
    // the sound file, kept to check it too
    let sound = node.dir.path().join("sound");
    std::fs::create_dir(&sound).unwrap();
    std::fs::copy(&file, sound.join("mindmesh.redb")).unwrap();

    damage(&file);
    let (status, log) = start_expecting_refusal(&node, &[]);
    assert_clean_refusal(status, &log, &file);
    let (status, report) = store_check(&node.data_dir());
    assert!(!status.success(), "a damaged store passes its check: {report}");
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["error"].as_str().is_some_and(|e| !e.is_empty()), "{report}");

    let (status, report) = store_check(&sound);
    assert!(status.success(), "a sound store fails its check: {report}");
    assert_eq!(report["ok"], true, "{report}");
    let personas = report["tables"].as_array().unwrap().iter().find(|t| t["name"] == "persona/record").cloned();
    assert_eq!(personas.map(|t| t["rows"].clone()), Some(json!(1)), "{report}");
}

/// A POST (with the node's local credential, read up front) that may find nobody listening:
/// its status, if it got one.
async fn try_post(url: &str, token: &str, body: &Value) -> Option<u16> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    client.post(url).bearer_auth(token).json(body).send().await.ok().map(|r| r.status().as_u16())
}

fn overwrite(file: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_store_is_refused_with_a_message_naming_it() {
    refuses_a_damaged_store(|file| {
        let len = std::fs::metadata(file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(len / 2).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_zeroed_in_the_middle_is_refused_not_a_panic() {
    refuses_a_damaged_store(|file| {
        let len = std::fs::metadata(file).unwrap().len();
        overwrite(file, len / 3, &vec![0u8; 64 * 1024]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_near_the_end_of_the_store_is_refused_not_a_zombie() {
    refuses_a_damaged_store(|file| {
        let len = std::fs::metadata(file).unwrap().len();
        // deterministic noise over the last pages written
        let garbage: Vec<u8> = (0..36_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        overwrite(file, len - 40_000, &garbage);
    })
    .await;
}

/// The Raft state of a member lives in its store: an emptied or missing file must not let the
/// node start as new under the same identity (it would vote again in terms it voted in).
#[tokio::test(flavor = "multi_thread")]
async fn a_member_whose_store_is_empty_or_gone_refuses_to_start_until_told_to_rejoin_as_new() {
    let mut node = stopped_node_with_a_store().await;
    let file = store_file(&node);
    let identity = node.data_dir().join("node.key");
    let key_before = std::fs::read(&identity).expect("a member has an identity");

    std::fs::File::create(&file).unwrap(); // 0 bytes
    let (status, log) = start_expecting_refusal(&node, &[]);
    assert_clean_refusal(status, &log, &file);
    assert!(log.contains("--rejoin-as-new"), "the message names the way to rejoin:\n{log}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "the refused start wrote a new store");

    std::fs::remove_file(&file).unwrap();
    let (status, log) = start_expecting_refusal(&node, &[]);
    assert_clean_refusal(status, &log, &file);
    assert!(!file.exists(), "the refused start made a new store");
    assert_eq!(std::fs::read(&identity).unwrap(), key_before, "the identity was touched");

    // told to, it starts as a new member: a new identity (the old one kept aside), a new store
    let (status, report) = store_check(&node.data_dir());
    assert!(!status.success(), "a missing store is no sound store: {report}");
    node.child = Some(
        Command::new(MINDMESH)
            .args(["node", "start", "--rejoin-as-new", "--config"])
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(node.dir.path().join("node.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let addr = wait_for(T, || std::fs::read_to_string(node.data_dir().join("api.addr")).ok())
        .unwrap_or_else(|| panic!("did not start with --rejoin-as-new; log:\n{}", node.log()));
    node.api = format!("http://{}", addr.trim());
    node.wait_status(T, "a new member leads its mesh", |s| s["mesh"]["role"] == "leader").await;
    assert_ne!(std::fs::read(&identity).unwrap(), key_before, "the node kept the identity whose votes it lost");
    let kept_aside = std::fs::read_dir(node.data_dir()).unwrap().filter_map(|e| e.ok()).any(|e| {
        e.file_name().to_string_lossy().starts_with("node.key.")
            && std::fs::read(e.path()).ok() == Some(key_before.clone())
    });
    assert!(kept_aside, "the old identity was not kept aside");
    assert!(node.terminate().success());
}

/// A store that stops taking writes under a running node (here: the file may grow no more,
/// RLIMIT_FSIZE, as on a full disk) stops the node: its personas are stopped and it exits
/// non-zero naming the file — not a SIGXFSZ death, not a zombie answering 2xx to work it
/// cannot persist.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_failing_while_running_stops_the_node_and_its_personas() {
    let mut node = TestNode::start(&demo_persona("steady", &[], ""));
    let v = node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    let persona_pid = v["pid"].as_u64().expect("pid") as u32;
    let node_pid = node.child.as_ref().unwrap().id();
    let file = store_file(&node);
    let size = std::fs::metadata(&file).unwrap().len();
    let limit = libc::rlimit { rlim_cur: size, rlim_max: size };
    // SAFETY: plain syscall on another process's limits with valid pointers.
    let rc = unsafe { libc::prlimit(node_pid as libc::pid_t, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());

    // big specs until the file must grow (each is a Raft entry, a record and events)
    let env: serde_json::Map<String, Value> = (0..64).map(|i| (format!("PAD_{i}"), json!("x".repeat(4000)))).collect();
    let token = node.token();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut acknowledged_after_exit = 0;
    let mut i = 0;
    let status = loop {
        if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the node runs on with a store that fails; log:\n{}", node.log());
        if i < 60 {
            let spec = json!({"name": format!("bulk-{i}"), "command": "/bin/sleep", "args": ["600"], "env": env});
            // a node that has stopped refuses the connection: that is no acknowledgement
            let code = try_post(&node.url("/api/v1/personas"), &token, &spec).await;
            if code.is_some_and(|c| (200..300).contains(&c))
                && node.child.as_mut().unwrap().try_wait().unwrap().is_some()
            {
                acknowledged_after_exit += 1;
            }
            i += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    node.child = None;
    let log = node.log();
    assert!(status.code().is_some(), "killed by a signal (SIGXFSZ?): {status:?}; log:\n{log}");
    assert!(!status.success(), "exit 0 after the store failed; log:\n{log}");
    assert_ne!(status.code(), Some(101), "it panicked; log:\n{log}");
    assert!(log.contains(&file.display().to_string()), "the message does not name the store:\n{log}");
    assert!(log.contains("mindmesh store check"), "the message does not say what to do:\n{log}");
    assert_eq!(acknowledged_after_exit, 0);
    assert!(
        wait_for(Duration::from_secs(10), || (!pid_alive(persona_pid)).then_some(())).is_some(),
        "the persona runs on after its node stopped on a failed store"
    );
}
