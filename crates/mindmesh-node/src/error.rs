//! The one error type of `mindmesh-node`.

use thiserror::Error;

/// A message that carries its cause does not also return it as `source()`: a chain printed
/// whole (`{:#}`) would say it twice. `transparent` variants hand both on unchanged.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] mindmesh_core::CoreError),
    #[error(transparent)]
    Store(#[from] mindmesh_store::StoreError),
    #[error(transparent)]
    Supervisor(#[from] mindmesh_supervisor::SupervisorError),
    #[error("mesh: {0}")]
    Mesh(mindmesh_net::NetError),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
}

impl From<mindmesh_net::NetError> for NodeError {
    fn from(e: mindmesh_net::NetError) -> Self {
        NodeError::Mesh(e)
    }
}

impl NodeError {
    pub fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        NodeError::Io { context: context.into(), error }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_message_never_repeats_its_cause() {
        let io = || std::io::Error::other("disk on fire");
        let cases = [
            NodeError::io("writing x", io()),
            NodeError::from(mindmesh_net::NetError::Io(io())),
            NodeError::from(mindmesh_store::StoreError::from(redb::Error::DatabaseAlreadyOpen)),
        ];
        for e in cases {
            let mut chain = vec![e.to_string()];
            let mut next = e.source();
            while let Some(s) = next {
                chain.push(s.to_string());
                next = s.source();
            }
            for pair in chain.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{:?} repeats its cause", chain);
            }
        }
    }
}
