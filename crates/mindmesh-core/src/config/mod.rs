//! The node's config file (TOML): one struct per section, each with named defaults and a
//! `validate()`. Personas may be declared inline as `[[persona]]`.

mod api;
mod brain;
mod capacity;
mod gateway;
mod logs;
pub mod mesh;
mod store;
mod supervisor;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use api::{ApiConfig, LEGACY_TOKEN_NAME, LOCAL_TOKEN_NAME, NamedToken, Scope};
pub use brain::{AnalystChoice, BrainConfig, GuardrailConfig, LlmConfig, LlmResponseFormat};
pub use capacity::CapacityConfig;
pub use gateway::GatewayConfig;
pub use logs::LogsConfig;
pub use store::StoreConfig;
pub use supervisor::{CgroupMode, SupervisorConfig};

use crate::error::{CoreError, Result};
use crate::spec::{PersonaSpec, parse_toml};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub api: ApiConfig,
    pub supervisor: SupervisorConfig,
    pub store: StoreConfig,
    pub gateway: GatewayConfig,
    pub brain: BrainConfig,
    pub mesh: mesh::MeshConfig,
    pub logs: LogsConfig,
    #[serde(rename = "persona")]
    pub personas: Vec<PersonaSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Shown in status and used in placement; defaults to the host name.
    pub name: String,
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// What this node offers its personas (`[node.capacity]`).
    pub capacity: CapacityConfig,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: String::new(),
            data_dir: PathBuf::from("./mindmesh-data"),
            labels: BTreeMap::new(),
            capacity: CapacityConfig::default(),
        }
    }
}

