//! The JSON the node's API speaks, shared with the CLI so both sides agree by construction.

use std::collections::BTreeMap;

use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::{Budget, Health, Importance, PersonaSpec, Phase};
use serde::{Deserialize, Serialize};

/// Longest an action request may ask to wait for its outcome (`wait_ms`); the CLI refuses
/// a longer `--timeout` rather than letting the node cut it short.
pub const MAX_ACTION_WAIT_MS: u64 = 120_000;

/// One persona as `list` and `show` present it. The default is a pending persona that nothing
/// is known about yet, for rows built from partial knowledge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonaView {
    pub name: String,
    /// The node it is placed on (none: waiting for placement).
    #[serde(default)]
    pub node: Option<String>,
    /// What the mesh wants of it (`running`, `stopped`, `hibernating`, `killed`).
    #[serde(default)]
    pub desired: Option<String>,
    /// The registry epoch of its last start (fencing: a process of an older epoch is stale).
    #[serde(default)]
    pub epoch: u64,
    pub phase: Phase,
    pub reason: Option<String>,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    pub health: Health,
    pub importance: Importance,
    pub model: Option<String>,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu_percent: f32,
    pub uptime_s: Option<u64>,
    pub throttle_multiplier: f64,
    pub budget: Budget,
    /// Gateway figures, live: requests waiting in the node's queue and in flight to it.
    #[serde(default)]
    pub queue_depth: u32,
    #[serde(default)]
    pub in_flight: u32,
    /// Requests through the gateway since the node started, and how many failed.
    #[serde(default)]
    pub requests_total: u64,
    #[serde(default)]
    pub errors_total: u64,
    /// Last request arrival or answer (ms since the epoch).
    #[serde(default)]
    pub last_activity_ms: Option<u64>,
    /// Time since the last activity, while nothing is waiting or in flight.
    #[serde(default)]
    pub idle_s: Option<u64>,
    /// The current burst of activity while busy, else the last one.
    #[serde(default)]
    pub burst_s: Option<f64>,
    /// The node a migration in progress takes it to.
    #[serde(default)]
    pub migrating_to: Option<String>,
    /// Its latest off-node checkpoint: size, and when it was taken (ms since the epoch).
    #[serde(default)]
    pub checkpoint_bytes: Option<usize>,
    #[serde(default)]
    pub checkpoint_at_ms: Option<u64>,
    /// Only in `show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PersonaSpec>,
    /// Only in `show`: its output's files on the node that answered (`mindmesh logs` reads them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_files: Option<LogFilesView>,
    /// Only in `show`: the budget its spec starts from, which `budget` (in force) may differ
    /// from by an operator's or the brain's change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_spec: Option<Budget>,
    /// Its last cold start on this node, spawn to healthy: the reload cost the idle policy
    /// weighs when it picks a hibernation tier.
    #[serde(default)]
    pub reload_ms: Option<u64>,
    /// How long it has been paused (frozen), while it is.
    #[serde(default)]
    pub paused_s: Option<u64>,
    /// What it last reported of itself at its `metrics_path` (on the node that runs it).
    #[serde(default)]
    pub reported: Option<mindmesh_core::reported::ReportedMetrics>,
    /// Answers of its metrics path refused (garbage, oversized, out of range, late).
    #[serde(default)]
    pub metrics_refused: u64,
    /// An adapter persona: its base, and its id on the base's running server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<mindmesh_supervisor::AdapterStatus>,
    /// A base persona: the adapters its process loaded at start, in id order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub version: String,
    pub uptime_s: u64,
    pub api: String,
    pub data_dir: String,
    /// How hard limits and throttling are enforced here: "cgroup v1", "cgroup v2" or
    /// "measured + signals".
    pub limits: String,
    pub host: Option<HostSample>,
    pub phases: BTreeMap<String, usize>,
    pub personas: Vec<PersonaView>,
    pub last_event_seq: u64,
    /// The mesh as this node sees it.
    #[serde(default)]
    pub mesh: Option<MeshStatusView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshStatusView {
    /// This node's Raft id.
    pub node_id: u64,
    /// This node's role: leader, follower, learner, candidate, joining.
    pub role: String,
    pub term: u64,
    /// The leader's name, if one is known.
    pub leader: Option<String>,
    pub leader_id: Option<u64>,
    /// Time since this node last heard from a leader.
    pub leader_contact_age_ms: Option<u64>,
    /// This node's lease (fencing): while not held, it runs no persona.
    #[serde(default)]
    pub lease: LeaseView,
    pub nodes: Vec<MeshNodeView>,
    pub listen: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshNodeView {
    pub name: String,
    pub id: u64,
    /// Its API and gateway, `host:port`.
    pub address: String,
    pub p2p: Vec<String>,
    /// leader, follower (a voter) or learner; `gone` if it left the membership.
    pub role: String,
    /// Age of its last gossip, as seen here.
    pub last_seen_ms: Option<u64>,
    /// Heard from recently.
    pub healthy: bool,
    pub personas: usize,
    pub cpu_percent: Option<f32>,
    pub memory_used_bytes: Option<u64>,
    /// Being drained: nothing new is placed on it.
    #[serde(default)]
    pub draining: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseView {
    /// Fencing is on.
    pub enforced: bool,
    pub held: bool,
    /// Time left, while held.
    pub remaining_ms: Option<u64>,
}

/// One decision of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    pub seq: u64,
    pub persona: String,
    /// The verb as asked (`stop`, `start`, `drain`, `restart`, …).
    pub action: String,
    /// What the mesh does about it (`kill` for a stop, `wake` for a start, `migrate` for a
    /// drain).
    #[serde(default)]
    pub effect: String,
    pub target: Option<String>,
    pub reason: String,
    pub confidence: f32,
    /// The analyst kind (`builtin`, `llm`, `naive`, `operator`, `failover`).
    pub analyst: String,
    /// Who asked: `llm`, `operator alice`, `operator alice via n2`, `failover`, `policy placement`.
    #[serde(default)]
    pub by: String,
    /// `analyst`, `operator`, `failover` or `policy`.
    #[serde(default)]
    pub by_kind: String,
    /// The operator's token name.
    #[serde(default)]
    pub token: Option<String>,
    /// The node that forwarded the operator's request.
    #[serde(default)]
    pub via: Option<String>,
    pub cycle: u64,
    pub decided_at_ms: u64,
    /// `pending`, `recorded`, `executed`, `failed`, `refused` or `superseded`.
    #[serde(default)]
    pub verdict: String,
    /// The decision that overtook it.
    #[serde(default)]
    pub superseded_by: Option<u64>,
    /// The node that carried it out (or failed to), when, and with which outcome.
    /// How many cycles decided it (an unchanged watch is counted, not repeated), and when the
    /// last did.
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    pub executed_by: Option<String>,
    pub executed_at_ms: Option<u64>,
    pub executed_ok: Option<bool>,
    /// What was done, why it failed, or why it was refused.
    pub outcome: Option<String>,
    /// Log index of its last change.
    #[serde(default)]
    pub updated_index: u64,
    /// For a budget change carried out: the fields it set as they were and as they became
    /// (absent for other decisions and for records older than registry wire version 4).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "set_fields")]
    pub budget_before: Option<mindmesh_core::BudgetPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "set_fields")]
    pub budget_after: Option<mindmesh_core::BudgetPatch>,
}

