//! What the supervisor publishes: a read-only table of its personas, replaced on every
//! change, so readers (API, gateway, gossip) never wait on the supervisor's task; and the
//! reports it sends to whoever persists them.

use std::collections::BTreeMap;
use std::sync::Arc;

use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::{Budget, Health, Importance, PersonaRecord, Phase};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonaStatus {
    pub name: String,
    pub phase: Phase,
    pub reason: Option<String>,
    pub pid: Option<u32>,
    /// Where the persona serves, while it has a process.
    pub port: Option<u16>,
    pub restarts: u32,
    pub generation: u64,
    /// The registry epoch the persona was last started at (0: never by the mesh).
    pub epoch: u64,
    pub health: Health,
    pub importance: Importance,
    pub model: Option<String>,
    pub budget: Budget,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu_percent: f32,
    pub started_at_ms: Option<u64>,
    /// Bumped at every spawn: the gateway refuses to send a request to an older one.
    pub spawn_id: u64,
    pub hibernate_after_idle_s: Option<u64>,
    /// Frozen (the paused tier) since then.
    pub paused_at_ms: Option<u64>,
    /// Its last cold start, spawn to healthy (its reload cost).
    pub ready_ms: Option<u64>,
    /// Its spec's `requests.memory_mb`: what admission counts it as holding at least.
    #[serde(default)]
    pub requested_memory_mb: u64,
    /// A base persona: the adapter personas its process loaded at start, in id order.
    #[serde(default)]
    pub adapters: Vec<String>,
    /// An adapter persona: its base and how the gateway selects it there. Its `port` and
    /// `spawn_id` are its base's while both run.
    #[serde(default)]
    pub adapter: Option<AdapterStatus>,
}

/// How an adapter persona is served by its base's server.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AdapterStatus {
    pub base: String,
    /// Its id in the base's running server (llama.cpp's per-request `lora` list); None until
    /// the base's process has loaded it.
    pub lora_id: Option<u32>,
    pub scale: f64,
}

pub type StatusTable = Arc<BTreeMap<String, PersonaStatus>>;

/// What the supervisor hands to the node for persistence, in order.
#[derive(Debug, Clone)]
pub enum Report {
    /// The persona's durable record changed (phase, process, restarts, spec or budget).
    Record(Box<PersonaRecord>),
    Removed(String),
    Event(Event),
    /// A state blob saved through the persona's hook.
    State {
        persona: String,
        blob: Vec<u8>,
    },
    /// One metrics tick.
    Samples {
        ts_ms: u64,
        personas: Vec<(String, PersonaSample)>,
        host: HostSample,
    },
}
