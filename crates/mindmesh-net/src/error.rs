//! The one error type of `mindmesh-net`.

use mindmesh_core::CoreError;
use thiserror::Error;

use crate::NodeId;

/// What can go wrong talking to the mesh. Recoverable errors (a peer unreachable, a timeout,
/// no leader during an election) say so through [`NetError::is_retryable`]; the rest need an
/// operator (bad key, bad config, a broken store).
#[derive(Debug, Error)]
pub enum NetError {
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("{what} of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { what: &'static str, size: usize, limit: usize },
    /// Bytes from a peer could not be decoded or failed validation.
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("transport: {0}")]
    Transport(String),
    #[error("dial {addr}: {reason}")]
    Dial { addr: String, reason: String },
    #[error("mesh key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("node identity {path}: {reason}")]
    Identity { path: String, reason: String },
    #[error("config: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    /// No leader is known (an election is under way, or this node cannot reach a quorum).
    #[error("no leader")]
    NoLeader,
    /// The leader committed the command and the registry refused it.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A peer answered something that is not a valid answer.
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("too many requests in flight")]
    Busy,
    #[error("shut down")]
    Shutdown,
    /// The message carries the cause, so it is not also the `source()` (a chain printed whole
    /// would say it twice).
    #[error("io: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for NetError {
    fn from(e: std::io::Error) -> Self {
        NetError::Io(e)
    }
}

impl NetError {
    /// Worth trying again later: the mesh may heal or elect a leader.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NetError::Unreachable(_)
                | NetError::Timeout(_)
                | NetError::NoLeader
                | NetError::Busy
                | NetError::Dial { .. }
        )
    }
}

impl From<redb::Error> for NetError {
    fn from(e: redb::Error) -> Self {
        NetError::Storage(e.to_string())
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for NetError {
            fn from(e: $t) -> Self {
                NetError::Storage(e.to_string())
            }
        }
    )*};
}
redb_errors!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