impl NodeConfig {
    pub fn from_toml_str(s: &str) -> Result<Self> {
        let cfg: NodeConfig = parse_toml(s)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config for tests: loopback API on a port the OS picks, a given data dir.
    pub fn for_test(data_dir: PathBuf) -> Self {
        let mut cfg = NodeConfig::default();
        cfg.node.name = "test-node".into();
        cfg.node.data_dir = data_dir;
        cfg.api.listen = "127.0.0.1:0".parse().expect("literal address");
        cfg
    }

    /// The first of [`NodeConfig::problems`], if any.
    pub fn validate(&self) -> Result<()> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem of the config, each naming its field: the first of each section, and
    /// every problem of every `[[persona]]` (what `mindmesh config check` lists).
    pub fn problems(&self) -> Vec<CoreError> {
        let mut out = Vec::new();
        if self.node.name.len() > crate::spec::MAX_NAME_LEN {
            out.push(CoreError::invalid("node.name", "too long"));
        }
        let sections = [
            self.node.capacity.validate().map_err(|e| e.within("node.capacity")),
            self.api.validate().map_err(|e| e.within("api")),
            self.supervisor.validate().map_err(|e| e.within("supervisor")),
            self.store.validate().map_err(|e| e.within("store")),
            self.gateway.validate().map_err(|e| e.within("gateway")),
            self.brain.validate().map_err(|e| e.within("brain")),
            self.mesh.validate().map_err(|e| e.within("mesh")),
            self.logs.validate().map_err(|e| e.within("logs")),
        ];
        out.extend(sections.into_iter().filter_map(Result::err));
        let mut seen = HashSet::new();
        for (i, p) in self.personas.iter().enumerate() {
            out.extend(p.problems().into_iter().map(|e| e.within(&format!("persona[{i}]"))));
            if !seen.insert(p.name.as_str()) {
                out.push(CoreError::invalid(format!("persona[{i}].name"), format!("duplicate name {:?}", p.name)));
            }
        }
        // an adapter's base is a persona of the same file (adapters load when their base starts)
        out.extend(crate::spec::adapter_problems(&self.personas).into_iter().map(|e| e.within("persona")));
        out
    }
}

pub(crate) fn at_least(field: &str, v: u64, min: u64) -> Result<()> {
    if v < min {
        return Err(CoreError::invalid(field, format!("must be at least {min}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_personas_and_defaults() {
        let cfg = NodeConfig::from_toml_str(
            r#"
            [node]
            name = "node-a"
            [[persona]]
            name = "a"
            command = "x"
            [[persona]]
            name = "b"
            command = "y"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.personas.len(), 2);
        assert_eq!(cfg.supervisor.backoff_initial_ms, 100);
        assert_eq!(cfg.api.listen.to_string(), "127.0.0.1:7070");
    }

    #[test]
    fn duplicate_and_nested_errors_name_the_field() {
        let e = NodeConfig::from_toml_str(
            "[[persona]]\nname = \"a\"\ncommand = \"x\"\n[[persona]]\nname = \"a\"\ncommand = \"y\"",
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("persona[1].name"));
        let e = NodeConfig::from_toml_str("[[persona]]\nname = \"a\"\ncommand = \"\"").unwrap_err();
        assert_eq!(e.field(), Some("persona[0].command"));
        let e = NodeConfig::from_toml_str("[supervisor]\nbackoff_initial_ms = 0").unwrap_err();
        assert_eq!(e.field(), Some("supervisor.backoff_initial_ms"));
    }

    #[test]
    fn config_numbers_past_their_bound_are_refused_before_any_arithmetic() {
        const MAX: &str = "18446744073709551615";
        for (section, key, field) in [
            ("supervisor", "max_personas", "supervisor.max_personas"),
            ("supervisor", "backoff_reset_after_s", "supervisor.backoff_reset_after_s"),
            ("supervisor", "crash_loop_window_s", "supervisor.crash_loop_window_s"),
            ("supervisor", "stop_grace_ms", "supervisor.stop_grace_ms"),
            ("store", "raw_retention_s", "store.raw_retention_s"),
            ("store", "max_state_bytes", "store.max_state_bytes"),
            ("gateway", "drain_timeout_ms", "gateway.drain_timeout_ms"),
            ("brain", "history_window_s", "brain.history_window_s"),
            ("brain.llm", "timeout_ms", "brain.llm.timeout_ms"),
            ("brain.guardrails", "cooldown_s", "brain.guardrails.cooldown_s"),
            // these were multiplied inside validation itself (`heartbeat_ms * 2`, `lease_renew_ms * 3`)
            ("mesh", "heartbeat_ms", "mesh.heartbeat_ms"),
            ("mesh", "lease_renew_ms", "mesh.lease_renew_ms"),
            ("mesh", "lease_ms", "mesh.lease_ms"),
            ("mesh", "voters", "mesh.voters"),
            ("api", "max_body_bytes", "api.max_body_bytes"),
        ] {
            let e = NodeConfig::from_toml_str(&format!("[{section}]\n{key} = {MAX}")).unwrap_err();
            assert_eq!(e.field(), Some(field), "{section}.{key}: {e}");
        }
        // too many points of history for the leader to hold
        let e = NodeConfig::from_toml_str("[brain]\nhistory_resolution_s = 1\nhistory_window_s = 604800").unwrap_err();
        assert_eq!(e.field(), Some("brain.history_window_s"));
        NodeConfig::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let text = "[supervisor]\nbackoff_initial_ms = 0\n[[persona]]\nname = \"Bad Name\"\ncommand = \"\"\n\
                    [persona.budget]\ninference_queue_priority = 200\nthrottle_multiplier = 0.0\n\
                    [[persona]]\nname = \"ok\"\ncommand = \"x\"\n[[persona]]\nname = \"ok\"\ncommand = \"y\"\n";
        let problems = parse_toml::<NodeConfig>(text).unwrap().problems();
        let fields: Vec<&str> = problems.iter().filter_map(|e| e.field()).collect();
        assert_eq!(
            fields,
            [
                "supervisor.backoff_initial_ms",
                "persona[0].name",
                "persona[0].command",
                "persona[0].budget.inference_queue_priority",
                "persona[0].budget.throttle_multiplier",
                "persona[2].name",
            ]
        );
        // validate() still answers the first
        assert_eq!(NodeConfig::from_toml_str(text).unwrap_err().field(), Some("supervisor.backoff_initial_ms"));
    }

    #[test]
    fn non_loopback_api_needs_a_token() {
        let e = NodeConfig::from_toml_str("[api]\nlisten = \"0.0.0.0:7070\"").unwrap_err();
        assert_eq!(e.field(), Some("api.token"));
        NodeConfig::from_toml_str("[api]\nlisten = \"0.0.0.0:7070\"\ntoken = \"0123456789abcdef\"").unwrap();
    }
}
