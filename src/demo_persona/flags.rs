//! Command-line flags. Every behaviour flag is also read from `MINDMESH_DEMO_<FLAG>` (the flag's
//! name upper-cased, `-` as `_`), so a persona spec can set it through `args` or `env`; the
//! command line wins over the environment. Boolean variables accept `1/true/yes/on` and
//! `0/false/no/off`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::Serialize;

/// Most tokens one answer may have: the whole answer text is laid out once at start.
pub const MAX_TOKENS: u32 = 65_536;
/// Most worker threads; the default current-thread runtime is what the benchmarks assume.
pub const MAX_THREADS: usize = 64;
/// Most CPU time one answer may compute for.
pub const MAX_CPU_MS: u64 = 60_000;
/// Most CPU a hog may burn, in percent of one core (one thread per started 100 %).
pub const MAX_CPU_HOG_PERCENT: f64 = 1_600.0;

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "mindmesh-demo-persona",
    version,
    about = "A small OpenAI-compatible persona with scriptable misbehaviour, for mindmesh's tests, simulations, \
             benchmarks and demo"
)]
pub struct Flags {
    /// Port to serve on, on `--host`. 0: the OS picks one. Either way the bound address is
    /// printed on stdout as `listening on http://HOST:PORT`.
    #[arg(long, env = "MINDMESH_PORT")]
    pub port: u16,

    /// Address to bind. Loopback by default, as the node's gateway fronts the persona.
    #[arg(long, env = "MINDMESH_DEMO_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Name reported in `/health`, `/v1/models` and the saved state.
    #[arg(long, env = "MINDMESH_PERSONA_ID", default_value = "demo")]
    pub persona_id: String,

    /// State to restore at start (a blob returned earlier by `POST /mindmesh/state/save`).
    /// An empty value means none (a supervisor may set the variable with nothing to restore).
    #[arg(long, env = "MINDMESH_STATE_FILE", value_parser = any_path)]
    pub state_file: Option<PathBuf>,

    /// Tokens in a full answer; a request's `max_tokens`/`max_completion_tokens` can only lower it.
    #[arg(long, env = "MINDMESH_DEMO_TOKENS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TOKENS)))]
    pub tokens: u32,

    /// Delay before each token, streamed or not (a non-streamed answer of n tokens takes n × this).
    #[arg(long, env = "MINDMESH_DEMO_TOKEN_DELAY_MS", default_value_t = 0)]
    pub token_delay_ms: u64,

    /// Latency added before every answer (before the first byte when streaming). Injected
    /// errors other than `timeout` answer at once, as a refusing upstream does.
    #[arg(long, env = "MINDMESH_DEMO_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// CPU time each answer computes for, as a model's forward pass does: a service time that
    /// is work, so answers slow down when the host's cores are shared (`--latency-ms` only
    /// sleeps). Computed on a blocking thread, so concurrent answers use as many cores.
    #[arg(long, env = "MINDMESH_DEMO_CPU_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_CPU_MS))]
    pub cpu_ms: u64,

    /// Added latency grows by this much per minute since start.
    #[arg(long, env = "MINDMESH_DEMO_LATENCY_RAMP_MS_PER_MIN", default_value_t = 0.0, value_parser = non_negative)]
    pub latency_ramp_ms_per_min: f64,

    /// Allocate and touch this much memory per minute, and never free it.
    #[arg(long, env = "MINDMESH_DEMO_LEAK_MB_PER_MIN", default_value_t = 0.0, value_parser = non_negative)]
    pub leak_mb_per_min: f64,

    /// The leak stops growing here. A large rate with a cap makes a persona that holds a fixed
    /// amount of memory, as a loaded model does.
    #[arg(long, env = "MINDMESH_DEMO_LEAK_MAX_MB", default_value_t = 4096)]
    pub leak_max_mb: u64,

    /// Exit this many seconds after start (fractions allowed), with status 70 (EX_SOFTWARE),
    /// or by SIGABRT with `--crash-abort`.
    #[arg(long, env = "MINDMESH_DEMO_CRASH_AFTER_S", value_parser = positive)]
    pub crash_after_s: Option<f64>,

    /// Crash by `abort()` (death by SIGABRT) instead of exiting with status 70.
    #[arg(long, env = "MINDMESH_DEMO_CRASH_ABORT", value_parser = FalseyValueParser::new())]
    pub crash_abort: bool,

