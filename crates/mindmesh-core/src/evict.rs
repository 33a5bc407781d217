//! Memory-aware admission on one node: does a persona about to start or wake fit in what the
//! node has left, and if not, which idle personas go to a deeper tier to make room. Pure: the
//! node gathers the facts ([`Resident`] per persona, the capacity) and carries out the verdict.
//!
//! What a persona holds is the larger of what its spec requests (`requests.memory_mb`) and its
//! measured resident memory; what a start needs is the larger of its request and the peak it
//! reached the last time it ran. Only a persona with a process holds memory: a paused one keeps
//! all of it (SIGSTOP frees nothing), so the only tier that frees memory is *stopped* — every
//! eviction goes there.
//!
//! Who may be evicted: a persona that is running or paused, idle (no request in flight or
//! waiting), not a `system` persona, and not more important than the persona asking. Of
//! those, the least valuable go first:
//! 1. by importance (`background` before `user_facing`),
//! 2. then by budget priority (`inference_queue_priority`, lower first),
//! 3. then by what evicting it is expected to cost: its measured reload time weighed by how
//!    recently it was asked for — `(reload_ms + 100) / (idle_s + 1)`, lower first. A persona
//!    idle for an hour that reloads in a second costs less than one used a minute ago that
//!    reloads in ten.
//!
//! Victims are taken in that order until the shortfall is covered; then any taken that is no
//! longer needed (the shortfall is covered without it) is given back, most valuable first. If
//! every evictable persona together cannot cover it, nothing is evicted and the answer is
//! [`Verdict::NoRoom`].

use crate::Phase;
use crate::hibernate::Tier;
use crate::spec::Importance;

/// Added to every reload time in the cost: a persona never measured still costs a start.
pub const RELOAD_FLOOR_MS: u64 = 100;

/// One persona of the node, as admission sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub name: String,
    pub phase: Phase,
    /// Memory it holds now (0 without a process).
    pub held_mb: u64,
    pub importance: Importance,
    /// Its budget's `inference_queue_priority` (0–100).
    pub priority: u8,
    /// Requests in flight or waiting for it.
    pub busy: bool,
    /// Since its last request (or its start, if none since).
    pub idle_ms: u64,
    /// Its last measured cold start (spawn to healthy).
    pub reload_ms: Option<u64>,
}

/// The persona asking to start or wake.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub name: String,
    pub need_mb: u64,
    pub importance: Importance,
}

/// Why a persona that holds memory was not evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    System,
    /// Requests in flight or waiting.
    Busy,
    /// Starting or stopping: on its way in, or already leaving.
    InTransition,
    /// More important than the persona asking.
    MoreImportant,
}

impl Kept {
    pub fn as_str(self) -> &'static str {
        match self {
            Kept::System => "system persona",
            Kept::Busy => "requests in flight",
            Kept::InTransition => "starting or stopping",
            Kept::MoreImportant => "more important",
        }
    }
}

/// One persona to move to a deeper tier, and why it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    pub name: String,
    /// Running or paused.
    pub from: Phase,
    pub tier: Tier,
    pub frees_mb: u64,
    /// Its value, in words: importance, priority, idle time, reload cost.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It fits as things are.
    Fits { free_mb: u64 },
    /// It fits once these are evicted (in this order).
    Evict { victims: Vec<Victim>, free_mb: u64 },
    /// Nothing evictable makes room.
    NoRoom(NoRoom),
}

/// The facts of a refusal, for the caller's error and the event the leader reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NoRoom {
    pub need_mb: u64,
    pub capacity_mb: u64,
    pub free_mb: u64,
    /// What evicting every evictable persona would free.
    pub evictable_mb: u64,
    /// Personas holding memory that may not be evicted, with why (largest first).
    pub kept: Vec<(String, Kept, u64)>,
}

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "needs {} MB; {} MB of {} MB free and {} MB evictable",
            self.need_mb, self.free_mb, self.capacity_mb, self.evictable_mb
        )?;
        if !self.kept.is_empty() {
            let kept: Vec<String> =
                self.kept.iter().take(5).map(|(n, k, mb)| format!("{n} {mb} MB: {}", k.as_str())).collect();
            write!(f, " (kept: {}{})", kept.join(", "), if self.kept.len() > 5 { ", …" } else { "" })?;
        }
        Ok(())
    }
}

