//! What can be proposed to the registry, and what applying it answered.

use serde::{Deserialize, Serialize};

use super::{Actor, Capacity, Decided, DesiredPhase, NodeId};
use crate::action::Decision;
use crate::budget::BudgetPatch;
use crate::spec::PersonaSpec;
use crate::spec_v3::PersonaSpecV3;
use crate::spec_v4::PersonaSpecV4;
use std::collections::BTreeMap;

/// A command with the id its proposer gave it. A proposer that retries after a lost answer
/// (leader change, timeout) sends the same id, and the registry answers the first outcome
/// again instead of applying twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProposalId {
    /// The proposing node.
    pub node: NodeId,
    /// Unique per proposal of that node (random, so it survives the node's restarts).
    pub nonce: u64,
}

/// A node as it describes itself when it joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    /// Multiaddrs other nodes dial.
    pub addrs: Vec<String>,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    /// The node's HTTP API and gateway (`host:port`), where other nodes forward requests for
    /// personas it runs; empty if it has none reachable.
    pub api: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Add a node, or update one that joins again (new addresses after a restart).
    AddNode(NodeInfo),
    /// Remove a node; its personas become unassigned.
    RemoveNode {
        id: NodeId,
    },
    /// [`Command::PutPersona`] as log entries of wire version 3 and older hold it: applied as
    /// that, with the spec brought up to date. Never proposed any more.
    PutPersonaV3 {
        spec: Box<PersonaSpecV3>,
        node: Option<NodeId>,
    },
    RemovePersona {
        name: String,
    },
    /// Place a persona on a node (or none: pending). A new placement is a new fencing epoch.
    AssignPersona {
        name: String,
        node: Option<NodeId>,
    },
    SetPhase {
        name: String,
        phase: DesiredPhase,
        reason: Option<String>,
    },
    /// Restart: applies only if the generation is still `expected`, so a decision replayed
    /// or proposed twice restarts nothing twice.
    BumpGeneration {
        name: String,
        expected: u64,
    },
    SetBudget {
        name: String,
        patch: BudgetPatch,
    },
    /// Append decisions to the log; `at_ms` is the leader's clock when it decided.
    RecordDecisions {
        decisions: Vec<Decision>,
        at_ms: u64,
    },
    /// Move a persona to `to`, with its state: its node drains it, saves its state, stops it
    /// and releases it ([`Command::CompleteMigration`]); only then does `to` start it.
    Migrate {
        name: String,
        to: NodeId,
    },
    /// The source of a migration has stopped the persona (epoch `epoch`) and hands over its
    /// state; refused unless `from` still owns it at that epoch, so a stale node hands over
    /// nothing.
    CompleteMigration {
        name: String,
        from: NodeId,
        epoch: u64,
        state: Option<Vec<u8>>,
        at_ms: u64,
    },
    /// The state a running persona saved, from the node that runs it at `epoch` (refused from
    /// any other: a fenced node's state is stale).
    Checkpoint {
        name: String,
        node: NodeId,
        epoch: u64,
        state: Vec<u8>,
        at_ms: u64,
    },
    /// Failover and placement, in one entry however many personas move: each moves only if it
    /// is still where the plan found it — a plan made on an older registry changes nothing.
    Reassign {
        moves: Vec<Reassignment>,
    },
    /// Mark a node as draining (nothing new is placed on it) or not.
    SetDraining {
        id: NodeId,
        draining: bool,
    },
    /// The owning node reports that it carried a decision out (or could not).
    MarkExecuted {
        seq: u64,
        node: NodeId,
        at_ms: u64,
        ok: bool,
        outcome: String,
    },
    // New variants go last: postcard numbers variants, and stored logs hold the old numbers.
    /// Decisions with the changes they ask for, in one entry (a brain cycle, an operator's
    /// action, a failover plan): each change is applied or refused, and its decision is
    /// recorded with that verdict. Replaces `RecordDecisions` followed by one command each.
    Decide {
        decisions: Vec<Decided>,
        at_ms: u64,
    },
    /// [`Command::SetDraining`] with who asked, so the drain's migrations are logged in their
    /// name.
    Drain {
        id: NodeId,
        draining: bool,
        by: Actor,
    },
    /// The owning node reports on several decisions at once (one entry per carried-out
    /// change, not one per decision).
    Report {
        seqs: Vec<u64>,
        node: NodeId,
        at_ms: u64,
        ok: bool,
        outcome: String,
    },
    /// [`Command::PutPersona`] as log entries of wire version 4 hold it (the spec with
    /// adapters, before the budget envelope and maintenance): applied as that, with the spec
    /// brought up to date. Never proposed any more.
    PutPersonaV4 {
        spec: Box<PersonaSpecV4>,
        node: Option<NodeId>,
    },
    /// Create a persona, or replace the spec of an existing one (its phase and generation stay).
    /// Boxed: a spec is far larger than any other command. (Wire version 5: the spec with its
    /// budget envelope and maintenance; [`Command::PutPersonaV4`] and
    /// [`Command::PutPersonaV3`] are the older layouts.)
    PutPersona {
        spec: Box<PersonaSpec>,
        node: Option<NodeId>,
    },
}

