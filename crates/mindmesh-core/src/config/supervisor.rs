use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::lifecycle::RestartConfig;

/// Whether the node puts personas in cgroups for memory and CPU limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Use cgroup v2, else v1, where the node can create groups; else measure and signal.
    #[default]
    Auto,
    /// Never: limits are measured and enforced by the node, throttle by SIGSTOP/SIGCONT.
    Off,
}

/// Most personas one node may be configured for: queues are sized from it.
pub const MAX_PERSONAS_PER_NODE: u64 = 100_000;
/// Most restarts counted in a crash-loop window (each one is remembered).
pub const MAX_RESTARTS_IN_WINDOW: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    pub metrics_interval_ms: u64,
    /// sysinfo refreshes the supervised processes (disk I/O totals) every this many metrics
    /// ticks; CPU and RSS are read from `/proc/<pid>/stat` every tick, which costs a sixth.
    pub full_sample_every_ticks: u32,
    /// A persona with a `metrics_path` is asked for its own metrics every this many metrics
    /// ticks (an HTTP request each: cheap, but not free for a busy model server).
    pub reported_metrics_every_ticks: u32,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    /// A started persona that is not healthy within this long counts as failed to start.
    pub start_timeout_ms: u64,
    /// SIGTERM, then this long, then SIGKILL of the whole process group.
    pub stop_grace_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_reset_after_s: u64,
    /// Jitter as a fraction of each backoff delay (0.2 = ±20 %).
    pub backoff_jitter: f64,
    pub crash_loop_max_restarts: u32,
    pub crash_loop_window_s: u64,
    pub cgroups: CgroupMode,
    /// Most personas one node supervises: every queue and table is sized from it.
    pub max_personas: usize,
    /// The node's environment variables a persona inherits (a trailing `*` matches any
    /// suffix); nothing else of the node's environment reaches a persona, and never a
    /// `MINDMESH_*` variable (see [`crate::persona_env`]).
    pub env_passthrough: Vec<String>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        let r = RestartConfig::default();
        SupervisorConfig {
            metrics_interval_ms: 1000,
            full_sample_every_ticks: 15,
            reported_metrics_every_ticks: 5,
            health_interval_ms: 2000,
            health_timeout_ms: 1000,
            start_timeout_ms: 30_000,
            stop_grace_ms: r.stop_grace_ms,
            backoff_initial_ms: r.backoff_initial_ms,
            backoff_max_ms: r.backoff_max_ms,
            backoff_reset_after_s: r.backoff_reset_after_ms / 1000,
            backoff_jitter: r.jitter_fraction,
            crash_loop_max_restarts: r.crash_loop_max_restarts,
            crash_loop_window_s: r.crash_loop_window_ms / 1000,
            cgroups: CgroupMode::Auto,
            max_personas: 2000,
            env_passthrough: crate::persona_env::DEFAULT_PASSTHROUGH.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl SupervisorConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::{MAX_TIMER_MS, MAX_WINDOW_S, at_most, within};
        within("metrics_interval_ms", self.metrics_interval_ms, 100, MAX_TIMER_MS)?;
        within("full_sample_every_ticks", u64::from(self.full_sample_every_ticks), 1, 3600)?;
        within("reported_metrics_every_ticks", u64::from(self.reported_metrics_every_ticks), 1, 3600)?;
        within("health_interval_ms", self.health_interval_ms, 100, MAX_TIMER_MS)?;
        within("health_timeout_ms", self.health_timeout_ms, 10, MAX_TIMER_MS)?;
        within("start_timeout_ms", self.start_timeout_ms, 100, MAX_TIMER_MS)?;
        at_most("stop_grace_ms", self.stop_grace_ms, MAX_TIMER_MS)?;
        within("backoff_initial_ms", self.backoff_initial_ms, 1, MAX_TIMER_MS)?;
        within("backoff_max_ms", self.backoff_max_ms, self.backoff_initial_ms, MAX_TIMER_MS)?;
        at_most("backoff_reset_after_s", self.backoff_reset_after_s, MAX_WINDOW_S)?;
        at_most("crash_loop_max_restarts", u64::from(self.crash_loop_max_restarts), MAX_RESTARTS_IN_WINDOW)?;
        within("crash_loop_window_s", self.crash_loop_window_s, 1, MAX_WINDOW_S)?;
        within("max_personas", self.max_personas as u64, 1, MAX_PERSONAS_PER_NODE)?;
        if !(0.0..=1.0).contains(&self.backoff_jitter) {
            return Err(CoreError::invalid("backoff_jitter", "must be within 0..=1"));
        }
        crate::persona_env::validate_passthrough("env_passthrough", &self.env_passthrough)?;
        Ok(())
    }

    pub fn restart(&self) -> RestartConfig {
        RestartConfig {
            backoff_initial_ms: self.backoff_initial_ms,
            backoff_max_ms: self.backoff_max_ms,
            backoff_reset_after_ms: crate::bounds::s_to_ms(self.backoff_reset_after_s),
            jitter_fraction: self.backoff_jitter,
            crash_loop_max_restarts: self.crash_loop_max_restarts,
            crash_loop_window_ms: crate::bounds::s_to_ms(self.crash_loop_window_s),
            stop_grace_ms: self.stop_grace_ms,
        }
    }
}
