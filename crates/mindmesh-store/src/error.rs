//! The one error type of `mindmesh-store`.

use mindmesh_core::CoreError;
use thiserror::Error;

/// Everything the store can fail with. `Database` and `Closed` are about the store itself
/// (disk, file, actor); the others are about what was asked of it or found in it.
///
/// A variant's message carries the error it wraps, so none also returns it as its
/// `source()`: a chain printed whole (`{:#}`) would say everything twice.
#[derive(Debug, Error)]
pub enum StoreError {
    /// redb failed: I/O, a corrupt or locked file, a failed commit.
    #[error("database: {0}")]
    Database(redb::Error),
    /// A stored value could not be decoded: the file is damaged or was written by a newer
    /// mindmesh. `what` names the table, `key` the row.
    #[error("cannot decode {what} {key}: {error}")]
    Decode { what: &'static str, key: String, error: CoreError },
    /// A value could not be encoded.
    #[error("cannot encode {what}: {error}")]
    Encode { what: &'static str, error: CoreError },
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
    /// The file cannot be used: missing where it must exist, damaged (failed its check on
    /// open), not a store, or held by another process. `path` names it.
    #[error("cannot open the store {path}: {error}")]
    Open { path: String, error: Box<StoreError> },
    /// The store failed while running (an I/O error, a damaged page, a panic in redb): from
    /// then on it answers every call with this, having done nothing.
    #[error("the store failed and takes no more calls: {0}")]
    Failed(std::sync::Arc<str>),
}

impl StoreError {
    /// What went wrong, without the file an open names: the error itself for any other.
    pub fn cause(&self) -> &StoreError {
        match self {
            StoreError::Open { error, .. } => error.cause(),
            e => e,
        }
    }

    /// A failure of the store itself (its file or disk), after which nothing it is asked can
    /// be trusted to persist; not one of a single call (a bad name, a damaged row, a limit).
    pub fn is_fatal(&self) -> bool {
        match self {
            StoreError::Database(e) => matches!(
                e,
                redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::Corrupted(_)
                    | redb::Error::LockPoisoned(_)
                    | redb::Error::TransactionPoisoned
                    | redb::Error::Backend(_)
            ),
            StoreError::Failed(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// redb splits its errors by operation; they all fold into `redb::Error`, which keeps the
// crate's enum to one variant for the database.
impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Database(e)
    }
}

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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_message_never_repeats_its_cause() {
        let locked: StoreError = redb::DatabaseError::DatabaseAlreadyOpen.into();
        let decode = StoreError::Decode { what: "persona", key: "a".into(), error: CoreError::Wire("bad".into()) };
        let encode = StoreError::Encode { what: "persona", error: CoreError::Wire("bad".into()) };
        for e in [locked, decode, encode] {
            assert!(e.source().is_none(), "{e} also returns its cause as source()");
        }
    }
}
