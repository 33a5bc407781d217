//! The one error type of `mindmesh-supervisor`.

use thiserror::Error;

/// A message that carries its cause does not also return it as `source()`: a chain printed
/// whole (`{:#}`) would say it twice.
#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error("persona {0:?} not found")]
    NotFound(String),
    #[error("persona {0:?} already exists")]
    Exists(String),
    #[error("this node supervises at most {0} personas")]
    Full(usize),
    /// The request makes no sense in the persona's current phase.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] mindmesh_core::CoreError),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The persona's own endpoint (health, state hook) failed.
    #[error("persona endpoint: {0}")]
    Probe(String),
    /// The supervisor task is gone (shutting down).
    #[error("the supervisor has stopped")]
    Stopped,
}

impl SupervisorError {
    pub fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        SupervisorError::Io { context: context.into(), error }
    }
}

pub type Result<T, E = SupervisorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_message_never_repeats_its_cause() {
        let e = SupervisorError::io("spawn x", std::io::Error::other("no such file"));
        assert!(e.source().is_none(), "{e}");
        assert_eq!(e.to_string(), "spawn x: no such file");
    }
}
