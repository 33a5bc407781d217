//! The persona spec (the "genome"): what to run, how much it matters, what it may consume.
//! Parsed from TOML or JSON; every error names the offending field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::budget::{Budget, BudgetEnvelope};
use crate::error::{CoreError, Result};

/// How much a persona matters when the brain must choose whom to disrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    /// Never killed without an operator.
    System,
    #[default]
    UserFacing,
    Background,
}

impl Importance {
    pub fn as_str(self) -> &'static str {
        match self {
            Importance::System => "system",
            Importance::UserFacing => "user_facing",
            Importance::Background => "background",
        }
    }
}

/// What sort of model server a persona is: a wrapper around a remote API, or a local model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PersonaKind {
    #[default]
    Api,
    Local,
}

/// When the supervisor restarts an exited persona by itself (as systemd's `Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    #[default]
    OnFailure,
    Never,
}

/// Hard limits: crossing one kills the persona (recorded with the reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Resident memory of the whole process group.
    pub memory_max_mb: Option<u64>,
    /// CPU ceiling in percent of one core (200 = two cores); throttling scales below it.
    pub cpu_max_percent: Option<f64>,
}

/// What placement reserves for the persona on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Requests {
    pub memory_mb: u64,
    /// Percent of one core.
    pub cpu_percent: f64,
}

/// A persona as the operator describes it.
///
/// Its text form (TOML, JSON) and its wire form (postcard) are [`repr::SpecRepr`], where the
/// envelope sits inside the budget table, as `[budget.min]` and `[budget.max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "repr::SpecRepr", into = "repr::SpecRepr")]
pub struct PersonaSpec {
    pub name: String,
    /// The program to run; empty (left out) only for an adapter persona, which has no
    /// process of its own.
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    pub importance: Importance,
    pub kind: PersonaKind,
    /// What it serves; personas with the same model are each other's fairest peers.
    pub model: Option<String>,
    pub restart: RestartPolicy,
    /// `GET` path probed for health; none means the persona is not probed.
    pub health_path: Option<String>,
    pub limits: Limits,
    pub requests: Requests,
    pub budget: Budget,
    pub labels: BTreeMap<String, String>,
    /// Which nodes may run it: labels a node must have, and labels it should have.
    pub placement: Placement,
    /// Hibernate after this long without a request (the gateway measures idleness).
    pub hibernate_after_idle_s: Option<u64>,
    // wire version 4 added these three
    /// A LoRA adapter served by another persona's model server (its base): the persona has
    /// no process; its requests go to the base with this adapter selected.
    pub adapter: Option<Adapter>,
    /// The persona's own sleep hooks (the `asleep` hibernation tier): POSTed by the node to
    /// release its heavy memory while the process lives, and to take it back.
    pub sleep: Option<SleepHooks>,
    /// `GET` path where the persona reports its own metrics as JSON (the contract's is
    /// [`CONTRACT_METRICS_PATH`]); none: it reports none.
    pub metrics_path: Option<String>,
    // wire version 5 added these two
    /// `[budget.min]` / `[budget.max]`: how far the brain may move the budget from `budget`.
    pub envelope: BudgetEnvelope,
    /// `[maintenance]`: restarts the brain schedules (after so many inferences or so long up).
    pub maintenance: Maintenance,
}

/// Scheduled maintenance (the seed's "restart after N inferences or N hours"): a policy the
/// brain honours, through its guardrails, once the persona's process has served this many
/// inferences or been up this long. Both open: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    /// Inferences the gateway counted since the process started.
    pub restart_after_inferences: Option<u64>,
    /// Seconds since the process started.
    pub restart_after_s: Option<u64>,
}

impl Maintenance {
    pub fn is_empty(&self) -> bool {
        *self == Maintenance::default()
    }

    fn problem(&self) -> Result<()> {
        if let Some(n) = self.restart_after_inferences {
            bounds::within("maintenance.restart_after_inferences", n, 1, bounds::MAX_INFERENCES)?;
        }
        if let Some(s) = self.restart_after_s {
            bounds::within("maintenance.restart_after_s", s, bounds::MIN_MAINTENANCE_S, bounds::MAX_IDLE_S)?;
        }
        Ok(())
    }
}

/// A persona that is a LoRA adapter on the model server of another persona, its base.
/// llama.cpp's server loads every adapter of its base at start (`--lora`) and selects one per
/// request (`"lora": [{"id": N, "scale": S}]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    /// The persona whose server carries the adapter; not itself an adapter.
    pub base: String,
    /// The adapter file (a LoRA GGUF for llama.cpp), absolute: the base's process reads it.
    pub path: PathBuf,
    /// How strongly the adapter applies (llama.cpp's per-request `scale`).
    #[serde(default = "default_adapter_scale")]
    pub scale: f64,
}

