//! The registry: the desired state of the mesh that Raft replicates — nodes, personas with
//! their spec, placement, phase, budget, restart generation and fencing epoch, and the
//! decision log. [`Registry::apply`] is the state machine: pure and deterministic (time
//! arrives inside commands, the log position in [`ApplyCtx`]), so every replica that applies
//! the same log holds the same registry, which [`Registry::digest`] lets tests check.

mod apply;
mod audit;
mod command;
mod invariants;
mod legacy;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

pub use audit::{Actor, Decided, Verdict};
pub use command::{Command, NodeInfo, Outcome, Proposal, ProposalId, Reassignment};
pub use invariants::check_step;

use crate::action::Decision;
use crate::budget::Budget;
use crate::error::{CoreError, Result};
use crate::spec::PersonaSpec;
use crate::wire;

/// A node's Raft id, derived from its libp2p peer id by [`node_id_from_bytes`].
pub type NodeId = u64;

/// Version tag of registry snapshots and stored commands. 3: decisions carry who asked, the
/// verb and a verdict, nodes who drains them. 4: the persona spec has adapters, sleep hooks
/// and a metrics path; a decision's record keeps the before and after of the budget change it
/// carried out. 5: the spec has its budget envelope (`[budget.min]` / `[budget.max]`) and
/// scheduled maintenance. Snapshots of versions 2 to 4 still decode ([`Registry::decode`]).
/// Commands only ever gain variants at the end, so every stored log entry decodes under any
/// later version: a spec that changes layout gets a new `PutPersona` variant, the old one
/// keeps its frozen spec ([`crate::spec_v3`], [`crate::spec_v4`]).
pub const REGISTRY_WIRE_VERSION: u8 = 5;
/// Decisions kept in the log; older ones are dropped first (the store keeps the history).
pub const MAX_DECISIONS_KEPT: usize = 10_000;
pub const MAX_DECISIONS_PER_COMMAND: usize = 1000;
pub const MAX_MOVES_PER_COMMAND: usize = 10_000;
pub const MAX_NODES: usize = 10_000;
pub const MAX_PERSONAS: usize = 100_000;
/// Proposal ids remembered per proposer for deduplication.
pub const MAX_RECENT_PROPOSALS: usize = 64;
/// Largest encoded proposal: a spec is bounded, this bounds a whole command.
pub const MAX_PROPOSAL_BYTES: usize = 1024 * 1024;
/// Largest registry snapshot decoded.
pub const MAX_REGISTRY_SNAPSHOT_BYTES: usize = 1024 * 1024 * 1024;
pub const MAX_REASON_BYTES: usize = 1024;
pub const MAX_NODE_ADDRS: usize = 16;
pub const MAX_ADDR_LEN: usize = 512;
/// Largest checkpoint (a persona's saved state) the registry takes: every replica holds it and
/// every snapshot carries it. The node's `max_checkpoint_bytes` (smaller by default) applies first.
pub const MAX_CHECKPOINT_BYTES: usize = 1024 * 1024;

/// A stable 64-bit id from bytes (FNV-1a): the same peer id gives the same Raft id on every
/// machine and every Rust version, which `std`'s hasher does not promise.
pub fn node_id_from_bytes(bytes: &[u8]) -> NodeId {
    let mut h = Fnv::new();
    h.write(bytes);
    // 0 reads as "no node" in too many places (logs, defaults)
    h.finish().max(1)
}

/// FNV-1a, 64 bit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn with(seed: u64) -> Self {
        let mut f = Fnv::new();
        f.write(&seed.to_le_bytes());
        f
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// What a node offers to placement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub memory_mb: u64,
    /// 100 = one core.
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub info: NodeInfo,
    /// Log index of the entry that first added the node.
    pub joined_index: u64,
    pub updated_index: u64,
    /// Being drained (`mindmesh node drain`): placement puts nothing new on it.
    pub draining: bool,
    /// Who asked for the drain: its migrations are logged in their name.
    pub drained_by: Option<Actor>,
}

/// A node's part in consensus, as the last committed membership says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Voter,
    Learner,
}

