//! The LLM analyst against a real HTTP server speaking OpenAI chat completions on loopback
//! (and, for conformance, against the in-memory twin): a good plan is applied, invalid JSON
//! falls back to the built-in analyst and the fallback is recorded, a plan that kills a
//! `system` persona is turned into `investigate`, a timeout falls back.

mod common;

use std::sync::Arc;

use common::{ScriptServer, plan, scenario};
use mindmesh_brain::llm::openai::OpenAiClient;
use mindmesh_brain::llm::{ChatRequest, LlmClient, Reply, ScriptedLlm};
use mindmesh_brain::scenario::Scenario;
use mindmesh_brain::{Brain, CycleReport};
use mindmesh_core::config::{BrainConfig, LlmResponseFormat};
use mindmesh_core::{Action, AnalystKind};

fn config(base_url: &str, timeout_ms: u64) -> BrainConfig {
    let mut c = BrainConfig::default();
    c.llm.base_url = base_url.to_owned();
    c.llm.model = "scripted".into();
    c.llm.timeout_ms = timeout_ms;
    c
}

/// One cycle as `brain eval` runs it: primed with the samples before the end.
async fn cycle(brain: &mut Brain, s: &Scenario) -> CycleReport {
    for t in s.priming_times(brain.config().guardrails.hysteresis_cycles) {
        brain.prime(&s.view, t);
    }
    brain.analyse(&s.view, s.end_ms).await
}

fn action(r: &CycleReport, persona: &str) -> Action {
    r.decisions.iter().find(|d| d.persona == persona).unwrap().action
}

fn real_brain(server: &ScriptServer, timeout_ms: u64) -> Brain {
    let cfg = config(&server.base_url(), timeout_ms);
    let client = OpenAiClient::new(&cfg.llm).expect("http client");
    Brain::with_llm(cfg, Arc::new(client))
}

#[tokio::test]
async fn a_good_plan_is_applied() {
    let s = scenario("v-latency-one-replica");
    let server = ScriptServer::start(vec![Reply::content(plan(&s, &[("llama-1", "restart")]))]).await;
    let mut brain = real_brain(&server, 5_000);
    let r = cycle(&mut brain, &s).await;
    assert_eq!(r.analyst_used, AnalystKind::Llm);
    assert!(r.fallback.is_none());
    assert_eq!(action(&r, "llama-1"), Action::Restart);
    let d = r.decisions.iter().find(|d| d.persona == "llama-1").unwrap();
    assert!(d.reason.starts_with("llm: scripted restart"), "{}", d.reason);
    assert_eq!(d.analyst, AnalystKind::Llm);
    let llm = r.llm.as_ref().unwrap();
    assert_eq!((llm.outcome, llm.prompt_tokens, llm.completion_tokens, llm.tokens_reported), ("ok", 100, 20, true));
    assert_eq!(llm.personas_in_prompt, s.view.personas.len());

    // one request for the whole view, with the answer's shape and persona text only quoted
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let body = &reqs[0];
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert!(body["max_completion_tokens"].as_u64().unwrap() >= 64);
    let schema = serde_json::to_string(&body["response_format"]["json_schema"]["schema"]).unwrap();
    assert!(schema.contains("llama-1"));
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("llama-1|"), "{user}");
    assert!(!user.contains("\n2024"), "no raw series in the prompt");
}

#[tokio::test]
async fn the_schema_on_the_wire_keeps_reason_before_action() {
    let s = scenario("v-cache-step");
    let server = ScriptServer::start(vec![Reply::content(plan(&s, &[]))]).await;
    let mut brain = real_brain(&server, 5_000);
    let _ = cycle(&mut brain, &s).await;
    // the bytes as they arrived: within the item schema, the reason comes before the action
    let raw = server.raw_requests().remove(0);
    let items = raw.find("\"items\"").expect("item schema");
    let (reason, action) = (raw[items..].find("\"reason\"").unwrap(), raw[items..].find("\"action\"").unwrap());
    assert!(reason < action, "{}", &raw[items..]);
}

#[tokio::test]
async fn invalid_json_falls_back_and_is_recorded() {
    let s = scenario("v-latency-one-replica");
    let server = ScriptServer::start(vec![Reply::content("restart llama-1 now, trust me")]).await;
    let mut brain = real_brain(&server, 5_000);
    let r = cycle(&mut brain, &s).await;
    assert_eq!(r.analyst_used, AnalystKind::Builtin);
    let f = r.fallback.as_ref().expect("fallback recorded");
    assert_eq!(f.kind, "invalid");
    assert_eq!(r.llm.as_ref().unwrap().outcome, "invalid");
    assert!(r.decisions.iter().all(|d| d.reason.contains("llm fallback (invalid)")));
    // the built-in analyst still decides well
    assert_eq!(action(&r, "llama-1"), Action::Restart);
}

