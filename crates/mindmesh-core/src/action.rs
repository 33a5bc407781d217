//! Decisions: what the brain (or an operator) wants done to a persona, and why.

use serde::{Deserialize, Serialize};

use crate::budget::BudgetPatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Continue,
    Restart,
    Hibernate,
    Wake,
    Kill,
    Throttle,
    Investigate,
    Migrate,
    /// A change of the persona's budget (priority, timeout, tokens, concurrency, throttle)
    /// within its envelope. (Last: postcard numbers variants, and stored logs hold the others.)
    Budget,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Continue,
        Action::Restart,
        Action::Hibernate,
        Action::Wake,
        Action::Kill,
        Action::Throttle,
        Action::Investigate,
        Action::Migrate,
        Action::Budget,
    ];

    /// Disruptive actions interrupt the persona's service; guardrails ration them.
    pub fn is_disruptive(self) -> bool {
        matches!(self, Action::Restart | Action::Hibernate | Action::Kill | Action::Migrate)
    }

    /// Whether the node that runs the persona has something to carry out (the others are
    /// only recorded).
    pub fn asks_a_node(self) -> bool {
        !matches!(self, Action::Continue | Action::Investigate)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Restart => "restart",
            Action::Hibernate => "hibernate",
            Action::Wake => "wake",
            Action::Kill => "kill",
            Action::Throttle => "throttle",
            Action::Investigate => "investigate",
            Action::Migrate => "migrate",
            Action::Budget => "budget",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalystKind {
    Builtin,
    Llm,
    Naive,
    Operator,
    /// The node itself, without a leader (crash handling, crash loops, hard limits).
    Local,
    /// The leader's failover and placement planner (lost nodes, pending personas, drains).
    Failover,
}

impl AnalystKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalystKind::Builtin => "builtin",
            AnalystKind::Llm => "llm",
            AnalystKind::Naive => "naive",
            AnalystKind::Operator => "operator",
            AnalystKind::Local => "local",
            AnalystKind::Failover => "failover",
        }
    }
}

/// `{persona, action, reason, confidence, analyst, cycle}`: committed to the Raft log, so every
/// decision is durable, ordered and auditable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub persona: String,
    pub action: Action,
    /// The node a `migrate` goes to.
    pub target: Option<String>,
    /// For `throttle`: the multiplier to apply.
    pub throttle_multiplier: Option<f64>,
    pub reason: String,
    /// 0–1.
    pub confidence: f32,
    pub analyst: AnalystKind,
    pub cycle: u64,
    /// The budget change the decision carries along (any action but a phase change may; the
    /// leader commits it as a `budget` decision of its own with its before and after in the
    /// reason). Not on the wire: the registry change (`SetBudget`) is what travels and stays,
    /// so the decision log's layout is unchanged.
    #[serde(skip)]
    pub budget: Option<BudgetPatch>,
}

impl Decision {
    pub fn new(
        persona: &str,
        action: Action,
        reason: impl Into<String>,
        confidence: f32,
        analyst: AnalystKind,
    ) -> Self {
        Decision {
            persona: persona.to_owned(),
            action,
            target: None,
            throttle_multiplier: None,
            reason: reason.into(),
            confidence: confidence.clamp(0.0, 1.0),
            analyst,
            cycle: 0,
            budget: None,
        }
    }
}