/// What the mesh wants a persona to be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredPhase {
    Running,
    /// Stopped with its state saved; a request or `wake` brings it back.
    Hibernating,
    /// Down for a reason (crash loop, decision); stays down until an operator acts.
    Killed,
    /// Stopped by an operator.
    Stopped,
    /// Hibernated in the shallowest tier: frozen with its memory kept (see
    /// [`crate::hibernate::Tier`]); a request or `wake` thaws it. Last, so older encodings decode.
    Paused,
}

impl DesiredPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredPhase::Running => "running",
            DesiredPhase::Hibernating => "hibernating",
            DesiredPhase::Killed => "killed",
            DesiredPhase::Stopped => "stopped",
            DesiredPhase::Paused => "paused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaEntry {
    pub spec: PersonaSpec,
    /// The node that runs it; None while it waits for placement.
    pub node: Option<NodeId>,
    pub phase: DesiredPhase,
    pub reason: Option<String>,
    pub budget: Budget,
    /// Bumped by each restart the mesh asks for.
    pub generation: u64,
    /// Fencing epoch: the log index of the last change that starts the persona anew (creation,
    /// placement, restart, wake). A process started under an older epoch is stale.
    pub epoch: u64,
    /// The latest state saved off-node, restored by failover and migration.
    pub checkpoint: Option<Checkpoint>,
    /// A migration in progress: the node it goes to once its node has released it.
    pub migrating_to: Option<NodeId>,
    pub created_index: u64,
    pub updated_index: u64,
}

/// A persona's saved state, replicated with the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub state: Vec<u8>,
    /// The epoch of the process that saved it.
    pub epoch: u64,
    pub node: NodeId,
    pub at_ms: u64,
}

/// One entry of the audit trail: who asked what, why, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub seq: u64,
    pub decision: Decision,
    pub by: Actor,
    /// The verb as asked (`stop`, `start`, `drain`, …).
    pub verb: String,
    /// Log index of the entry that recorded it.
    pub index: u64,
    pub decided_at_ms: u64,
    pub verdict: Verdict,
    /// Log index of its last change (recorded, then its verdict): `decisions --follow` asks
    /// for the rows changed since the index it last saw.
    pub updated_index: u64,
    /// How many later cycles decided the same again (a quiet log: an unchanged non-disruptive
    /// decision is counted here rather than appended every cycle).
    #[serde(default)]
    pub repeats: u32,
    /// When it was last decided again; its reason and confidence are that cycle's.
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    /// A budget change it carried out (a `budget` or `throttle` decision, an operator's
    /// budget): the fields set, before and after. None for the others, for a refused change,
    /// and for records older than wire version 4.
    #[serde(default)]
    pub budget: Option<crate::budget::BudgetChange>,
}