#[tokio::test]
async fn killing_a_system_persona_becomes_investigate() {
    let s = scenario("v-permanent-system");
    let server = ScriptServer::start(vec![Reply::content(plan(&s, &[("guard", "kill"), ("worker", "kill")]))]).await;
    let mut brain = real_brain(&server, 5_000);
    let r = cycle(&mut brain, &s).await;
    assert_eq!(r.analyst_used, AnalystKind::Llm);
    assert_eq!(action(&r, "guard"), Action::Investigate);
    let d = r.decisions.iter().find(|d| d.persona == "guard").unwrap();
    assert!(d.reason.starts_with("guardrail system-persona: kill -> investigate"), "{}", d.reason);
    assert!(r.guardrails.iter().any(|g| g.persona == "guard" && g.rule == "system-persona"));
    // the background one may be killed: permanent errors need no persistence
    assert_eq!(action(&r, "worker"), Action::Kill);
}

#[tokio::test]
async fn a_timeout_falls_back() {
    let s = scenario("v-latency-one-replica");
    let slow = Reply::Delay { ms: 3_000, then: Box::new(Reply::content(plan(&s, &[]))) };
    let server = ScriptServer::start(vec![slow]).await;
    let mut brain = real_brain(&server, 300);
    let started = std::time::Instant::now();
    let r = cycle(&mut brain, &s).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(2_500), "the cycle did not wait for the server");
    assert_eq!(r.analyst_used, AnalystKind::Builtin);
    assert_eq!(r.fallback.as_ref().unwrap().kind, "timeout");
    let llm = r.llm.as_ref().unwrap();
    assert_eq!(llm.outcome, "timeout");
    assert!(llm.latency_ms >= 300 && llm.latency_ms < 2_000, "{}", llm.latency_ms);
    assert_eq!(action(&r, "llama-1"), Action::Restart);
}