fn default_adapter_scale() -> f64 {
    1.0
}

/// Largest adapter scale accepted: LoRA scales are around 1; far beyond, output is noise.
pub const MAX_ADAPTER_SCALE: f64 = 100.0;

/// The contract's sleep hook paths, used when `[sleep]` names none.
pub const CONTRACT_SLEEP_PATH: &str = "/mindmesh/sleep";
pub const CONTRACT_WAKE_PATH: &str = "/mindmesh/wake";
/// The contract's path for persona-reported metrics.
pub const CONTRACT_METRICS_PATH: &str = "/mindmesh/metrics";

/// Paths the node POSTs to put a persona to sleep (release its heavy memory, the process
/// lives on) and to wake it: e.g. vLLM's `/sleep` and `/wake_up`. An empty `[sleep]` table
/// names the contract's own hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepHooks {
    #[serde(default = "default_sleep_path")]
    pub sleep_path: String,
    #[serde(default = "default_wake_path")]
    pub wake_path: String,
}

fn default_sleep_path() -> String {
    CONTRACT_SLEEP_PATH.to_owned()
}

fn default_wake_path() -> String {
    CONTRACT_WAKE_PATH.to_owned()
}

impl Default for SleepHooks {
    fn default() -> Self {
        SleepHooks { sleep_path: default_sleep_path(), wake_path: default_wake_path() }
    }
}

/// Node labels placement must (`require`) or should (`prefer`) find on the node that runs a
/// persona, e.g. `require = { gpu = "true" }`. A persona nothing fits waits as pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub require: BTreeMap<String, String>,
    #[serde(default)]
    pub prefer: BTreeMap<String, String>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.require.is_empty() && self.prefer.is_empty()
    }

    /// Does a node with these labels satisfy every requirement?
    pub fn admits(&self, node_labels: &BTreeMap<String, String>) -> bool {
        self.require.iter().all(|(k, v)| node_labels.get(k) == Some(v))
    }

    /// How many preferences a node with these labels meets.
    pub fn preference_score(&self, node_labels: &BTreeMap<String, String>) -> usize {
        self.prefer.iter().filter(|(k, v)| node_labels.get(*k) == Some(*v)).count()
    }
}

/// Variables the node sets for every persona; a spec may not override them.
pub const RESERVED_ENV: [&str; 6] = crate::persona_env::CONTRACT;

/// Longest persona name: it becomes a cgroup, a file name and a metric label.
pub const MAX_NAME_LEN: usize = 63;
/// Upper bounds that keep one spec from bloating the store and every gossip message.
pub const MAX_ARGS: usize = 256;
pub const MAX_ENV: usize = 256;
pub const MAX_LABELS: usize = 64;
pub const MAX_STRING_LEN: usize = 4096;

impl PersonaSpec {
    /// A minimal valid spec, for tests and examples.
    pub fn new(name: &str, command: &str) -> Self {
        PersonaSpec {
            name: name.to_owned(),
            command: command.to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            importance: Importance::default(),
            kind: PersonaKind::default(),
            model: None,
            restart: RestartPolicy::default(),
            health_path: None,
            limits: Limits::default(),
            requests: Requests::default(),
            budget: Budget::default(),
            labels: BTreeMap::new(),
            placement: Placement::default(),
            hibernate_after_idle_s: None,
            adapter: None,
            sleep: None,
            metrics_path: None,
            envelope: BudgetEnvelope::default(),
            maintenance: Maintenance::default(),
        }
    }

    /// A minimal valid adapter persona on `base`, for tests and examples.
    pub fn adapter(name: &str, base: &str, path: impl Into<PathBuf>, scale: f64) -> Self {
        PersonaSpec {
            adapter: Some(Adapter { base: base.to_owned(), path: path.into(), scale }),
            ..PersonaSpec::new(name, "")
        }
    }

    /// The base persona of an adapter persona.
    pub fn base(&self) -> Option<&str> {
        self.adapter.as_ref().map(|a| a.base.as_str())
    }

