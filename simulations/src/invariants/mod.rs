//! Safety invariants, one per file, checked after every step of a run.
//!
//! - [`one_leader_per_term`]: at most one leader per term
//! - [`committed_not_lost`]: a write once acknowledged is in every replica that has applied
//!   past it
//! - [`replicas_agree`]: replicas that applied the same number of entries hold the same
//!   registry (same digest)

pub mod committed_not_lost;
pub mod one_leader_per_term;
pub mod replicas_agree;

use std::sync::Arc;

use mindmesh_core::registry::Registry;
use mindmesh_net::NodeId;

use crate::cluster::StatusEvent;

/// A write the mesh acknowledged: the persona it created and the log index that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub name: String,
    pub index: u64,
}

/// What the checker sees after a step.
pub struct Observation<'a> {
    pub now_ms: u64,
    /// Statuses published since the last step.
    pub statuses: &'a [StatusEvent],
    /// Each live node's registry.
    pub registries: &'a [(NodeId, Arc<Registry>)],
    /// Every write acknowledged so far.
    pub acked: &'a [Acked],
}

pub trait Invariant {
    fn name(&self) -> &'static str;
    /// Check the new observation; the error says what broke.
    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String>;
}

/// Every invariant, fresh.
pub fn all() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(one_leader_per_term::OneLeaderPerTerm::default()),
        Box::new(committed_not_lost::CommittedNotLost),
        Box::new(replicas_agree::ReplicasAgree::default()),
    ]
}