    /// Share (0–1) of completion requests answered with an injected error.
    #[arg(long, env = "MINDMESH_DEMO_ERROR_RATE", default_value_t = 0.0, value_parser = probability)]
    pub error_rate: f64,

    /// Kinds of injected errors, comma-separated; each error picks one at random.
    #[arg(long, env = "MINDMESH_DEMO_ERROR_KINDS", value_enum, value_delimiter = ',', default_value = "5xx")]
    pub error_kinds: Vec<FaultKind>,

    /// How long a `timeout` error hangs before it finally answers 504.
    #[arg(long, env = "MINDMESH_DEMO_HANG_MS", default_value_t = 300_000)]
    pub hang_ms: u64,

    /// Burn this share of a core (100 = one core; above 100, one thread per core's worth).
    #[arg(long, env = "MINDMESH_DEMO_CPU_HOG_PERCENT", default_value_t = 0.0, value_parser = cpu_percent)]
    pub cpu_hog_percent: f64,

    /// Serve, and nothing else: no background work, warnings-only logs. The "tiny child".
    /// Refused with `--leak-mb-per-min`, `--cpu-hog-percent`, `--crash-after-s`, `--spawn-child`.
    #[arg(long, env = "MINDMESH_DEMO_IDLE", value_parser = FalseyValueParser::new())]
    pub idle: bool,

    /// Ignore SIGTERM (so a supervisor has to escalate to SIGKILL). A spawned child inherits it.
    #[arg(long, env = "MINDMESH_DEMO_IGNORE_SIGTERM", value_parser = FalseyValueParser::new())]
    pub ignore_sigterm: bool,

    /// Start a grandchild (`sleep 3600`) in our process group and leave it behind on exit, so
    /// a supervisor must stop the whole group to leave no orphan.
    #[arg(long, env = "MINDMESH_DEMO_SPAWN_CHILD", value_parser = FalseyValueParser::new())]
    pub spawn_child: bool,

    /// Seed of every random choice (which requests fail, and how). Default: from the clock and
    /// PID; the seed in use is shown in `/health`, so a run can be replayed.
    #[arg(long, env = "MINDMESH_DEMO_SEED")]
    pub seed: Option<u64>,

    /// Runtime threads: 1 is a current-thread runtime (the default, the cheapest).
    #[arg(long, env = "MINDMESH_DEMO_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    pub threads: u16,

    /// Connections served at once; further ones wait in the kernel's accept backlog.
    #[arg(long, env = "MINDMESH_DEMO_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,

    /// After SIGTERM/SIGINT, in-flight requests get this long before the process exits.
    #[arg(long, env = "MINDMESH_DEMO_SHUTDOWN_GRACE_MS", default_value_t = 2_000)]
    pub shutdown_grace_ms: u64,
}

/// An injected error, as an upstream model API would fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum FaultKind {
    /// Hang for `--hang-ms`, then 504: the caller's timeout should fire first.
    #[value(name = "timeout")]
    #[serde(rename = "timeout")]
    Timeout,
    /// 500 server_error.
    #[value(name = "5xx")]
    #[serde(rename = "5xx")]
    ServerError,
    /// 429 rate_limit_exceeded, with Retry-After.
    #[value(name = "429")]
    #[serde(rename = "429")]
    RateLimit,
    /// 401 invalid_api_key.
    #[value(name = "401")]
    #[serde(rename = "401")]
    Auth,
    /// 429 insufficient_quota.
    #[value(name = "quota")]
    #[serde(rename = "quota")]
    Quota,
    /// 400 context_length_exceeded.
    #[value(name = "context_length")]
    #[serde(rename = "context_length")]
    ContextLength,
}

