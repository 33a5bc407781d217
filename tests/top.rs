//! `mindmesh top` on a real terminal: run under tmux against a real node with personas, the
//! screen (tmux's capture of the pane) lists them, a key switches the order, and `q` ends the
//! process with status 0. Needs tmux: under CI (env `CI` set) a missing tmux fails the test,
//! elsewhere it is skipped, saying so.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{MINDMESH, TestNode, demo_persona, wait_for};

const T: Duration = Duration::from_secs(60);

/// A tmux server of this test's own (its own socket): a user's sessions are never touched.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        wait_for(T, || {
            let s = self.screen();
            cond(&s).then_some(s)
        })
        .unwrap_or_else(|| panic!("{what}: not on the screen within {T:?}:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_present() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn top_under_tmux_lists_the_personas_sorts_and_quits_on_q() {
    if !tmux_present() {
        common::missing("tmux is not installed (apt-get install tmux): `mindmesh top` was not run on a terminal");
        return;
    }
    let node = TestNode::start(&format!("{}{}", demo_persona("chat", &[], ""), demo_persona("summarizer", &[], "")));
    for name in ["chat", "summarizer"] {
        node.wait_persona(name, T, |v| v["phase"] == "running").await;
    }
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let line = format!(
        "{MINDMESH} --api {} top --interval 200ms 2>{}; echo $? > {}",
        node.api,
        dir.path().join("stderr").display(),
        exit_file.display()
    );
    let tmux = Tmux { socket: format!("mindmesh-top-test-{}", std::process::id()) };
    let out = tmux.run(&["new-session", "-d", "-s", "top", "-x", "160", "-y", "40", &line]);
    assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));

    let screen = tmux.wait_screen("both personas, by cpu", |s| {
        s.contains("chat") && s.contains("summarizer") && s.contains("personas by cpu")
    });
    assert!(screen.contains("nodes") && screen.contains("test"), "the node is listed:\n{screen}");
    assert!(tmux.run(&["send-keys", "-t", "top", "m"]).status.success());
    tmux.wait_screen("the order switched to memory", |s| s.contains("personas by memory"));

    assert!(tmux.run(&["send-keys", "-t", "top", "q"]).status.success());
    let code = wait_for(T, || std::fs::read_to_string(&exit_file).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| panic!("top did not exit on q; screen:\n{}", tmux.screen()));
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert_eq!(code.trim(), "0", "exit status; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
