//! Metric history per persona and `/metrics` in Prometheus' text format.

use std::fmt::Write;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Deserialize;

use std::sync::atomic::Ordering;

use mindmesh_core::telemetry::HistogramSnapshot;
use mindmesh_supervisor::PersonaStatus;

use super::mesh::role_name;
use super::types::SeriesPage;
use super::{ApiError, ApiState};
use crate::gateway::KIND_LABELS;
use crate::telemetry::RESTART_REASONS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    pub(crate) from_ms: Option<u64>,
    pub(crate) to_ms: Option<u64>,
    pub(crate) max_points: Option<usize>,
}

/// `GET /api/v1/personas/{name}/series`: the last hour by default.
pub async fn series(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<SeriesPage>, ApiError> {
    let to_ms = q.to_ms.unwrap_or_else(|| st.clock.now_ms());
    let from_ms = q.from_ms.unwrap_or(to_ms.saturating_sub(3_600_000));
    if from_ms > to_ms {
        return Err(ApiError { param: Some("from_ms".into()), ..ApiError::bad_request("from_ms is after to_ms") });
    }
    if !st.supervisor.status().borrow().contains_key(&name) {
        return Err(ApiError::not_found(format!("persona {name:?} not found")));
    }
    let samples = st.store.persona_series(&name, from_ms, to_ms, q.max_points.unwrap_or(500)).await?;
    Ok(Json(SeriesPage { persona: name, from_ms, to_ms, samples }))
}

/// `GET /metrics`: the node, its personas, its gateway, the mesh and the brain in Prometheus'
/// text format; every series carries `node`. docs/metrics.md lists them all.
pub async fn prometheus(State(st): State<ApiState>) -> impl IntoResponse {
    let table = st.supervisor.status().borrow().clone();
    let traffic = st.gateway.all_traffic(st.clock.now_ms());
    let host = st.host.borrow().clone();
    let mut m = Text::new(&st.node_name, table.len());

    m.family("mindmesh_build_info", "gauge", "Always 1; the build's version, OS and architecture as labels");
    m.sample(
        "mindmesh_build_info",
        &[("version", st.version), ("os", std::env::consts::OS), ("arch", std::env::consts::ARCH)],
        1.0,
    );
    m.family("mindmesh_node_start_time_seconds", "gauge", "When this node started, seconds since the epoch");
    m.sample("mindmesh_node_start_time_seconds", &[], st.started_ms as f64 / 1000.0);

    // personas, from the supervisor's status table
    let rows = |m: &mut Text, name: &str, kind: &str, help: &str, f: &dyn Fn(&PersonaStatus) -> f64| {
        m.family(name, kind, help);
        for s in table.values() {
            m.sample(name, &[("persona", &s.name)], f(s));
        }
    };
    rows(&mut m, "mindmesh_persona_up", "gauge", "1 while the persona has a process", &|s| {
        f64::from(u8::from(s.phase.has_process()))
    });
    rows(&mut m, "mindmesh_persona_healthy", "gauge", "1 while the persona's health probe passes", &|s| {
        f64::from(u8::from(s.health == mindmesh_core::Health::Healthy))
    });
    m.family("mindmesh_persona_phase", "gauge", "1 for the persona's current phase");
    for s in table.values() {
        m.sample("mindmesh_persona_phase", &[("persona", &s.name), ("phase", &s.phase.to_string())], 1.0);
    }
    rows(&mut m, "mindmesh_persona_rss_bytes", "gauge", "Resident memory", &|s| s.rss_bytes as f64);
    rows(&mut m, "mindmesh_persona_peak_rss_bytes", "gauge", "Peak resident memory since the process started", &|s| {
        s.peak_rss_bytes as f64
    });
    rows(&mut m, "mindmesh_persona_cpu_cores", "gauge", "CPU in use, in cores (1 = one core busy)", &|s| {
        f64::from(s.cpu_percent) / 100.0
    });
    rows(
        &mut m,
        "mindmesh_persona_throttle_ratio",
        "gauge",
        "The budget's throttle multiplier (1 = full speed)",
        &|s| s.budget.throttle_multiplier,
    );
    rows(
        &mut m,
        "mindmesh_persona_budget_response_time_seconds",
        "gauge",
        "The budget's response-time limit: the gateway fails a request past it",
        &|s| s.budget.max_response_time_ms as f64 / 1000.0,
    );
    rows(
        &mut m,
        "mindmesh_persona_budget_memory_bytes",
        "gauge",
        "The memory the budget expects the persona to stay within",
        &|s| mindmesh_core::bounds::mb_to_bytes(s.budget.max_memory_mb) as f64,
    );

    let counts = st.telemetry.personas(table.keys().map(String::as_str));
    m.family("mindmesh_persona_restarts_total", "counter", "Automatic restarts since this node started, by reason");
    for (p, c) in &counts {
        for (reason, n) in RESTART_REASONS.iter().zip(c.restarts) {
            m.sample("mindmesh_persona_restarts_total", &[("persona", p), ("reason", reason)], n as f64);
        }
    }
    type Count = fn(&crate::telemetry::PersonaCounts) -> u64;
    let per_persona: [(&str, &str, Count); 3] = [
        ("mindmesh_persona_crash_loops_total", "Crash loops declared (the persona was then killed)", |c| c.crash_loops),
        (
            "mindmesh_persona_evictions_total",
            "Times the persona was moved to a deeper tier to make room for another",
            |c| c.evictions,
        ),
        (
            "mindmesh_persona_no_room_total",
            "Starts or wakes refused for want of memory on this node (its requests got 503)",
            |c| c.no_room,
        ),
    ];
    for (name, help, count) in per_persona {
        m.family(name, "counter", help);
        for (p, c) in &counts {
            m.sample(name, &[("persona", p)], count(c) as f64);
        }
    }
    m.family(
        "mindmesh_persona_spawn_ready_seconds",
        "histogram",
        "Spawn to ready (healthy, or running without a probe)",
    );
    m.histogram("mindmesh_persona_spawn_ready_seconds", &[], &st.telemetry.spawn_ready());

    // the gateway: what callers saw
    let t = |s: &PersonaStatus| traffic.get(&s.name).copied().unwrap_or_default();
    rows(&mut m, "mindmesh_gateway_queue_depth", "gauge", "Requests waiting in the node's queue", &|s| {
        f64::from(t(s).queue_depth)
    });
    rows(&mut m, "mindmesh_gateway_in_flight", "gauge", "Requests in flight to the persona", &|s| {
        f64::from(t(s).in_flight)
    });
    rows(
        &mut m,
        "mindmesh_gateway_requests_total",
        "counter",
        "Requests through the gateway that ended (answered, failed or abandoned)",
        &|s| t(s).live.requests_total as f64,
    );
    let cumulative = st.gateway.cumulative();
    m.family("mindmesh_gateway_errors_total", "counter", "Failed requests through the gateway, by error kind");
    for (p, c) in &cumulative {
        for (kind, n) in KIND_LABELS.iter().zip(c.errors_total) {
            m.sample("mindmesh_gateway_errors_total", &[("persona", p), ("kind", kind)], n as f64);
        }
    }
    m.family(
        "mindmesh_gateway_tokens_out_total",
        "counter",
        "Tokens answered (usage.completion_tokens, else streamed text chunks)",
    );
    for (p, c) in &cumulative {
        m.sample("mindmesh_gateway_tokens_out_total", &[("persona", p)], c.tokens_out_total as f64);
    }
    let streams = ["false", "true"];
    m.family("mindmesh_gateway_request_duration_seconds", "histogram", "Arrival to the last byte of answered requests");
    for (p, c) in &cumulative {
        for (stream, h) in streams.iter().zip(&c.latency) {
            m.histogram("mindmesh_gateway_request_duration_seconds", &[("persona", p), ("stream", stream)], h);
        }
    }
    m.family(
        "mindmesh_gateway_time_to_first_token_seconds",
        "histogram",
        "Arrival to the first byte of the answer's body (of a plain answer: the whole answer)",
    );
    for (p, c) in &cumulative {
        for (stream, h) in streams.iter().zip(&c.ttft) {
            m.histogram("mindmesh_gateway_time_to_first_token_seconds", &[("persona", p), ("stream", stream)], h);
        }
    }
    m.family("mindmesh_gateway_queue_wait_seconds", "histogram", "Time admitted requests waited for a slot");
    for (p, c) in &cumulative {
        m.histogram("mindmesh_gateway_queue_wait_seconds", &[("persona", p)], &c.queue_wait);
    }

    // the host
    if let Some(h) = host {
        m.family("mindmesh_host_cpu_ratio", "gauge", "Host CPU in use, 0-1 of all cores");
        m.sample("mindmesh_host_cpu_ratio", &[], f64::from(h.cpu_percent) / 100.0);
        m.family("mindmesh_host_memory_used_bytes", "gauge", "Host memory in use");
        m.sample("mindmesh_host_memory_used_bytes", &[], h.memory_used_bytes as f64);
        m.family("mindmesh_host_memory_total_bytes", "gauge", "Host memory");
        m.sample("mindmesh_host_memory_total_bytes", &[], h.memory_total_bytes as f64);
    }
    m.family("mindmesh_events_total", "counter", "Events recorded since this node started, by kind");
    for (kind, n) in st.telemetry.events() {
        m.sample("mindmesh_events_total", &[("kind", kind)], n as f64);
    }
    m.family("mindmesh_events_last_seq", "gauge", "Sequence number of the last event stored");
    m.sample("mindmesh_events_last_seq", &[], *st.last_event_seq.borrow() as f64);

    mesh(&st, &mut m).await;
    brain(&st, &mut m);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], m.out)
}

