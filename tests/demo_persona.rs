//! The demo persona, as its users see it: the real binary on a port it picks (`--port 0`, the
//! address read from its stdout), spoken to over real HTTP, its process inspected in /proc.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mindmesh-demo-persona");

/// A running persona in its own process group; the group is SIGKILLed on drop.
struct Persona {
    child: Child,
    pid: i32,
    base: String,
    http: reqwest::Client,
    _stdout: BufReader<ChildStdout>,
}

fn http_client() -> reqwest::Client {
    // no CA roots and no proxy: loopback plain HTTP only
    reqwest::Client::builder().no_proxy().tls_certs_only(std::iter::empty()).build().expect("http client")
}

fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    // the test's own environment must not leak a persona setting in
    for (k, _) in std::env::vars() {
        if k.starts_with("MINDMESH_") {
            cmd.env_remove(k);
        }
    }
    if !args.contains(&"--port") {
        cmd.args(["--port", "0"]);
    }
    cmd.args(args).env("MINDMESH_PERSONA_ID", "test-persona").env("MINDMESH_DEMO_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0).kill_on_drop(true);
    cmd
}

impl Persona {
    async fn start(args: &[&str]) -> Persona {
        Persona::start_with(args, &[]).await
    }

    async fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Persona {
        let mut child = command(args, envs).spawn().expect("spawn the demo persona");
        let pid = child.id().expect("a pid") as i32;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line)).await;
        assert!(matches!(read, Ok(Ok(n)) if n > 0), "no ready line from {args:?}: {read:?} {line:?}");
        let base = line.trim().strip_prefix("listening on ").expect("ready line format").to_owned();
        Persona { child, pid, base, http: http_client(), _stdout: stdout }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.expect("request")
    }

    async fn chat(&self, body: Value) -> (u16, Value) {
        let r = self.post("/v1/chat/completions", body).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON answer"))
    }

    async fn health(&self) -> Value {
        self.http.get(self.url("/health")).send().await.expect("health").json().await.expect("health JSON")
    }

    fn signal_group(&self, sig: Signal) -> nix::Result<()> {
        kill(Pid::from_raw(-self.pid), sig)
    }

    async fn wait(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait()).await.expect("exited in time").expect("wait")
    }
}

impl Drop for Persona {
    fn drop(&mut self) {
        let _ = self.signal_group(Signal::SIGKILL);
    }
}

fn user(text: &str) -> Value {
    json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": text}])
}

fn words(v: &Value) -> usize {
    v.as_str().expect("a string").split_whitespace().count()
}

