//! Registry snapshots of older wire versions, decoded and brought up to date: postcard has no
//! field names, so each old layout is spelled out here, field for field. Version 2: before the
//! audit trail; version 3: before the spec's adapters, sleep hooks and metrics path (the spec
//! of both is [`crate::spec_v3`]) and before a decision's record kept its budget change's
//! before and after (old records have none); version 4: before the spec's budget envelope
//! and maintenance (its spec is [`crate::spec_v4`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;

use super::{
    Actor, Checkpoint, DecisionRecord, DesiredPhase, NodeEntry, NodeId, NodeInfo, Outcome, PersonaEntry, Registry,
    Verdict,
};
use crate::action::Decision;
use crate::spec_v3::{BudgetV3, PersonaSpecV3};
use crate::spec_v4::PersonaSpecV4;

pub(super) const V2: u8 = 2;
pub(super) const V3: u8 = 3;
pub(super) const V4: u8 = 4;

/// A [`Registry`] as versions 3 and 4 laid it out, with their own persona entries and
/// decision records: the fields and their order are the same, the element types differ.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct RegistryLayout<P, D> {
    nodes: BTreeMap<NodeId, NodeEntry>,
    personas: BTreeMap<String, P>,
    decisions: VecDeque<D>,
    next_decision_seq: u64,
    decisions_updated_index: u64,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    recent: BTreeMap<NodeId, VecDeque<(u64, Outcome)>>,
    applied_index: u64,
    placement_index: u64,
    digest: u64,
}

impl<P: Into<PersonaEntry>, D: Into<DecisionRecord>> From<RegistryLayout<P, D>> for Registry {
    fn from(r: RegistryLayout<P, D>) -> Self {
        Registry {
            nodes: r.nodes,
            personas: r.personas.into_iter().map(|(name, p)| (name, p.into())).collect(),
            decisions: r.decisions.into_iter().map(Into::into).collect(),
            next_decision_seq: r.next_decision_seq,
            decisions_updated_index: r.decisions_updated_index,
            voters: r.voters,
            learners: r.learners,
            recent: r.recent,
            applied_index: r.applied_index,
            placement_index: r.placement_index,
            digest: r.digest,
        }
    }
}

/// [`Registry`] of wire version 4: only its personas' specs differ from version 5.
pub(super) type RegistryV4 = RegistryLayout<PersonaEntryV4, DecisionRecord>;

/// [`PersonaEntry`] of wire version 4.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct PersonaEntryV4 {
    spec: PersonaSpecV4,
    node: Option<NodeId>,
    phase: DesiredPhase,
    reason: Option<String>,
    budget: BudgetV3,
    generation: u64,
    epoch: u64,
    checkpoint: Option<Checkpoint>,
    migrating_to: Option<NodeId>,
    created_index: u64,
    updated_index: u64,
}

impl From<PersonaEntryV4> for PersonaEntry {
    fn from(p: PersonaEntryV4) -> Self {
        PersonaEntry {
            spec: p.spec.into(),
            node: p.node,
            phase: p.phase,
            reason: p.reason,
            budget: p.budget.into(),
            generation: p.generation,
            epoch: p.epoch,
            checkpoint: p.checkpoint,
            migrating_to: p.migrating_to,
            created_index: p.created_index,
            updated_index: p.updated_index,
        }
    }
}

/// A version 4 registry with the content of `r`, the way the version 4 code laid it out.
#[cfg(test)]
pub(super) fn tests_v4(r: &Registry) -> RegistryV4 {
    let personas = r
        .personas
        .iter()
        .map(|(name, p)| {
            let entry = PersonaEntryV4 {
                spec: PersonaSpecV4::from(&p.spec),
                node: p.node,
                phase: p.phase,
                reason: p.reason.clone(),
                budget: BudgetV3::from(&p.budget),
                generation: p.generation,
                epoch: p.epoch,
                checkpoint: p.checkpoint.clone(),
                migrating_to: p.migrating_to,
                created_index: p.created_index,
                updated_index: p.updated_index,
            };
            (name.clone(), entry)
        })
        .collect();
    RegistryV4 {
        nodes: r.nodes.clone(),
        personas,
        decisions: r.decisions.clone(),
        next_decision_seq: r.next_decision_seq,
        decisions_updated_index: r.decisions_updated_index,
        voters: r.voters.clone(),
        learners: r.learners.clone(),
        recent: r.recent.clone(),
        applied_index: r.applied_index,
        placement_index: r.placement_index,
        digest: r.digest,
    }
}

