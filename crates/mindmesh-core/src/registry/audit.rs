//! The decision log as an audit trail: who asked ([`Actor`]), what they asked (the verb, as
//! they said it), why, and what became of it ([`Verdict`]). A decision and the registry change
//! it asks for commit together ([`Decided`] in [`super::Command::Decide`]), so the log can never
//! say "executed" of a change the registry refused.

use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::action::{Action, AnalystKind, Decision};

/// Who asked for a decision. (Externally tagged: postcard cannot decode internally tagged enums.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// One of the brain's analysts, by name (`builtin`, `llm`, `naive`).
    Analyst { name: String },
    /// An operator, through the API, under the named token; `via` names the node that
    /// forwarded the request, if one did.
    Operator { token: String, via: Option<String> },
    /// The leader's failover planner (lost nodes).
    Failover,
    /// A rule of the mesh or the node acting on its own (placement of pending personas,
    /// crash loops): `name` says which.
    Policy { name: String },
}

impl Actor {
    /// What an entry written before the audit trail (registry wire version 2) can say of its
    /// author: only the analyst kind was kept.
    pub fn from_analyst(kind: AnalystKind) -> Actor {
        match kind {
            AnalystKind::Builtin | AnalystKind::Llm | AnalystKind::Naive => {
                Actor::Analyst { name: kind.as_str().to_owned() }
            }
            AnalystKind::Operator => Actor::Operator { token: "unknown".to_owned(), via: None },
            AnalystKind::Failover => Actor::Failover,
            AnalystKind::Local => Actor::Policy { name: "local".to_owned() },
        }
    }

    /// `llm`, `operator alice`, `operator alice via n2`, `failover`, `policy placement`.
    pub fn describe(&self) -> String {
        match self {
            Actor::Analyst { name } => name.clone(),
            Actor::Operator { token, via: None } => format!("operator {token}"),
            Actor::Operator { token, via: Some(node) } => format!("operator {token} via {node}"),
            Actor::Failover => "failover".to_owned(),
            Actor::Policy { name } => format!("policy {name}"),
        }
    }

    pub(crate) fn bounded(&self, max: usize) -> Actor {
        let cut = |s: &str| crate::snapshot::truncate_str(s, max).to_owned();
        match self {
            Actor::Analyst { name } => Actor::Analyst { name: cut(name) },
            Actor::Operator { token, via } => Actor::Operator { token: cut(token), via: via.as_deref().map(cut) },
            Actor::Failover => Actor::Failover,
            Actor::Policy { name } => Actor::Policy { name: cut(name) },
        }
    }
}

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Committed; the node that runs the persona has not reported yet.
    Pending,
    /// Nothing for a node to carry out (`investigate`, or a brain that only advises).
    Recorded,
    /// Carried out by `node` at `at_ms`.
    Executed { node: NodeId, at_ms: u64, detail: String },
    /// `node` tried and could not.
    Failed { node: NodeId, at_ms: u64, reason: String },
    /// The registry refused the change it asked for (the API answered 409 with this reason).
    Refused { reason: String },
    /// Overtaken before it was carried out: by a later decision about the same persona
    /// (`by_seq`), or by a registry that changed since it was planned (`by_seq` none).
    Superseded { by_seq: Option<u64> },
}

impl Verdict {
    pub fn is_pending(&self) -> bool {
        matches!(self, Verdict::Pending)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Recorded => "recorded",
            Verdict::Executed { .. } => "executed",
            Verdict::Failed { .. } => "failed",
            Verdict::Refused { .. } => "refused",
            Verdict::Superseded { .. } => "superseded",
        }
    }

    /// Where a decision starts once its change is in the registry.
    pub fn initial(action: Action) -> Verdict {
        if action.asks_a_node() { Verdict::Pending } else { Verdict::Recorded }
    }
}

/// One decision with who asked, the verb they used and the registry change it asks for
/// (none: only recorded). Applied in one step: the change is applied or refused, and the
/// record says which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub decision: Decision,
    pub by: Actor,
    /// The verb as asked: `stop`, `start`, `drain`, `failover`, … (the decision's action is
    /// what the mesh does about it: a `stop` is not a `kill`).
    pub verb: String,
    pub change: Option<super::Command>,
}

impl Decided {
    /// A decision of the brain: its analyst and its action as the verb.
    pub fn analyst(decision: Decision, change: Option<super::Command>) -> Decided {
        let by = Actor::from_analyst(decision.analyst);
        let verb = decision.action.as_str().to_owned();
        Decided { decision, by, verb, change }
    }
}
