//! The one error type of `mindmesh-store`.

use mindmesh_core::CoreError;
use thiserror::Error;

/// Everything the store can fail with. `Database` and `Closed` are about the store itself
/// (disk, file, actor); the others are about what was asked of it or found in it.
#[derive(Debug, Error)]
pub enum StoreError {
    /// redb failed: I/O, a corrupt or locked file, a failed commit.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// A stored value could not be decoded: the file is damaged or was written by a newer
    /// mindmesh. `what` names the table, `key` the row.
    #[error("cannot decode {what} {key}: {source}")]
    Decode { what: &'static str, key: String, source: CoreError },
    /// A value could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: CoreError },
    /// A value is larger than the store keeps.
    #[error("{what} is {len_bytes} bytes, more than the {max_bytes}-byte limit")]
    TooLarge { what: &'static str, len_bytes: u64, max_bytes: u64 },
    /// One call carried more items than a transaction takes.
    #[error("{count} {what} in one call, more than the limit of {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    /// The file was made by a mindmesh with another schema version.
    #[error("store schema version {found} is not supported (this build reads version {supported})")]
    UnknownSchema { found: u64, supported: u64 },
    /// A persona name that cannot be a key.
    #[error("invalid persona name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The store configuration failed validation.
    #[error("store config: {0}")]
    Config(CoreError),
    /// The store's thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Spawn(std::io::Error),
    /// The store actor has stopped (closed, or its thread died); nothing was done.
    #[error("the store is closed")]
    Closed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// redb splits its errors by operation; they all fold into `redb::Error`, which keeps the
// crate's enum to one variant for the database.
macro_rules! from_redb {
    ($($t:ty),+ $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        })+
    };
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);