/// A /proc/<pid>/status field in kB.
fn status_kb(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = s.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

/// User + system CPU time of a process, from /proc/<pid>/stat.
fn cpu_time(pid: i32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 of stat(5), counted from the state field (3)
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    Duration::from_millis(ticks * 1000 / hz)
}

/// Process group and state letter of a process, from /proc/<pid>/stat.
fn pgid_and_state(pid: u32) -> Option<(i32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some((f[2].parse().ok()?, f[0].chars().next()?))
}

/// Wait until no process of the group is left (zombies included: init may reap lazily).
async fn group_gone(pgid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if kill(Pid::from_raw(-pgid), None) == Err(Errno::ESRCH) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn chat_completion_has_openai_shape_and_usage() {
    let p = Persona::start(&["--tokens", "8"]).await;
    let r = p.post("/v1/chat/completions", json!({"model": "m-1", "messages": user("one two three")})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-mindmesh-persona-id"], "test-persona");
    assert_eq!(r.headers()["x-mindmesh-state-restored"], "false");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "m-1");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["message"]["role"], "assistant");
    assert_eq!(words(&choices[0]["message"]["content"]), 8);
    assert_eq!(choices[0]["finish_reason"], "stop");
    // prompt tokens are words: "be brief" + "one two three"
    assert_eq!(v["usage"], json!({"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}));

    let h = p.health().await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["persona_id"], "test-persona");
    assert_eq!(h["pid"], p.pid);
    assert_eq!(h["requests_served"], 1);
    assert_eq!(h["state_restored"], false);
    assert!(h["uptime_ms"].as_u64().is_some());

    let (status, bad) = p.chat(json!({"messages": []})).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["type"], "invalid_request_error");
    let r = p.http.post(p.url("/v1/chat/completions")).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("parse"));
}

#[tokio::test]
async fn max_tokens_clamps_the_length() {
    let p = Persona::start(&["--tokens", "20"]).await;
    for (limits, n, finish) in [
        (json!({"max_tokens": 5}), 5, "length"),
        (json!({"max_tokens": 9, "max_completion_tokens": 3}), 3, "length"),
        (json!({"max_completion_tokens": 100}), 20, "stop"),
        (json!({}), 20, "stop"),
    ] {
        let mut body = json!({"model": "m", "messages": user("hi")});
        body.as_object_mut().unwrap().extend(limits.as_object().unwrap().clone());
        let (status, v) = p.chat(body).await;
        assert_eq!(status, 200, "{limits}");
        assert_eq!(words(&v["choices"][0]["message"]["content"]), n, "{limits}");
        assert_eq!(v["usage"]["completion_tokens"], n, "{limits}");
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{limits}");
    }
    let (status, v) = p.chat(json!({"messages": user("hi"), "max_tokens": 0})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "max_tokens");

    let r = p.post("/v1/completions", json!({"model": "m", "prompt": "say it", "max_tokens": 2})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(words(&v["choices"][0]["text"]), 2);
    assert_eq!(v["usage"], json!({"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}));
}

/// The data payloads of an SSE body, each with when it arrived.
async fn sse_events(resp: reqwest::Response) -> Vec<(Instant, String)> {
    use futures::StreamExt;
    let mut events = Vec::new();
    let mut pending = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        pending.push_str(std::str::from_utf8(&chunk.expect("body chunk")).expect("utf-8"));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let data = event.trim_end().strip_prefix("data: ").expect("a data event").to_owned();
            events.push((Instant::now(), data));
        }
    }
    assert!(pending.is_empty(), "trailing bytes: {pending:?}");
    events
}

#[tokio::test]
async fn streaming_delivers_a_chunk_per_token_then_done() {
    let p = Persona::start(&["--tokens", "6", "--token-delay-ms", "60"]).await;
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": user("hi"), "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = sse_events(r).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    // 6 token chunks, a finish chunk, a usage chunk
    assert_eq!(chunks.len(), 8, "{chunks:?}");
    let mut text = String::new();
    for (i, c) in chunks[..6].iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        text.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap());
        assert_eq!(c["choices"][0]["delta"].get("role").is_some(), i == 0);
    }
    assert_eq!(text.split_whitespace().count(), 6);
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(chunks[7]["usage"]["completion_tokens"], 6);
    // tokens were sent as they were made, not buffered to the end
    let spread = events.last().unwrap().0 - events[0].0;
    assert!(spread >= Duration::from_millis(250), "all chunks arrived within {spread:?}");

    // the clamp applies to streams too, and the legacy endpoint streams as well
    let r = p.post("/v1/chat/completions", json!({"messages": user("hi"), "stream": true, "max_tokens": 3})).await;
    let events = sse_events(r).await;
    assert_eq!(events.len(), 3 + 1 + 1, "3 tokens, finish, [DONE]");
    assert!(events[3].1.contains("\"finish_reason\":\"length\""));
    let r = p.post("/v1/completions", json!({"prompt": "x", "stream": true, "max_tokens": 2})).await;
    let events = sse_events(r).await;
    assert_eq!(events.len(), 2 + 1 + 1);
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["object"], "text_completion");
}

