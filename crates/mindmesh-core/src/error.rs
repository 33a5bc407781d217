//! The one error type of `mindmesh-core`.

use thiserror::Error;

/// Everything that can go wrong in pure logic: bad input, named precisely enough for an
/// operator to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// A spec, a config or an API body failed validation. `field` is a dotted path such as
    /// `persona[2].budget.max_memory_mb`, empty when the whole document is unreadable.
    #[error("{}", invalid_message(field, message))]
    Invalid { field: String, message: String },
    /// A wire message could not be decoded: wrong version, too large, or garbage.
    #[error("wire: {0}")]
    Wire(String),
}

fn invalid_message(field: &str, message: &str) -> String {
    if field.is_empty() { message.trim_end().to_owned() } else { format!("invalid {field}: {message}") }
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::Invalid { field: field.into(), message: message.into() }
    }

    /// The dotted path of the offending field, if this is a validation error.
    pub fn field(&self) -> Option<&str> {
        match self {
            CoreError::Invalid { field, .. } if !field.is_empty() => Some(field),
            _ => None,
        }
    }

    /// Prefix the field path, e.g. `budget.x` → `persona[1].budget.x`.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            CoreError::Invalid { field, message } => {
                let field = if field.is_empty() { prefix.to_owned() } else { format!("{prefix}.{field}") };
                CoreError::Invalid { field, message }
            }
            other => other,
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
