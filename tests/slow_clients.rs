//! Slow and hostile clients (finding 2 of issue 10), against the real binary: a node held to
//! 128 descriptors, as in the finding (200 half-sent requests starved it: the lease file could
//! not be written, the fence guard killed a persona, its respawn failed with EMFILE), takes
//! 1,000 idle and half-sent connections without starving its local CLI or fencing its persona,
//! closes them by its timeouts and stops on SIGTERM within its grace with them attached; a
//! request forwarded to a frozen node answers within its budget; a stuck LLM server does not
//! hold the node's shutdown.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestNode, demo_persona};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(30);
/// The descriptors the node may open, as in the finding.
const FD_LIMIT: u64 = 128;
/// Connections the clients open.
const CLIENTS: usize = 1000;
const HEADER_READ_TIMEOUT_MS: u64 = 1500;
const IDLE_TIMEOUT_MS: u64 = 2500;
const BODY_READ_TIMEOUT_MS: u64 = 1500;
const SHUTDOWN_GRACE_MS: u64 = 1000;
/// What a stopping node may take beyond its grace: its personas' own stop (the demo persona
/// exits at once on SIGTERM), the store's close, a loaded machine.
const EXIT_MARGIN: Duration = Duration::from_secs(4);

fn api_limits() -> String {
    format!(
        "header_read_timeout_ms = {HEADER_READ_TIMEOUT_MS}\nidle_timeout_ms = {IDLE_TIMEOUT_MS}\n\
         body_read_timeout_ms = {BODY_READ_TIMEOUT_MS}\nshutdown_grace_ms = {SHUTDOWN_GRACE_MS}\n"
    )
}

/// This test process holds every client socket: let it open as many as its hard limit allows.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(soft as usize > CLIENTS * 2 + 100, "this test needs {} descriptors; the limit is {soft}", CLIENTS * 2);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Connects and sends nothing.
    Idle,
    /// Half of a request's head, never the rest.
    HalfHead,
    /// A whole head with the local token and a tenth of its body.
    HalfBody,
}

struct Client {
    kind: Kind,
    stream: TcpStream,
    opened: Instant,
}

/// Open `n` connections to `addr`, a third of each kind, each sending its part at once.
async fn open_clients(addr: SocketAddr, n: usize, token: &str) -> Vec<Client> {
    let half_body = format!(
        "POST /api/v1/personas HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\": \"slow\", "
    );
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kind = [Kind::Idle, Kind::HalfHead, Kind::HalfBody][i % 3];
        let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect #{i}: {e}"));
        let opened = Instant::now();
        let part: &[u8] = match kind {
            Kind::Idle => b"",
            Kind::HalfHead => b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */",
            Kind::HalfBody => half_body.as_bytes(),
        };
        // a refused client may already be closed: what it could not send does not matter
        let _ = stream.write_all(part).await;
        out.push(Client { kind, stream, opened });
    }
    out
}

/// How a client's connection ended.
#[derive(Debug)]
struct Ended {
    kind: Kind,
    /// From opening to the node's close.
    after: Duration,
    /// What the node said first (status line), if anything.
    said: String,
}

