//! Where a persona is in its life, as the node observes it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Registered, not started yet (or waiting for placement).
    #[default]
    Pending,
    /// Process spawned, not yet seen healthy (or not probed).
    Starting,
    Running,
    /// Exited; waiting out its restart backoff.
    Backoff,
    /// SIGTERM sent; waiting for the exit or the grace period.
    Stopping,
    /// Stopped by an operator, or exited and its restart policy says stay down.
    Stopped,
    /// Exited with a failure and its restart policy says stay down.
    Failed,
    /// Stopped with its state saved; a request or `wake` brings it back.
    Hibernating,
    /// Killed for a reason (crash loop, operator, decision); stays down until an operator acts.
    Killed,
    /// Hibernated in the shallowest tier: the process group is frozen (SIGSTOP) and keeps its
    /// memory; a request or `wake` thaws it in milliseconds. Last, so older encodings decode.
    Paused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Backoff => "backoff",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::Hibernating => "hibernating",
            Phase::Killed => "killed",
            Phase::Paused => "paused",
        }
    }

    /// A process may exist in this phase.
    pub fn has_process(self) -> bool {
        matches!(self, Phase::Starting | Phase::Running | Phase::Stopping | Phase::Paused)
    }

    /// Down, and nothing will bring it back without an operator, a decision or a request.
    pub fn is_at_rest(self) -> bool {
        matches!(self, Phase::Stopped | Phase::Failed | Phase::Hibernating | Phase::Killed | Phase::Pending)
    }

    /// Hibernated in some tier: a request or `wake` brings it back.
    pub fn is_hibernated(self) -> bool {
        matches!(self, Phase::Hibernating | Phase::Paused)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of the last health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not probed (no health path) or not yet probed.
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

impl Health {
    /// The word the API (serde) and every CLI view use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_say_what_the_api_says() {
        for h in [Health::Unknown, Health::Healthy, Health::Unhealthy] {
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str(), "health {h:?}");
        }
    }
}
