//! The gateway end to end: the real node binary supervising real demo personas, OpenAI
//! clients (async-openai and plain HTTP) talking to the node. Concurrency is checked where it
//! matters — on the persona's side, from the demo persona's own count of requests in flight.

mod common;

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use common::{TestNode, demo_persona};
use futures::StreamExt;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "gateway-test-token-0123456789";

/// A client that sends the node's local admin token unless a request names another.
fn http(node: &TestNode) -> reqwest::Client {
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", node.token()).parse().unwrap());
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).default_headers(auth).build().unwrap()
}

/// One answer as a caller sees it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn completion_tokens(&self) -> u64 {
        self.body["usage"]["completion_tokens"].as_u64().unwrap_or(0)
    }
}

async fn chat(client: &reqwest::Client, node: &TestNode, body: Value) -> Answer {
    let r = client
        .post(node.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("a request was dropped without an answer: {e}"));
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap_or_else(|e| panic!("an answer was cut without an error: {e}"));
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    Answer { status, retry_after, body }
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

async fn burst(client: &reqwest::Client, node: &TestNode, n: usize, body: Value) -> Vec<Answer> {
    futures::future::join_all((0..n).map(|_| chat(client, node, body.clone()))).await
}

/// The demo persona's own view of itself (`/health` on its port).
async fn persona_health(node: &TestNode, name: &str) -> Value {
    let port = node.persona(name).await["port"].as_u64().expect("a running persona has a port");
    common::http("GET", &format!("http://127.0.0.1:{port}/health"), None).await.1
}

/// Sum a numeric field over the persona's stored series.
async fn series_sum(node: &TestNode, name: &str, field: &str) -> u64 {
    let (_, page) = node.get(&format!("/api/v1/personas/{name}/series?max_points=100000")).await;
    page["samples"].as_array().map_or(0, |s| s.iter().filter_map(|x| x[field].as_u64()).sum())
}

/// Error kinds over the series, as `label -> count` (labels as `ErrorKind` serialises them).
async fn series_kinds(node: &TestNode, name: &str) -> std::collections::BTreeMap<String, u64> {
    let (_, page) = node.get(&format!("/api/v1/personas/{name}/series?max_points=100000")).await;
    let mut out = std::collections::BTreeMap::new();
    for s in page["samples"].as_array().cloned().unwrap_or_default() {
        for pair in s["errors_by_kind"].as_array().cloned().unwrap_or_default() {
            let kind = match &pair[0] {
                Value::String(k) => k.clone(),
                Value::Object(o) => o.iter().map(|(k, v)| format!("{k}_{v}")).collect(),
                other => other.to_string(),
            };
            *out.entry(kind).or_insert(0) += pair[1].as_u64().unwrap_or(0);
        }
    }
    out
}

/// Wait until the stored series has counted `n` requests for the persona.
async fn wait_series_requests(node: &TestNode, name: &str, n: u64) {
    let deadline = Instant::now() + T;
    loop {
        let got = series_sum(node, name, "requests").await;
        if got >= n {
            assert_eq!(got, n, "the series counts more requests than were sent to {name}");
            return;
        }
        assert!(Instant::now() < deadline, "series of {name} counted {got} of {n} requests");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn openai(node: &TestNode, key: &str) -> Client<OpenAIConfig> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let config = OpenAIConfig::new().with_api_base(node.url("/v1")).with_api_key(key);
    Client::build(http, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openai_client_works_through_the_gateway_streaming_included() {
    let node = TestNode::start(&format!(
        "token = \"{TOKEN}\"\n[supervisor]\nmetrics_interval_ms = 200\n{}",
        demo_persona("chat", &["--tokens", "6", "--token-delay-ms", "60"], "")
    ));
    let client = http(&node);
    // the API needs the token too: wait for the persona through it
    let deadline = Instant::now() + T;
    loop {
        let r = client.get(node.url("/api/v1/personas/chat")).bearer_auth(TOKEN).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if v["phase"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "chat never ran: {v}\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let oa = openai(&node, TOKEN);
    let req = CreateChatCompletionRequestArgs::default()
        .model("chat")
        .messages([ChatCompletionRequestUserMessageArgs::default().content("Say hello.").build().unwrap().into()])
        .build()
        .unwrap();
    let whole = oa.chat().create(req.clone()).await.expect("a plain completion through the gateway");
    let text = whole.choices[0].message.content.clone().unwrap_or_default();
    assert!(!text.is_empty());
    assert_eq!(whole.usage.as_ref().map(|u| u.completion_tokens), Some(6));

    // streamed: chunk by chunk, the first long before the last
    let started = Instant::now();
    // ask for a stream explicitly: the workspace enables async-openai's `byot` (for the brain),
    // under which `create_stream` sends the request as given
    let mut streaming = req.clone();
    streaming.stream = Some(true);
    let mut stream = oa.chat().create_stream(streaming).await.expect("a stream through the gateway");
    let (mut streamed, mut chunks, mut first_ms) = (String::new(), 0, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("a good chunk");
        if let Some(c) = chunk.choices.first().and_then(|c| c.delta.content.clone()) {
            first_ms.get_or_insert(started.elapsed().as_millis());
            streamed.push_str(&c);
            chunks += 1;
        }
    }
    let total_ms = started.elapsed().as_millis();
    assert_eq!((streamed.as_str(), chunks), (text.as_str(), 6));
    let first_ms = first_ms.unwrap();
    assert!(total_ms - first_ms >= 200, "not streamed as it came: first chunk at {first_ms} ms, end at {total_ms} ms");

    // unknown persona: 404 in OpenAI's shape; a wrong key: 401
    let mut bad = req.clone();
    bad.model = "nobody".into();
    match oa.chat().create(bad).await {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.status_code.as_u16(), 404);
            assert_eq!(e.api_error.code.as_deref(), Some("model_not_found"), "{e}");
            assert_eq!(e.api_error.param.as_deref(), Some("model"));
        }
        other => panic!("expected a 404 error, got {other:?}"),
    }
    match openai(&node, "not-the-token").chat().create(req.clone()).await {
        Err(OpenAIError::ApiError(e)) => assert_eq!(e.status_code.as_u16(), 401, "{e}"),
        other => panic!("expected a 401 error, got {other:?}"),
    }

    // the legacy completions endpoint and the model list
    let r = client
        .post(node.url("/v1/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "chat", "prompt": "Once", "max_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");
    let models: Value =
        client.get(node.url("/v1/models")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "chat", "{models}");

    // what the gateway measured: three answers, 6 + 6 + 3 tokens, a time to first token
    let get = |path: &'static str| {
        let r = client.get(node.url(path)).bearer_auth(TOKEN).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let deadline = Instant::now() + T;
    loop {
        let page = get("/api/v1/personas/chat/series?max_points=100000").await;
        let samples = page["samples"].as_array().cloned().unwrap_or_default();
        let sum = |f: &str| samples.iter().filter_map(|s| s[f].as_u64()).sum::<u64>();
        if sum("requests") >= 3 {
            assert_eq!((sum("requests"), sum("errors"), sum("tokens_out")), (3, 0, 15), "{page}");
            assert!(samples.iter().any(|s| s["ttft_p50_ms"].as_f64().is_some_and(|t| t >= 50.0)), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "series never counted the requests: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = get("/api/v1/personas/chat").await;
    assert_eq!((v["requests_total"].as_u64(), v["errors_total"].as_u64()), (Some(3), Some(0)), "{v}");
    assert!(v["last_activity_ms"].as_u64().is_some() && v["idle_s"].as_u64().is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_throttle_clamp_and_budget_changes_hold_without_restart() {
    let node = TestNode::start(&format!(
        "[supervisor]\nmetrics_interval_ms = 200\n[gateway]\nmax_queued_per_persona = 6\n{}{}",
        demo_persona(
            "slow",
            &["--latency-ms", "300"],
            "[persona.budget]\nmax_concurrent_inferences = 4\nthrottle_multiplier = 0.5\ntokens_per_response = 3",
        ),
        demo_persona("slower", &["--latency-ms", "1500"], "[persona.budget]\nmax_concurrent_inferences = 1"),
    ));
    let before = node.wait_persona("slow", T, |v| v["phase"] == "running").await;
    node.wait_persona("slower", T, |v| v["phase"] == "running").await;
    let client = http(&node);

    // throttle 0.5 halves 4 slots to 2: 8 requests take 4 rounds, never more than 2 at once
    let t0 = Instant::now();
    let answers = burst(
        &client,
        &node,
        8,
        json!({"model": "slow", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100}),
    )
    .await;
    let took = t0.elapsed();
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert!(answers.iter().all(|a| a.completion_tokens() == 3), "max_tokens clamped to the budget: {answers:?}");
    assert_eq!(persona_health(&node, "slow").await["max_in_flight"], 2);
    assert!(took >= Duration::from_millis(1100), "8 requests at 2 at a time take 4 × 300 ms, took {took:?}");

    // a budget change (through the CLI) applies at once, to the same process
    let out = node.cli(&["persona", "budget", "slow", "--multiplier", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers = burst(&client, &node, 8, ask("slow")).await;
    assert!(answers.iter().all(|a| a.status == 200 && a.completion_tokens() == 3), "{answers:?}");
    assert_eq!(persona_health(&node, "slow").await["max_in_flight"], 4);
    assert_eq!(node.persona("slow").await["pid"], before["pid"], "no restart for a budget change");

    // one in flight, six queued (the per-persona bound), two refused at once with Retry-After
    let flood = {
        let client = client.clone();
        let url = node.url("/v1/chat/completions");
        tokio::spawn(async move {
            futures::future::join_all((0..9).map(|_| {
                let client = client.clone();
                let url = url.clone();
                async move {
                    let r = client.post(url).json(&ask("slower")).send().await.expect("an answer");
                    let status = r.status().as_u16();
                    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                    let body: Value = r.json().await.expect("a JSON answer");
                    Answer { status, retry_after: retry, body }
                }
            }))
            .await
        })
    };
    node.wait_persona("slower", T, |v| v["queue_depth"] == 6 && v["in_flight"] == 1).await;
    // shortening the timeout reaches the six that wait; the one in flight keeps its own
    let (code, v) = node.patch("/api/v1/personas/slower/budget", json!({"max_response_time_ms": 150})).await;
    assert_eq!(code, 200, "{v}");
    let answers = flood.await.unwrap();
    let count = |s: u16| answers.iter().filter(|a| a.status == s).count();
    assert_eq!((count(200), count(504), count(429)), (1, 6, 2), "{answers:?}");
    for a in answers.iter().filter(|a| a.status == 429) {
        assert_eq!((a.code(), a.retry_after.as_deref()), ("queue_full", Some("1")), "{a:?}");
    }
    assert!(answers.iter().filter(|a| a.status == 504).all(|a| a.code() == "timeout"));
    // and a request in flight past its time fails too
    let a = chat(&client, &node, ask("slower")).await;
    assert_eq!((a.status, a.code()), (504, "timeout"), "{a:?}");

    // not allowed to run: refused, clearly
    let (code, _) = node.patch("/api/v1/personas/slower/budget", json!({"allowed_to_run": false})).await;
    assert_eq!(code, 200);
    let a = chat(&client, &node, ask("slower")).await;
    assert_eq!((a.status, a.code()), (503, "not_allowed_to_run"), "{a:?}");

    // every one of them is in the metrics, by kind
    wait_series_requests(&node, "slower", 11).await;
    let kinds = series_kinds(&node, "slower").await;
    assert_eq!(kinds.get("timeout"), Some(&7), "{kinds:?}");
    assert_eq!(kinds.get("rejected"), Some(&3), "{kinds:?}");
    wait_series_requests(&node, "slow", 16).await;
    assert_eq!(series_sum(&node, "slow", "errors").await, 0);
    assert_eq!(series_sum(&node, "slow", "tokens_out").await, 48);
}

#[tokio::test(flavor = "multi_thread")]
async fn priority_order_holds_under_saturation() {
    let node = TestNode::start(&format!(
        "[gateway]\nmax_in_flight = 1\n{}{}{}",
        demo_persona("hog", &["--latency-ms", "1500"], ""),
        demo_persona("hi", &["--latency-ms", "100"], "[persona.budget]\ninference_queue_priority = 90"),
        demo_persona("lo", &["--latency-ms", "100"], "[persona.budget]\ninference_queue_priority = 10"),
    ));
    for p in ["hog", "hi", "lo"] {
        node.wait_persona(p, T, |v| v["phase"] == "running").await;
    }
    let client = http(&node);
    let send = |model: &'static str| {
        let client = client.clone();
        let url = node.url("/v1/chat/completions");
        tokio::spawn(async move {
            let r = client.post(url).json(&ask(model)).send().await.expect("an answer");
            assert_eq!(r.status(), 200);
            (model, Instant::now())
        })
    };
    // the node's one slot taken, then three lo and three hi waiting for it, lo first
    let mut all = vec![send("hog")];
    node.wait_persona("hog", T, |v| v["in_flight"] == 1).await;
    all.extend((0..3).map(|_| send("lo")));
    node.wait_persona("lo", T, |v| v["queue_depth"] == 3).await;
    all.extend((0..3).map(|_| send("hi")));
    node.wait_persona("hi", T, |v| v["queue_depth"] == 3).await;
    let mut done = Vec::new();
    for h in all {
        done.push(h.await.unwrap());
    }
    done.sort_by_key(|(_, at)| *at);
    let order: Vec<&str> = done.iter().map(|(m, _)| *m).collect();
    assert_eq!(order, ["hog", "hi", "hi", "hi", "lo", "lo", "lo"], "higher priority served first");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hibernating_persona_wakes_once_for_concurrent_requests_and_idle_ones_hibernate() {
    let node = TestNode::start(&format!(
        "[gateway]\nidle_check_interval_ms = 200\n{}{}",
        demo_persona("sleepy", &[], ""),
        demo_persona("dozy", &[], "hibernate_after_idle_s = 1"),
    ));
    node.wait_persona("sleepy", T, |v| v["phase"] == "running").await;
    let (code, v) = node.post("/api/v1/personas/sleepy/hibernate", json!({"wait_ms": 20000})).await;
    assert_eq!((code, v["phase"].as_str()), (200, Some("hibernating")), "{v}");
    let client = http(&node);
    let answers = burst(&client, &node, 4, ask("sleepy")).await;
    assert!(answers.iter().all(|a| a.status == 200), "all served once awake: {answers:?}");
    let events = node.events("sleepy").await;
    let count = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
    assert_eq!(count("wake"), 1, "one wake for four requests: {events:?}");
    assert_eq!(count("spawn"), 2, "started, then woken once: {events:?}");

    // idle past hibernate_after_idle_s: hibernated; a request wakes it again
    node.wait_persona("dozy", T, |v| v["phase"] == "hibernating").await;
    let a = chat(&client, &node, ask("dozy")).await;
    assert_eq!(a.status, 200, "{a:?}");
    node.wait_persona("dozy", T, |v| v["phase"] == "hibernating").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_and_stop_under_load_drop_no_request_silently() {
    // a persona that drops what it is doing on SIGTERM: only the gateway's drain saves those
    let node = TestNode::start(&demo_persona(
        "busy",
        &["--latency-ms", "100", "--shutdown-grace-ms", "0"],
        "[persona.budget]\nmax_concurrent_inferences = 4",
    ));
    let before = node.wait_persona("busy", T, |v| v["phase"] == "running").await;
    let client = http(&node);
    let stop_at = Instant::now() + Duration::from_millis(2500);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = node.url("/v1/chat/completions");
            tokio::spawn(async move {
                let mut out = Vec::new();
                while Instant::now() < stop_at {
                    // every request ends in an answer or an explicit error, never in silence
                    let r = client.post(&url).json(&ask("busy")).send().await.expect("dropped without an answer");
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.expect("cut without an error");
                    out.push((status, body));
                }
                out
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, v) = node.post("/api/v1/personas/busy/restart", json!({"wait_ms": 20000})).await;
    assert_eq!((code, v["phase"].as_str()), (200, Some("running")), "{v}");
    let after = node.persona("busy").await;
    assert_ne!(after["pid"], before["pid"], "restarted");
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "a drained restart fails nothing: {failed:?}");
    assert!(answers.len() >= 40, "the load went on across the restart: {}", answers.len());

    // a stop under load: what was in flight finishes, what comes later is refused explicitly
    let load: Vec<_> = (0..6).map(|_| chat(&client, &node, ask("busy"))).collect();
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        node.post("/api/v1/personas/busy/stop", json!({"wait_ms": 20000})).await
    };
    let (answers, (code, _)) = tokio::join!(futures::future::join_all(load), stopper);
    assert_eq!(code, 200);
    for a in &answers {
        assert!(a.status == 200 || (a.status == 503 && a.code() == "persona_unavailable"), "{a:?}");
    }
    assert!(answers.iter().filter(|a| a.status == 200).count() >= 4, "those in flight finished: {answers:?}");
    let a = chat(&client, &node, ask("busy")).await;
    assert_eq!((a.status, a.code()), (503, "persona_unavailable"), "{a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn measured_errors_match_what_the_persona_answered() {
    let node = TestNode::start(&format!(
        "[supervisor]\nmetrics_interval_ms = 200\n{}{}",
        demo_persona("fine", &["--latency-ms", "50"], ""),
        demo_persona(
            "flaky",
            &["--error-rate", "1", "--error-kinds", "5xx,429,401,quota,context_length", "--seed", "7"],
            "",
        ),
    ));
    node.wait_persona("fine", T, |v| v["phase"] == "running").await;
    node.wait_persona("flaky", T, |v| v["phase"] == "running").await;
    let client = http(&node);
    for _ in 0..5 {
        assert_eq!(chat(&client, &node, ask("fine")).await.status, 200);
    }
    let answers = burst(&client, &node, 20, ask("flaky")).await;
    // the kind each answer should count as, from what the caller got
    let mut sent = std::collections::BTreeMap::new();
    for a in &answers {
        let kind = match (a.status, a.code()) {
            (500, _) => "upstream5xx".to_owned(),
            (401, _) => "auth".to_owned(),
            (429, "insufficient_quota") => "quota".to_owned(),
            (400, "context_length_exceeded") => "context_length".to_owned(),
            (s, _) => format!("upstream4xx_{s}"),
        };
        *sent.entry(kind).or_insert(0u64) += 1;
    }
    assert!(sent.len() >= 3, "the seed gives a mix of kinds: {sent:?}");
    wait_series_requests(&node, "flaky", 20).await;
    assert_eq!(series_sum(&node, "flaky", "errors").await, 20);
    assert_eq!(series_kinds(&node, "flaky").await, sent);
    wait_series_requests(&node, "fine", 5).await;
    assert_eq!(series_sum(&node, "fine", "errors").await, 0);
    let (_, page) = node.get("/api/v1/personas/fine/series?max_points=100000").await;
    let p50: Vec<f64> =
        page["samples"].as_array().unwrap().iter().filter_map(|s| s["latency_p50_ms"].as_f64()).collect();
    assert!(!p50.is_empty() && p50.iter().all(|&p| (48.0..2000.0).contains(&p)), "50 ms persona: {p50:?}");
}