/// Read each client until the node closes it (at most `within`).
async fn until_closed(clients: Vec<Client>, within: Duration) -> Vec<Ended> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                let deadline = tokio::time::Instant::now() + within;
                loop {
                    match tokio::time::timeout_at(deadline, c.stream.read(&mut buf)).await {
                        Err(_) => panic!("a {:?} client was not closed within {within:?}", c.kind),
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let said = String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_owned();
                Ended { kind: c.kind, after: c.opened.elapsed(), said }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A GET on the node's local socket, as the operator's CLI talks to it.
async fn local_get(node: &TestNode, path: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .unix_socket(node.data_dir().join("api.sock"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = client.get(format!("http://localhost{path}")).send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// The CLI as the operator runs it on the node's host: no token, no socket named — only the
/// address (the node's port is picked at random here).
async fn cli(node: &TestNode, args: &[&str]) -> (std::process::Output, Duration) {
    let api = node.api.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = std::process::Command::new(common::MINDMESH)
            .arg("--api")
            .arg(&api)
            .args(&args)
            .env_remove("MINDMESH_API_TOKEN")
            .output()
            .expect("run mindmesh");
        (out, started.elapsed())
    })
    .await
    .unwrap()
}

async fn cli_ok(node: &TestNode, args: &[&str]) -> String {
    let (out, took) = cli(node, args).await;
    assert!(
        out.status.success(),
        "`mindmesh {}` failed after {took:?}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    println!("`mindmesh {}` answered in {took:?}", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's descriptors in use now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// SIGTERM, then the time the node took to exit and its status.
fn terminate(child: &mut Child, node: &TestNode, at_most: Duration) -> (Duration, std::process::ExitStatus) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let sent = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (sent.elapsed(), s);
        }
        if sent.elapsed() > at_most {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node was still running {at_most:?} after SIGTERM; log:\n{}", node.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log lines that mean a persona was fenced, or the node ran out of descriptors.
fn starvation_in(log: &str) -> Vec<&str> {
    const SIGNS: [&str; 6] = [
        "lease lost",
        "fence guard: the node's lease ran out",
        "cannot renew the lease file",
        "Too many open files",
        "out of file descriptors",
        "fenced",
    ];
    log.lines().filter(|l| SIGNS.iter().any(|s| l.contains(s))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_slow_clients_under_a_128_fd_limit_starve_nothing_and_sigterm_stays_bounded() {
    raise_own_fd_limit();
    let mut node =
        TestNode::start_with_fd_limit(&format!("{}{}", api_limits(), demo_persona("steady", &[], "")), FD_LIMIT);
    let pid = node.child.as_ref().unwrap().id();
    let steady = node.wait_persona("steady", T, |v| v["phase"] == "running" && v["health"] == "healthy").await;
    let persona_pid = steady["pid"].as_u64().expect("a pid");
    let addr: SocketAddr = node.api.trim_start_matches("http://").parse().unwrap();
    let caps = node.log().lines().find(|l| l.contains("API connection caps")).unwrap_or_default().to_owned();
    println!("node pid {pid}: {} descriptors open of {FD_LIMIT}; {caps}", open_fds(pid));
    let token = node.token();

    // a thousand clients that never finish a request
    let started = Instant::now();
    let clients = open_clients(addr, CLIENTS, &token).await;
    println!("{CLIENTS} connections opened in {:?}; the node holds {} descriptors", started.elapsed(), open_fds(pid));
    let ended = tokio::spawn(until_closed(clients, Duration::from_secs(20)));

    // meanwhile the operator's CLI answers, with no flag but the address
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = cli_ok(&node, &["status"]).await;
    assert!(status.contains("steady"), "{status}");
    let list = cli_ok(&node, &["persona", "list"]).await;
    assert!(list.contains("steady") && list.contains("running"), "{list}");
    let (code, v) = local_get(&node, "/api/v1/personas/steady").await;
    assert_eq!((code, &v["pid"], &v["phase"]), (200, &json!(persona_pid), &json!("running")), "{v}");

    // every client is closed: over the cap at once with 503, the others by their timeouts
    let ended = ended.await.unwrap();
    let busy: Vec<&Ended> = ended.iter().filter(|e| e.said.contains(" 503 ")).collect();
    let held: Vec<&Ended> = ended.iter().filter(|e| !e.said.contains(" 503 ")).collect();
    println!("{} refused with 503, {} held until a timeout", busy.len(), held.len());
    assert!(!held.is_empty() && !busy.is_empty(), "a capped node holds some and refuses the rest: {caps}");
    let slowest = |k: Kind| held.iter().filter(|e| e.kind == k).map(|e| e.after).max();
    let fastest = |k: Kind| held.iter().filter(|e| e.kind == k).map(|e| e.after).min();
    for k in [Kind::Idle, Kind::HalfHead, Kind::HalfBody] {
        println!("{k:?}: held {:?} to {:?}", fastest(k), slowest(k));
    }
    let ms = Duration::from_millis;
    // each closed by its own timeout, not sooner, and not much later (the node checks a busy
    // connection again every 500 ms; the machine is loaded)
    let slack = ms(2500);
    if let Some(t) = fastest(Kind::Idle) {
        assert!(t >= ms(IDLE_TIMEOUT_MS - 200), "idle closed after {t:?}");
        assert!(slowest(Kind::Idle).unwrap() <= ms(IDLE_TIMEOUT_MS) + slack);
    }
    if let Some(t) = fastest(Kind::HalfHead) {
        assert!(t >= ms(HEADER_READ_TIMEOUT_MS - 200), "a half-sent head closed after {t:?}");
        assert!(slowest(Kind::HalfHead).unwrap() <= ms(HEADER_READ_TIMEOUT_MS) + slack);
    }
    // a body that never arrives: an error answer after its deadline, then the idle timeout
    for e in held.iter().filter(|e| e.kind == Kind::HalfBody) {
        assert!(e.said.starts_with("HTTP/1.1 4"), "a half-sent body is answered with an error: {e:?}");
        assert!(e.after <= ms(BODY_READ_TIMEOUT_MS + IDLE_TIMEOUT_MS) + slack, "{e:?}");
    }

    // the persona was never touched: same process, one spawn, no kill, no fence
    let v = node.persona("steady").await;
    assert_eq!((&v["pid"], &v["phase"], &v["health"]), (&json!(persona_pid), &json!("running"), &json!("healthy")));
    let events = node.events("steady").await;
    let spawns = events.iter().filter(|e| e["kind"] == "spawn").count();
    assert_eq!(spawns, 1, "{events:?}");
    assert!(
        !events.iter().any(|e| ["kill", "exit", "spawn_failed", "crash_loop", "restart", "health_change"]
            .contains(&e["kind"].as_str().unwrap_or(""))),
        "{events:?}"
    );
    let log = node.log();
    assert!(starvation_in(&log).is_empty(), "{:?}", starvation_in(&log));

    // a respawn while a thousand more are attached: the node keeps descriptors for its personas
    let clients = open_clients(addr, CLIENTS, &token).await;
    let ended = tokio::spawn(until_closed(clients, Duration::from_secs(20)));
    cli_ok(&node, &["persona", "restart", "steady"]).await;
    let respawned = common::wait_for_async(T, || async {
        let (code, v) = local_get(&node, "/api/v1/personas/steady").await;
        (code == 200 && v["health"] == "healthy" && v["pid"] != json!(persona_pid)).then(|| v["pid"].as_u64())?
    })
    .await;
    let new_pid = respawned.unwrap_or_else(|| panic!("no respawn with the clients attached\n{}", node.log())) as u32;
    ended.await.unwrap();

    // and a thousand more, attached when SIGTERM comes
    let clients = open_clients(addr, CLIENTS, &token).await;
    let mut child = node.child.take().unwrap();
    let (took, status) = terminate(&mut child, &node, Duration::from_secs(30));
    println!("exited {status} {took:?} after SIGTERM with {} clients attached", clients.len());
    assert!(status.success(), "{status}\n{}", node.log());
    assert!(took <= ms(SHUTDOWN_GRACE_MS) + EXIT_MARGIN, "SIGTERM took {took:?} (grace {SHUTDOWN_GRACE_MS} ms)");
    assert!(!common::pid_alive(new_pid), "the persona stops with its node");
    let log = node.log();
    assert!(starvation_in(&log).is_empty(), "{:?}", starvation_in(&log));
    drop(clients);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_forwarded_to_a_frozen_node_answers_within_its_budget() {
    const FORWARD_TIMEOUT_MS: u64 = 1500;
    const BUDGET_MS: u64 = 2000;
    let a = TestNode::start_in_mesh("a", &format!("forward_timeout_ms = {FORWARD_TIMEOUT_MS}\n"), "", None);
    a.wait_status(T, "a leads", |s| common::mesh_leader(s).as_deref() == Some("a")).await;
    let mut b = TestNode::start_in_mesh("b", "", "", Some(&a.join_info().await));
    a.wait_status(T, "b joined", |s| common::mesh_members(s) == 2).await;
    b.wait_status(T, "b knows itself a member", |s| common::mesh_members(s) == 2).await;
    let spec = json!({"name": "far", "command": common::DEMO, "args": ["--tokens", "3"], "health_path": "/health",
        "budget": {"max_response_time_ms": BUDGET_MS}});
    // added on b itself: an add forwarded through a would be held to a's short forwarding
    // deadline, and a spawn on a loaded machine can take longer
    let (code, v) = b.post("/api/v1/personas?node=b", spec).await;
    assert_eq!(code, 201, "{v}");
    b.wait_persona("far", T, |v| v["health"] == "healthy").await;
    let ask = json!({"model": "far", "messages": [{"role": "user", "content": "hello"}]});
    let (code, v) = a.post("/v1/chat/completions", ask.clone()).await;
    assert_eq!(code, 200, "through a to b: {v}");

    // b freezes: it accepts connections (the kernel does) and never answers
    let b_pid = Pid::from_raw(b.child.as_ref().unwrap().id() as i32);
    kill(b_pid, Signal::SIGSTOP).unwrap();
    let check = |what: &str, (code, v, took): (u16, Value, Duration), limit_ms: u64| {
        println!("{what}: {code} after {took:?} (limit {limit_ms} ms): {v}");
        assert_eq!(code, 504, "{what}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("did not answer within"), "{what}: a clear error: {v}");
        // the budget, the forwarding margin (500 ms) and a loaded machine
        assert!(took <= Duration::from_millis(limit_ms + 500 + 1500), "{what} took {took:?}");
        assert!(took >= Duration::from_millis(limit_ms), "{what} gave up before its budget: {took:?}");
    };
    // both at once, before the mesh notices b is gone and moves its persona (a chat after that
    // would be served by a itself)
    let (chat, read) =
        tokio::join!(timed(a.post("/v1/chat/completions", ask.clone())), timed(a.get("/api/v1/personas/far")));
    check("a chat through a to frozen b", chat, BUDGET_MS);
    check("an API read through a of b's persona", read, FORWARD_TIMEOUT_MS);
    // a stays responsive for what it serves itself
    let started = Instant::now();
    let (code, _) = a.get("/api/v1/status").await;
    assert_eq!(code, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    kill(b_pid, Signal::SIGCONT).unwrap();
    b.kill9();
}

/// A request's answer and how long it took.
async fn timed(request: impl std::future::Future<Output = (u16, Value)>) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (code, v) = request.await;
    (code, v, started.elapsed())
}

/// An OpenAI-compatible server that accepts, reads the request and never answers; reports each
/// request it received.
fn stuck_llm_server() -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            if s.read(&mut buf).is_ok_and(|n| n > 0) {
                let _ = tx.send(());
            }
            held.push(s);
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_does_not_wait_on_a_stuck_llm_call() {
    const LLM_TIMEOUT_MS: u64 = 60_000;
    let (llm, asked) = stuck_llm_server();
    let extra = format!(
        "{}{}\n[brain]\nanalyst = \"llm\"\ncycle_s = 1\n[brain.llm]\nbase_url = \"http://{llm}/v1\"\nmodel = \"stuck\"\ntimeout_ms = {LLM_TIMEOUT_MS}\n",
        api_limits(),
        demo_persona("steady", &[], "")
    );
    let mut node = TestNode::start(&extra);
    node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    // the leader's analyst is waiting on the model server
    let asked_at =
        tokio::task::spawn_blocking(move || asked.recv_timeout(Duration::from_secs(30)).map(|_| Instant::now()))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("the brain never asked the LLM; log:\n{}", node.log()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut child = node.child.take().unwrap();
    let (took, status) = terminate(&mut child, &node, Duration::from_secs(LLM_TIMEOUT_MS / 1000 + 10));
    println!("exited {status} {took:?} after SIGTERM, {:?} into a stuck LLM call", asked_at.elapsed() - took);
    assert!(status.success(), "{status}\n{}", node.log());
    assert!(
        took <= Duration::from_millis(SHUTDOWN_GRACE_MS) + EXIT_MARGIN,
        "SIGTERM took {took:?} with an LLM call in flight (its timeout: {LLM_TIMEOUT_MS} ms)"
    );
}
