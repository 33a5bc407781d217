//! One real `mindmesh node start` process on loopback, with its own data dir, and the few API
//! calls the harness makes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub struct Node {
    pub name: String,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    pub api: String,
    exe: PathBuf,
}

impl Node {
    /// Write the node's config (joining `join` with `key`, or founding a mesh) and start it.
    pub fn start(exe: &Path, root: &Path, name: &str, join: Option<(&str, &Path)>) -> anyhow::Result<Node> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("node.toml");
        // a fixed mesh port, kept across restarts as a deployed node's is: a node back on a new
        // address makes the leader change the membership, a different fault from the one measured
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let join_lines = match join {
            Some((addr, key)) => format!("join = [\"{addr}\"]\nkey_file = \"{}\"\n", key.display()),
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[mesh]\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\ngossip_interval_ms = 200\n{join_lines}",
                dir.join("data").display()
            ),
        )?;
        let mut node =
            Node { name: name.to_owned(), dir, config, child: None, api: String::new(), exe: exe.to_path_buf() };
        node.spawn()?;
        Ok(node)
    }

    /// (Re)start the process on the same config and data dir.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let addr_file = self.dir.join("data").join("api.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log"))?;
        let child = Command::new(&self.exe)
            .args(["node", "start", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("start {}", self.exe.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                self.api = format!("http://{}", a.trim());
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node {} did not start; see {}", self.name, self.dir.join("node.log").display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("data").join("mesh.key")
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, s: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        kill(pid, s)?;
        Ok(())
    }

    /// The node's local admin token (every request needs a credential, on loopback too).
    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data").join("api.token")).unwrap_or_default().trim().to_owned()
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        request(reqwest::Method::GET, &format!("{}{path}", self.api), &self.token(), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        request(reqwest::Method::POST, &format!("{}{path}", self.api), &self.token(), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        request(reqwest::Method::DELETE, &format!("{}{path}", self.api), &self.token(), None).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = Pid::from_raw(c.id() as i32);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
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

async fn request(method: reqwest::Method, url: &str, token: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    let mut rb = client.request(method.clone(), url).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_string());
    }
    let resp = rb.send().await.with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{method} {url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Persona processes running now, by persona name: group leaders whose environment names the
/// persona (every process the node starts is one; a duplicate is two of the same name).
pub fn running_personas(prefix: &str) -> std::collections::BTreeMap<String, Vec<u32>> {
    let mut out: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state (field 3) and process group (field 5): live group leaders only
        if fields.len() < 3 || fields[0] == "Z" || fields[2] != pid.to_string() {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        for var in environ.split(|&b| b == 0) {
            if let Some(name) = std::str::from_utf8(var).ok().and_then(|v| v.strip_prefix("MINDMESH_PERSONA_ID="))
                && name.starts_with(prefix)
            {
                out.entry(name.to_owned()).or_default().push(pid);
            }
        }
    }
    out
}
