//! The one error type of `mindmesh-node`.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] mindmesh_core::CoreError),
    #[error(transparent)]
    Store(#[from] mindmesh_store::StoreError),
    #[error(transparent)]
    Supervisor(#[from] mindmesh_supervisor::SupervisorError),
    #[error("mesh: {0}")]
    Mesh(#[from] mindmesh_net::NetError),
    /// Dependencies that do not fit together (a libp2p mesh needs the redb store).
    #[error("{0}")]
    Deps(&'static str),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io { context: context.into(), source }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;