#[tokio::test]
async fn an_openai_client_library_understands_it() {
    use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
    use futures::StreamExt;

    let p = Persona::start(&["--tokens", "12"]).await;
    let config = async_openai::config::OpenAIConfig::new().with_api_base(p.url("/v1")).with_api_key("sk-test");
    let client = async_openai::Client::build(http_client(), config);
    let request = || {
        CreateChatCompletionRequestArgs::default()
            .model("test-persona")
            .messages([ChatCompletionRequestUserMessageArgs::default().content("hello there").build().unwrap().into()])
            .max_completion_tokens(7u32)
            .build()
            .unwrap()
    };
    let whole = client.chat().create(request()).await.expect("a chat completion");
    let content = whole.choices[0].message.content.clone().unwrap();
    assert_eq!(content.split_whitespace().count(), 7);
    assert_eq!(whole.usage.unwrap().completion_tokens, 7);

    // ask for a stream explicitly: the workspace enables async-openai's `byot` (for the brain),
    // under which `create_stream` sends the request as given
    let mut streaming = request();
    streaming.stream = Some(true);
    let mut stream = client.chat().create_stream(streaming).await.expect("a stream");
    let mut streamed = String::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        for c in chunk.expect("a chunk").choices {
            if let Some(t) = c.delta.content {
                streamed.push_str(&t);
                chunks += 1;
            }
        }
    }
    assert_eq!(chunks, 7);
    assert_eq!(streamed, content);

    let failing = Persona::start(&["--error-rate", "1", "--error-kinds", "quota"]).await;
    let config = async_openai::config::OpenAIConfig::new().with_api_base(failing.url("/v1"));
    let client = async_openai::Client::build(http_client(), config);
    match client.chat().create(request()).await {
        Err(async_openai::error::OpenAIError::ApiError(e)) => {
            assert_eq!(e.status_code, 429);
            assert_eq!(e.api_error.code.as_deref(), Some("insufficient_quota"), "{e:?}");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn models_and_unknown_paths() {
    let p = Persona::start(&["--idle"]).await;
    let v: Value = p.http.get(p.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "test-persona");
    assert_eq!(v["data"][0]["object"], "model");
    let r = p.http.get(p.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "unknown_url");
}

#[tokio::test]
async fn saved_state_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut a = Persona::start_with(&[], &[("MINDMESH_PERSONA_ID", "keeper")]).await;
    assert_eq!(a.chat(json!({"messages": user("remember the blue door")})).await.0, 200);
    assert_eq!(a.chat(json!({"messages": user("and the red key")})).await.0, 200);
    let r = a.post("/mindmesh/state/save", json!({})).await;
    assert_eq!(r.status(), 200);
    let blob = r.bytes().await.unwrap();
    let saved: Value = serde_json::from_slice(&blob).unwrap();
    assert_eq!(saved["persona_id"], "keeper");
    assert_eq!(saved["requests_served"], 2);
    assert_eq!(saved["memory"]["last_user_message"], "and the red key");
    std::fs::write(&file, &blob).unwrap();
    a.signal_group(Signal::SIGTERM).unwrap();
    assert!(a.wait(Duration::from_secs(5)).await.success(), "SIGTERM is a clean exit");

    let b =
        Persona::start_with(&[], &[("MINDMESH_PERSONA_ID", "keeper"), ("MINDMESH_STATE_FILE", file.to_str().unwrap())])
            .await;
    let h = b.health().await;
    assert_eq!(h["state_restored"], true, "{h}");
    assert_eq!(h["restore"]["outcome"], "restored");
    assert_eq!(h["restores"], 1);
    assert_eq!(h["requests_served"], 0);
    assert_eq!(h["requests_served_total"], 2);
    assert_eq!(h["memory"], saved["memory"]);
    let r = b.post("/v1/chat/completions", json!({"messages": user("anything else?")})).await;
    assert_eq!(r.headers()["x-mindmesh-state-restored"], "true");
    let again: Value = b.post("/mindmesh/state/save", json!({})).await.json().await.unwrap();
    assert_eq!(again["requests_served"], 3);
    assert_eq!(again["restores"], 1);
    assert_ne!(again["memory"]["conversation_digest"], saved["memory"]["conversation_digest"]);

    // a state file that is not ours: reported, and the persona serves from scratch
    std::fs::write(&file, b"{\"something\": \"else\"}").unwrap();
    let c = Persona::start_with(&[], &[("MINDMESH_STATE_FILE", file.to_str().unwrap())]).await;
    let h = c.health().await;
    assert_eq!(h["state_restored"], false);
    assert_eq!(h["restore"]["outcome"], "failed");
    assert!(h["restore"]["error"].as_str().unwrap().contains("not a state blob"), "{h}");
    assert_eq!(c.chat(json!({"messages": user("hi")})).await.0, 200);
}

#[tokio::test]
async fn error_rate_one_answers_with_the_kind_asked_for() {
    let cases = [
        ("5xx", 500, "server_error", None, "internal server error"),
        ("429", 429, "requests", Some("rate_limit_exceeded"), "rate limit"),
        ("401", 401, "invalid_request_error", Some("invalid_api_key"), "invalid api key"),
        ("quota", 429, "insufficient_quota", Some("insufficient_quota"), "quota exceeded"),
        ("context_length", 400, "invalid_request_error", Some("context_length_exceeded"), "context_length_exceeded"),
    ];
    let start = |kind: &'static str| async move { Persona::start(&["--error-rate", "1", "--error-kinds", kind]).await };
    let personas = futures::future::join_all(cases.iter().map(|c| start(c.0))).await;
    for (p, (kind, status, ty, code, phrase)) in personas.iter().zip(cases) {
        for _ in 0..3 {
            let r = p.post("/v1/chat/completions", json!({"messages": user("hi")})).await;
            assert_eq!(r.status(), status, "{kind}");
            assert_eq!(r.headers().contains_key("retry-after"), status == 429, "{kind}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["type"], ty, "{kind}");
            assert_eq!(v["error"]["code"].as_str(), code, "{kind}");
            assert!(v["error"]["message"].as_str().unwrap().contains(phrase), "{kind}: {v}");
        }
        let h = p.health().await;
        assert_eq!((h["requests_served"].as_u64(), h["errors_injected"].as_u64()), (Some(3), Some(3)), "{kind}");
    }

    // timeout: hangs past the caller's patience, then answers 504
    let p = Persona::start(&["--error-rate", "1", "--error-kinds", "timeout", "--hang-ms", "700"]).await;
    let impatient = p.http.post(p.url("/v1/chat/completions")).timeout(Duration::from_millis(200));
    let e = impatient.json(&json!({"messages": user("hi")})).send().await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let t = Instant::now();
    let r = p.post("/v1/chat/completions", json!({"messages": user("hi")})).await;
    assert_eq!(r.status(), 504);
    assert!(t.elapsed() >= Duration::from_millis(700));

    // the same seed fails the same requests
    let statuses = |p: Persona| async move {
        let mut s = Vec::new();
        for _ in 0..24 {
            s.push(p.chat(json!({"messages": user("hi")})).await.0);
        }
        s
    };
    let args = ["--error-rate", "0.5", "--error-kinds", "429,5xx", "--seed", "1234"];
    let (a, b) = futures::join!(Persona::start(&args), Persona::start(&args));
    let (a, b) = (statuses(a).await, statuses(b).await);
    assert_eq!(a, b);
    assert!(a.contains(&200) && a.contains(&429) && a.contains(&500), "{a:?}");
}

#[tokio::test]
async fn behaviour_flags_are_read_from_the_environment() {
    let p = Persona::start_with(
        &[],
        &[
            ("MINDMESH_DEMO_TOKENS", "4"),
            ("MINDMESH_DEMO_ERROR_RATE", "1"),
            ("MINDMESH_DEMO_ERROR_KINDS", "401"),
            // off, so not in conflict with the leak
            ("MINDMESH_DEMO_IDLE", "0"),
            ("MINDMESH_DEMO_LEAK_MB_PER_MIN", "1"),
            // set but empty: nothing to restore
            ("MINDMESH_STATE_FILE", ""),
        ],
    )
    .await;
    assert_eq!(p.chat(json!({"messages": user("hi")})).await.0, 401);
    let h = p.health().await;
    assert_eq!(h["flags"]["tokens"], 4);
    assert_eq!(h["flags"]["idle"], false);
    assert_eq!(h["flags"]["leak_mb_per_min"], 1.0);
    assert_eq!(h["restore"]["outcome"], "fresh");
    // the command line wins over the environment
    let p = Persona::start_with(&["--tokens", "3"], &[("MINDMESH_DEMO_TOKENS", "9")]).await;
    let (_, v) = p.chat(json!({"messages": user("hi")})).await;
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn latency_is_added_and_ramps() {
    let p = Persona::start(&["--latency-ms", "200", "--tokens", "5", "--token-delay-ms", "20"]).await;
    let t = Instant::now();
    assert_eq!(p.chat(json!({"messages": user("hi")})).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    let t = Instant::now();
    p.health().await;
    assert!(t.elapsed() < Duration::from_millis(200), "health is not delayed");

    // one extra millisecond per millisecond since start
    let p = Persona::start(&["--latency-ramp-ms-per-min", "60000"]).await;
    let timed = || async {
        let t = Instant::now();
        p.chat(json!({"messages": user("hi")})).await;
        t.elapsed()
    };
    let early = timed().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = timed().await;
    assert!(late >= Duration::from_millis(400) && late > early + Duration::from_millis(200), "{early:?} {late:?}");
}

#[tokio::test]
async fn the_leak_makes_rss_grow_and_steady_does_not() {
    let (leaky, steady) = futures::join!(Persona::start(&["--leak-mb-per-min", "1200"]), Persona::start(&[]));
    let before = (status_kb(leaky.pid, "VmRSS:"), status_kb(steady.pid, "VmRSS:"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (status_kb(leaky.pid, "VmRSS:"), status_kb(steady.pid, "VmRSS:"));
    // 20 MB/s for 2 s is about 40 MB
    assert!(after.0 >= before.0 + 25 * 1024, "leaky RSS {} kB -> {} kB", before.0, after.0);
    assert!(after.1 < before.1 + 4 * 1024, "steady RSS {} kB -> {} kB", before.1, after.1);
    assert_eq!(leaky.health().await["status"], "ok");
}

#[tokio::test]
async fn the_cpu_hog_burns_its_share_and_idle_burns_nothing() {
    let (hog, idle) = futures::join!(Persona::start(&["--cpu-hog-percent", "50"]), Persona::start(&["--idle"]));
    let before = (cpu_time(hog.pid), cpu_time(idle.pid));
    let started = Instant::now();
    // A loaded machine gives the hog less than it asks, never more: wait for a clear amount
    // of work (1.2 s on a quiet machine), then check that its rate stayed under its share.
    let hog_used = loop {
        let used = cpu_time(hog.pid) - before.0;
        if used >= Duration::from_millis(600) || started.elapsed() > Duration::from_secs(15) {
            break used;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wall = started.elapsed();
    let idle_used = cpu_time(idle.pid) - before.1;
    assert!(hog_used >= Duration::from_millis(600), "hog used only {hog_used:?} in {wall:?}");
    assert!(
        hog_used.as_secs_f64() <= 0.8 * wall.as_secs_f64(),
        "hog used {hog_used:?} in {wall:?}: over its 50 % share"
    );
    assert!(idle_used <= Duration::from_millis(50), "idle used {idle_used:?} in {wall:?}");
    // the tiny child: one thread, little private memory
    assert_eq!(status_kb(idle.pid, "Threads:"), 1);
    let anon_kb = status_kb(idle.pid, "RssAnon:");
    assert!(anon_kb < 8 * 1024, "idle persona holds {anon_kb} kB of anonymous memory");
}

#[tokio::test]
async fn crash_after_exits_non_zero() {
    let (mut exits, mut aborts) = futures::join!(
        Persona::start(&["--crash-after-s", "0.4"]),
        Persona::start(&["--crash-after-s", "0.4", "--crash-abort"])
    );
    assert_eq!(exits.health().await["status"], "ok", "serves until the crash");
    let status = exits.wait(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(70), "{status:?}");
    let status = aborts.wait(Duration::from_secs(5)).await;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
}

#[tokio::test]
async fn bad_flags_and_a_taken_port_fail_at_start() {
    for args in [&["--error-rate", "2"][..], &["--idle", "--leak-mb-per-min", "5"], &["--error-kinds", "teapot"]] {
        let out = command(args, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = command(&["--port", &port], &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn a_spawned_child_shares_the_group_and_dies_with_it() {
    let mut p = Persona::start(&["--spawn-child"]).await;
    let child_pid = p.health().await["child_pid"].as_u64().expect("a child pid") as u32;
    let (pgid, state) = pgid_and_state(child_pid).expect("the child runs");
    assert_eq!(pgid, p.pid, "the child is in the persona's group");
    assert_ne!(state, 'Z');
    p.signal_group(Signal::SIGTERM).unwrap();
    assert!(p.wait(Duration::from_secs(5)).await.success());
    let _ = p.signal_group(Signal::SIGKILL);
    assert!(group_gone(p.pid, Duration::from_secs(8)).await, "a process of the group survived");
}

#[tokio::test]
async fn ignoring_sigterm_needs_a_sigkill_of_the_group() {
    let mut p = Persona::start_with(&["--spawn-child"], &[("MINDMESH_DEMO_IGNORE_SIGTERM", "1")]).await;
    let child_pid = p.health().await["child_pid"].as_u64().expect("a child pid") as u32;
    p.signal_group(Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.health().await["status"], "ok", "still serving after SIGTERM");
    assert!(matches!(pgid_and_state(child_pid), Some((_, s)) if s != 'Z'), "the child ignores SIGTERM too");
    p.signal_group(Signal::SIGKILL).unwrap();
    assert_eq!(p.wait(Duration::from_secs(5)).await.signal(), Some(libc::SIGKILL));
    assert!(group_gone(p.pid, Duration::from_secs(8)).await, "a process of the group survived");
}

#[tokio::test]
async fn the_example_personas_are_a_valid_config_and_start() {
    let toml_src = include_str!("../deploy/examples/demo.toml");
    let cfg = mindmesh_core::config::NodeConfig::from_toml_str(toml_src).expect("a valid node config");
    assert!(cfg.personas.len() >= 6);
    let start = |spec: mindmesh_core::PersonaSpec| async move {
        let args = spec.expanded_args(0);
        // the example runs `mindmesh demo-persona …`; here the standalone binary takes the flags
        let args: Vec<&str> = args.iter().map(String::as_str).skip_while(|a| *a == "demo-persona").collect();
        let envs: Vec<(&str, &str)> = spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = Persona::start_with(&args, &envs).await;
        let health = spec.health_path.as_deref().unwrap_or("/health");
        let h: Value = p.http.get(p.url(health)).send().await.unwrap().json().await.unwrap();
        assert_eq!(h["status"], "ok", "{}", spec.name);
    };
    futures::future::join_all(cfg.personas.into_iter().map(start)).await;
}