fn one() -> u32 {
    1
}

/// A budget patch as JSON with only the fields it sets (`{"inference_queue_priority": 10}`),
/// not a null for each of the others.
fn set_fields<S: serde::Serializer>(p: &Option<mindmesh_core::BudgetPatch>, s: S) -> Result<S::Ok, S::Error> {
    let mut v = serde_json::to_value(p).map_err(serde::ser::Error::custom)?;
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    v.serialize(s)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionsPage {
    pub decisions: Vec<DecisionView>,
    pub last_seq: u64,
    /// With `updated_after`: decisions up to `after` whose verdict changed since.
    #[serde(default)]
    pub updated: Vec<DecisionView>,
    /// The log index of the last change to any decision: pass as `updated_after`.
    #[serde(default)]
    pub last_index: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    pub events: Vec<Event>,
    /// Pass as `after` to read on.
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPage {
    pub persona: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub samples: Vec<PersonaSample>,
}

/// Body of an action request; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionRequest {
    /// Kill: why (recorded).
    pub reason: Option<String>,
    /// Wait until the action has settled (at most this long) before answering.
    pub wait_ms: Option<u64>,
    /// Hibernate: how deep (`paused` keeps the process frozen with its memory, `stopped` —
    /// the default — saves state and ends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<mindmesh_core::hibernate::Tier>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResponse {
    pub persona: String,
    pub action: String,
    pub phase: Phase,
    /// False when the persona already was what the action asks (a `start` of a running
    /// persona): nothing was changed or recorded.
    #[serde(default = "changed_default")]
    pub changed: bool,
    /// Why nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn changed_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleRequest {
    pub multiplier: f64,
}

pub use crate::http::{ErrorBody, ErrorDetail};

/// A page of a persona's output (`GET /api/v1/personas/{name}/logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsPage {
    pub persona: String,
    /// The node whose files these lines come from.
    pub node: String,
    pub lines: Vec<mindmesh_supervisor::logs::LogLine>,
    /// Pass back as `cursor` to read on (opaque).
    pub cursor: String,
    /// Nothing more to read now; with `wait_ms` a page waits for new lines first.
    pub at_end: bool,
    /// Lines were rotated away before they were read.
    pub skipped: bool,
}

/// The log files one node holds for a persona.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogFilesView {
    pub node: String,
    pub files: Vec<mindmesh_supervisor::logs::LogFileInfo>,
}

/// What `PUT /api/v1/personas/{name}` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub persona: String,
    /// The persona did not exist: it was (or would be) added.
    pub created: bool,
    /// False: the spec is what the mesh already has; nothing was done.
    pub changed: bool,
    /// The change replaces the persona's process (see `mindmesh_core::spec_diff`).
    pub restart: bool,
    /// Nothing was changed: the diff is what applying would do.
    pub dry_run: bool,
    /// Field by field, from the mesh's spec (with its budget as it is now) to the new one.
    pub changes: Vec<mindmesh_core::spec_diff::FieldChange>,
    /// The node it is placed on, when it is.
    #[serde(default)]
    pub node: Option<String>,
    /// Its process after the change, when the node that runs it answered (a restart: a new
    /// pid).
    #[serde(default)]
    pub pid: Option<u32>,
    /// What the change did not do in time, or at all (a restart still under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