/// [`Registry`] of wire version 3.
pub(super) type RegistryV3 = RegistryLayout<PersonaEntryV3, DecisionRecordV3>;

/// [`DecisionRecord`] of wire version 3: before a budget change's before and after were kept
/// on its record (such records have none).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct DecisionRecordV3 {
    seq: u64,
    decision: Decision,
    by: Actor,
    verb: String,
    index: u64,
    decided_at_ms: u64,
    verdict: Verdict,
    updated_index: u64,
    repeats: u32,
    last_seen_ms: Option<u64>,
}

impl From<DecisionRecordV3> for DecisionRecord {
    fn from(d: DecisionRecordV3) -> Self {
        DecisionRecord {
            seq: d.seq,
            decision: d.decision,
            by: d.by,
            verb: d.verb,
            index: d.index,
            decided_at_ms: d.decided_at_ms,
            verdict: d.verdict,
            updated_index: d.updated_index,
            repeats: d.repeats,
            last_seen_ms: d.last_seen_ms,
            budget: None,
        }
    }
}

/// [`PersonaEntry`] of wire versions 2 and 3.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct PersonaEntryV3 {
    spec: PersonaSpecV3,
    node: Option<NodeId>,
    phase: DesiredPhase,
    reason: Option<String>,
    budget: BudgetV3,
    generation: u64,
    epoch: u64,
    checkpoint: Option<Checkpoint>,
    migrating_to: Option<NodeId>,
    created_index: u64,
    updated_index: u64,
}

impl From<PersonaEntryV3> for PersonaEntry {
    fn from(p: PersonaEntryV3) -> Self {
        PersonaEntry {
            spec: p.spec.into(),
            node: p.node,
            phase: p.phase,
            reason: p.reason,
            budget: p.budget.into(),
            generation: p.generation,
            epoch: p.epoch,
            checkpoint: p.checkpoint,
            migrating_to: p.migrating_to,
            created_index: p.created_index,
            updated_index: p.updated_index,
        }
    }
}

