//! The persona spec as registry wire version 4 laid it out, frozen: postcard has no field
//! names, so a snapshot, a Raft log entry or a node's stored record written before version 5
//! (the budget envelope `[budget.min]` / `[budget.max]` and `[maintenance]`) decodes only
//! through this exact layout. Never change this struct; a new version freezes the current
//! spec beside it. The parts that did not change since version 3 are [`crate::spec_v3`]'s
//! frozen ones; [`Adapter`] and [`SleepHooks`] have not changed since version 4 (whoever
//! changes them freezes them here first).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::{
    Adapter, Importance, Limits, PersonaKind, PersonaSpec, Placement, Requests, RestartPolicy, SleepHooks,
};
use crate::spec_v3::{BudgetV3, LimitsV3, PlacementV3, RequestsV3};

/// [`PersonaSpec`] of wire version 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaSpecV4 {
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
    pub adapter: Option<Adapter>,
    pub sleep: Option<SleepHooks>,
    pub metrics_path: Option<String>,
}

impl From<PersonaSpecV4> for PersonaSpec {
    /// The version 5 fields at their defaults: no envelope (the brain may only lower), no
    /// scheduled maintenance.
    fn from(s: PersonaSpecV4) -> Self {
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
            adapter: s.adapter,
            sleep: s.sleep,
            metrics_path: s.metrics_path,
            ..PersonaSpec::new("", "")
        }
    }
}

/// A spec as version 4 would have written it (the later fields dropped), for the tests that
/// prove old bytes still decode.
impl From<&PersonaSpec> for PersonaSpecV4 {
    fn from(s: &PersonaSpec) -> Self {
        let v3 = crate::spec_v3::PersonaSpecV3::from(s);
        PersonaSpecV4 {
            name: v3.name,
            command: v3.command,
            args: v3.args,
            env: v3.env,
            working_dir: v3.working_dir,
            importance: v3.importance,
            kind: v3.kind,
            model: v3.model,
            restart: v3.restart,
            health_path: v3.health_path,
            limits: v3.limits,
            requests: v3.requests,
            budget: v3.budget,
            labels: v3.labels,
            placement: v3.placement,
            hibernate_after_idle_s: v3.hibernate_after_idle_s,
            adapter: s.adapter.clone(),
            sleep: s.sleep.clone(),
            metrics_path: s.metrics_path.clone(),
        }
    }
}