/// Move `name` from `from` (None: pending) to `to` (None: pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub name: String,
    pub from: Option<NodeId>,
    pub to: Option<NodeId>,
}

impl Command {
    pub fn put_persona(spec: PersonaSpec, node: Option<NodeId>) -> Self {
        Command::PutPersona { spec: Box::new(spec), node }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Command::AddNode(_) => "add_node",
            Command::RemoveNode { .. } => "remove_node",
            Command::PutPersona { .. } | Command::PutPersonaV3 { .. } | Command::PutPersonaV4 { .. } => "put_persona",
            Command::RemovePersona { .. } => "remove_persona",
            Command::AssignPersona { .. } => "assign_persona",
            Command::SetPhase { .. } => "set_phase",
            Command::BumpGeneration { .. } => "bump_generation",
            Command::SetBudget { .. } => "set_budget",
            Command::RecordDecisions { .. } => "record_decisions",
            Command::MarkExecuted { .. } => "mark_executed",
            Command::Migrate { .. } => "migrate",
            Command::CompleteMigration { .. } => "complete_migration",
            Command::Checkpoint { .. } => "checkpoint",
            Command::Reassign { .. } => "reassign",
            Command::SetDraining { .. } => "set_draining",
            Command::Decide { .. } => "decide",
            Command::Drain { .. } => "drain",
            Command::Report { .. } => "report",
        }
    }
}

/// The answer to an applied proposal. A refused command is still committed (the log is the
/// audit trail), it just changed nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// The persona's generation and epoch after the command.
    Persona {
        generation: u64,
        epoch: u64,
    },
    /// Sequence numbers given to recorded decisions: `first_seq..first_seq + count`.
    Decisions {
        first_seq: u64,
        count: u32,
    },
    Rejected {
        reason: String,
    },
    /// Of a [`Command::Reassign`]: how many moved, how many were stale and left alone.
    Moved {
        moved: u32,
        stale: u32,
    },
    /// Of a [`Command::Decide`]: the first sequence number given, and each change's own
    /// outcome (`Done` for a decision without one), in order.
    Decided {
        first_seq: u64,
        outcomes: Vec<Outcome>,
    },
}

impl Outcome {
    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Outcome::Rejected { reason: reason.into() }
    }

    pub fn is_rejected(&self) -> bool {
        matches!(self, Outcome::Rejected { .. })
    }

    /// The outcome of the `i`th change of a [`Command::Decide`] (the whole answer otherwise).
    pub fn of_change(&self, i: usize) -> Option<&Outcome> {
        match self {
            Outcome::Decided { outcomes, .. } => outcomes.get(i),
            other => Some(other),
        }
    }
}
