//! The persona spec as registry wire version 3 laid it out, frozen: postcard has no field
//! names, so a snapshot, a Raft log entry or a node's stored record written before version 4
//! (adapters, sleep hooks, persona-reported metrics) decodes only through this exact layout.
//! Never change these structs; a new version freezes the current spec beside them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::spec::{Importance, Limits, PersonaKind, PersonaSpec, Placement, Requests, RestartPolicy};

/// [`PersonaSpec`] of wire version 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaSpecV3 {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    pub importance: Importance,
    pub kind: PersonaKind,
    pub model: Option<String>,
    pub restart: RestartPolicy,
    pub health_path: Option<String>,
    pub limits: LimitsV3,
    pub requests: RequestsV3,
    pub budget: BudgetV3,
    pub labels: BTreeMap<String, String>,
    pub placement: PlacementV3,
    pub hibernate_after_idle_s: Option<u64>,
}

/// [`Limits`] of wire version 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsV3 {
    pub memory_max_mb: Option<u64>,
    pub cpu_max_percent: Option<f64>,
}

/// [`Requests`] of wire version 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestsV3 {
    pub memory_mb: u64,
    pub cpu_percent: f64,
}

/// [`Placement`] of wire version 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementV3 {
    pub require: BTreeMap<String, String>,
    pub prefer: BTreeMap<String, String>,
}

/// [`Budget`] of wire version 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetV3 {
    pub max_response_time_ms: u64,
    pub tokens_per_response: u32,
    pub inference_queue_priority: u8,
    pub max_memory_mb: u64,
    pub max_concurrent_inferences: u32,
    pub throttle_multiplier: f64,
    pub allowed_to_run: bool,
}

impl From<BudgetV3> for Budget {
    fn from(b: BudgetV3) -> Self {
        Budget {
            max_response_time_ms: b.max_response_time_ms,
            tokens_per_response: b.tokens_per_response,
            inference_queue_priority: b.inference_queue_priority,
            max_memory_mb: b.max_memory_mb,
            max_concurrent_inferences: b.max_concurrent_inferences,
            throttle_multiplier: b.throttle_multiplier,
            allowed_to_run: b.allowed_to_run,
        }
    }
}

impl From<PersonaSpecV3> for PersonaSpec {
    fn from(s: PersonaSpecV3) -> Self {
        PersonaSpec {
            name: s.name,
            command: s.command,
            args: s.args,
            env: s.env,
            working_dir: s.working_dir,
            importance: s.importance,
            kind: s.kind,
            model: s.model,
            restart: s.restart,
            health_path: s.health_path,
            limits: Limits { memory_max_mb: s.limits.memory_max_mb, cpu_max_percent: s.limits.cpu_max_percent },
            requests: Requests { memory_mb: s.requests.memory_mb, cpu_percent: s.requests.cpu_percent },
            budget: s.budget.into(),
            labels: s.labels,
            placement: Placement { require: s.placement.require, prefer: s.placement.prefer },
            hibernate_after_idle_s: s.hibernate_after_idle_s,
            ..PersonaSpec::new("", "")
        }
    }
}

/// A spec as version 3 would have written it (the later fields dropped), for the tests that
/// prove old bytes still decode.
impl From<&PersonaSpec> for PersonaSpecV3 {
    fn from(s: &PersonaSpec) -> Self {
        PersonaSpecV3 {
            name: s.name.clone(),
            command: s.command.clone(),
            args: s.args.clone(),
            env: s.env.clone(),
            working_dir: s.working_dir.clone(),
            importance: s.importance,
            kind: s.kind,
            model: s.model.clone(),
            restart: s.restart,
            health_path: s.health_path.clone(),
            limits: LimitsV3 { memory_max_mb: s.limits.memory_max_mb, cpu_max_percent: s.limits.cpu_max_percent },
            requests: RequestsV3 { memory_mb: s.requests.memory_mb, cpu_percent: s.requests.cpu_percent },
            budget: (&s.budget).into(),
            labels: s.labels.clone(),
            placement: PlacementV3 { require: s.placement.require.clone(), prefer: s.placement.prefer.clone() },
            hibernate_after_idle_s: s.hibernate_after_idle_s,
        }
    }
}

impl From<&Budget> for BudgetV3 {
    fn from(b: &Budget) -> Self {
        BudgetV3 {
            max_response_time_ms: b.max_response_time_ms,
            tokens_per_response: b.tokens_per_response,
            inference_queue_priority: b.inference_queue_priority,
            max_memory_mb: b.max_memory_mb,
            max_concurrent_inferences: b.max_concurrent_inferences,
            throttle_multiplier: b.throttle_multiplier,
            allowed_to_run: b.allowed_to_run,
        }
    }
}