/// Longest wait for the mesh actor's view of the members during a scrape.
const MESH_VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The mesh as this node sees it.
async fn mesh(st: &ApiState, m: &mut Text) {
    let status = st.mesh.status();
    let me = role_name(status.role);
    m.family("mindmesh_mesh_role", "gauge", "1 for this node's Raft role");
    for role in ["leader", "candidate", "follower", "learner", "joining", "shut down"] {
        m.sample("mindmesh_mesh_role", &[("role", role)], f64::from(u8::from(role == me)));
    }
    m.family("mindmesh_mesh_term", "gauge", "Raft term (rises with every election)");
    m.sample("mindmesh_mesh_term", &[], status.term as f64);
    m.family("mindmesh_mesh_has_leader", "gauge", "1 while this node knows a leader");
    m.sample("mindmesh_mesh_has_leader", &[], f64::from(u8::from(status.leader.is_some())));
    let reg = st.mesh.registry();
    if let Some(leader) = status.leader.and_then(|l| reg.nodes.get(&l)) {
        m.family("mindmesh_mesh_leader_info", "gauge", "Always 1; the leader's name as a label");
        m.sample("mindmesh_mesh_leader_info", &[("leader", &leader.info.name)], 1.0);
    }
    if let Some(age) = status.leader_contact_age_ms {
        m.family(
            "mindmesh_mesh_leader_contact_age_seconds",
            "gauge",
            "Since the leader last heard this node (on the leader: since a quorum last acknowledged it)",
        );
        m.sample("mindmesh_mesh_leader_contact_age_seconds", &[], age as f64 / 1000.0);
    }
    let lease = st.mesh.lease();
    m.family("mindmesh_mesh_lease_enforced", "gauge", "1 when fencing is on (a node without a lease runs no persona)");
    m.sample("mindmesh_mesh_lease_enforced", &[], f64::from(u8::from(lease.enforced)));
    m.family("mindmesh_mesh_lease_held", "gauge", "1 while this node holds its lease and may run personas");
    m.sample("mindmesh_mesh_lease_held", &[], f64::from(u8::from(lease.held)));
    let left = lease
        .until
        .filter(|_| lease.held)
        .map_or(0.0, |u| u.saturating_duration_since(tokio::time::Instant::now()).as_secs_f64());
    m.family("mindmesh_mesh_lease_remaining_seconds", "gauge", "Time left on this node's lease (0 when not held)");
    m.sample("mindmesh_mesh_lease_remaining_seconds", &[], left);
    m.family("mindmesh_mesh_members", "gauge", "Nodes in the registry");
    m.sample("mindmesh_mesh_members", &[], reg.nodes.len() as f64);
    // a round trip to the mesh actor: a scrape must not hang on a stalled mesh, so a late
    // answer leaves the sample out (the other mesh figures are watches, read at once)
    if let Ok(Ok(rows)) = tokio::time::timeout(MESH_VIEW_TIMEOUT, st.mesh.mesh_view()).await {
        let healthy = reg.nodes.keys().filter(|id| rows.iter().any(|r| r.node_id == **id && !r.stale)).count();
        m.family("mindmesh_mesh_members_healthy", "gauge", "Nodes in the registry whose gossip is fresh");
        m.sample("mindmesh_mesh_members_healthy", &[], healthy as f64);
    }
    m.family("mindmesh_mesh_connected_peers", "gauge", "Mesh peers connected to this node");
    m.sample("mindmesh_mesh_connected_peers", &[], status.connected_peers as f64);
    if let Some(i) = status.last_applied_index {
        m.family("mindmesh_mesh_last_applied_index", "gauge", "Raft log index this node has applied");
        m.sample("mindmesh_mesh_last_applied_index", &[], i as f64);
    }
    let c = st.mesh.commit_stats();
    m.family(
        "mindmesh_mesh_commit_duration_seconds",
        "histogram",
        "Proposal to commit, of this node's committed proposals",
    );
    m.histogram("mindmesh_mesh_commit_duration_seconds", &[], &c.duration.snapshot());
    m.family("mindmesh_mesh_proposals_total", "counter", "This node's proposals, by outcome");
    for (outcome, n) in [("committed", &c.committed), ("rejected", &c.rejected), ("failed", &c.failed)] {
        m.sample("mindmesh_mesh_proposals_total", &[("outcome", outcome)], n.load(Ordering::Relaxed) as f64);
    }
}

