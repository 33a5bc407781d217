//! The API against a web page in the operator's browser (finding 1 of issue 10): what a page
//! of another origin can make the browser send — `text/plain` and form bodies without a
//! preflight, its own `Origin` and `Sec-Fetch-Site`, a domain rebound to 127.0.0.1 — changes
//! nothing, with or without a token in the config; the local CLI needs no flag at all.

mod common;

use std::time::Duration;

use common::{TestNode, demo_persona, http_raw};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const CONFIGURED: &str = "configured-admin-token-0123456789";

/// What the page would send to create a persona that runs a shell command.
fn hostile_spec(marker: &std::path::Path) -> String {
    json!({
        "name": "pwned",
        "command": "/bin/sh",
        "args": ["-c", format!("touch {}; sleep 60", marker.display())],
    })
    .to_string()
}

/// A browser's cross-site "simple" request: no preflight, so it is sent whatever we answer.
fn cross_site(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("origin", "http://evil.example".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
        ("sec-fetch-mode", "no-cors".to_owned()),
        ("sec-fetch-dest", "empty".to_owned()),
    ];
    h.extend(extra.iter().cloned());
    h
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http_raw(method, url, &h, body).await
}

/// One request: a name, method, path, headers and body.
type Case = (&'static str, &'static str, &'static str, Vec<(&'static str, String)>, Option<(&'static str, String)>);

/// Every attack a page can mount, with `auth` added to each (none, or a token the page could
/// not know but which we add to prove each defence holds on its own).
async fn attacks(node: &TestNode, marker: &std::path::Path, auth: Option<&str>) -> Vec<(String, u16, Value)> {
    let port = node.api.rsplit(':').next().unwrap().to_owned();
    let bearer: Vec<(&'static str, String)> =
        auth.map(|t| ("authorization", format!("Bearer {t}"))).into_iter().collect();
    let with = |mut h: Vec<(&'static str, String)>| {
        h.extend(bearer.iter().cloned());
        h
    };
    let spec = hostile_spec(marker);
    let rebound_host = format!("rebind.evil.example:{port}");
    let rebound = vec![
        ("host", rebound_host.clone()),
        ("origin", format!("http://{rebound_host}")),
        ("sec-fetch-site", "same-origin".to_owned()),
    ];
    let mut out = Vec::new();
    let cases: Vec<Case> = vec![
        // fetch(url, {method: "POST", mode: "no-cors", body: JSON.stringify(spec)})
        (
            "text/plain add",
            "POST",
            "/api/v1/personas",
            with(cross_site(&[])),
            Some(("text/plain;charset=UTF-8", spec.clone())),
        ),
        // a hidden <form enctype="text/plain"> posting the same
        (
            "form add",
            "POST",
            "/api/v1/personas",
            with(cross_site(&[])),
            Some(("application/x-www-form-urlencoded", spec.clone())),
        ),
        // the same without Origin or Sec-Fetch-* (an old browser, a privacy extension)
        ("text/plain add, no origin", "POST", "/api/v1/personas", with(vec![]), Some(("text/plain", spec.clone()))),
        // JSON from another origin (a preflight would be refused; send it as if it were not)
        (
            "cross-origin json add",
            "POST",
            "/api/v1/personas",
            with(cross_site(&[])),
            Some(("application/json", spec.clone())),
        ),
        (
            "origin only",
            "POST",
            "/api/v1/personas",
            with(vec![("origin", "http://127.0.0.1:3000".into())]),
            Some(("application/json", spec.clone())),
        ),
        ("leave", "POST", "/api/v1/node/leave", with(cross_site(&[])), Some(("text/plain", String::new()))),
        ("leave, no body", "POST", "/api/v1/node/leave", with(cross_site(&[])), None),
        ("kill", "POST", "/api/v1/personas/steady/kill", with(cross_site(&[])), Some(("text/plain", "{}".into()))),
        ("remove", "DELETE", "/api/v1/personas/steady", with(cross_site(&[])), None),
        // DNS rebinding: the page's own domain now resolves to 127.0.0.1, so the browser thinks
        // it is same-origin and lets the page read the answers
        ("rebound add", "POST", "/api/v1/personas", with(rebound.clone()), Some(("application/json", spec.clone()))),
        ("rebound read of a spec", "GET", "/api/v1/personas/steady", with(rebound.clone()), None),
        ("rebound status", "GET", "/api/v1/status", with(rebound.clone()), None),
        // reads from a foreign page are refused too (a spec's env holds secrets)
        ("cross-site read", "GET", "/api/v1/personas/steady", with(cross_site(&[])), None),
    ];
    for (what, method, path, headers, body) in cases {
        let (code, v) = send(method, &node.url(path), &headers, body).await;
        out.push((what.to_owned(), code, v));
    }
    out
}

/// Nothing the page asked for happened, and the node is alive and serving.
async fn nothing_changed(node: &TestNode, marker: &std::path::Path) {
    // give a spawned shell (there must be none) time to touch its marker
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!marker.exists(), "a page ran a command through the node");
    let (code, status) = node.get("/api/v1/status").await;
    assert_eq!(code, 200, "the node must still serve: {status}\n{}", node.log());
    let names: Vec<&str> = status["personas"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["steady"], "{status}");
    let steady = node.persona("steady").await;
    assert_eq!(steady["phase"], "running", "{steady}");
    let (_, page) = node.get("/api/v1/events?after=0&limit=1000").await;
    let events = page["events"].as_array().unwrap();
    assert!(!events.iter().any(|e| e["kind"] == "operator"), "no operator action was taken: {events:?}");
}

fn assert_refused(results: &[(String, u16, Value)], allowed: &[u16]) {
    for (what, code, v) in results {
        assert!(allowed.contains(code), "{what}: answered {code}, expected one of {allowed:?}: {v}");
    }
}

fn steady() -> String {
    demo_persona("steady", &[], "[persona.env]\nUPSTREAM_API_KEY = \"sk-secret-of-the-persona\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_changes_nothing_on_a_node_without_a_configured_token() {
    let node = TestNode::start(&steady());
    node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    let marker = node.dir.path().join("pwned");

    // as a page would: it knows no token
    let results = attacks(&node, &marker, None).await;
    assert_refused(&results, &[401, 403, 415]);
    for (what, code, v) in &results {
        assert!(!v.to_string().contains("sk-secret"), "{what} leaked a secret ({code}): {v}");
    }
    // each defence on its own: the same requests with the node's own token still fail
    let results = attacks(&node, &marker, Some(&node.token())).await;
    assert_refused(&results, &[403, 415]);
    let by_what = |w: &str| results.iter().find(|r| r.0 == w).unwrap().1;
    assert_eq!(by_what("text/plain add, no origin"), 415, "the content type alone stops it");
    assert_eq!(by_what("origin only"), 403, "the origin alone stops it");
    assert_eq!(by_what("rebound read of a spec"), 403, "the host name alone stops it");
    nothing_changed(&node, &marker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_changes_nothing_on_a_node_with_a_configured_token() {
    let node = TestNode::start(&format!("token = \"{CONFIGURED}\"\n{}", steady()));
    node.wait_persona("steady", T, |v| v["phase"] == "running").await;
    let marker = node.dir.path().join("pwned");
    assert_refused(&attacks(&node, &marker, None).await, &[401, 403, 415]);
    assert_refused(&attacks(&node, &marker, Some(CONFIGURED)).await, &[403, 415]);
    nothing_changed(&node, &marker).await;
    // and the token works for a request from no page at all
    let (code, _) =
        send("GET", &node.url("/api/v1/personas/steady"), &[("authorization", format!("Bearer {CONFIGURED}"))], None)
            .await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_cli_needs_no_flag_and_every_other_client_a_token() {
    let node = TestNode::start("");
    // no token anywhere: the CLI finds the node's local credential by itself
    let out = node.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), node.log());
    let spec = node.dir.path().join("p.toml");
    std::fs::write(&spec, format!("name = \"cli\"\ncommand = \"{}\"\nhealth_path = \"/health\"\n", common::DEMO))
        .unwrap();
    let out = node.cli(&["persona", "add", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.cli(&["persona", "stop", "cli"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // the node's own token file: private, and it opens the API to scripts of this user
    let token_file = node.data_dir().join("api.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let socket = node.data_dir().join("api.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, _) =
        send("GET", &node.url("/api/v1/status"), &[("authorization", format!("Bearer {}", node.token()))], None).await;
    assert_eq!(code, 200);
    // anyone else is told what is missing and where the local token is
    let (code, v) = send("GET", &node.url("/api/v1/status"), &[], None).await;
    assert_eq!(code, 401, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&token_file.display().to_string()), "{msg}");
    let (code, _) = send("GET", &node.url("/metrics"), &[], None).await;
    assert_eq!(code, 401, "metrics too");
    let (code, _) = send("POST", &node.url("/v1/chat/completions"), &[], Some(("application/json", "{}".into()))).await;
    assert_eq!(code, 401, "the gateway too");
    // the event log names who acted
    let events = node.events("cli").await;
    let acted: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "operator").filter_map(|e| e["detail"].as_str()).collect();
    assert!(acted.iter().any(|d| d.contains("stop") && d.contains("by local (admin)")), "{acted:?}");
}
