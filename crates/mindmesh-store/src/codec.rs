//! How values are stored: postcard behind a version tag ([`mindmesh_core::wire`]), each kind
//! with its own tag and size bound. Both backends encode through here, so the twin refuses
//! exactly what the file would.

use mindmesh_core::PersonaRecord;
use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::record::PersonaRecordV1;
use mindmesh_core::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};

/// One stored kind: its version tag, its largest encoding, and a name for errors.
pub(crate) struct Kind {
    pub version: u8,
    pub max_bytes: usize,
    pub what: &'static str,
}

/// A spec holds at most 256 args and 256 env entries of 4 KiB each: a few MiB at worst.
/// Version 2: the spec of registry wire version 4 (adapters, sleep hooks, metrics path);
/// version 1 records still decode ([`Stored::legacy`]).
pub(crate) const RECORD: Kind = Kind { version: 2, max_bytes: 4 << 20, what: "persona record" };
const RECORD_V1: u8 = 1;
/// Event details are cut to 1 KiB and names to 63 bytes.
pub(crate) const EVENT: Kind = Kind { version: 1, max_bytes: 4 << 10, what: "event" };
/// A sample is ~100 bytes; the rest is room for many error kinds.
pub(crate) const PERSONA_SAMPLE: Kind = Kind { version: 1, max_bytes: 16 << 10, what: "persona sample" };
/// One persona's raw samples of one interval: room for a long interval of big samples.
pub(crate) const RAW_CHUNK: Kind = Kind { version: 1, max_bytes: 64 << 20, what: "raw sample chunk" };
pub(crate) const HOST_SAMPLE: Kind = Kind { version: 1, max_bytes: 1 << 10, what: "host sample" };

/// Which kind of value a type is stored as.
pub(crate) trait Stored: Serialize + DeserializeOwned {
    const KIND: Kind;

    /// Decode bytes of an older version tag, where that version is still read.
    fn legacy(_bytes: &[u8]) -> Option<mindmesh_core::error::Result<Self>> {
        None
    }
}

impl Stored for PersonaRecord {
    const KIND: Kind = RECORD;

    fn legacy(bytes: &[u8]) -> Option<mindmesh_core::error::Result<Self>> {
        (bytes.first() == Some(&RECORD_V1))
            .then(|| wire::decode::<PersonaRecordV1>(RECORD_V1, bytes, RECORD.max_bytes).map(Into::into))
    }
}
impl Stored for Event {
    const KIND: Kind = EVENT;
}
impl Stored for PersonaSample {
    const KIND: Kind = PERSONA_SAMPLE;
}
impl Stored for Vec<PersonaSample> {
    const KIND: Kind = RAW_CHUNK;
}
impl Stored for HostSample {
    const KIND: Kind = HOST_SAMPLE;
}

/// Encode, refusing what could not be decoded again: a value is never written that a reader
/// would reject.
pub(crate) fn encode<T: Stored>(value: &T) -> Result<Vec<u8>> {
    let kind = T::KIND;
    let bytes = wire::encode(kind.version, value).map_err(|error| StoreError::Encode { what: kind.what, error })?;
    if bytes.len() > kind.max_bytes {
        return Err(StoreError::TooLarge {
            what: kind.what,
            len_bytes: bytes.len() as u64,
            max_bytes: kind.max_bytes as u64,
        });
    }
    Ok(bytes)
}

/// Decode a stored value; `key` only labels the error.
pub(crate) fn decode<T: Stored>(bytes: &[u8], key: &dyn std::fmt::Display) -> Result<T> {
    let kind = T::KIND;
    let legacy = if bytes.first() == Some(&kind.version) { None } else { T::legacy(bytes) };
    legacy.unwrap_or_else(|| wire::decode(kind.version, bytes, kind.max_bytes)).map_err(|error| StoreError::Decode {
        what: kind.what,
        key: key.to_string(),
        error,
    })
}

/// How many samples an encoded chunk holds, read from its length prefix alone (postcard
/// writes a sequence's length first), so expiring chunks does not decode them.
pub(crate) fn chunk_len(bytes: &[u8]) -> u64 {
    match bytes.split_first() {
        Some((&tag, body)) if tag == RAW_CHUNK.version => postcard::take_from_bytes::<u64>(body).map_or(0, |(n, _)| n),
        _ => 0,
    }
}

/// A series key (`name@ts_ms`) for errors, formatted only when one happens.
pub(crate) struct At<'a>(pub &'a str, pub u64);

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::{PersonaSpec, Phase};

    /// A record stored before the spec's wire version 4 still decodes, whole.
    #[test]
    fn a_version_1_persona_record_still_decodes() {
        let mut spec = PersonaSpec::new("chat", "srv");
        spec.budget.tokens_per_response = 99;
        let rec = PersonaRecord { phase: Phase::Running, epoch: 7, ..PersonaRecord::new(spec, 5) };
        let old = wire::encode(RECORD_V1, &PersonaRecordV1::from(&rec)).unwrap();
        let back: PersonaRecord = decode(&old, &"chat").unwrap();
        assert_eq!(back, rec);
        let new = encode(&back).unwrap();
        assert_eq!(new[0], 2);
        assert_eq!(decode::<PersonaRecord>(&new, &"chat").unwrap(), rec);
        // another kind has no older version: its wrong tag is an error, as before
        assert!(decode::<Event>(&old, &"chat").is_err());
    }
}