    pub fn from_toml_str(s: &str) -> Result<Self> {
        let spec: PersonaSpec = parse_toml(s)?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn from_json_str(s: &str) -> Result<Self> {
        let spec: PersonaSpec = parse_json(s)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parse by the file's extension (`.json`, else TOML).
    pub fn from_file_contents(file_name: &str, contents: &str) -> Result<Self> {
        if file_name.ends_with(".json") { Self::from_json_str(contents) } else { Self::from_toml_str(contents) }
    }

    /// Parse by the file's extension and check, with every problem rather than the first.
    pub fn check_file_contents(file_name: &str, contents: &str) -> std::result::Result<Self, Vec<CoreError>> {
        let spec: PersonaSpec = if file_name.ends_with(".json") { parse_json(contents) } else { parse_toml(contents) }
            .map_err(|e| vec![e])?;
        let problems = spec.problems();
        if problems.is_empty() { Ok(spec) } else { Err(problems) }
    }

    /// The first of [`PersonaSpec::problems`], if any.
    pub fn validate(&self) -> Result<()> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem of the spec, each naming its field (`mindmesh config check` lists them
    /// all; within one field only the first is told).
    pub fn problems(&self) -> Vec<CoreError> {
        let checks: [&dyn Fn() -> Result<()>; 16] = [
            &|| validate_name(&self.name),
            &|| {
                if self.adapter.is_some() {
                    // an adapter's process is its base's: nothing here may describe another
                    return self.adapter_process_problem();
                }
                if self.command.trim().is_empty() {
                    return Err(CoreError::invalid("command", "must not be empty"));
                }
                bounded("command", &self.command)
            },
            &|| {
                if self.args.len() > MAX_ARGS {
                    return Err(CoreError::invalid("args", format!("at most {MAX_ARGS} arguments")));
                }
                for (i, a) in self.args.iter().enumerate() {
                    bounded(&format!("args[{i}]"), a)?;
                    no_nul(&format!("args[{i}]"), a)?;
                }
                Ok(())
            },
            &|| self.env_problem(),
            &|| match &self.health_path {
                Some(p) if !p.starts_with('/') => Err(CoreError::invalid("health_path", "must start with '/'")),
                Some(p) => bounded("health_path", p),
                None => Ok(()),
            },
            &|| self.model.as_deref().map_or(Ok(()), |m| bounded("model", m)),
            &|| match self.limits.memory_max_mb {
                Some(v) => bounds::within("limits.memory_max_mb", v, 1, bounds::MAX_MEMORY_MB),
                None => Ok(()),
            },
            &|| match self.limits.cpu_max_percent {
                Some(v) if v.is_finite() && v <= 0.0 => {
                    Err(CoreError::invalid("limits.cpu_max_percent", "must be greater than zero"))
                }
                Some(v) => bounds::within_f("limits.cpu_max_percent", v, 0.0, bounds::MAX_CPU_PERCENT),
                None => Ok(()),
            },
            &|| {
                bounds::at_most("requests.memory_mb", self.requests.memory_mb, bounds::MAX_MEMORY_MB)?;
                if self.requests.cpu_percent.is_finite() && self.requests.cpu_percent < 0.0 {
                    return Err(CoreError::invalid("requests.cpu_percent", "must not be negative"));
                }
                bounds::within_f("requests.cpu_percent", self.requests.cpu_percent, 0.0, bounds::MAX_CPU_PERCENT)
            },
            &|| {
                if self.labels.len() > MAX_LABELS {
                    return Err(CoreError::invalid("labels", format!("at most {MAX_LABELS} labels")));
                }
                for (k, v) in &self.labels {
                    bounded(&format!("labels.{k}"), k)?;
                    bounded(&format!("labels.{k}"), v)?;
                }
                Ok(())
            },
            &|| {
                for (field, labels) in
                    [("placement.require", &self.placement.require), ("placement.prefer", &self.placement.prefer)]
                {
                    if labels.len() > MAX_LABELS {
                        return Err(CoreError::invalid(field, format!("at most {MAX_LABELS} labels")));
                    }
                    for (k, v) in labels {
                        bounded(&format!("{field}.{k}"), k)?;
                        bounded(&format!("{field}.{k}"), v)?;
                    }
                }
                Ok(())
            },
            &|| match self.hibernate_after_idle_s {
                Some(v) => bounds::within("hibernate_after_idle_s", v, 1, bounds::MAX_IDLE_S),
                None => Ok(()),
            },
            &|| self.adapter.as_ref().map_or(Ok(()), |a| a.problem(&self.name)),
            &|| {
                let Some(h) = &self.sleep else { return Ok(()) };
                http_path("sleep.sleep_path", &h.sleep_path)?;
                http_path("sleep.wake_path", &h.wake_path)
            },
            &|| self.metrics_path.as_deref().map_or(Ok(()), |p| http_path("metrics_path", p)),
            &|| self.maintenance.problem(),
        ];
        let mut out: Vec<CoreError> = checks.iter().filter_map(|check| check().err()).collect();
        out.extend(self.budget.problems().into_iter().map(|e| e.within("budget")));
        // judged against a valid starting point only: against a broken one, every bound would
        // repeat the budget's own problem
        if self.budget.validate().is_ok() {
            out.extend(self.envelope.problems(&self.budget).into_iter().map(|e| e.within("budget")));
        }
        out
    }

    /// An adapter persona runs no process: the fields that describe one must be left out.
    fn adapter_process_problem(&self) -> Result<()> {
        let set = [
            ("command", !self.command.is_empty()),
            ("args", !self.args.is_empty()),
            ("env", !self.env.is_empty()),
            ("working_dir", self.working_dir.is_some()),
            ("health_path", self.health_path.is_some()),
            ("limits", self.limits != Limits::default()),
            ("sleep", self.sleep.is_some()),
            ("metrics_path", self.metrics_path.is_some()),
            ("maintenance", !self.maintenance.is_empty()),
            // it runs where its base runs
            ("placement", !self.placement.is_empty()),
        ];
        match set.iter().find(|(_, is_set)| *is_set) {
            Some((field, _)) => Err(CoreError::invalid(
                *field,
                "an adapter persona has no process of its own (its base's serves it): leave this out",
            )),
            None => Ok(()),
        }
    }

    fn env_problem(&self) -> Result<()> {
        if self.env.len() > MAX_ENV {
            return Err(CoreError::invalid("env", format!("at most {MAX_ENV} variables")));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(CoreError::invalid(
                    format!("env.{k}"),
                    "a variable name must be non-empty, without '=' or NUL",
                ));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(CoreError::invalid(format!("env.{k}"), "this variable is set by the node"));
            }
            bounded(&format!("env.{k}"), v)?;
            no_nul(&format!("env.{k}"), v)?;
        }
        Ok(())
    }

    /// `args` with `${MINDMESH_PORT}` and `${MINDMESH_PERSONA_ID}` expanded, so a server that
    /// takes its port as a flag (llama.cpp's `--port`) needs no wrapper.
    pub fn expanded_args(&self, port: u16) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.replace("${MINDMESH_PORT}", &port.to_string()).replace("${MINDMESH_PERSONA_ID}", &self.name))
            .collect()
    }
}

