//! Registry snapshots of wire version 2 (before the audit trail), decoded and brought up to
//! date: postcard has no field names, so the old layout is spelled out here, field for field.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;

use super::{Actor, DecisionRecord, NodeEntry, NodeId, NodeInfo, Outcome, PersonaEntry, Registry, Verdict};
use crate::action::Decision;

pub(super) const V2: u8 = 2;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct RegistryV2<D = DecisionRecordV2> {
    nodes: BTreeMap<NodeId, NodeEntryV2>,
    personas: BTreeMap<String, PersonaEntry>,
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
            personas: r.personas,
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
        personas: r.personas.clone(),
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
