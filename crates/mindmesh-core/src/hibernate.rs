//! Hibernation tiers and the rule that picks one for an idle persona.
//!
//! | tier | what happens | memory | wake |
//! | --- | --- | --- | --- |
//! | `paused` | the process group is frozen (SIGSTOP) | kept | SIGCONT: milliseconds |
//! | `stopped` | state saved through the hook, process gone | freed | a cold start: the persona's load time |
//!
//! (The contract's third tier, *asleep* — the persona's own sleep hook releasing memory while
//! the process lives — is not built yet; see docs/personas.md.)
//!
//! Pausing pays off only when a cold start is expensive (a model server loading gigabytes)
//! and the memory it holds is not needed elsewhere; a cheap process is simply stopped.

use serde::{Deserialize, Serialize};

use crate::phase::Phase;
use crate::registry::DesiredPhase;
use crate::spec::Importance;

/// How deep a persona hibernates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Frozen, memory kept; thawed in milliseconds.
    Paused,
    /// State saved, process gone (the deepest tier; what `hibernate` always did).
    #[default]
    Stopped,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Paused => "paused",
            Tier::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "paused" => Some(Tier::Paused),
            "stopped" => Some(Tier::Stopped),
            _ => None,
        }
    }

    /// What the mesh wants of a persona hibernated in this tier.
    pub fn desired(self) -> DesiredPhase {
        match self {
            Tier::Paused => DesiredPhase::Paused,
            Tier::Stopped => DesiredPhase::Hibernating,
        }
    }

    /// The phase a node shows for a persona hibernated in this tier.
    pub fn phase(self) -> Phase {
        match self {
            Tier::Paused => Phase::Paused,
            Tier::Stopped => Phase::Hibernating,
        }
    }
}

/// A cold start at least this slow is worth keeping the memory for: below it, stopping costs
/// the next request little.
pub const PAUSE_WORTH_RELOAD_MS: u64 = 1000;
/// An idle limit above this says the persona's gaps are long: holding its memory that long
/// (even frozen) is not worth a faster wake.
pub const PAUSE_MAX_IDLE_LIMIT_S: u64 = 30 * 60;
/// Less host memory free than this share is pressure: hibernate to free memory.
pub const MEMORY_PRESSURE_FREE_RATIO: f64 = 0.15;
/// A persona paused this many times its idle limit has shown its gap is long: stop it.
pub const PAUSED_DEEPEN_AFTER_LIMITS: u64 = 4;

/// What the idle policy knows of a persona when it hibernates it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleFacts {
    /// Its last measured cold start: spawn to healthy (None: never measured).
    pub reload_ms: Option<u64>,
    /// Its `hibernate_after_idle_s`: how long the operator expects it to sit idle.
    pub idle_limit_s: u64,
    /// Share of the host's memory free (None: not measured yet).
    pub host_memory_free_ratio: Option<f64>,
    pub importance: Importance,
}

/// The tier for an idle persona, and why. Paused only for a persona whose cold start is
/// expensive and whose idle gaps are short, on a host with memory to spare; everything else is
/// stopped, which frees its memory.
pub fn idle_tier(f: &IdleFacts) -> (Tier, String) {
    if let Some(free) = f.host_memory_free_ratio
        && free < MEMORY_PRESSURE_FREE_RATIO
    {
        return (Tier::Stopped, format!("memory pressure ({:.0}% of the host free)", free * 100.0));
    }
    if f.importance == Importance::Background {
        return (Tier::Stopped, "background persona".into());
    }
    let Some(reload_ms) = f.reload_ms.filter(|ms| *ms >= PAUSE_WORTH_RELOAD_MS) else {
        return (Tier::Stopped, format!("cheap cold start ({} ms)", f.reload_ms.unwrap_or(0)));
    };
    if f.idle_limit_s > PAUSE_MAX_IDLE_LIMIT_S {
        return (Tier::Stopped, format!("long idle gaps (limit {} s)", f.idle_limit_s));
    }
    (Tier::Paused, format!("cold start {reload_ms} ms, short idle gaps, memory to spare"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> IdleFacts {
        IdleFacts {
            reload_ms: Some(3000),
            idle_limit_s: 60,
            host_memory_free_ratio: Some(0.5),
            importance: Importance::UserFacing,
        }
    }

    #[test]
    fn an_expensive_reload_with_short_gaps_pauses() {
        assert_eq!(idle_tier(&facts()).0, Tier::Paused);
    }

    #[test]
    fn pressure_background_cheap_reloads_and_long_gaps_stop() {
        let cases = [
            IdleFacts { host_memory_free_ratio: Some(0.05), ..facts() },
            IdleFacts { importance: Importance::Background, ..facts() },
            IdleFacts { reload_ms: Some(200), ..facts() },
            IdleFacts { reload_ms: None, ..facts() },
            IdleFacts { idle_limit_s: 3600, ..facts() },
        ];
        for f in cases {
            assert_eq!(idle_tier(&f).0, Tier::Stopped, "{f:?}");
        }
    }

    #[test]
    fn tiers_parse_and_map() {
        for t in [Tier::Paused, Tier::Stopped] {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tier::parse("asleep"), None);
        assert_eq!(Tier::Paused.desired(), DesiredPhase::Paused);
        assert_eq!(Tier::Stopped.phase(), Phase::Hibernating);
    }
}