impl Adapter {
    fn problem(&self, own_name: &str) -> Result<()> {
        validate_name(&self.base).map_err(|e| CoreError::invalid("adapter.base", e.to_string()))?;
        if self.base == own_name {
            return Err(CoreError::invalid("adapter.base", "a persona cannot be its own base"));
        }
        let path = self.path.to_string_lossy();
        if path.is_empty() {
            return Err(CoreError::invalid("adapter.path", "must not be empty"));
        }
        bounded("adapter.path", &path)?;
        no_nul("adapter.path", &path)?;
        if !self.path.is_absolute() {
            return Err(CoreError::invalid("adapter.path", "must be absolute (the base's process reads it)"));
        }
        bounds::within_f("adapter.scale", self.scale, 0.0, MAX_ADAPTER_SCALE)
    }
}

/// The problems of a set of specs taken together, which no spec shows alone: an adapter's
/// base must be one of them, and not itself an adapter. (A node's config and the registry
/// both hold such a set.)
pub fn adapter_problems<'a>(specs: impl IntoIterator<Item = &'a PersonaSpec> + Clone) -> Vec<CoreError> {
    let by_name: BTreeMap<&str, &PersonaSpec> = specs.clone().into_iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = Vec::new();
    for spec in specs {
        let Some(base) = spec.base() else { continue };
        let field = format!("{}.adapter.base", spec.name);
        match by_name.get(base) {
            None => out.push(CoreError::invalid(field, format!("no persona {base:?}"))),
            Some(b) if b.adapter.is_some() => {
                out.push(CoreError::invalid(field, format!("{base:?} is itself an adapter; name the model server")))
            }
            Some(_) => {}
        }
    }
    out
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_chars =
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_start || !ok_chars {
        return Err(CoreError::invalid(
            "name",
            format!(
                "{name:?}: 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn bounded(field: &str, s: &str) -> Result<()> {
    if s.len() > MAX_STRING_LEN {
        return Err(CoreError::invalid(field, format!("longer than {MAX_STRING_LEN} bytes")));
    }
    Ok(())
}

/// A path of the persona's HTTP server.
fn http_path(field: &str, p: &str) -> Result<()> {
    if !p.starts_with('/') {
        return Err(CoreError::invalid(field, "must start with '/'"));
    }
    bounded(field, p)?;
    no_nul(field, p)
}

fn no_nul(field: &str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(CoreError::invalid(field, "must not contain NUL"));
    }
    Ok(())
}

/// Deserialize TOML, reporting the dotted path of the field that failed.
pub fn parse_toml<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    // a syntax error has no field: its message carries the line and column instead
    let de = toml::Deserializer::parse(s).map_err(|e| CoreError::invalid("", e.to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = path_string(e.path());
        CoreError::invalid(field, e.into_inner().message().to_owned())
    })
}

/// Deserialize JSON, reporting the dotted path of the field that failed.
pub fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(s);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = path_string(e.path());
        let inner = e.into_inner();
        // serde_json appends " at line L column C", useful for syntax, noise for fields
        CoreError::invalid(field, inner.to_string())
    })
}