/// The brain's cycles (only while this node leads do they move).
fn brain(st: &ApiState, m: &mut Text) {
    let b = st.telemetry.brain.snapshot();
    m.family("mindmesh_brain_cycles_total", "counter", "Brain cycles this node ran as leader");
    m.sample("mindmesh_brain_cycles_total", &[], b.cycles_total as f64);
    m.family("mindmesh_brain_cycle_duration_seconds", "histogram", "One cycle's analysis, the LLM call included");
    m.histogram("mindmesh_brain_cycle_duration_seconds", &[], &b.cycle_duration);
    m.family("mindmesh_brain_decisions_total", "counter", "Decisions made, by action and analyst (continue included)");
    for (action, analyst, n) in &b.decisions {
        m.sample("mindmesh_brain_decisions_total", &[("action", action), ("analyst", analyst)], *n as f64);
    }
    m.family(
        "mindmesh_brain_llm_fallbacks_total",
        "counter",
        "Cycles where the LLM analyst failed and the built-in one decided, by error kind",
    );
    for (kind, n) in &b.fallbacks {
        m.sample("mindmesh_brain_llm_fallbacks_total", &[("kind", kind)], *n as f64);
    }
    m.family("mindmesh_brain_llm_requests_total", "counter", "The brain's LLM calls, by outcome");
    for (outcome, n) in &b.llm_calls {
        m.sample("mindmesh_brain_llm_requests_total", &[("outcome", outcome)], *n as f64);
    }
    m.family(
        "mindmesh_brain_llm_request_duration_seconds",
        "histogram",
        "The brain's LLM calls, sent to answered or failed",
    );
    m.histogram("mindmesh_brain_llm_request_duration_seconds", &[], &b.llm_duration);
    if let Some(ms) = b.last_cycle_ms {
        m.family(
            "mindmesh_brain_last_cycle_timestamp_seconds",
            "gauge",
            "When this node last ran a cycle (brain clock)",
        );
        m.sample("mindmesh_brain_last_cycle_timestamp_seconds", &[], ms as f64 / 1000.0);
        m.family("mindmesh_brain_system_health_ratio", "gauge", "The last cycle's health of the mesh, 0-1");
        m.sample("mindmesh_brain_system_health_ratio", &[], b.system_health as f64 / 100.0);
    }
}

/// Prometheus' text format, every sample labelled with the node.
struct Text {
    out: String,
    node: String,
}

impl Text {
    fn new(node: &str, personas: usize) -> Self {
        Text { out: String::with_capacity(8192 + personas * 8192), node: escape(node) }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        let _ = write!(self.out, "{{node=\"{}\"", self.node);
        for (k, v) in labels {
            let _ = write!(self.out, ",{k}=\"{}\"", escape(v));
        }
        if let Some(le) = le {
            let _ = write!(self.out, ",le=\"{le}\"");
        }
        self.out.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {v}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        for (i, n) in h.cumulative.iter().enumerate() {
            let le = h.bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {n}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.sum_s);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.count());
    }
}

/// Label values escape backslash, quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
