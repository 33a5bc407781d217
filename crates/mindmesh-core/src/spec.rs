//! The persona spec (the "genome"): what to run, how much it matters, what it may consume.
//! Parsed from TOML or JSON; every error names the offending field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaSpec {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    #[serde(default)]
    pub importance: Importance,
    #[serde(default)]
    pub kind: PersonaKind,
    /// What it serves; personas with the same model are each other's fairest peers.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `GET` path probed for health; none means the persona is not probed.
    #[serde(default)]
    pub health_path: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub requests: Requests,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Which nodes may run it: labels a node must have, and labels it should have.
    // no skip_serializing_if: postcard (the wire and the store) is not self-describing
    #[serde(default)]
    pub placement: Placement,
    /// Hibernate after this long without a request (the gateway measures idleness).
    #[serde(default)]
    pub hibernate_after_idle_s: Option<u64>,
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
pub const RESERVED_ENV: [&str; 5] = crate::persona_env::CONTRACT;

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
        }
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

    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.command.trim().is_empty() {
            return Err(CoreError::invalid("command", "must not be empty"));
        }
        bounded("command", &self.command)?;
        if self.args.len() > MAX_ARGS {
            return Err(CoreError::invalid("args", format!("at most {MAX_ARGS} arguments")));
        }
        for (i, a) in self.args.iter().enumerate() {
            bounded(&format!("args[{i}]"), a)?;
            no_nul(&format!("args[{i}]"), a)?;
        }
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
        if let Some(p) = &self.health_path {
            if !p.starts_with('/') {
                return Err(CoreError::invalid("health_path", "must start with '/'"));
            }
            bounded("health_path", p)?;
        }
        if let Some(m) = &self.model {
            bounded("model", m)?;
        }
        if let Some(v) = self.limits.memory_max_mb
            && v == 0
        {
            return Err(CoreError::invalid("limits.memory_max_mb", "must be greater than zero"));
        }
        if let Some(v) = self.limits.cpu_max_percent
            && (!v.is_finite() || v <= 0.0)
        {
            return Err(CoreError::invalid("limits.cpu_max_percent", "must be greater than zero"));
        }
        if !self.requests.cpu_percent.is_finite() || self.requests.cpu_percent < 0.0 {
            return Err(CoreError::invalid("requests.cpu_percent", "must not be negative"));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(CoreError::invalid("labels", format!("at most {MAX_LABELS} labels")));
        }
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
        for (k, v) in &self.labels {
            bounded(&format!("labels.{k}"), k)?;
            bounded(&format!("labels.{k}"), v)?;
        }
        if self.hibernate_after_idle_s == Some(0) {
            return Err(CoreError::invalid("hibernate_after_idle_s", "must be greater than zero"));
        }
        self.budget.validate().map_err(|e| e.within("budget"))
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
    fn unknown_field_message_says_which() {
        let e = PersonaSpec::from_toml_str("name = \"a\"\ncommand = \"x\"\ncolour = 1").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