fn personas_v3(personas: BTreeMap<String, PersonaEntryV3>) -> BTreeMap<String, PersonaEntry> {
    personas.into_iter().map(|(name, p)| (name, p.into())).collect()
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct RegistryV2<D = DecisionRecordV2> {
    nodes: BTreeMap<NodeId, NodeEntryV2>,
    personas: BTreeMap<String, PersonaEntryV3>,
    decisions: VecDeque<D>,
    next_decision_seq: u64,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    recent: BTreeMap<NodeId, VecDeque<(u64, Outcome)>>,
    applied_index: u64,
    digest: u64,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct NodeEntryV2 {
    info: NodeInfo,
    joined_index: u64,
    updated_index: u64,
    draining: bool,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct DecisionRecordV2 {
    seq: u64,
    decision: Decision,
    index: u64,
    decided_at_ms: u64,
    executed: Option<ExecutionV2>,
}

/// Version 2 as its last days wrote it: a decision repeated by later cycles counted on its
/// record (the version tag was not raised for it).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct DecisionRecordV2Repeats {
    seq: u64,
    decision: Decision,
    index: u64,
    decided_at_ms: u64,
    executed: Option<ExecutionV2>,
    repeats: u32,
    last_seen_ms: Option<u64>,
}

impl From<DecisionRecordV2Repeats> for DecisionRecord {
    fn from(d: DecisionRecordV2Repeats) -> Self {
        let (repeats, last_seen_ms) = (d.repeats, d.last_seen_ms);
        let old = DecisionRecordV2 {
            seq: d.seq,
            decision: d.decision,
            index: d.index,
            decided_at_ms: d.decided_at_ms,
            executed: d.executed,
        };
        DecisionRecord { repeats, last_seen_ms, ..old.into() }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ExecutionV2 {
    node: NodeId,
    at_ms: u64,
    ok: bool,
    outcome: String,
}

impl From<DecisionRecordV2> for DecisionRecord {
    fn from(d: DecisionRecordV2) -> Self {
        let verdict = match d.executed {
            Some(e) if e.ok => Verdict::Executed { node: e.node, at_ms: e.at_ms, detail: e.outcome },
            Some(e) => Verdict::Failed { node: e.node, at_ms: e.at_ms, reason: e.outcome },
            None => Verdict::initial(d.decision.action),
        };
        DecisionRecord {
            seq: d.seq,
            by: Actor::from_analyst(d.decision.analyst),
            verb: d.decision.action.as_str().to_owned(),
            decision: d.decision,
            index: d.index,
            decided_at_ms: d.decided_at_ms,
            verdict,
            updated_index: d.index,
            repeats: 0,
            last_seen_ms: None,
            budget: None,
        }
    }
}

impl<D: Into<DecisionRecord>> From<RegistryV2<D>> for Registry {
    fn from(r: RegistryV2<D>) -> Self {
        let nodes = r
            .nodes
            .into_iter()
            .map(|(id, n)| {
                let entry = NodeEntry {
                    info: n.info,
                    joined_index: n.joined_index,
                    updated_index: n.updated_index,
                    draining: n.draining,
                    drained_by: None,
                };
                (id, entry)
            })
            .collect();
        let decisions: VecDeque<DecisionRecord> = r.decisions.into_iter().map(Into::into).collect();
        let decisions_updated_index = decisions.iter().map(|d| d.updated_index).max().unwrap_or(0);
        Registry {
            nodes,
            personas: personas_v3(r.personas),
            decisions,
            next_decision_seq: r.next_decision_seq,
            decisions_updated_index,
            voters: r.voters,
            learners: r.learners,
            recent: r.recent,
            applied_index: r.applied_index,
            placement_index: r.applied_index,
            digest: r.digest,
        }
    }
}

/// A version 2 registry with the content of `r` (decisions executed as `executed` says), the
/// way the version 2 code laid it out.
#[cfg(test)]
pub(super) fn tests_v2(r: &Registry, executed: &[(u64, bool)]) -> RegistryV2 {
    RegistryV2 {
        nodes: r
            .nodes
            .iter()
            .map(|(id, n)| {
                let n = NodeEntryV2 {
                    info: n.info.clone(),
                    joined_index: n.joined_index,
                    updated_index: n.updated_index,
                    draining: n.draining,
                };
                (*id, n)
            })
            .collect(),
        personas: tests_personas_v3(r),
        decisions: r
            .decisions
            .iter()
            .map(|d| DecisionRecordV2 {
                seq: d.seq,
                decision: d.decision.clone(),
                index: d.index,
                decided_at_ms: d.decided_at_ms,
                executed: executed.iter().find(|(s, _)| *s == d.seq).map(|(_, ok)| ExecutionV2 {
                    node: 1,
                    at_ms: 9,
                    ok: *ok,
                    outcome: "done".into(),
                }),
            })
            .collect(),
        next_decision_seq: r.next_decision_seq,
        voters: r.voters.clone(),
        learners: r.learners.clone(),
        recent: r.recent.clone(),
        applied_index: r.applied_index,
        digest: r.digest,
    }
}

/// The personas of `r` as versions 2 and 3 laid them out.
#[cfg(test)]
fn tests_personas_v3(r: &Registry) -> BTreeMap<String, PersonaEntryV3> {
    r.personas
        .iter()
        .map(|(name, p)| {
            let spec = PersonaSpecV3::from(&p.spec);
            let entry = PersonaEntryV3 {
                budget: spec.budget.clone(),
                spec,
                node: p.node,
                phase: p.phase,
                reason: p.reason.clone(),
                generation: p.generation,
                epoch: p.epoch,
                checkpoint: p.checkpoint.clone(),
                migrating_to: p.migrating_to,
                created_index: p.created_index,
                updated_index: p.updated_index,
            };
            (name.clone(), entry)
        })
        .collect()
}

/// A version 3 registry with the content of `r`, the way the version 3 code laid it out.
#[cfg(test)]
pub(super) fn tests_v3(r: &Registry) -> RegistryV3 {
    RegistryV3 {
        nodes: r.nodes.clone(),
        personas: tests_personas_v3(r),
        decisions: r
            .decisions
            .iter()
            .map(|d| DecisionRecordV3 {
                seq: d.seq,
                decision: d.decision.clone(),
                by: d.by.clone(),
                verb: d.verb.clone(),
                index: d.index,
                decided_at_ms: d.decided_at_ms,
                verdict: d.verdict.clone(),
                updated_index: d.updated_index,
                repeats: d.repeats,
                last_seen_ms: d.last_seen_ms,
            })
            .collect(),
        next_decision_seq: r.next_decision_seq,
        decisions_updated_index: r.decisions_updated_index,
        voters: r.voters.clone(),
        learners: r.learners.clone(),
        recent: r.recent.clone(),
        applied_index: r.applied_index,
        placement_index: r.placement_index,
        digest: r.digest,
    }
}
