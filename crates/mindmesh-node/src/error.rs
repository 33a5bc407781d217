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
    /// Dependencies that do not fit together (a libp2p mesh needs the redb store).
    #[error("{0}")]
    Deps(&'static str),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    /// The store file cannot be opened or failed its check on open (damaged, truncated, not
    /// a store, in use). Says what to do.
    #[error(
        "cannot open the store {path}: {reason}\n  The node did not start and changed nothing. Inspect the file with \
         `mindmesh store check --data-dir {data_dir}`; then restore {path} from a backup, or move \
         it aside and start again (a member of a mesh then needs --rejoin-as-new: its Raft state \
         was in that file)."
    )]
    StoreUnusable { path: String, data_dir: String, reason: String },
    /// Another process holds the store: most likely a node already running on this data dir.
    #[error(
        "cannot open the store {path}: Database already open by another process (is a node already \
         running on {data_dir}?).\n  Stop that node first, or give this one another data dir \
         (--data-dir); the file itself is untouched."
    )]
    StoreInUse { path: String, data_dir: String },
    /// The store is empty or missing, but the data dir shows that this node was a mesh member
    /// (its identity file): its Raft votes and log were in the lost store.
    #[error(
        "the store {path} is {state}, but {identity} shows this node was a member of a mesh: its \
         Raft votes and log were in that file, and a member that forgot its votes could vote twice \
         in one term.\n  Restore {path} from a backup (`mindmesh store check --data-dir {data_dir}` \
         verifies it), or start with --rejoin-as-new to join as a new member under a new identity \
         (the old one is kept aside; in a mesh of several nodes give it a new --name, the old \
         member stays listed until it is removed)."
    )]
    StoreLost { path: String, state: &'static str, identity: String, data_dir: String },
    /// The store failed while the node ran; the node stopped its personas and exited.
    #[error(
        "the store {path} failed while the node ran: {reason}\n  The node stopped its personas and \
         acknowledged nothing more. Inspect the file with `mindmesh store check --data-dir {data_dir}` \
         (and the disk: space, errors in the kernel log) before starting it again."
    )]
    StoreFailed { path: String, data_dir: String, reason: String },
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
