//! The event log: everything that happened to a persona, in order.

use serde::{Deserialize, Serialize};

/// Longest event detail kept: details hold text that processes report.
pub const MAX_EVENT_DETAIL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Added,
    Removed,
    Spawn,
    SpawnFailed,
    /// The process exited (detail: status or signal).
    Exit,
    /// An automatic restart was scheduled or made.
    Restart,
    /// Killed (detail: the reason).
    Kill,
    /// A hard limit was crossed (detail: which and by how much).
    LimitHit,
    CrashLoop,
    Stop,
    Start,
    Hibernate,
    Wake,
    Throttle,
    Budget,
    HealthChange,
    /// A process left by an earlier run of the node was found and adopted.
    Adopt,
    /// A process left by an earlier run of the node was found and replaced.
    Replace,
    StateSaved,
    Decision,
    Error,
    /// An operator's request changed something (detail: what, which token, the answer).
    Operator,
    // new kinds go last: events are stored postcard-encoded, by variant index
    /// Moved to a deeper tier to make room for another persona (detail: to which tier, for
    /// whom, how much it freed, why it was the one).
    Evict,
    /// Could not start or wake for want of memory here, and nothing idle could be evicted
    /// (detail: the need, what is free, what was kept and why); the caller got 503.
    NoRoom,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "added",
            EventKind::Removed => "removed",
            EventKind::Spawn => "spawn",
            EventKind::SpawnFailed => "spawn_failed",
            EventKind::Exit => "exit",
            EventKind::Restart => "restart",
            EventKind::Kill => "kill",
            EventKind::LimitHit => "limit_hit",
            EventKind::CrashLoop => "crash_loop",
            EventKind::Stop => "stop",
            EventKind::Start => "start",
            EventKind::Hibernate => "hibernate",
            EventKind::Wake => "wake",
            EventKind::Throttle => "throttle",
            EventKind::Budget => "budget",
            EventKind::HealthChange => "health_change",
            EventKind::Adopt => "adopt",
            EventKind::Replace => "replace",
            EventKind::StateSaved => "state_saved",
            EventKind::Decision => "decision",
            EventKind::Error => "error",
            EventKind::Operator => "operator",
            EventKind::Evict => "evict",
            EventKind::NoRoom => "no_room",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Assigned by the store; 0 before it is stored.
    pub seq: u64,
    pub ts_ms: u64,
    pub persona: String,
    pub kind: EventKind,
    pub detail: String,
}

impl Event {
    pub fn new(ts_ms: u64, persona: &str, kind: EventKind, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        truncate_utf8(&mut detail, MAX_EVENT_DETAIL);
        Event { seq: 0, ts_ms, persona: persona.to_owned(), kind, detail }
    }
}

/// Cut a string to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
