//! The one error type of `mindmesh-brain`.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrainError {
    /// A scenario file could not be read or does not follow `mindmesh-scenario/1`.
    #[error("scenario {path}: {reason}")]
    Scenario { path: PathBuf, reason: String },
    /// A view handed to the brain is inconsistent (lengths, references).
    #[error("invalid view: {0}")]
    InvalidView(String),
    /// The LLM endpoint could not be reached or answered with an HTTP error.
    #[error("llm transport: {0}")]
    LlmTransport(String),
    /// The LLM did not answer within its timeout.
    #[error("llm timed out after {0} ms")]
    LlmTimeout(u64),
    /// The LLM answered, but not with a valid plan.
    #[error("llm answer invalid: {0}")]
    LlmInvalid(String),
    /// The LLM client could not be built (TLS roots, bad URL).
    #[error("llm client: {0}")]
    LlmClient(String),
    #[error(transparent)]
    Core(#[from] mindmesh_core::CoreError),
}

impl BrainError {
    pub fn scenario(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        BrainError::Scenario { path: path.into(), reason: reason.into() }
    }

    /// Short machine-readable label for reports (`timeout`, `http`, `invalid`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            BrainError::Scenario { .. } => "scenario",
            BrainError::InvalidView(_) => "view",
            BrainError::LlmTransport(_) => "http",
            BrainError::LlmTimeout(_) => "timeout",
            BrainError::LlmInvalid(_) => "invalid",
            BrainError::LlmClient(_) => "client",
            BrainError::Core(_) => "core",
        }
    }
}

pub type Result<T, E = BrainError> = std::result::Result<T, E>;
