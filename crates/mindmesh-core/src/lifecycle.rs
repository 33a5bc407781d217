//! The life of one supervised persona as a sans-IO state machine: inputs (operator
//! commands, process exits, timers, limit breaches) go in with the current time, effects
//! (spawn, signal, arm a timer, record an event) come out. The supervisor's runtime carries
//! the effects out; the simulator runs the same machine on virtual time.
//!
//! Restart policy, as runit and systemd would, with two additions:
//! - the first restart after a good run is immediate; repeated failures back off from
//!   `backoff_initial_ms` doubling to `backoff_max_ms`, jittered so personas that failed
//!   together do not come back together; a run of `backoff_reset_after_ms` resets the count;
//! - more than `crash_loop_max_restarts` automatic restarts within `crash_loop_window_ms` is
//!   a crash loop: the persona is `killed` with the reason and stays down until an operator
//!   starts it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::phase::Phase;
use crate::spec::RestartPolicy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartConfig {
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_reset_after_ms: u64,
    pub jitter_fraction: f64,
    pub crash_loop_max_restarts: u32,
    pub crash_loop_window_ms: u64,
    /// SIGTERM, then this long, then SIGKILL of the whole process group.
    pub stop_grace_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            backoff_reset_after_ms: 60_000,
            jitter_fraction: 0.2,
            crash_loop_max_restarts: 3,
            crash_loop_window_ms: 5 * 60_000,
            stop_grace_ms: 5000,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// An adopted process (not our child): we saw it go, not how.
    Unknown,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                write!(f, "signal {s}{}", signal_name(*s).map(|n| format!(" ({n})")).unwrap_or_default())
            }
            ExitStatus::Unknown => f.write_str("unknown status (adopted process)"),
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// What to do once the process is down, for a stop the node asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StopGoal {
    /// Operator stop: stay down.
    Stop,
    /// Come back at once; not counted as a failure.
    Restart,
    /// State was saved before the stop; stay down until woken.
    Hibernate,
    /// Stay down until an operator starts it again.
    Kill { reason: String },
}

