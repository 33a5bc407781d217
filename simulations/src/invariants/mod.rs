//! Invariants, one per file, checked after every step of a run.
//!
//! - [`election_safety`]: a term's leaders ascend by node id, openraft's leader ids (d)
//! - [`committed_not_lost`]: a write once acknowledged is in every replica that has applied
//!   past it (c)
//! - [`replicas_agree`]: replicas that applied the same number of entries hold the same
//!   registry (same digest)
//! - [`no_double_run`]: no persona runs on two nodes at once beyond the lease (a)
//! - [`desired_running`]: once every fault is healed and the failover bound has passed, every
//!   persona desired running runs on exactly the node the registry places it on (b)
//! - [`action_converges`]: an operator's verb is carried out within a bound: the processes
//!   match the persona's desired state (unless a fault came in the way)
//! - [`decisions_audited`]: an operator's decision the log calls executed shows its effect in
//!   the processes of the node that executed it (a restart or a wake a start, a stop, kill or
//!   hibernate a moment with no process there)

pub mod action_converges;
pub mod committed_not_lost;
pub mod decisions_audited;
pub mod desired_running;
pub mod election_safety;
pub mod no_double_run;
pub mod replicas_agree;

use std::collections::BTreeSet;
use std::sync::Arc;

use mindmesh_core::registry::Registry;
use mindmesh_net::NodeId;

use crate::cluster::StatusEvent;
use crate::config::SimConfig;
use crate::processes::{ProcEvent, ProcessTable};

/// A write the mesh acknowledged: the persona it created and the log index that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub name: String,
    pub index: u64,
}

/// An operator's verb the mesh acknowledged, and the personas it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acted {
    pub what: String,
    pub at_ms: u64,
    pub personas: Vec<String>,
}

/// What the checker sees after a step.
pub struct Observation<'a> {
    pub now_ms: u64,
    pub now_us: u64,
    /// Statuses published since the last step.
    pub statuses: &'a [StatusEvent],
    /// Each live node's registry.
    pub registries: &'a [(NodeId, Arc<Registry>)],
    /// Every write acknowledged so far.
    pub acked: &'a [Acked],
    /// Which persona runs where, and the overlaps so far.
    pub procs: &'a ProcessTable,
    /// When every fault was healed (links up, crashed nodes restarted), once it was.
    pub healed_at_ms: Option<u64>,
    /// Operators' verbs acknowledged since the last step.
    pub acted: &'a [Acted],
    /// Process starts and exits since the last step, in time order (already in `procs`).
    pub events: &'a [ProcEvent],
    /// A fault started since the last step, or one is going on.
    pub disturbed: bool,
    /// Nodes down, or up without their lease (fenced or not yet renewed), at this step.
    pub unsettled: &'a BTreeSet<NodeId>,
}

static NONE: BTreeSet<NodeId> = BTreeSet::new();

impl<'a> Observation<'a> {
    /// An observation of registries and statuses only, at `now_ms` (unit tests).
    pub fn of(
        now_ms: u64,
        statuses: &'a [StatusEvent],
        registries: &'a [(NodeId, Arc<Registry>)],
        acked: &'a [Acked],
        procs: &'a ProcessTable,
    ) -> Self {
        Observation {
            now_ms,
            now_us: now_ms * 1000,
            statuses,
            registries,
            acked,
            procs,
            healed_at_ms: None,
            acted: &[],
            events: &[],
            disturbed: false,
            unsettled: &NONE,
        }
    }
}

pub trait Invariant {
    fn name(&self) -> &'static str;
    /// Check the new observation; the error says what broke.
    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String>;
}

/// Every invariant, fresh, with the bounds of this configuration.
pub fn all(cfg: &SimConfig) -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(election_safety::ElectionSafety::default()),
        Box::new(committed_not_lost::CommittedNotLost),
        Box::new(replicas_agree::ReplicasAgree::default()),
        Box::new(no_double_run::NoDoubleRun::new(cfg.overlap_tolerance_ms())),
        Box::new(desired_running::DesiredRunning::new(cfg.failover_bound_ms())),
        Box::new(action_converges::ActionConverges::new(cfg.action_bound_ms())),
        Box::new(decisions_audited::DecisionsAudited::new(cfg.action_bound_ms())),
    ]
}