impl Flags {
    /// Parse the arguments and environment; exits with status 2 and clap's message on error.
    /// The first argument names the program in help and errors: `mindmesh-demo-persona`, or
    /// `mindmesh demo-persona` when the main binary runs it.
    pub fn parse_and_check(args: impl IntoIterator<Item = std::ffi::OsString>) -> Flags {
        let mut args = args.into_iter().peekable();
        let bin_name = args.peek().map(|a| {
            let a = a.to_string_lossy();
            // a path's file name, as clap itself would take it, but keep "mindmesh demo-persona"
            if a.contains(' ') { a.into_owned() } else { a.rsplit('/').next().unwrap_or_default().to_owned() }
        });
        let mut command = Flags::command();
        if let Some(name) = bin_name {
            command = command.bin_name(name.clone()).display_name(name);
        }
        let flags = match command.clone().try_get_matches_from(args).and_then(|m| Flags::from_arg_matches(&m)) {
            Ok(f) => f,
            Err(e) => e.format(&mut command).exit(),
        };
        if let Err(msg) = flags.check() {
            command.error(clap::error::ErrorKind::ArgumentConflict, msg).exit();
        }
        flags
    }

    /// Rules across flags. Checked after parsing rather than with clap's `conflicts_with`,
    /// which would also fire for `MINDMESH_DEMO_IDLE=0`.
    pub fn check(&self) -> Result<(), String> {
        if self.idle {
            let busy = [
                (self.leak_mb_per_min > 0.0, "--leak-mb-per-min"),
                (self.cpu_hog_percent > 0.0, "--cpu-hog-percent"),
                (self.crash_after_s.is_some(), "--crash-after-s"),
                (self.spawn_child, "--spawn-child"),
            ];
            if let Some((_, name)) = busy.iter().find(|(on, _)| *on) {
                return Err(format!("--idle does nothing but serve, so it cannot be combined with {name}"));
            }
        }
        Ok(())
    }
}

fn any_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if !v.is_finite() {
        return Err(format!("{s:?} is not finite"));
    }
    Ok(v)
}

fn non_negative(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v < 0.0 {
        return Err(format!("{v} must not be negative"));
    }
    Ok(v)
}

fn positive(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v <= 0.0 {
        return Err(format!("{v} must be greater than zero"));
    }
    Ok(v)
}

fn probability(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} must be within 0..=1"));
    }
    Ok(v)
}

fn cpu_percent(s: &str) -> Result<f64, String> {
    let v = non_negative(s)?;
    if v > MAX_CPU_HOG_PERCENT {
        return Err(format!("{v} must be at most {MAX_CPU_HOG_PERCENT}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("p").chain(args.iter().copied()))
    }

    #[test]
    fn flags_parse_and_combine() {
        let f = parse(&[
            "--port",
            "0",
            "--leak-mb-per-min",
            "12.5",
            "--error-rate",
            "0.5",
            "--error-kinds",
            "timeout,429,context_length",
            "--ignore-sigterm",
            "--crash-after-s",
            "0.5",
        ])
        .unwrap();
        assert_eq!(f.leak_mb_per_min, 12.5);
        assert_eq!(f.error_kinds, [FaultKind::Timeout, FaultKind::RateLimit, FaultKind::ContextLength]);
        assert!(f.ignore_sigterm && !f.idle && !f.spawn_child);
        assert_eq!(f.crash_after_s, Some(0.5));
        assert_eq!(f.tokens, 16);
        let d = parse(&["--port", "1"]).unwrap();
        assert_eq!(d.error_kinds, [FaultKind::ServerError]);
        assert_eq!((d.leak_mb_per_min, d.cpu_hog_percent, d.crash_after_s), (0.0, 0.0, None));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--port", "0", "--error-rate", "1.5"]).is_err());
        assert!(parse(&["--port", "0", "--tokens", "0"]).is_err());
        assert!(parse(&["--port", "0", "--leak-mb-per-min", "-1"]).is_err());
        assert!(parse(&["--port", "0", "--crash-after-s", "0"]).is_err());
        assert!(parse(&["--port", "0", "--error-kinds", "teapot"]).is_err());
        assert!(parse(&[]).is_err(), "a port is required");
    }

    #[test]
    fn idle_refuses_background_work_only_when_on() {
        let idle_leak = parse(&["--port", "0", "--idle", "--leak-mb-per-min", "5"]).unwrap();
        assert!(idle_leak.check().unwrap_err().contains("--leak-mb-per-min"));
        let idle_child = parse(&["--port", "0", "--idle", "--spawn-child"]).unwrap();
        assert!(idle_child.check().is_err());
        assert!(parse(&["--port", "0", "--idle", "--latency-ms", "5"]).unwrap().check().is_ok());
        assert!(parse(&["--port", "0", "--leak-mb-per-min", "5"]).unwrap().check().is_ok());
    }
}
