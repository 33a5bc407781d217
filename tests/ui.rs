//! The dashboard (`/ui`) of a real three-node mesh, in a real browser: headless Chromium signs
//! in through the form, loads every page, finds the mesh, the persona rows with their plots
//! (SVG with data) and the decision rows, sees a page update live (server-sent events) when a
//! decision lands, and takes screenshots (into docs/images/ with
//! `MINDMESH_UPDATE_SCREENSHOTS=1`). Without credentials a page is refused; a page of another
//! origin (in the same signed-in browser, on another port of the same host, where
//! `SameSite=Strict` does not hold the cookie back) can neither read nor drive it; a session
//! cookie reads only the dashboard of the node that issued it.
//!
//! Chromium is Debian's `chromium` package (`.ci/run` installs it). Under CI (env `CI` set) a
//! missing Chromium fails the browser test; elsewhere it is skipped, saying so.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestNode, three_nodes};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(40);

/// One mesh at a time (three nodes and a browser on two cores are plenty).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A mesh of three with a persona on each node, some traffic through the gateway (answers,
/// latency, errors) and a few decisions of an operator; returns once every persona has
/// samples stored.
async fn busy_mesh() -> Vec<TestNode> {
    let nodes = three_nodes("", "").await;
    let demo = |name: &str, args: &[&str]| {
        json!({"name": name, "command": common::DEMO, "args": args, "health_path": "/health",
               "budget": {"max_memory_mb": 256, "max_response_time_ms": 2000}})
    };
    let personas = [
        ("chat", "a", demo("chat", &["--latency-ms", "30"])),
        ("flaky", "b", demo("flaky", &["--latency-ms", "10", "--error-rate", "0.4", "--error-kinds", "429,quota"])),
        ("leaky", "c", demo("leaky", &["--leak-mb-per-min", "60"])),
    ];
    for (_, node, spec) in &personas {
        act(&nodes[0], &format!("/api/v1/personas?node={node}"), spec.clone()).await;
    }
    for (name, node, _) in &personas {
        nodes[0]
            .wait_status(T, "the persona runs where it was placed", |s| {
                common::mesh_persona(s, name).is_some_and(|p| p["node"] == *node && p["phase"] == "running")
            })
            .await;
    }
    // traffic through each persona's own node: a few seconds of it, so the plots have several
    // samples of latency and errors (kept light: two cores carry the mesh and the browser)
    for round in 0..6 {
        for (i, (name, _, _)) in personas.iter().enumerate() {
            for _ in 0..2 {
                let body = json!({"model": name, "messages": [{"role": "user", "content": format!("hello {round}")}]});
                let url = nodes[i].url("/v1/chat/completions");
                let _ = common::http("POST", &url, Some(("application/json", body.to_string()))).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    act(&nodes[2], "/api/v1/personas/flaky/restart", json!({"reason": "ui test restart"})).await;
    act(&nodes[2], "/api/v1/personas/chat/restart", json!({"reason": "ui test restart of chat"})).await;
    // through the dashboard of node a, which asks whichever node runs the persona (a failover
    // under load may have moved it)
    let bearer = format!("Bearer {}", nodes[0].token());
    for (name, _, _) in &personas {
        let url = nodes[0].url(&format!("/ui/personas/{name}?hours=1"));
        common::wait_for_async(T, || async {
            let (_, html) = get(&url, &[("authorization", &bearer)]).await;
            let at = html.find("data-samples=\"")? + "data-samples=\"".len();
            let n: usize = html[at..at + html[at..].find('"')?].parse().ok()?;
            (n >= 5).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("samples of {name}; a's log:\n{}", nodes[0].log()));
    }
    nodes
}

/// A form body of one field (`application/x-www-form-urlencoded`).
fn form(name: &str, value: &str) -> String {
    let enc: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{name}={enc}")
}

/// An operator's action, asked again while the mesh answers 503 (two cores carry three nodes
/// and a browser here: a commit may time out, and an operator would retry; a commit that
/// timed out may still land, and its retry is then refused as done already).
async fn act(node: &TestNode, path: &str, body: Value) {
    let mut last = Value::Null;
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        let (code, v) = node.post(path, body.clone()).await;
        // a 409 after a 503: the first try was committed after all ("already restarted",
        // "exists")
        if code == 200 || code == 201 || (code == 409 && !last.is_null()) {
            return;
        }
        assert_eq!(code, 503, "{path}: {v}");
        last = v;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("{path}: still 503: {last}\nlog:\n{}", node.log());
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).timeout(T).build().unwrap()
}

/// Sign in through the form as a browser would (same-origin POST): the session cookie.
async fn sign_in(node: &TestNode, token: &str) -> String {
    let r = client()
        .post(node.url("/ui/login"))
        .header("origin", &node.api)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("token", token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "sign-in");
    let set = r.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains(token), "the cookie is not the token");
    set.split(';').next().unwrap().to_owned()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut rb = client().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_credential_and_refuse_other_origins() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nodes = three_nodes("", "").await;
    let a = &nodes[0];
    let token = a.token();
    let bearer = format!("Bearer {token}");

    // no credential: every page is refused (401, a page leading to the form); the form and
    // its style sheet are served
    for path in ["/ui", "/ui/personas/x", "/ui/live", "/ui?decisions=5"] {
        let (code, body) = get(&a.url(path), &[]).await;
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("/ui/login") && !body.contains("persona-row"), "{path}: {body}");
    }
    let (code, body) = get(&a.url("/ui/login"), &[]).await;
    assert_eq!(code, 200);
    assert!(body.contains("name=\"token\"") && body.contains("method=\"post\""), "{body}");
    assert_eq!(get(&a.url("/ui/assets/style.css"), &[]).await.0, 200);
    let r = client()
        .post(a.url("/ui/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("x", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "sign-out needs a session");

    // a bearer token reads; a wrong one does not
    let (code, body) = get(&a.url("/ui"), &[("authorization", &bearer)]).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("id=\"nodes\"") && body.matches("class=\"node-row\"").count() == 3, "{body}");
    assert_eq!(get(&a.url("/ui"), &[("authorization", "Bearer not-a-token-at-all")]).await.0, 401);

    // another origin, or a host name this node does not answer to: refused, token or not
    for headers in [
        vec![("authorization", bearer.as_str()), ("origin", "http://evil.example")],
        vec![("authorization", bearer.as_str()), ("sec-fetch-site", "cross-site")],
        vec![("authorization", bearer.as_str()), ("host", "evil.example")],
        vec![("origin", "http://evil.example")],
    ] {
        let (code, body) = get(&a.url("/ui"), &headers).await;
        assert_eq!(code, 403, "{headers:?}: {body}");
    }
    // a page of another origin cannot sign a browser in (login CSRF), even with a good token
    let r = client()
        .post(a.url("/ui/login"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("token", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let (code, _) = get(&a.url("/ui/login"), &[("host", "rebound.evil.example")]).await;
    assert_eq!(code, 403, "DNS rebinding onto the form");

    // a bad token at the form: 401, no cookie, and the token is in no log line
    let r = client()
        .post(a.url("/ui/login"))
        .header("origin", &a.api)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("token", "wrong-token-wrong-token-0042"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // the session: read scope, on the dashboard of the node that issued it only
    let cookie = sign_in(a, &token).await;
    let (code, body) = get(&a.url("/ui"), &[("cookie", &cookie)]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&a.url("/api/v1/status"), &[("cookie", &cookie)]).await.0, 401, "not the API");
    assert_eq!(get(&nodes[1].url("/ui"), &[("cookie", &cookie)]).await.0, 401, "not another node");
    let (code, _) = get(&a.url("/ui"), &[("cookie", &cookie), ("sec-fetch-site", "cross-site")]).await;
    assert_eq!(code, 403, "a cookie from another site's page");
    // inputs are bounded, with a clear 4xx
    for (path, want) in [
        ("/ui?decisions=0", 400),
        ("/ui?decisions=501", 400),
        ("/ui?decisions=x", 400),
        ("/ui?nope=1", 400),
        ("/ui/personas/nobody", 404),
        ("/ui/assets/secret.txt", 404),
    ] {
        let (code, body) = get(&a.url(path), &[("cookie", &cookie)]).await;
        assert_eq!(code, want, "{path}: {body}");
    }
    // signed out: the cookie is worth nothing
    let r = client()
        .post(a.url("/ui/logout"))
        .header("cookie", &cookie)
        .header("origin", &a.api)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("x", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&a.url("/ui"), &[("cookie", &cookie)]).await.0, 401);
    for n in &nodes {
        for secret in [token.as_str(), "wrong-token-wrong-token-0042", cookie.split('=').nth(1).unwrap()] {
            assert!(!n.log().contains(secret), "a secret in the log");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The browser

/// Where Chromium is, or why the browser test is skipped (a failure under CI).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        common::missing(
            "chromium is not installed (apt-get install -y --no-install-recommends chromium): the dashboard was not tested in a browser",
        );
    }
    found
}

fn chromium_args(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        // the test may run as root (containers), where Chromium's sandbox cannot start
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

/// `chromium --headless --dump-dom URL`: the DOM after the page loaded.
fn dump_dom(chromium: &Path, url: &str) -> String {
    // a starved machine sometimes gets no page from a fresh browser (it exits with nothing on
    // stdout): try again, and if it never answers say why rather than assert on ""
    let mut failures = Vec::new();
    for _ in 0..3 {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(chromium)
            .args(chromium_args(profile.path()))
            .arg("--dump-dom")
            .arg(url)
            .output()
            .expect("run chromium");
        if !out.stdout.is_empty() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        failures.push(format!("{}: {}", out.status, stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")));
    }
    panic!("chromium printed no page for {url}: {failures:#?}");
}

/// Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 in,
/// fd 4 out, messages ended by NUL), so one browser can sign in through the form, keep its
/// cookie, load pages, run a line of script and take screenshots.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromium: &Path) -> Browser {
        use std::os::fd::{AsRawFd, IntoRawFd};
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().unwrap();
        let (cmd_read, cmd_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (out_read, out_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (r, w) = (cmd_read.as_raw_fd(), out_write.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args(chromium_args(profile.path()))
            .arg("--remote-debugging-pipe")
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: fcntl and dup2 are async-signal-safe; they touch only the child's fds.
        unsafe {
            cmd.pre_exec(move || {
                // move both out of the way first, then onto 3 and 4 (dup2 clears CLOEXEC)
                let r2 = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let w2 = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_read);
        drop(out_write);
        let (tx, from) = mpsc::channel();
        let reader = unsafe {
            // SAFETY: the fd is ours alone from here on
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(out_read.into_raw_fd())
        };
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let to = std::fs::File::from(cmd_write);
        let mut b = Browser { child, to, from, next_id: 0, session: String::new(), _profile: profile };
        let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target").to_owned();
        let attached = b.call(None, "Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        b.session = attached["sessionId"].as_str().expect("a session").to_owned();
        b.page("Page.enable", json!({}));
        b.page("Network.enable", json!({}));
        b.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Send one command; its result (events that arrive meanwhile are passed to `seen`).
    fn call_seeing(&mut self, session: Option<&str>, method: &str, params: Value, seen: &mut Vec<Value>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.from.recv_timeout(left).unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            seen.push(v);
        }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.call_seeing(session, method, params, &mut Vec::new())
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Wait for the page's next load; the HTTP status of the document that loaded.
    fn wait_load(&mut self, mut seen: Vec<Value>) -> u16 {
        let deadline = Instant::now() + T;
        let mut status = 0;
        loop {
            for v in seen.drain(..) {
                if v["method"] == "Network.responseReceived" && v["params"]["type"] == "Document" {
                    status = v["params"]["response"]["status"].as_u64().unwrap_or(0) as u16;
                }
                if v["method"] == "Page.loadEventFired" {
                    return status;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            seen.push(self.from.recv_timeout(left).expect("the page did not load"));
        }
    }

    /// Load `url`; the document's HTTP status.
    fn goto(&mut self, url: &str) -> u16 {
        let session = self.session.clone();
        let mut seen = Vec::new();
        self.call_seeing(Some(&session), "Page.navigate", json!({"url": url}), &mut seen);
        self.wait_load(seen)
    }

    /// Run a line of script in the page; its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.page("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}));
        r["result"]["value"].clone()
    }

    /// Run a line of script that navigates (a form's submit); the status of what loaded.
    fn eval_and_load(&mut self, expr: &str) -> u16 {
        let session = self.session.clone();
        let mut seen = Vec::new();
        self.call_seeing(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
            &mut seen,
        );
        self.wait_load(seen)
    }

    fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML").as_str().unwrap_or_default().to_owned()
    }

    /// A PNG of the whole page (up to 2400 px tall) at `path`.
    fn screenshot(&mut self, path: &Path) {
        let h = self.eval("document.documentElement.scrollHeight").as_u64().unwrap_or(900).clamp(300, 2400);
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": h, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Poll a script expression until it is true.
    fn wait_true(&mut self, what: &str, expr: &str) {
        let deadline = Instant::now() + T;
        while self.eval(expr) != json!(true) {
            assert!(Instant::now() < deadline, "{what}: not within {T:?}; DOM:\n{}", self.dom());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// A web server of another origin on this host (a port of its own) whose page tries to read
/// the dashboard at `node` (`http://host:port`) and, by a form, to sign the browser out.
/// Returns the server's stop guard and the page's URL.
fn evil_page(node: &str) -> (EvilServer, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let page = format!(
        "<!doctype html><html><head><title>evil</title></head><body>\
         <form id=\"drive\" method=\"post\" action=\"{node}/ui/logout\"><input name=\"x\" value=\"1\"></form>\
         <script>fetch(\"{node}/ui\", {{credentials: \"include\"}}).then(function (r) {{ return r.text(); }})\
         .then(function (t) {{ document.title = \"done:read \" + t.length; }})\
         .catch(function () {{ document.title = \"done:blocked\"; }});</script></body></html>"
    );
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (EvilServer(stop), url)
}

struct EvilServer(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for EvilServer {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How many plots of a page have data, by the counts their `<svg>` carries.
fn plots_with_data(dom: &str) -> Vec<String> {
    dom.split("data-plot=\"")
        .skip(1)
        .filter_map(|rest| {
            let id = &rest[..rest.find('"')?];
            let at = rest.find("data-points=\"")? + "data-points=\"".len();
            let n: usize = rest[at..at + rest[at..].find('"')?].parse().ok()?;
            (n > 0).then(|| id.to_owned())
        })
        .collect()
}

/// Where the screenshots go: docs/images/ with `MINDMESH_UPDATE_SCREENSHOTS=1` (to refresh
/// the ones the docs show), else a directory of the test's own (taken all the same).
fn images_dir() -> PathBuf {
    if std::env::var_os("MINDMESH_UPDATE_SCREENSHOTS").is_some() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images");
        std::fs::create_dir_all(&dir).unwrap();
        return dir;
    }
    let dir = std::env::temp_dir().join(format!("mindmesh-ui-screenshots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_browser() {
    let Some(chromium) = chromium() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let nodes = busy_mesh().await;
    let a = &nodes[0];
    let token = a.token();

    // without credentials: the browser is led to the form, and sees no data
    let dom = dump_dom(&chromium, &a.url("/ui"));
    assert!(dom.contains("id=\"login\"") || dom.contains("id=\"unauthorized\""), "{dom}");
    assert!(!dom.contains("persona-row") && !dom.contains("data-plot"), "{dom}");
    let dom = dump_dom(&chromium, &a.url("/ui/personas/chat"));
    assert!(!dom.contains("data-plot"), "{dom}");

    let url = a.url("");
    let images = images_dir();
    let b = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start(&chromium);
        assert_eq!(b.goto(&format!("{url}/ui")), 401);
        assert_eq!(b.goto(&format!("{url}/ui/login")), 200);
        b.screenshot(&images.join("ui-login.png"));
        // sign in through the form, as an operator would
        let status = b.eval_and_load(&format!(
            "document.getElementById('token').value = {}; document.getElementById('login').submit();",
            json!(token)
        ));
        assert_eq!(status, 200, "signed in and on /ui: {}", b.dom());
        assert_eq!(b.eval("document.cookie"), json!(""), "the session cookie is HttpOnly");
        b
    })
    .await
    .unwrap();

    // the overview: three nodes, a leader, three personas, decisions with their outcomes
    let images = images_dir();
    let (b, dom) = tokio::task::spawn_blocking(move || {
        let mut b = b;
        b.wait_true("the mesh and personas", "document.querySelectorAll('tr.persona-row').length === 3");
        b.screenshot(&images.join("ui-overview.png"));
        let dom = b.dom();
        (b, dom)
    })
    .await
    .unwrap();
    assert_eq!(dom.matches("class=\"node-row\"").count(), 3, "{dom}");
    assert!(dom.contains("id=\"leader\""), "{dom}");
    for p in ["chat", "flaky", "leaky"] {
        assert!(dom.contains(&format!("data-persona=\"{p}\"")), "{p}: {dom}");
    }
    assert!(dom.matches("class=\"decision-row\"").count() >= 2, "{dom}");
    assert!(dom.contains("ui test restart"), "the restart's reason: {dom}");

    // each persona's page: the five plots, drawn with data, on whichever node it runs
    let url = a.url("");
    let images = images_dir();
    let (mut b, pages) = tokio::task::spawn_blocking(move || {
        let mut b = b;
        let mut pages = Vec::new();
        for p in ["chat", "flaky", "leaky"] {
            assert_eq!(b.goto(&format!("{url}/ui/personas/{p}")), 200);
            let dom = b.dom();
            if p == "flaky" {
                b.screenshot(&images.join("ui-persona.png"));
            }
            pages.push((p, dom));
        }
        (b, pages)
    })
    .await
    .unwrap();
    for (p, dom) in &pages {
        let with_data = plots_with_data(dom);
        for plot in ["memory", "latency", "queue", "cpu"] {
            assert!(with_data.iter().any(|id| id == plot), "{p}: plot {plot} has data ({with_data:?})");
        }
        assert!(dom.contains("data-rule=\"budget 256 MiB\""), "{p}: the memory budget line");
        assert!(dom.contains("data-series=\"trend"), "{p}: the fitted trend");
    }
    let flaky = &pages[1].1;
    assert!(plots_with_data(flaky).iter().any(|id| id == "errors"), "flaky's errors");
    assert!(flaky.contains("data-series=\"upstream_429\"") || flaky.contains("data-series=\"quota\""), "{flaky}");
    assert!(flaky.contains("class=\"decision-row\""), "flaky's restart in its decisions");

    // live: the overview, open, shows a decision made elsewhere without being reloaded
    let url = a.url("");
    b = tokio::task::spawn_blocking(move || {
        assert_eq!(b.goto(&format!("{url}/ui")), 200);
        b.wait_true("the live stream is open", "document.getElementById('live').className === 'live on'");
        b.eval("window.notReloaded = true");
        b
    })
    .await
    .unwrap();
    act(&nodes[2], "/api/v1/personas/leaky/restart", json!({"reason": "live restart marker"})).await;
    tokio::task::spawn_blocking(move || {
        b.wait_true(
            "the new decision shown live",
            "document.getElementById('decisions').textContent.includes('live restart marker') && window.notReloaded === true",
        );
    })
    .await
    .unwrap();
}

/// A page of another origin on the same host (another port: the same *site*, so
/// `SameSite=Strict` still lets the browser send the cookie) can neither read the dashboard
/// nor sign the browser out: the door refuses it by its Origin. One node is enough.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_page_cannot_read_or_drive_a_signed_in_browser() {
    let Some(chromium) = chromium() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let a = TestNode::start(&common::demo_persona("chat", &["--idle"], ""));
    a.wait_status(T, "chat runs", |s| common::mesh_persona(s, "chat").is_some_and(|p| p["phase"] == "running")).await;
    let token = a.token();
    let (evil, evil_url) = evil_page(&a.api);
    let url = a.url("");
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::start(&chromium);
        assert_eq!(b.goto(&format!("{url}/ui/login")), 200);
        let status = b.eval_and_load(&format!(
            "document.getElementById('token').value = {}; document.getElementById('login').submit();",
            json!(token)
        ));
        assert_eq!(status, 200, "signed in: {}", b.dom());
        assert_eq!(b.goto(&evil_url), 200);
        b.wait_true("the read is over", "document.title.startsWith('done:')");
        assert_eq!(b.eval("document.title"), json!("done:blocked"), "a foreign page read the dashboard");
        let status = b.eval_and_load("document.getElementById('drive').submit()");
        assert_eq!(status, 403, "the foreign sign-out: {}", b.dom());
        assert_eq!(b.goto(&format!("{url}/ui")), 200, "still signed in");
        assert!(b.dom().contains("data-persona=\"chat\""));
    })
    .await
    .unwrap();
    drop(evil);
    assert!(a.log().contains("refused a cross-origin request"), "the refusal is logged");
}
