//! Persona records and state blobs.

use mindmesh_core::PersonaRecord;
use redb::ReadableTable;

use super::RedbStore;
use super::tables::{PERSONAS, STATES};
use crate::codec;
use crate::error::Result;
use crate::store::{check_name, check_state};

pub(super) fn put(store: &RedbStore, record: &PersonaRecord) -> Result<()> {
    let name = record.spec.name.as_str();
    check_name(name)?;
    let bytes = codec::encode(record)?;
    let txn = store.begin_write()?;
    txn.open_table(PERSONAS)?.insert(name, bytes.as_slice())?;
    txn.commit()?;
    Ok(())
}

pub(super) fn get(store: &RedbStore, name: &str) -> Result<Option<PersonaRecord>> {
    let txn = store.begin_read()?;
    let table = txn.open_table(PERSONAS)?;
    let row = table.get(name)?;
    row.map(|v| codec::decode(v.value(), &name)).transpose()
}

pub(super) fn list(store: &RedbStore) -> Result<Vec<PersonaRecord>> {
    let txn = store.begin_read()?;
    let table = txn.open_table(PERSONAS)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.push(codec::decode(v.value(), &k.value())?);
    }
    Ok(out)
}

pub(super) fn remove(store: &RedbStore, name: &str) -> Result<bool> {
    let txn = store.begin_write()?;
    let existed = txn.open_table(PERSONAS)?.remove(name)?.is_some();
    txn.open_table(STATES)?.remove(name)?;
    txn.commit()?;
    Ok(existed)
}

pub(super) fn put_state(store: &RedbStore, name: &str, state: &[u8]) -> Result<()> {
    check_name(name)?;
    check_state(&store.config, state)?;
    let txn = store.begin_write()?;
    txn.open_table(STATES)?.insert(name, state)?;
    txn.commit()?;
    Ok(())
}

pub(super) fn get_state(store: &RedbStore, name: &str) -> Result<Option<Vec<u8>>> {
    let txn = store.begin_read()?;
    let table = txn.open_table(STATES)?;
    Ok(table.get(name)?.map(|v| v.value().to_vec()))
}

pub(super) fn delete_state(store: &RedbStore, name: &str) -> Result<bool> {
    let txn = store.begin_write()?;
    let existed = txn.open_table(STATES)?.remove(name)?.is_some();
    txn.commit()?;
    Ok(existed)
}
