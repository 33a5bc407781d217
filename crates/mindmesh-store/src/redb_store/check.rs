//! [`check_file`]: verify a store file without trusting or changing it, for
//! `mindmesh store check`. The check runs on a copy (redb's check repairs what it can in
//! place, and a check must not change the evidence); the original is held open read-only
//! while it is copied, so no node can write it meanwhile, and a node that has it open is
//! reported instead of copied mid-write.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableHandle};
use serde::Serialize;

use crate::error::StoreError;
use crate::health::panic_message;

/// What [`check_file`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub path: String,
    /// Whether the file is a sound store: present, not empty, every page verified.
    pub ok: bool,
    pub file_bytes: u64,
    /// Why it is not sound (None when it is).
    pub error: Option<String>,
    /// Every table with its row count (empty when the file could not be read).
    pub tables: Vec<TableRows>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRows {
    pub name: String,
    pub rows: u64,
}

/// Verify the store at `path` (see the module docs). `scratch` is a directory for the copy,
/// on a file system with room for it. An error ([`StoreError::Open`]) means the file could not
/// be checked at all (open in a running node, no room for the copy), as opposed to a file
/// checked and found damaged: an `Ok` report with `ok: false`.
pub fn check_file(path: &Path, scratch: &Path) -> Result<CheckReport, StoreError> {
    let shown = path.display().to_string();
    let mut report = CheckReport { path: shown.clone(), ok: false, file_bytes: 0, error: None, tables: Vec::new() };
    match std::fs::metadata(path) {
        Ok(m) => report.file_bytes = m.len(),
        Err(e) => {
            report.error = Some(format!("cannot read it: {e}"));
            return Ok(report);
        }
    }
    if report.file_bytes == 0 {
        report.error = Some("the file is empty: it holds no store".into());
        return Ok(report);
    }
    // held while copying: a node cannot open the file for writing meanwhile
    let guard = std::panic::catch_unwind(|| Database::builder().set_cache_size(1 << 20).open_read_only(path));
    if let Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) = guard {
        // redb's message: "Database already open. Cannot acquire lock."
        return Err(StoreError::Open { path: shown, error: Box::new(redb::DatabaseError::DatabaseAlreadyOpen.into()) });
    }
    let copy = scratch_copy(scratch);
    std::fs::copy(path, &copy)
        .map_err(|e| StoreError::Open { path: shown.clone(), error: Box::new(redb::Error::Io(e).into()) })?;
    drop(guard);
    // the check a node runs on open: every page's checksum, and what redb repairs by itself
    // after an unclean stop (a torn last commit rolls back to the one before)
    let checked = std::panic::catch_unwind(|| -> Result<Vec<TableRows>, String> {
        let db = Database::builder()
            .set_cache_size(1 << 20)
            .set_check_integrity_on_open(true)
            .create(&copy)
            .map_err(|e| e.to_string())?;
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let mut tables = Vec::new();
        for handle in txn.list_tables().map_err(|e| e.to_string())? {
            let table = txn.open_untyped_table(handle.clone()).map_err(|e| e.to_string())?;
            tables.push(TableRows { name: handle.name().to_owned(), rows: table.len().map_err(|e| e.to_string())? });
        }
        Ok(tables)
    });
    let _ = std::fs::remove_file(&copy);
    match checked {
        Ok(Ok(tables)) => {
            report.ok = true;
            report.tables = tables;
        }
        Ok(Err(e)) => report.error = Some(e),
        Err(p) => report.error = Some(format!("redb panicked reading it: {}", panic_message(p.as_ref()))),
    }
    Ok(report)
}

fn scratch_copy(dir: &Path) -> PathBuf {
    dir.join(format!(".mindmesh-store-check-{}.redb", std::process::id()))
}