fn path_string(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." { String::new() } else { s }
}

/// The spec's text and wire form. The envelope is part of the `[budget]` table (`[budget.min]`,
/// `[budget.max]`), where an operator looks for it, while [`PersonaSpec`] keeps `budget` a plain
/// [`Budget`] that the rest of the code uses as one. Postcard has no field names: this layout
/// is registry wire version 5 (older ones are frozen in [`crate::spec_v3`] and
/// [`crate::spec_v4`]); never reorder it.
pub(crate) mod repr {
    use super::*;
    use crate::budget::BudgetBound;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct SpecRepr {
        name: String,
        #[serde(default)]
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        working_dir: Option<PathBuf>,
        #[serde(default)]
        importance: Importance,
        #[serde(default)]
        kind: PersonaKind,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        restart: RestartPolicy,
        #[serde(default)]
        health_path: Option<String>,
        #[serde(default)]
        limits: Limits,
        #[serde(default)]
        requests: Requests,
        #[serde(default)]
        budget: BudgetTable,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        // no skip_serializing_if: postcard (the wire and the store) is not self-describing
        #[serde(default)]
        placement: Placement,
        #[serde(default)]
        hibernate_after_idle_s: Option<u64>,
        #[serde(default)]
        adapter: Option<Adapter>,
        #[serde(default)]
        sleep: Option<SleepHooks>,
        #[serde(default)]
        metrics_path: Option<String>,
        #[serde(default)]
        maintenance: Maintenance,
    }

    /// `[budget]` with its envelope: [`Budget`]'s fields, then `min` and `max`.
    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct BudgetTable {
        max_response_time_ms: u64,
        tokens_per_response: u32,
        inference_queue_priority: u8,
        max_memory_mb: u64,
        max_concurrent_inferences: u32,
        throttle_multiplier: f64,
        allowed_to_run: bool,
        min: BudgetBound,
        max: BudgetBound,
    }

    impl Default for BudgetTable {
        fn default() -> Self {
            BudgetTable::new(Budget::default(), BudgetEnvelope::default())
        }
    }

    impl BudgetTable {
        fn new(b: Budget, e: BudgetEnvelope) -> Self {
            BudgetTable {
                max_response_time_ms: b.max_response_time_ms,
                tokens_per_response: b.tokens_per_response,
                inference_queue_priority: b.inference_queue_priority,
                max_memory_mb: b.max_memory_mb,
                max_concurrent_inferences: b.max_concurrent_inferences,
                throttle_multiplier: b.throttle_multiplier,
                allowed_to_run: b.allowed_to_run,
                min: e.min,
                max: e.max,
            }
        }

        fn split(self) -> (Budget, BudgetEnvelope) {
            let b = Budget {
                max_response_time_ms: self.max_response_time_ms,
                tokens_per_response: self.tokens_per_response,
                inference_queue_priority: self.inference_queue_priority,
                max_memory_mb: self.max_memory_mb,
                max_concurrent_inferences: self.max_concurrent_inferences,
                throttle_multiplier: self.throttle_multiplier,
                allowed_to_run: self.allowed_to_run,
            };
            (b, BudgetEnvelope { min: self.min, max: self.max })
        }
    }

    impl From<SpecRepr> for PersonaSpec {
        fn from(r: SpecRepr) -> Self {
            let (budget, envelope) = r.budget.split();
            PersonaSpec {
                name: r.name,
                command: r.command,
                args: r.args,
                env: r.env,
                working_dir: r.working_dir,
                importance: r.importance,
                kind: r.kind,
                model: r.model,
                restart: r.restart,
                health_path: r.health_path,
                limits: r.limits,
                requests: r.requests,
                budget,
                labels: r.labels,
                placement: r.placement,
                hibernate_after_idle_s: r.hibernate_after_idle_s,
                adapter: r.adapter,
                sleep: r.sleep,
                metrics_path: r.metrics_path,
                envelope,
                maintenance: r.maintenance,
            }
        }
    }