#[tokio::test]
async fn http_errors_fall_back_and_a_rejected_format_is_not_asked_again() {
    let s = scenario("v-cache-step");
    let server = ScriptServer::start(vec![
        Reply::Http { status: 500, message: "upstream exploded".into() },
        Reply::Http { status: 400, message: "response_format json_schema is not supported".into() },
        Reply::content(plan(&s, &[])),
    ])
    .await;
    let mut brain = real_brain(&server, 5_000);
    let r = brain.analyse(&s.view, s.end_ms).await;
    assert_eq!(r.fallback.as_ref().unwrap().kind, "http", "{:?}", r.fallback);
    assert_eq!(server.requests().len(), 1, "{:?}", r.fallback);
    let r = brain.analyse(&s.view, s.end_ms).await;
    assert_eq!(
        r.fallback.as_ref().map(|f| f.kind),
        Some("http"),
        "{:?} {:?} {:?}",
        r.fallback,
        r.llm,
        server.requests().len()
    );
    let r = brain.analyse(&s.view, s.end_ms).await;
    assert!(r.fallback.is_none());
    assert_eq!(r.llm.as_ref().unwrap().response_format, LlmResponseFormat::JsonObject);
    let reqs = server.requests();
    assert_eq!(reqs[1]["response_format"]["type"], "json_schema");
    assert_eq!(reqs[2]["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn a_plan_without_evidence_does_not_disrupt() {
    // the model wants to restart a healthy persona: hysteresis finds no condition behind it
    let s = scenario("v-cache-step");
    let server = ScriptServer::start(vec![Reply::content(plan(&s, &[("embedder", "restart")]))]).await;
    let mut brain = real_brain(&server, 5_000);
    let r = cycle(&mut brain, &s).await;
    assert_eq!(action(&r, "embedder"), Action::Investigate);
    let d = r.decisions.iter().find(|d| d.persona == "embedder").unwrap();
    assert!(d.reason.starts_with("guardrail hysteresis"), "{}", d.reason);
}

/// The twin and the real client answer the same script the same way.
#[tokio::test]
async fn conformance_twin_and_real_client() {
    let s = scenario("v-latency-one-replica");
    let script = || {
        vec![
            Reply::content(plan(&s, &[("llama-1", "restart")])),
            Reply::content("{\"decisions\": [{\"persona\": \"ghost\"}]}"),
            Reply::Http { status: 503, message: "busy".into() },
        ]
    };
    let server = ScriptServer::start(script()).await;
    let cfg = config(&server.base_url(), 5_000);
    let real: Arc<dyn LlmClient> = Arc::new(OpenAiClient::new(&cfg.llm).unwrap());
    let twin_impl = Arc::new(ScriptedLlm::new(script()));
    let twin: Arc<dyn LlmClient> = twin_impl.clone();
    // the raw client surface
    let req = ChatRequest {
        model: "m".into(),
        system: "s".into(),
        user: "u".into(),
        schema: "{}".into(),
        format: LlmResponseFormat::JsonSchema,
        max_completion_tokens: 100,
        temperature: 0.0,
        seed: Some(1),
    };
    for _ in 0..3 {
        let (a, b) = (real.chat(&req).await, twin.chat(&req).await);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{a} / {b}"),
            (a, b) => panic!("diverged: {a:?} / {b:?}"),
        }
    }
    assert_eq!(twin_impl.requests().len(), 3);
    // and whole cycles through a brain
    let script_server = ScriptServer::start(script()).await;
    let cfg = config(&script_server.base_url(), 5_000);
    let mut with_real = Brain::with_llm(cfg.clone(), Arc::new(OpenAiClient::new(&cfg.llm).unwrap()));
    let mut with_twin = Brain::with_llm(cfg, Arc::new(ScriptedLlm::new(script())));
    for _ in 0..3 {
        let (a, b) = (cycle(&mut with_real, &s).await, cycle(&mut with_twin, &s).await);
        let acts = |r: &CycleReport| r.decisions.iter().map(|d| (d.persona.clone(), d.action)).collect::<Vec<_>>();
        assert_eq!(acts(&a), acts(&b));
        assert_eq!(a.fallback.as_ref().map(|f| f.kind), b.fallback.as_ref().map(|f| f.kind));
    }
}

/// The prompt invites budget decisions — the budget in force and the range its operator lets
/// the brain set, per persona, and a `budget` list of `{field, value, reason}` in the schema —
/// and what the model proposes goes through the same envelope as the built-in analyst's: a
/// priority past the operator's 90 comes back to 90, a memory budget is refused, each with
/// the reason saying so.
#[tokio::test]
async fn the_llm_is_invited_to_budget_and_held_to_the_envelope() {
    let s = scenario("b-user-chat-burst");
    let mut items: Vec<serde_json::Value> =
        serde_json::from_str::<serde_json::Value>(&plan(&s, &[])).unwrap()["decisions"].as_array().unwrap().clone();
    for item in &mut items {
        if item["persona"] == "chat-0" {
            item["reason"] = "traffic x3 its usual, no errors".into();
            item["budget"] = serde_json::json!([
                {"field": "inference_queue_priority", "value": 99, "reason": "a user-facing burst"},
                {"field": "max_response_time_ms", "value": 45000, "reason": "answers take longer under load"},
                {"field": "max_memory_mb", "value": 99999, "reason": "more room"},
            ]);
        }
    }
    let answer = serde_json::json!({ "decisions": items }).to_string();
    let server = ScriptServer::start(vec![Reply::content(answer)]).await;
    let mut brain = real_brain(&server, 5_000);
    let r = cycle(&mut brain, &s).await;
    assert_eq!(r.analyst_used, AnalystKind::Llm);
    assert!(r.fallback.is_none(), "{:?}", r.fallback);
    let d = r.decisions.iter().find(|d| d.persona == "chat-0").unwrap();
    let b = d.budget.as_ref().unwrap_or_else(|| panic!("a budget change: {}", d.reason));
    assert_eq!((b.inference_queue_priority, b.max_response_time_ms), (Some(90), Some(45000)), "{}", d.reason);
    assert_eq!(b.max_memory_mb, None, "{}", d.reason);
    assert!(d.reason.contains("asks budget priority 99: a user-facing burst"), "{}", d.reason);
    assert!(d.reason.contains("guardrail envelope: priority 99 -> 90"), "{}", d.reason);
    assert!(d.reason.contains("memory budget and allowed-to-run are an operator's"), "{}", d.reason);

    // what the model was shown and asked for
    let body = &server.requests()[0];
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("you may propose") && system.contains("budget changes"), "{system}");
    let user = body["messages"][1]["content"].as_str().unwrap();
    let row = user.lines().find(|l| l.starts_with("chat-0|")).unwrap();
    assert!(row.contains("priority 50[0-90]") && row.contains("timeout_ms 30000[15000-45000]"), "{row}");
    let notes = user.lines().find(|l| l.starts_with("notes|")).unwrap();
    assert!(notes.contains("priority 50[0-50]") && notes.contains("throttle 1.00x[0.10x-1.00x]"), "{notes}");
    let item = &body["response_format"]["json_schema"]["schema"]["properties"]["decisions"]["items"];
    assert!(item["required"].as_array().unwrap().iter().any(|k| k == "budget"), "{item}");
    let fields = &item["properties"]["budget"]["anyOf"][0]["items"]["properties"]["field"]["enum"];
    assert_eq!(fields.as_array().unwrap().len(), 5, "{fields}");
}

/// A budget field the budget does not have is not a plan: the whole answer falls back.
#[tokio::test]
async fn an_unknown_budget_field_falls_back() {
    let s = scenario("b-user-chat-burst");
    let mut v: serde_json::Value = serde_json::from_str(&plan(&s, &[])).unwrap();
    v["decisions"][0]["budget"] = serde_json::json!([{"field": "root_access", "value": 1, "reason": "trust me"}]);
    let server = ScriptServer::start(vec![Reply::content(v.to_string())]).await;
    let mut brain = real_brain(&server, 5_000);
    let r = cycle(&mut brain, &s).await;
    assert_eq!(r.analyst_used, AnalystKind::Builtin);
    let f = r.fallback.as_ref().expect("fell back");
    assert!(f.reason.contains("root_access"), "{}", f.reason);
}