/// Where in the log an entry sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyCtx {
    pub index: u64,
    pub term: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub nodes: BTreeMap<NodeId, NodeEntry>,
    pub personas: BTreeMap<String, PersonaEntry>,
    pub decisions: VecDeque<DecisionRecord>,
    pub next_decision_seq: u64,
    /// Log index of the last change to any decision (recorded or given a verdict).
    pub decisions_updated_index: u64,
    /// From the last membership entry applied.
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Outcomes of the last proposals of each node, for deduplication.
    recent: BTreeMap<NodeId, VecDeque<(u64, Outcome)>>,
    /// Index of the last entry applied (any kind).
    pub applied_index: u64,
    /// Index of the last entry that changed what placement and failover plan from: nodes
    /// (membership, capacity, labels, draining) and where personas are or go (not their
    /// phase, budget, checkpoints or decisions). The leader plans again only when it moves.
    pub placement_index: u64,
    /// Chained hash of every entry applied: replicas at the same index must agree.
    pub digest: u64,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn role(&self, id: NodeId) -> Option<Role> {
        if self.voters.contains(&id) {
            Some(Role::Voter)
        } else if self.learners.contains(&id) {
            Some(Role::Learner)
        } else {
            None
        }
    }

    pub fn node_by_name(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.values().find(|n| n.info.name == name)
    }

    /// Personas placed on `node`.
    pub fn personas_on(&self, node: NodeId) -> impl Iterator<Item = (&String, &PersonaEntry)> {
        self.personas.iter().filter(move |(_, p)| p.node == Some(node))
    }

    /// Decisions with `seq >= from_seq`, oldest first.
    pub fn decisions_since(&self, from_seq: u64) -> impl Iterator<Item = &DecisionRecord> {
        let start = self.decisions.partition_point(|d| d.seq < from_seq);
        self.decisions.range(start..)
    }

    /// Decisions whose verdict (or record) changed after log index `after_index`, oldest first.
    pub fn decisions_updated_since(&self, after_index: u64) -> impl Iterator<Item = &DecisionRecord> {
        self.decisions.iter().filter(move |d| d.updated_index > after_index)
    }

    pub fn decision(&self, seq: u64) -> Option<&DecisionRecord> {
        let i = self.decisions.binary_search_by_key(&seq, |d| d.seq).ok()?;
        self.decisions.get(i)
    }

    /// A no-op entry (a new leader's first entry) moves the index and the digest.
    pub fn apply_blank(&mut self, ctx: ApplyCtx) {
        self.advance(ctx, &[0]);
    }

    /// A membership entry: who votes and who learns from now on.
    pub fn apply_membership(
        &mut self,
        ctx: ApplyCtx,
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) {
        self.voters = voters.into_iter().collect();
        self.learners = learners.into_iter().filter(|id| !self.voters.contains(id)).collect();
        let mut tag = vec![1u8];
        for id in self.voters.iter().chain(self.learners.iter()) {
            tag.extend_from_slice(&id.to_le_bytes());
        }
        self.advance(ctx, &tag);
    }

    fn advance(&mut self, ctx: ApplyCtx, bytes: &[u8]) {
        let mut h = Fnv::with(self.digest);
        h.write(&ctx.index.to_le_bytes());
        h.write(&ctx.term.to_le_bytes());
        h.write(bytes);
        self.digest = h.finish();
        self.applied_index = ctx.index;
    }

    /// Encode for a Raft snapshot.
    pub fn encode(&self) -> Result<Vec<u8>> {
        wire::encode(REGISTRY_WIRE_VERSION, self)
    }

    /// Decode a snapshot of this version, of version 4 (before the budget envelope and
    /// maintenance), of version 3 (before adapter personas) or of version 2 (before the audit
    /// trail), so a node upgraded in place restores the snapshot it wrote before.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.first() == Some(&legacy::V4) {
            let old: legacy::RegistryV4 = wire::decode(legacy::V4, bytes, MAX_REGISTRY_SNAPSHOT_BYTES)?;
            return Ok(old.into());
        }
        if bytes.first() == Some(&legacy::V3) {
            let old: legacy::RegistryV3 = wire::decode(legacy::V3, bytes, MAX_REGISTRY_SNAPSHOT_BYTES)?;
            return Ok(old.into());
        }
        if bytes.first() == Some(&legacy::V2) {
            // version 2 came in two layouts (decision repeats were added without a new tag):
            // postcard refuses trailing or missing bytes, so the wrong one fails
            type Repeats = legacy::RegistryV2<legacy::DecisionRecordV2Repeats>;
            if let Ok(old) = wire::decode::<Repeats>(legacy::V2, bytes, MAX_REGISTRY_SNAPSHOT_BYTES) {
                return Ok(old.into());
            }
            let old: legacy::RegistryV2 = wire::decode(legacy::V2, bytes, MAX_REGISTRY_SNAPSHOT_BYTES)?;
            return Ok(old.into());
        }
        wire::decode(REGISTRY_WIRE_VERSION, bytes, MAX_REGISTRY_SNAPSHOT_BYTES)
    }
}

impl Proposal {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let b = wire::encode(REGISTRY_WIRE_VERSION, self)?;
        if b.len() > MAX_PROPOSAL_BYTES {
            return Err(CoreError::Wire(format!("proposal of {} bytes exceeds {MAX_PROPOSAL_BYTES}", b.len())));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests;