impl StopGoal {
    fn final_phase(&self) -> Phase {
        match self {
            StopGoal::Stop => Phase::Stopped,
            StopGoal::Restart => Phase::Starting,
            StopGoal::Hibernate => Phase::Hibernating,
            StopGoal::Kill { .. } => Phase::Killed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start (operator `start`, `wake`, or registration with a running goal). Clears a crash
    /// loop: an operator acted.
    Start,
    Stop(StopGoal),
    Spawned {
        pid: u32,
    },
    SpawnFailed {
        error: String,
    },
    Exited {
        status: ExitStatus,
    },
    /// A start the node may not carry out now (fenced: it lost its lease). Not a failure: the
    /// persona stays down, killed with the reason, until it is started again.
    Refused {
        reason: String,
    },
    /// A timer armed by `Effect::ArmTimer` fired.
    Timer {
        token: u64,
    },
    /// A hard limit was crossed; kill at once.
    LimitExceeded {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Spawn,
    /// SIGTERM to the process group.
    Terminate,
    /// SIGKILL to the process group.
    KillGroup,
    /// Deliver `Input::Timer { token }` at `at_ms`. Only the latest token counts.
    ArmTimer {
        token: u64,
        at_ms: u64,
    },
    Record {
        kind: EventKind,
        detail: String,
    },
}

/// One persona's supervision state. Serializable so a restarted node resumes counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    phase: Phase,
    policy: RestartPolicy,
    pid: Option<u32>,
    started_at_ms: Option<u64>,
    /// Automatic restarts since registration.
    restarts: u32,
    /// Times of recent automatic restarts, for the crash-loop window.
    recent_restarts_ms: VecDeque<u64>,
    /// Failures since the last good run, for the backoff.
    consecutive_failures: u32,
    /// Set while stopping: where to go once the process is gone.
    goal: Option<StopGoal>,
    /// Set when the node killed the process for a limit: the exit then carries the reason.
    limit_reason: Option<String>,
    timer_token: u64,
    /// Why the persona is killed or failed, for status.
    reason: Option<String>,
}

impl Lifecycle {
    pub fn new(policy: RestartPolicy) -> Self {
        Lifecycle {
            phase: Phase::Pending,
            policy,
            pid: None,
            started_at_ms: None,
            restarts: 0,
            recent_restarts_ms: VecDeque::new(),
            consecutive_failures: 0,
            goal: None,
            limit_reason: None,
            timer_token: 0,
            reason: None,
        }
    }

    /// Resume where a previous run of the node left off: its phase (with the reason, for a
    /// killed or failed persona), its process if one was adopted, and its restart count.
    pub fn resume(
        policy: RestartPolicy,
        phase: Phase,
        pid: Option<u32>,
        started_at_ms: Option<u64>,
        restarts: u32,
        reason: Option<String>,
    ) -> Self {
        Lifecycle { phase, pid, started_at_ms, restarts, reason, ..Lifecycle::new(policy) }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    pub fn started_at_ms(&self) -> Option<u64> {
        self.started_at_ms
    }
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    /// The starting process has proved itself (healthy, or no probe).
    pub fn mark_running(&mut self) {
        if self.phase == Phase::Starting {
            self.phase = Phase::Running;
        }
    }

    /// Feed one input; `jitter` is a uniform random draw in [0, 1) supplied by the caller so
    /// that this stays deterministic under a seeded simulator.
    pub fn handle(&mut self, input: Input, now_ms: u64, jitter: f64, cfg: &RestartConfig) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Start => self.on_start(&mut fx),
            Input::Stop(goal) => self.on_stop(goal, now_ms, cfg, &mut fx),
            Input::Spawned { pid } => {
                if self.phase == Phase::Starting {
                    self.pid = Some(pid);
                    self.started_at_ms = Some(now_ms);
                    fx.push(record(EventKind::Spawn, format!("pid {pid}")));
                } else {
                    // The goal changed while spawning: the new process must go at once.
                    self.pid = Some(pid);
                    fx.push(Effect::KillGroup);
                }
            }
            Input::SpawnFailed { error } => {
                fx.push(record(EventKind::SpawnFailed, error.clone()));
                self.pid = None;
                if self.phase == Phase::Starting {
                    self.after_failure(&format!("spawn failed: {error}"), now_ms, jitter, cfg, &mut fx);
                } else {
                    self.settle(&mut fx);
                }
            }
            Input::Exited { status } => self.on_exit(status, now_ms, jitter, cfg, &mut fx),
            Input::Refused { reason } => {
                fx.push(record(EventKind::Kill, reason.clone()));
                self.pid = None;
                self.timer_token += 1; // cancels a pending backoff
                self.goal = Some(StopGoal::Kill { reason });
                self.settle(&mut fx);
            }
            Input::Timer { token } if token == self.timer_token => match self.phase {
                Phase::Backoff => {
                    self.phase = Phase::Starting;
                    fx.push(Effect::Spawn);
                }
                Phase::Stopping => fx.push(Effect::KillGroup),
                _ => {}
            },
            Input::Timer { .. } => {}
            Input::LimitExceeded { reason } => {
                if self.phase.has_process() && self.limit_reason.is_none() {
                    fx.push(record(EventKind::LimitHit, reason.clone()));
                    fx.push(record(EventKind::Kill, reason.clone()));
                    self.limit_reason = Some(reason);
                    fx.push(Effect::KillGroup);
                }
            }
        }
        fx
    }

    fn on_start(&mut self, fx: &mut Vec<Effect>) {
        match self.phase {
            Phase::Starting | Phase::Running => {}
            Phase::Stopping => self.goal = Some(StopGoal::Restart),
            _ => {
                self.recent_restarts_ms.clear();
                self.consecutive_failures = 0;
                self.reason = None;
                self.timer_token += 1; // cancels a pending backoff
                self.phase = Phase::Starting;
                fx.push(Effect::Spawn);
            }
        }
    }

    fn on_stop(&mut self, goal: StopGoal, now_ms: u64, cfg: &RestartConfig, fx: &mut Vec<Effect>) {
        if let StopGoal::Kill { reason } = &goal {
            fx.push(record(EventKind::Kill, reason.clone()));
        }
        match self.phase {
            Phase::Starting | Phase::Running => {
                self.phase = Phase::Stopping;
                self.goal = Some(goal);
                fx.push(Effect::Terminate);
                self.timer_token += 1;
                fx.push(Effect::ArmTimer { token: self.timer_token, at_ms: now_ms + cfg.stop_grace_ms });
            }
            Phase::Stopping => {
                // a stronger goal wins: kill over hibernate over stop over restart
                if rank(&goal) >= self.goal.as_ref().map_or(0, rank) {
                    self.goal = Some(goal);
                }
            }
            _ => {
                self.timer_token += 1; // cancels a pending backoff
                self.goal = Some(goal);
                self.settle(fx);
            }
        }
    }

    fn on_exit(&mut self, status: ExitStatus, now_ms: u64, jitter: f64, cfg: &RestartConfig, fx: &mut Vec<Effect>) {
        self.pid = None;
        let ran_ms = self.started_at_ms.map_or(0, |s| now_ms.saturating_sub(s));
        let limit = self.limit_reason.take();
        let mut detail = format!("{status} after {:.1} s", ran_ms as f64 / 1000.0);
        if let Some(l) = &limit {
            detail.push_str(&format!("; killed: {l}"));
        }
        fx.push(record(EventKind::Exit, detail));
        if self.phase == Phase::Stopping {
            self.settle(fx);
            return;
        }
        if !self.phase.has_process() {
            return; // a late exit of a process we already gave up on
        }
        if ran_ms >= cfg.backoff_reset_after_ms {
            self.consecutive_failures = 0;
        }
        let failed = !status.success() || limit.is_some();
        let restart = match self.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !restart {
            self.phase = if failed { Phase::Failed } else { Phase::Stopped };
            self.reason = failed.then(|| limit.unwrap_or_else(|| status.to_string()));
            return;
        }
        let why = limit.unwrap_or_else(|| status.to_string());
        self.after_failure(&why, now_ms, jitter, cfg, fx);
    }

    /// An unplanned end of the process: restart after the backoff, or declare a crash loop.
    fn after_failure(&mut self, why: &str, now_ms: u64, jitter: f64, cfg: &RestartConfig, fx: &mut Vec<Effect>) {
        let window_start = now_ms.saturating_sub(cfg.crash_loop_window_ms);
        while self.recent_restarts_ms.front().is_some_and(|&t| t < window_start) {
            self.recent_restarts_ms.pop_front();
        }
        if self.recent_restarts_ms.len() as u32 >= cfg.crash_loop_max_restarts {
            let reason = format!(
                "crash loop: {} restarts within {} s, then {why}",
                self.recent_restarts_ms.len(),
                cfg.crash_loop_window_ms / 1000
            );
            fx.push(record(EventKind::CrashLoop, reason.clone()));
            fx.push(record(EventKind::Kill, reason.clone()));
            self.phase = Phase::Killed;
            self.reason = Some(reason);
            return;
        }
        self.consecutive_failures += 1;
        self.restarts += 1;
        self.recent_restarts_ms.push_back(now_ms);
        let delay_ms = backoff_ms(self.consecutive_failures, jitter, cfg);
        fx.push(record(EventKind::Restart, format!("restart #{} in {delay_ms} ms after {why}", self.restarts)));
        if delay_ms == 0 {
            self.phase = Phase::Starting;
            fx.push(Effect::Spawn);
        } else {
            self.phase = Phase::Backoff;
            self.timer_token += 1;
            fx.push(Effect::ArmTimer { token: self.timer_token, at_ms: now_ms + delay_ms });
        }
    }

    /// No process is left: move to where the stop goal says.
    fn settle(&mut self, fx: &mut Vec<Effect>) {
        let goal = self.goal.take().unwrap_or(StopGoal::Stop);
        self.phase = goal.final_phase();
        self.reason = match &goal {
            StopGoal::Kill { reason } => Some(reason.clone()),
            _ => None,
        };
        if self.phase == Phase::Starting {
            fx.push(Effect::Spawn);
        }
    }

    /// The token of the timer armed last.
    pub fn timer_token(&self) -> u64 {
        self.timer_token
    }
}

fn rank(goal: &StopGoal) -> u8 {
    match goal {
        StopGoal::Restart => 1,
        StopGoal::Stop => 2,
        StopGoal::Hibernate => 3,
        StopGoal::Kill { .. } => 4,
    }
}

fn record(kind: EventKind, detail: String) -> Effect {
    Effect::Record { kind, detail }
}

/// Delay before the `n`-th consecutive automatic restart (n ≥ 1): immediate for the first,
/// then `initial · 2^(n-2)` capped at `max`, jittered by ±`jitter_fraction`.
pub fn backoff_ms(n: u32, jitter: f64, cfg: &RestartConfig) -> u64 {
    if n <= 1 {
        return 0;
    }
    let exp = (n - 2).min(32);
    let base = cfg.backoff_initial_ms.saturating_mul(1u64 << exp).min(cfg.backoff_max_ms) as f64;
    let j = (jitter.clamp(0.0, 1.0) * 2.0 - 1.0) * cfg.jitter_fraction;
    ((base * (1.0 + j)).round() as u64).clamp(1, cfg.backoff_max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RestartConfig {
        RestartConfig::default()
    }

    fn spawned(l: &mut Lifecycle, now: u64, pid: u32) {
        l.handle(Input::Spawned { pid }, now, 0.5, &cfg());
        l.mark_running();
    }

    fn has(fx: &[Effect], e: &Effect) -> bool {
        fx.contains(e)
    }

    #[test]
    fn a_refused_start_is_no_failure_and_stays_down() {
        let mut l = Lifecycle::new(RestartPolicy::Always);
        assert_eq!(l.handle(Input::Start, 0, 0.5, &cfg()), vec![Effect::Spawn]);
        let fx = l.handle(Input::Refused { reason: "fenced".into() }, 1, 0.5, &cfg());
        assert!(!has(&fx, &Effect::Spawn), "{fx:?}");
        assert_eq!(l.phase(), Phase::Killed);
        assert_eq!(l.restarts(), 0);
    }

    #[test]
    fn first_crash_restarts_at_once_then_backs_off() {
        let mut l = Lifecycle::new(RestartPolicy::OnFailure);
        assert_eq!(l.handle(Input::Start, 0, 0.5, &cfg()), vec![Effect::Spawn]);
        spawned(&mut l, 0, 10);
        let fx = l.handle(Input::Exited { status: ExitStatus::Signal(9) }, 1000, 0.5, &cfg());
        assert!(has(&fx, &Effect::Spawn), "{fx:?}");
        assert_eq!(l.phase(), Phase::Starting);
        spawned(&mut l, 1000, 11);
        let fx = l.handle(Input::Exited { status: ExitStatus::Code(1) }, 1100, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Backoff);
        let at = fx
            .iter()
            .find_map(|e| match e {
                Effect::ArmTimer { at_ms, .. } => Some(*at_ms),
                _ => None,
            })
            .unwrap();
        assert_eq!(at, 1200, "100 ms at jitter midpoint");
        let token = l.timer_token();
        assert_eq!(l.handle(Input::Timer { token }, at, 0.5, &cfg()), vec![Effect::Spawn]);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let c = cfg();
        assert_eq!(backoff_ms(1, 0.9, &c), 0);
        assert_eq!(backoff_ms(2, 0.5, &c), 100);
        assert_eq!(backoff_ms(3, 0.5, &c), 200);
        assert_eq!(backoff_ms(20, 0.5, &c), 30_000);
        assert_eq!(backoff_ms(2, 0.0, &c), 80);
        assert_eq!(backoff_ms(2, 1.0, &c), 120);
        assert!(backoff_ms(40, 1.0, &c) <= 30_000);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut l = Lifecycle::new(RestartPolicy::Always);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        l.handle(Input::Exited { status: ExitStatus::Code(1) }, 10, 0.5, &cfg());
        spawned(&mut l, 10, 2);
        // ran for over a minute: the next crash is again a first crash
        let fx = l.handle(Input::Exited { status: ExitStatus::Code(1) }, 70_010, 0.5, &cfg());
        assert!(has(&fx, &Effect::Spawn), "{fx:?}");
    }

    #[test]
    fn more_than_three_restarts_in_five_minutes_is_a_crash_loop() {
        let mut l = Lifecycle::new(RestartPolicy::OnFailure);
        l.handle(Input::Start, 0, 0.5, &cfg());
        let mut now = 0;
        for i in 0..3 {
            spawned(&mut l, now, i);
            now += 500;
            l.handle(Input::Exited { status: ExitStatus::Signal(11) }, now, 0.5, &cfg());
            if l.phase() == Phase::Backoff {
                now += 1000;
                l.handle(Input::Timer { token: l.timer_token() }, now, 0.5, &cfg());
            }
            assert_eq!(l.phase(), Phase::Starting);
        }
        spawned(&mut l, now, 9);
        let fx = l.handle(Input::Exited { status: ExitStatus::Signal(11) }, now + 500, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Killed);
        assert!(l.reason().unwrap().contains("crash loop"), "{:?}", l.reason());
        assert!(fx.iter().any(|e| matches!(e, Effect::Record { kind: EventKind::CrashLoop, .. })));
        assert_eq!(l.restarts(), 3);
        // only an operator brings it back, and that clears the loop
        assert_eq!(l.handle(Input::Start, now + 600, 0.5, &cfg()), vec![Effect::Spawn]);
    }

    #[test]
    fn restarts_spread_over_more_than_the_window_are_no_loop() {
        let mut l = Lifecycle::new(RestartPolicy::OnFailure);
        l.handle(Input::Start, 0, 0.5, &cfg());
        let mut now = 0;
        for i in 0..10 {
            spawned(&mut l, now, i);
            now += 110_000; // over the reset period and spread past the window
            l.handle(Input::Exited { status: ExitStatus::Code(2) }, now, 0.5, &cfg());
            assert_eq!(l.phase(), Phase::Starting, "iteration {i}");
        }
    }

    #[test]
    fn policies_decide_whether_to_restart() {
        let mut l = Lifecycle::new(RestartPolicy::OnFailure);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        l.handle(Input::Exited { status: ExitStatus::Code(0) }, 5, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Stopped);

        let mut l = Lifecycle::new(RestartPolicy::Never);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        l.handle(Input::Exited { status: ExitStatus::Code(3) }, 5, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Failed);

        let mut l = Lifecycle::new(RestartPolicy::Always);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        let fx = l.handle(Input::Exited { status: ExitStatus::Code(0) }, 5, 0.5, &cfg());
        assert!(has(&fx, &Effect::Spawn));
    }

    #[test]
    fn graceful_stop_escalates_and_goals_are_kept() {
        let mut l = Lifecycle::new(RestartPolicy::Always);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        let fx = l.handle(Input::Stop(StopGoal::Hibernate), 10, 0.5, &cfg());
        assert!(has(&fx, &Effect::Terminate));
        assert_eq!(l.phase(), Phase::Stopping);
        // grace expires: kill the group
        assert_eq!(l.handle(Input::Timer { token: l.timer_token() }, 5010, 0.5, &cfg()), vec![Effect::KillGroup]);
        l.handle(Input::Exited { status: ExitStatus::Signal(9) }, 5011, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Hibernating);
        assert_eq!(l.restarts(), 0, "a requested stop is no failure");
        // an operator restart of a running persona comes back at once
        l.handle(Input::Start, 6000, 0.5, &cfg());
        spawned(&mut l, 6000, 2);
        l.handle(Input::Stop(StopGoal::Restart), 6100, 0.5, &cfg());
        let fx = l.handle(Input::Exited { status: ExitStatus::Signal(15) }, 6200, 0.5, &cfg());
        assert!(has(&fx, &Effect::Spawn));
        assert_eq!(l.restarts(), 0);
    }

    #[test]
    fn limit_kill_is_recorded_and_treated_as_failure() {
        let mut l = Lifecycle::new(RestartPolicy::OnFailure);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        let fx = l.handle(Input::LimitExceeded { reason: "rss 300 MB over limit 256 MB".into() }, 10, 0.5, &cfg());
        assert!(has(&fx, &Effect::KillGroup));
        assert!(fx.iter().any(|e| matches!(e, Effect::Record { kind: EventKind::LimitHit, .. })));
        let fx = l.handle(Input::Exited { status: ExitStatus::Signal(9) }, 20, 0.5, &cfg());
        let exit = fx
            .iter()
            .find_map(|e| match e {
                Effect::Record { kind: EventKind::Exit, detail } => Some(detail.clone()),
                _ => None,
            })
            .unwrap();
        assert!(exit.contains("rss 300 MB"), "{exit}");
        assert!(has(&fx, &Effect::Spawn));
    }

    #[test]
    fn stop_during_backoff_cancels_the_restart() {
        let mut l = Lifecycle::new(RestartPolicy::Always);
        l.handle(Input::Start, 0, 0.5, &cfg());
        spawned(&mut l, 0, 1);
        l.handle(Input::Exited { status: ExitStatus::Code(1) }, 1, 0.5, &cfg());
        spawned(&mut l, 1, 2);
        l.handle(Input::Exited { status: ExitStatus::Code(1) }, 2, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Backoff);
        let stale = l.timer_token();
        l.handle(Input::Stop(StopGoal::Kill { reason: "operator".into() }), 3, 0.5, &cfg());
        assert_eq!(l.phase(), Phase::Killed);
        assert!(l.handle(Input::Timer { token: stale }, 500, 0.5, &cfg()).is_empty());
    }
}