/// The expected cost of evicting `r`, for ordering: reload time over idle time.
fn cost(r: &Resident) -> f64 {
    let reload = (r.reload_ms.unwrap_or(0).saturating_add(RELOAD_FLOOR_MS)) as f64;
    reload / (r.idle_ms as f64 / 1000.0 + 1.0)
}

/// Lower is less valuable (evicted first); `system` is never asked.
fn importance_rank(i: Importance) -> u8 {
    match i {
        Importance::Background => 0,
        Importance::UserFacing => 1,
        Importance::System => 2,
    }
}

/// Why `r` may not be evicted for `ask`, if it may not.
fn kept(r: &Resident, ask: &Ask) -> Option<Kept> {
    if r.importance == Importance::System {
        return Some(Kept::System);
    }
    if r.busy {
        return Some(Kept::Busy);
    }
    if !matches!(r.phase, Phase::Running | Phase::Paused) {
        return Some(Kept::InTransition);
    }
    if importance_rank(r.importance) > importance_rank(ask.importance) {
        return Some(Kept::MoreImportant);
    }
    None
}

/// Does `ask` fit in `capacity_mb` beside `residents`, and whom to evict if not. A capacity of
/// 0 means unknown: anything fits. The asker itself, if listed, counts what it already holds
/// (a paused persona thawed needs nothing more) and is never a victim.
pub fn decide(capacity_mb: u64, residents: &[Resident], ask: &Ask) -> Verdict {
    let own_mb = residents.iter().find(|r| r.name == ask.name).map_or(0, |r| r.held_mb);
    let need_mb = ask.need_mb.saturating_sub(own_mb);
    let others = residents.iter().filter(|r| r.name != ask.name && r.held_mb > 0);
    let held_mb: u64 = others.clone().map(|r| r.held_mb).fold(0, u64::saturating_add).saturating_add(own_mb);
    let free_mb = capacity_mb.saturating_sub(held_mb);
    if capacity_mb == 0 || need_mb <= free_mb {
        return Verdict::Fits { free_mb };
    }
    let shortfall = need_mb - free_mb;
    let mut candidates: Vec<&Resident> = Vec::new();
    let mut kept_list: Vec<(String, Kept, u64)> = Vec::new();
    for r in others {
        match kept(r, ask) {
            Some(k) => kept_list.push((r.name.clone(), k, r.held_mb)),
            None => candidates.push(r),
        }
    }
    candidates.sort_by(|a, b| {
        importance_rank(a.importance)
            .cmp(&importance_rank(b.importance))
            .then(a.priority.cmp(&b.priority))
            .then(cost(a).total_cmp(&cost(b)))
            .then(a.name.cmp(&b.name))
    });
    let evictable_mb = candidates.iter().map(|r| r.held_mb).fold(0, u64::saturating_add);
    if evictable_mb < shortfall {
        kept_list.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        return Verdict::NoRoom(NoRoom { need_mb, capacity_mb, free_mb, evictable_mb, kept: kept_list });
    }
    // the least valuable first, until the shortfall is covered
    let mut taken: Vec<&Resident> = Vec::new();
    let mut freed = 0u64;
    for r in candidates {
        if freed >= shortfall {
            break;
        }
        freed = freed.saturating_add(r.held_mb);
        taken.push(r);
    }
    // give back, most valuable first, any the shortfall does not need (a big one taken last
    // may cover what the small ones before it were taken for)
    for i in (0..taken.len()).rev() {
        let mb = taken[i].held_mb;
        if freed - mb >= shortfall {
            freed -= mb;
            taken.remove(i);
        }
    }
    let victims = taken
        .into_iter()
        .map(|r| Victim {
            name: r.name.clone(),
            from: r.phase,
            tier: Tier::Stopped,
            frees_mb: r.held_mb,
            why: format!(
                "{}, priority {}, idle {} s, reload {}",
                r.importance.as_str(),
                r.priority,
                r.idle_ms / 1000,
                r.reload_ms.map_or_else(|| "not measured".to_owned(), |ms| format!("{ms} ms"))
            ),
        })
        .collect();
    Verdict::Evict { victims, free_mb }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, held_mb: u64) -> Resident {
        Resident {
            name: name.into(),
            phase: Phase::Running,
            held_mb,
            importance: Importance::UserFacing,
            priority: 50,
            busy: false,
            idle_ms: 60_000,
            reload_ms: Some(500),
        }
    }

    fn ask(need_mb: u64) -> Ask {
        Ask { name: "new".into(), need_mb, importance: Importance::UserFacing }
    }

    fn victims(v: &Verdict) -> Vec<&str> {
        match v {
            Verdict::Evict { victims, .. } => victims.iter().map(|v| v.name.as_str()).collect(),
            other => panic!("expected evictions, got {other:?}"),
        }
    }

    #[test]
    fn what_fits_evicts_nothing_and_unknown_capacity_admits_all() {
        assert_eq!(decide(300, &[r("a", 100), r("b", 100)], &ask(100)), Verdict::Fits { free_mb: 100 });
        assert!(matches!(decide(0, &[r("a", 1 << 20)], &ask(1 << 20)), Verdict::Fits { .. }));
    }

    #[test]
    fn a_paused_asker_needs_only_what_it_does_not_hold() {
        let mut me = r("new", 100);
        me.phase = Phase::Paused;
        assert!(matches!(decide(200, &[me, r("a", 100)], &ask(100)), Verdict::Fits { .. }));
    }

    #[test]
    fn the_least_recently_used_goes_first_and_only_as_many_as_needed() {
        let (mut old, mut fresh, mut mid) = (r("old", 100), r("fresh", 100), r("mid", 100));
        old.idle_ms = 3_600_000;
        fresh.idle_ms = 1_000;
        mid.idle_ms = 600_000;
        let v = decide(300, &[fresh.clone(), old.clone(), mid.clone()], &ask(100));
        assert_eq!(victims(&v), ["old"]);
        let v = decide(300, &[fresh, old, mid], &ask(200));
        assert_eq!(victims(&v), ["old", "mid"]);
    }

    #[test]
    fn importance_then_priority_then_reload_cost_order_the_victims() {
        let mut bg = r("bg", 100);
        bg.importance = Importance::Background;
        bg.idle_ms = 0;
        let mut low = r("low", 100);
        low.priority = 10;
        let mut cheap = r("cheap", 100);
        cheap.reload_ms = Some(10);
        let dear = r("dear", 100);
        let all = [dear, cheap, low, bg];
        for (need, want) in [(100, vec!["bg"]), (200, vec!["bg", "low"]), (300, vec!["bg", "low", "cheap"])] {
            assert_eq!(victims(&decide(400, &all, &ask(need))), want, "need {need}");
        }
    }

    #[test]
    fn one_big_victim_replaces_small_ones_taken_before_it() {
        let mut small = r("small", 50);
        small.idle_ms = 3_600_000;
        let big = r("big", 300);
        // small first (least valuable), then big; big alone covers the shortfall
        let v = decide(350, &[small, big], &ask(200));
        assert_eq!(victims(&v), ["big"]);
        let Verdict::Evict { victims, .. } = v else { unreachable!() };
        assert_eq!((victims[0].tier, victims[0].frees_mb), (Tier::Stopped, 300));
    }

    #[test]
    fn system_busy_starting_and_more_important_personas_are_never_victims() {
        let mut sys = r("sys", 100);
        sys.importance = Importance::System;
        sys.idle_ms = u64::MAX / 2;
        let mut busy = r("busy", 100);
        busy.busy = true;
        let mut starting = r("starting", 100);
        starting.phase = Phase::Starting;
        let mut paused = r("paused", 100);
        paused.phase = Phase::Paused;
        let residents = [sys, busy, starting, paused];
        // the paused one is the only victim there is
        assert_eq!(victims(&decide(400, &residents, &ask(100))), ["paused"]);
        let Verdict::NoRoom(n) = decide(400, &residents, &ask(200)) else { panic!("no room expected") };
        assert_eq!((n.need_mb, n.free_mb, n.evictable_mb), (200, 0, 100));
        let kinds: Vec<Kept> = n.kept.iter().map(|k| k.1).collect();
        assert_eq!(kinds.len(), 3);
        assert!(kinds.contains(&Kept::System) && kinds.contains(&Kept::Busy) && kinds.contains(&Kept::InTransition));
        assert!(n.to_string().contains("needs 200 MB; 0 MB of 400 MB free and 100 MB evictable"), "{n}");
        // a background asker may not push out a user-facing persona
        let bg = Ask { importance: Importance::Background, ..ask(100) };
        let Verdict::NoRoom(n) = decide(100, &[r("uf", 100)], &bg) else { panic!("no room expected") };
        assert_eq!(n.kept[0].1, Kept::MoreImportant);
    }
}
