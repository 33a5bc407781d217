//! The node's config file (TOML): one struct per section, each with named defaults and a
//! `validate()`. Personas may be declared inline as `[[persona]]`.

mod api;
mod brain;
mod gateway;
mod logs;
pub mod mesh;
mod store;
mod supervisor;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use api::ApiConfig;
pub use brain::{AnalystChoice, BrainConfig, GuardrailConfig, LlmConfig, LlmResponseFormat};
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
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { name: String::new(), data_dir: PathBuf::from("./mindmesh-data"), labels: BTreeMap::new() }
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

    pub fn validate(&self) -> Result<()> {
        if self.node.name.len() > crate::spec::MAX_NAME_LEN {
            return Err(CoreError::invalid("node.name", "too long"));
        }
        self.api.validate().map_err(|e| e.within("api"))?;
        self.supervisor.validate().map_err(|e| e.within("supervisor"))?;
        self.store.validate().map_err(|e| e.within("store"))?;
        self.gateway.validate().map_err(|e| e.within("gateway"))?;
        self.brain.validate().map_err(|e| e.within("brain"))?;
        self.mesh.validate().map_err(|e| e.within("mesh"))?;
        self.logs.validate().map_err(|e| e.within("logs"))?;
        let mut seen = HashSet::new();
        for (i, p) in self.personas.iter().enumerate() {
            p.validate().map_err(|e| e.within(&format!("persona[{i}]")))?;
            if !seen.insert(p.name.as_str()) {
                return Err(CoreError::invalid(format!("persona[{i}].name"), format!("duplicate name {:?}", p.name)));
            }
        }
        Ok(())
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
    fn non_loopback_api_needs_a_token() {
        let e = NodeConfig::from_toml_str("[api]\nlisten = \"0.0.0.0:7070\"").unwrap_err();
        assert_eq!(e.field(), Some("api.token"));
        NodeConfig::from_toml_str("[api]\nlisten = \"0.0.0.0:7070\"\ntoken = \"0123456789abcdef\"").unwrap();
    }
}