    impl From<PersonaSpec> for SpecRepr {
        fn from(s: PersonaSpec) -> Self {
            SpecRepr {
                name: s.name,
                command: s.command,
                args: s.args,
                env: s.env,
                working_dir: s.working_dir,
                importance: s.importance,
                kind: s.kind,
                model: s.model,
                restart: s.restart,
                health_path: s.health_path,
                limits: s.limits,
                requests: s.requests,
                budget: BudgetTable::new(s.budget, s.envelope),
                labels: s.labels,
                placement: s.placement,
                hibernate_after_idle_s: s.hibernate_after_idle_s,
                adapter: s.adapter,
                sleep: s.sleep,
                metrics_path: s.metrics_path,
                maintenance: s.maintenance,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "chat-1"
        command = "mindmesh-demo-persona"
        args = ["--mode", "steady", "--port", "${MINDMESH_PORT}"]
        importance = "user_facing"
        restart = "on-failure"
        health_path = "/health"
        labels = { gpu = "false" }
        [limits]
        memory_max_mb = 512
        [budget]
        max_response_time_ms = 30000
        inference_queue_priority = 70
    "#;

    #[test]
    fn parses_toml_and_json_alike() {
        let t = PersonaSpec::from_toml_str(GOOD).unwrap();
        assert_eq!(t.budget.inference_queue_priority, 70);
        assert_eq!(t.budget.tokens_per_response, Budget::default().tokens_per_response);
        assert_eq!(t.limits.memory_max_mb, Some(512));
        let j = PersonaSpec::from_json_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(j, t);
        assert_eq!(t.expanded_args(4242)[3], "4242");
    }

    fn field_of(toml_src: &str) -> String {
        PersonaSpec::from_toml_str(toml_src).unwrap_err().field().unwrap_or_default().to_owned()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of("name = \"a\"\ncommand = \"  \""), "command");
        assert_eq!(field_of("name = \"a\"\ncommand = \"x\"\ncolour = 1"), "colour");
        assert_eq!(field_of("name = \"a\"\ncommand = \"x\"\n[budget]\nmax_memory_mb = -5"), "budget.max_memory_mb");
        assert_eq!(
            field_of("name = \"a\"\ncommand = \"x\"\n[budget]\nmax_concurrent_inferences = 0"),
            "budget.max_concurrent_inferences"
        );
        assert_eq!(field_of("name = \"a\"\ncommand = \"x\"\n[budget]\nwhatever = 0"), "budget.whatever");
        assert_eq!(field_of("name = \"Bad Name\"\ncommand = \"x\""), "name");
        assert_eq!(field_of("name = \"a\"\ncommand = \"x\"\nimportance = \"vip\""), "importance");
        assert_eq!(field_of("name = \"a\"\ncommand = \"x\"\nenv = { MINDMESH_PORT = \"1\" }"), "env.MINDMESH_PORT");
        let j = PersonaSpec::from_json_str(r#"{"name":"a","command":"x","budget":{"throttle_multiplier":-1}}"#);
        assert_eq!(j.unwrap_err().field(), Some("budget.throttle_multiplier"));
    }

    #[test]
    fn numbers_past_their_bound_are_refused_not_wrapped() {
        let base = "name = \"a\"\ncommand = \"x\"\n";
        // issue 10: each of these was accepted, then wrapped or misplaced
        for (extra, field) in [
            ("[limits]\nmemory_max_mb = 17592186044416", "limits.memory_max_mb"), // 2^44
            ("hibernate_after_idle_s = 18446744073709552", "hibernate_after_idle_s"),
            ("[requests]\nmemory_mb = 18446744073709551615", "requests.memory_mb"),
            ("[limits]\ncpu_max_percent = 1e300", "limits.cpu_max_percent"),
            ("[requests]\ncpu_percent = 1e12", "requests.cpu_percent"),
            ("[budget]\nmax_response_time_ms = 18446744073709551615", "budget.max_response_time_ms"),
            ("[budget]\ntokens_per_response = 4294967295", "budget.tokens_per_response"),
            ("[budget]\nmax_memory_mb = 18446744073709551615", "budget.max_memory_mb"),
            ("[budget]\nmax_concurrent_inferences = 4294967295", "budget.max_concurrent_inferences"),
        ] {
            assert_eq!(field_of(&format!("{base}{extra}")), field, "{extra}");
        }
        // a value past u64 is a parse error naming the field too
        assert_eq!(field_of(&format!("{base}[limits]\nmemory_max_mb = -1")), "limits.memory_max_mb");
        // the bounds themselves are accepted
        let at_bounds = format!(
            "{base}hibernate_after_idle_s = {}\n[limits]\nmemory_max_mb = {}\n[requests]\nmemory_mb = {}\n[budget]\nmax_response_time_ms = {}",
            bounds::MAX_IDLE_S,
            bounds::MAX_MEMORY_MB,
            bounds::MAX_MEMORY_MB,
            bounds::MAX_RESPONSE_TIME_MS
        );
        PersonaSpec::from_toml_str(&at_bounds).unwrap();
    }

    #[test]
    fn an_adapter_persona_names_its_base_and_no_process() {
        let a = PersonaSpec::from_toml_str(
            "name = \"pirate\"\nhibernate_after_idle_s = 60\n[adapter]\nbase = \"llama\"\npath = \"/m/pirate.gguf\"\n",
        )
        .unwrap();
        assert_eq!(a.base(), Some("llama"));
        assert_eq!(a.adapter.as_ref().unwrap().scale, 1.0, "scale defaults to 1");
        let adapter = "name = \"a\"\n[adapter]\nbase = \"b\"\npath = \"/x.gguf\"\n";
        for (extra, field) in [
            ("scale = -1", "adapter.scale"),
            ("scale = 1e9", "adapter.scale"),
            ("scale = nan", "adapter.scale"),
            ("colour = 1", "adapter.colour"),
        ] {
            assert_eq!(field_of(&format!("{adapter}{extra}")), field, "{extra}");
        }
        assert_eq!(field_of("name = \"a\"\n[adapter]\nbase = \"b\"\npath = \"x.gguf\""), "adapter.path");
        assert_eq!(field_of("name = \"a\"\n[adapter]\nbase = \"b\"\npath = \"\""), "adapter.path");
        assert_eq!(field_of("name = \"a\"\n[adapter]\nbase = \"a\"\npath = \"/x\""), "adapter.base");
        assert_eq!(field_of("name = \"a\"\n[adapter]\nbase = \"B A\"\npath = \"/x\""), "adapter.base");
        // a missing field is told at its table (serde: "missing field `base`")
        assert_eq!(field_of("name = \"a\"\n[adapter]\npath = \"/x\""), "adapter");
        // a process of its own is refused, field by field
        for (extra, field) in [
            ("command = \"srv\"", "command"),
            ("args = [\"-v\"]", "args"),
            ("health_path = \"/health\"", "health_path"),
            ("metrics_path = \"/m\"", "metrics_path"),
        ] {
            assert_eq!(field_of(&format!("name = \"a\"\n{extra}\n[adapter]\nbase = \"b\"\npath = \"/x\"")), field);
        }
        // and a persona without an adapter still needs a command
        assert_eq!(field_of("name = \"a\""), "command");
    }

    #[test]
    fn an_adapters_base_must_be_a_model_server_of_the_same_set() {
        let base = PersonaSpec::new("llama", "srv");
        let a = PersonaSpec::adapter("a", "llama", "/a.gguf", 1.0);
        let b = PersonaSpec::adapter("b", "a", "/b.gguf", 1.0);
        let c = PersonaSpec::adapter("c", "nobody", "/c.gguf", 1.0);
        assert!(adapter_problems([&base, &a]).is_empty());
        let p = adapter_problems([&base, &a, &b, &c]);
        let fields: Vec<_> = p.iter().map(|e| e.field().unwrap_or_default().to_owned()).collect();
        assert_eq!(fields, ["b.adapter.base", "c.adapter.base"]);
        assert!(p[0].to_string().contains("itself an adapter"), "{}", p[0]);
    }

    #[test]
    fn sleep_hooks_and_metrics_path_default_to_the_contract() {
        let s = PersonaSpec::from_toml_str(
            "name = \"v\"\ncommand = \"x\"\nmetrics_path = \"/mindmesh/metrics\"\n[sleep]\n",
        )
        .unwrap();
        assert_eq!(s.sleep, Some(SleepHooks::default()));
        assert_eq!(s.sleep.as_ref().unwrap().wake_path, CONTRACT_WAKE_PATH);
        let s = PersonaSpec::from_toml_str(
            "name = \"v\"\ncommand = \"x\"\n[sleep]\nsleep_path = \"/sleep\"\nwake_path = \"/wake_up\"\n",
        )
        .unwrap();
        assert_eq!(s.sleep.unwrap().wake_path, "/wake_up");
        assert_eq!(field_of("name = \"v\"\ncommand = \"x\"\n[sleep]\nsleep_path = \"sleep\""), "sleep.sleep_path");
        assert_eq!(field_of("name = \"v\"\ncommand = \"x\"\nmetrics_path = \"m\""), "metrics_path");
    }

    #[test]
    fn the_budget_envelope_and_maintenance_parse_and_are_checked() {
        let base = "name = \"chat\"\ncommand = \"x\"\n";
        let s = PersonaSpec::from_toml_str(&format!(
            "{base}[budget]\ninference_queue_priority = 60\n[budget.min]\nthrottle_multiplier = 0.5\n\
             [budget.max]\ninference_queue_priority = 90\nmax_response_time_ms = 45000\n\
             [maintenance]\nrestart_after_inferences = 10000\nrestart_after_s = 86400\n"
        ))
        .unwrap();
        assert_eq!(s.budget.inference_queue_priority, 60);
        assert_eq!(s.envelope.max.inference_queue_priority, Some(90));
        assert_eq!(s.envelope.max.max_response_time_ms, Some(45_000));
        assert_eq!(s.envelope.min.throttle_multiplier, Some(0.5));
        assert_eq!(s.envelope.min.inference_queue_priority, None);
        assert_eq!(
            s.maintenance,
            Maintenance { restart_after_inferences: Some(10_000), restart_after_s: Some(86_400) }
        );
        // the same in JSON, and through it
        let j = PersonaSpec::from_json_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(j, s);
        let j = PersonaSpec::from_json_str(
            r#"{"name":"c","command":"x","budget":{"max":{"inference_queue_priority":90}},"maintenance":{"restart_after_s":3600}}"#,
        )
        .unwrap();
        assert_eq!(j.envelope.max.inference_queue_priority, Some(90));
        // a budget table without bounds is as before
        assert!(PersonaSpec::from_toml_str(GOOD).unwrap().envelope.is_empty());
        for (extra, field, says) in [
            (
                "[budget.max]\ninference_queue_priority = 40",
                "budget.max.inference_queue_priority",
                "below the budget's 50",
            ),
            (
                "[budget.min]\ninference_queue_priority = 60",
                "budget.min.inference_queue_priority",
                "above the budget's 50",
            ),
            ("[budget.max]\ninference_queue_priority = 101", "budget.max.inference_queue_priority", "0..=100"),
            ("[budget.min]\nthrottle_multiplier = 0.0", "budget.min.throttle_multiplier", "> 0"),
            ("[budget.max]\nmax_response_time_ms = 18446744073709551615", "budget.max.max_response_time_ms", ""),
            ("[budget.min]\nmax_concurrent_inferences = 0", "budget.min.max_concurrent_inferences", ""),
            // the memory budget and allowed-to-run are an operator's: no bound for the brain
            ("[budget.max]\nmax_memory_mb = 4096", "budget.max.max_memory_mb", "unknown field"),
            ("[budget.min]\nallowed_to_run = false", "budget.min.allowed_to_run", "unknown field"),
            ("[budget]\nminimum = 1", "budget.minimum", "unknown field"),
            ("[maintenance]\nrestart_after_inferences = 0", "maintenance.restart_after_inferences", ""),
            ("[maintenance]\nrestart_after_inferences = 1099511627777", "maintenance.restart_after_inferences", ""),
            ("[maintenance]\nrestart_after_s = 5", "maintenance.restart_after_s", ""),
            ("[maintenance]\nrestart_after_s = 31708800000", "maintenance.restart_after_s", ""),
            ("[maintenance]\nrestart_after_hours = 5", "maintenance.restart_after_hours", "unknown field"),
        ] {
            let e = PersonaSpec::from_toml_str(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(e.field(), Some(field), "{extra}: {e}");
            assert!(e.to_string().contains(says), "{extra}: {e}");
        }
        // every problem is told, not only the first
        let s = PersonaSpec {
            envelope: BudgetEnvelope {
                min: crate::budget::BudgetBound { inference_queue_priority: Some(70), ..Default::default() },
                max: crate::budget::BudgetBound { max_response_time_ms: Some(10), ..Default::default() },
            },
            ..PersonaSpec::new("c", "x")
        };
        let fields: Vec<String> = s.problems().iter().filter_map(|e| e.field().map(str::to_owned)).collect();
        assert_eq!(fields, ["budget.min.inference_queue_priority", "budget.max.max_response_time_ms"]);
        // an adapter has no process of its own to restart
        assert_eq!(
            field_of("name = \"a\"\n[adapter]\nbase = \"b\"\npath = \"/x\"\n[maintenance]\nrestart_after_s = 3600"),
            "maintenance"
        );
    }

    #[test]
    fn unknown_field_message_says_which() {
        let e = PersonaSpec::from_toml_str("name = \"a\"\ncommand = \"x\"\ncolour = 1").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
