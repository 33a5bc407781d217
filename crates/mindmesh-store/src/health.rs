//! [`StoreHealth`]: whether the store's file still takes writes. The first failure of any
//! writer of the file — the store thread, Raft's tables beside it, a panic in redb — is kept
//! here, so that the node stops acknowledging what it can no longer persist instead of running
//! on as a zombie. [`WatchedFile`] is the redb backend that reports I/O failures to it: every
//! module sharing the file goes through it, so no failure is seen by one and missed by the rest.

use std::fs::File;
use std::ops::Bound;
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use tokio::sync::watch;

/// The first failure of the store, shared by everyone who must react to it.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    failure: Arc<watch::Sender<Option<Arc<str>>>>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth { failure: Arc::new(watch::channel(None).0) }
    }
}

impl StoreHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a failure; only the first is kept (later ones are its consequences).
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let first = self.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            *f = Some(reason.clone().into());
            true
        });
        if first {
            tracing::error!(reason = %reason, "the store failed: nothing more is written to it");
        }
    }

    /// The first failure, if there was one.
    pub fn failure(&self) -> Option<Arc<str>> {
        self.failure.borrow().clone()
    }

    /// Changes from none to the first failure, once.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.failure.subscribe()
    }
}

/// redb's file backend, reporting every I/O error to a [`StoreHealth`] before returning it.
#[derive(Debug)]
pub(crate) struct WatchedFile {
    inner: FileBackend,
    health: StoreHealth,
    /// The file, for the failure's message.
    path: String,
}

impl WatchedFile {
    pub(crate) fn new(file: File, path: &std::path::Path, health: StoreHealth) -> Result<Self, redb::DatabaseError> {
        Ok(WatchedFile { inner: FileBackend::new(file)?, health, path: path.display().to_string() })
    }

    fn watch<T>(&self, what: &str, r: Result<T, std::io::Error>) -> Result<T, std::io::Error> {
        if let Err(e) = &r {
            self.health.fail(format!("{what} ({}) failed: {e}", self.path));
        }
        r
    }
}

impl StorageBackend for WatchedFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.watch("reading the length", self.inner.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let r = self.inner.read(offset, out);
        self.watch("a read", r)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.watch("resizing the file", self.inner.set_len(len))
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.watch("fsync", self.inner.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.watch("a write", self.inner.write(offset, data))
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    // locks are not I/O on the data: passed through as they are
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// What a panic carried, for a message.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}
