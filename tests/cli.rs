//! The command line as an operator meets it, with the real binary: a closed pipe, unknown
//! names, times and words in the tables, the demo persona's own name, an error said once, a
//! quiet log. (Help coverage and range parity walk the clap definition in `src/cli/tests.rs`.)

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{DEMO, MINDMESH, TestNode, demo_persona};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The CLI against a node, with a fixed time zone so dates can be checked.
fn cli_utc(node: &TestNode, args: &[&str]) -> std::process::Output {
    Command::new(MINDMESH).args(args).env("MINDMESH_API", &node.api).env("TZ", "UTC").output().expect("run mindmesh")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_the_command_quietly() {
    let node = TestNode::start(&demo_persona("chat", &[], ""));
    node.wait_persona("chat", T, |v| v["phase"] == "running").await;
    for args in [&["persona", "list"][..], &["persona", "list", "--json"], &["events"], &["status"]] {
        // the reader is gone before the command writes a byte: every write fails with EPIPE
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(MINDMESH)
            .args(args)
            .env("MINDMESH_API", &node.api)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run mindmesh");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        // ended by SIGPIPE, as `ls | head` ends: the shell reports 141, a pipeline goes on
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?} {err}", out.status);
    }
    // and through a shell, as the operator typed it
    let line = format!("{MINDMESH} persona list | head -1; echo \"status=${{PIPESTATUS[0]}}\"");
    let out = Command::new("bash").arg("-c").arg(&line).env("MINDMESH_API", &node.api).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
    let status = stdout.lines().last().unwrap();
    assert!(status == "status=0" || status == "status=141", "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_are_errors() {
    let node = TestNode::start(&demo_persona("chat", &[], ""));
    node.wait_persona("chat", T, |v| v["phase"] == "running").await;
    for args in [
        &["events", "--persona", "nope"][..],
        &["decisions", "--persona", "nope"],
        &["persona", "show", "nope"],
        &["persona", "restart", "nope"],
        &["persona", "budget", "nope", "--priority", "10"],
        &["persona", "remove", "nope"],
        &["node", "drain", "nope"],
    ] {
        let out = node.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} exit: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains("nope") && err.contains("404"), "{args:?}: {err}");
    }
    // a known name still reads, and so does a removed persona's history
    let out = node.cli(&["events", "--persona", "chat"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, v) = node.delete("/api/v1/personas/chat").await;
    assert_eq!(code, 204, "{v}");
    let out = node.cli(&["events", "--persona", "chat"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_have_headers_dates_and_one_vocabulary() {
    let node = TestNode::start(&demo_persona("chat", &[], ""));
    node.wait_persona("chat", T, |v| v["health"] == "healthy").await;
    // `show` prints its recent metrics once the recorder has stored a sample
    common::wait_for_async(T, || async {
        let (_, v) = node.get("/api/v1/personas/chat/series?max_points=1").await;
        v["samples"].as_array().is_some_and(|s| !s.is_empty()).then_some(())
    })
    .await
    .expect("a stored sample");

    let out = cli_utc(&node, &["events", "--persona", "chat"]);
    let events = text(&out.stdout);
    let header: Vec<&str> = events.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["SEQ", "TIME", "AGO", "PERSONA", "KIND", "DETAIL"], "{events}");
    // the first event's time, as the JSON says it in epoch ms, shown as a UTC date
    let out = cli_utc(&node, &["events", "--persona", "chat", "--json"]);
    let first: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    let ts_ms = first["ts_ms"].as_u64().expect("--json keeps epoch ms");
    let date = Command::new("date").args(["-u", "-d", &format!("@{}", ts_ms / 1000), "+%Y-%m-%d %H:%M:%S"]).output();
    let expected = text(&date.unwrap().stdout).trim().to_owned();
    let row = events.lines().nth(1).unwrap();
    assert!(row.contains(&expected) && row.contains(" ago"), "{row} should show {expected}");

    // one word for health in the list and in show
    let list = text(&cli_utc(&node, &["persona", "list"]).stdout);
    let show = text(&cli_utc(&node, &["persona", "show", "chat"]).stdout);
    assert!(list.contains("healthy"), "{list}");
    assert!(show.lines().any(|l| l.starts_with("health:") && l.ends_with(" healthy")), "{show}");
    assert!(!show.contains("Healthy"), "{show}");
    // the recent metrics have a local date, not epoch milliseconds
    let table = show.lines().skip_while(|l| !l.starts_with("TIME")).collect::<Vec<_>>();
    assert!(table.len() > 1 && table[0].starts_with("TIME  ") && table[0].contains("AGO"), "{show}");
    assert!(table[1].starts_with(&expected[..4]), "{show}");
}

#[test]
fn the_demo_persona_names_itself() {
    let out = Command::new(MINDMESH).args(["demo-persona", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(help.contains("Usage: mindmesh demo-persona [OPTIONS]"), "{help}");
    let out =
        Command::new(MINDMESH).args(["demo-persona", "--tokens", "3"]).env_remove("MINDMESH_PORT").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage: mindmesh demo-persona"), "{}", text(&out.stderr));
    let out = Command::new(DEMO).arg("--help").output().unwrap();
    assert!(text(&out.stdout).contains("Usage: mindmesh-demo-persona [OPTIONS]"), "{}", text(&out.stdout));
}

#[test]
fn api_flags_belong_to_the_commands_that_use_them() {
    let help = text(&Command::new(MINDMESH).arg("--help").output().unwrap().stdout);
    assert!(!help.contains("--api") && !help.contains("--token"), "{help}");
    let help = text(&Command::new(MINDMESH).args(["persona", "list", "--help"]).output().unwrap().stdout);
    assert!(help.contains("--api") && help.contains("--token"), "{help}");
    let help = text(&Command::new(MINDMESH).args(["brain", "eval", "--help"]).output().unwrap().stdout);
    assert!(!help.contains("--api"), "{help}");
    // after the command (the documented place), and before it (older scripts)
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(MINDMESH)
        .args(["mesh", "init", "--api", "http://127.0.0.1:1", "--out"])
        .arg(dir.path().join("k"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    for args in
        [&["persona", "list", "--api", "http://127.0.0.1:1"][..], &["--api", "http://127.0.0.1:1", "persona", "list"]]
    {
        let out = Command::new(MINDMESH).args(args).env_remove("MINDMESH_API").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("cannot reach the node at http://127.0.0.1:1"), "{}", text(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_is_said_once() {
    let node = TestNode::start("");
    // a second node on the same data dir finds the store locked
    let out = Command::new(MINDMESH)
        .args(["node", "start", "--config"])
        .arg(&node.config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let first = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert_eq!(err.matches("Database already open").count(), 1, "{err}");
    assert!(first.contains("Database already open") && first.contains("another process"), "{err}");
    // held, not damaged: the operator is not told to move the store aside
    assert!(!err.contains("move it aside") && err.contains("Stop that node first"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_node_logs_little_at_info() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"q\"\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[mesh]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n{}",
            dir.path().join("data").display(),
            demo_persona("chat", &[], "")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = Command::new(MINDMESH)
        .args(["node", "start", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr_file = dir.path().join("data").join("api.addr");
    let addr = common::wait_for(T, || std::fs::read_to_string(&addr_file).ok()).expect("node started");
    let api = format!("http://{}", addr.trim());
    common::wait_for_async(T, || async {
        let (_, v) = common::http("GET", &format!("{api}/api/v1/personas/chat"), None).await;
        (v["phase"] == "running").then_some(())
    })
    .await
    .expect("chat runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let foreign: Vec<&&str> =
        lines.iter().filter(|l| l.contains(" INFO openraft") || l.contains(" INFO libp2p")).collect();
    assert!(foreign.is_empty(), "openraft and libp2p internals at INFO:\n{}", log);
    assert!(lines.iter().any(|l| l.contains("INFO mindmesh_node")), "the node's own INFO stays:\n{log}");
}

#[test]
fn config_check_lists_every_problem_and_exits_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good_node = write("node.toml", &format!("[node]\nname = \"a\"\n{}", demo_persona("chat", &[], "")));
    let good_spec = write("chat.toml", &format!("name = \"chat\"\ncommand = \"{DEMO}\"\n"));
    let good_json = write("chat.json", &format!("{{\"name\": \"chat\", \"command\": \"{DEMO}\"}}"));
    let bad_spec = write(
        "bad.toml",
        "name = \"Bad Name\"\ncommand = \"\"\n[budget]\ninference_queue_priority = 200\nthrottle_multiplier = -1\n",
    );
    let bad_node = write(
        "bad-node.toml",
        "[supervisor]\nbackoff_initial_ms = 0\n[[persona]]\nname = \"a\"\ncommand = \"x\"\n[persona.budget]\nmax_memory_mb = 0\n",
    );
    let syntax = write("syntax.toml", "[node\nname = 1\n");
    let check = |files: &[&str]| Command::new(MINDMESH).args(["config", "check"]).args(files).output().unwrap();

    let out = check(&[&good_node, &good_spec, &good_json]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("{good_node}: ok (node config, 1 persona)")), "{stdout}");
    assert!(stdout.contains(&format!("{good_json}: ok (persona spec)")), "{stdout}");

    let out = check(&[&good_node, &bad_spec, &bad_node, &syntax, "/nonexistent/x.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    for line in [
        format!("{bad_spec}: name: "),
        format!("{bad_spec}: command: must not be empty"),
        format!("{bad_spec}: budget.inference_queue_priority: must be within 0..=100, got 200"),
        format!("{bad_spec}: budget.throttle_multiplier: must be > 0 and <= 10, got -1"),
        format!("{bad_node}: supervisor.backoff_initial_ms: must be at least 1"),
        format!("{bad_node}: persona[0].budget.max_memory_mb: must be at least 1"),
        format!("{syntax}: TOML parse error at line 1"),
        "/nonexistent/x.toml: cannot read".to_owned(),
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&line)), "missing {line:?} in:\n{stdout}");
    }
    assert!(text(&out.stderr).contains("4 of 5 file(s) invalid (8 problem(s))"), "{}", text(&out.stderr));

    let out = Command::new(MINDMESH).args(["config", "check", "--json", &good_spec, &bad_spec]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[1]["kind"], "persona");
    assert_eq!(v[1]["problems"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v[1]["problems"][2]["field"], "budget.inference_queue_priority");

    // no file is a usage error, as clap reports them
    assert_eq!(check(&[]).status.code(), Some(2));
}

#[test]
fn the_shipped_configs_pass_config_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<String> = Vec::new();
    for dir in ["deploy/examples", "deploy/compose"] {
        for e in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p.display().to_string());
            }
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    // the mesh example takes its token from the environment, as its systemd unit gives it
    let out = Command::new(MINDMESH)
        .args(["config", "check"])
        .args(&files)
        .env("MINDMESH_API_TOKEN", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source <({MINDMESH} completions bash) && complete -p mindmesh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("mindmesh"), "{}", text(&out.stdout));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(MINDMESH).args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && text(&out.stdout).contains("persona"), "{shell}");
    }
    assert_eq!(Command::new(MINDMESH).args(["completions", "tcsh"]).output().unwrap().status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(MINDMESH).args(["man", "--out"]).arg(dir.path().join("man1")).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = |name: &str| std::fs::read_to_string(dir.path().join("man1").join(format!("{name}.1")));
    for name in
        ["mindmesh", "mindmesh-persona", "mindmesh-persona-budget", "mindmesh-config-check", "mindmesh-node-leave"]
    {
        let p = page(name).unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(p.contains(&format!(".TH {name} 1")), "{name}: {}", &p[..200.min(p.len())]);
    }
    assert!(page("mindmesh-persona-budget").unwrap().contains("Queue priority"));
    assert!(page("mindmesh-fence-guard").is_err(), "hidden commands have no page");
    // one page per line printed, every one present
    for line in text(&out.stdout).lines() {
        assert!(std::path::Path::new(line).is_file(), "{line}");
    }
}
