use serde::{Deserialize, Serialize};

use super::at_least;
use crate::error::{CoreError, Result};

/// Persona output (stdout and stderr, timestamped line by line) kept on the node that runs it:
/// a file rotated by size while the persona runs, a bounded number of files, and a retention
/// for the logs of personas that moved to another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// A log file is closed and a new one begun past this size.
    pub max_file_bytes: u64,
    /// Files kept per persona (the oldest is deleted beyond): disk use per persona is at most
    /// `max_file_bytes * max_files`.
    pub max_files: u32,
    /// How long the logs of a persona that now runs on another node stay readable here.
    /// The logs of a removed persona are deleted at once.
    pub retention_s: u64,
}

/// Bounds that keep one persona's logs from filling a disk by a typo.
const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;
const MAX_FILES: u32 = 100;

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig { max_file_bytes: 8 * 1024 * 1024, max_files: 5, retention_s: 24 * 3600 }
    }
}

impl LogsConfig {
    pub fn validate(&self) -> Result<()> {
        at_least("max_file_bytes", self.max_file_bytes, 4096)?;
        if self.max_file_bytes > MAX_FILE_BYTES {
            return Err(CoreError::invalid("max_file_bytes", format!("must be at most {MAX_FILE_BYTES}")));
        }
        at_least("max_files", u64::from(self.max_files), 1)?;
        if self.max_files > MAX_FILES {
            return Err(CoreError::invalid("max_files", format!("must be at most {MAX_FILES}")));
        }
        at_least("retention_s", self.retention_s, 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn defaults_are_bounded_and_errors_name_the_field() {
        let cfg = NodeConfig::from_toml_str("").unwrap();
        assert_eq!(cfg.logs, LogsConfig::default());
        let e = NodeConfig::from_toml_str("[logs]\nmax_files = 0").unwrap_err();
        assert_eq!(e.field(), Some("logs.max_files"));
        let e = NodeConfig::from_toml_str("[logs]\nmax_file_bytes = 10").unwrap_err();
        assert_eq!(e.field(), Some("logs.max_file_bytes"));
        let e = NodeConfig::from_toml_str("[logs]\nmax_file_bytes = 99999999999999").unwrap_err();
        assert_eq!(e.field(), Some("logs.max_file_bytes"));
        let e = NodeConfig::from_toml_str("[logs]\nmax_fils = 3").unwrap_err();
        assert!(e.to_string().contains("max_fils"), "{e}");
    }
}
