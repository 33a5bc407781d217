//! How values are stored: postcard behind a version tag ([`mindmesh_core::wire`]), each kind
//! with its own tag and size bound. Both backends encode through here, so the twin refuses
//! exactly what the file would.

use mindmesh_core::PersonaRecord;
use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample, PersonaSampleV1};
use mindmesh_core::record::{PersonaRecordV1, PersonaRecordV2};
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
/// version 3: that of registry wire version 5 (budget envelope, maintenance). Versions 1 and
/// 2 still decode ([`Stored::legacy`]).
pub(crate) const RECORD: Kind = Kind { version: 3, max_bytes: 4 << 20, what: "persona record" };
const RECORD_V1: u8 = 1;
const RECORD_V2: u8 = 2;
/// Event details are cut to 1 KiB and names to 63 bytes.
pub(crate) const EVENT: Kind = Kind { version: 1, max_bytes: 4 << 10, what: "event" };
/// A sample is ~100 bytes, plus up to ~4.5 KB of what the persona reported of itself
/// (`mindmesh_core::reported`); the rest is room for many error kinds. Version 2: samples
/// carry the persona-reported metrics; version 1 samples still decode ([`Stored::legacy`]).
pub(crate) const PERSONA_SAMPLE: Kind = Kind { version: 2, max_bytes: 32 << 10, what: "persona sample" };
/// One persona's raw samples of one interval: room for a long interval of big samples.
/// Version 2 as for [`PERSONA_SAMPLE`].
pub(crate) const RAW_CHUNK: Kind = Kind { version: 2, max_bytes: 64 << 20, what: "raw sample chunk" };
/// The version both sample kinds had before persona-reported metrics.
const SAMPLE_V1: u8 = 1;
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
        match bytes.first() {
            Some(&RECORD_V1) => {
                Some(wire::decode::<PersonaRecordV1>(RECORD_V1, bytes, RECORD.max_bytes).map(Into::into))
            }
            Some(&RECORD_V2) => {
                Some(wire::decode::<PersonaRecordV2>(RECORD_V2, bytes, RECORD.max_bytes).map(Into::into))
            }
            _ => None,
        }
    }
}
impl Stored for Event {
    const KIND: Kind = EVENT;
}
impl Stored for PersonaSample {
    const KIND: Kind = PERSONA_SAMPLE;

    fn legacy(bytes: &[u8]) -> Option<mindmesh_core::error::Result<Self>> {
        (bytes.first() == Some(&SAMPLE_V1))
            .then(|| wire::decode::<PersonaSampleV1>(SAMPLE_V1, bytes, PERSONA_SAMPLE.max_bytes).map(Into::into))
    }
}
impl Stored for Vec<PersonaSample> {
    const KIND: Kind = RAW_CHUNK;

    fn legacy(bytes: &[u8]) -> Option<mindmesh_core::error::Result<Self>> {
        (bytes.first() == Some(&SAMPLE_V1)).then(|| {
            wire::decode::<Vec<PersonaSampleV1>>(SAMPLE_V1, bytes, RAW_CHUNK.max_bytes)
                .map(|v| v.into_iter().map(Into::into).collect())
        })
    }
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
/// writes a sequence's length first), so expiring chunks does not decode them. Both
/// versions start so.
pub(crate) fn chunk_len(bytes: &[u8]) -> u64 {
    match bytes.split_first() {
        Some((&tag, body)) if tag == RAW_CHUNK.version || tag == SAMPLE_V1 => {
            postcard::take_from_bytes::<u64>(body).map_or(0, |(n, _)| n)
        }
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
        assert_eq!(new[0], 3);
        assert_eq!(decode::<PersonaRecord>(&new, &"chat").unwrap(), rec);
        // another kind has no older version: its wrong tag is an error, as before
        assert!(decode::<Event>(&old, &"chat").is_err());
    }

    /// A record the version 2 code stored (commit 08e80ff, spec wire version 4) still
    /// decodes, whole, its spec's envelope and maintenance at their defaults.
    #[test]
    fn a_version_2_persona_record_written_by_version_2_still_decodes() {
        let hex = include_str!("testdata/persona_record_v2.hex").trim();
        let old: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        assert_eq!(old[0], RECORD_V2);
        let mut spec = PersonaSpec::new("tuned", "srv");
        spec.args = vec!["--port".into(), "${MINDMESH_PORT}".into()];
        spec.budget.inference_queue_priority = 80;
        spec.hibernate_after_idle_s = Some(60);
        spec.sleep = Some(mindmesh_core::spec::SleepHooks::default());
        spec.metrics_path = Some("/mindmesh/metrics".into());
        let rec = PersonaRecord { phase: Phase::Running, epoch: 7, ..PersonaRecord::new(spec, 5) };
        let back: PersonaRecord = decode(&old, &"tuned").unwrap();
        assert_eq!(back, rec);
        assert_eq!(wire::encode(RECORD_V2, &PersonaRecordV2::from(&back)).unwrap(), old, "the frozen layout");
        let new = encode(&back).unwrap();
        assert_eq!(new[0], RECORD.version);
        assert_eq!(decode::<PersonaRecord>(&new, &"tuned").unwrap(), rec);
    }

    /// Samples and raw chunks stored before persona-reported metrics still decode, whole,
    /// and read as reporting nothing; new ones carry the report.
    #[test]
    fn version_1_samples_and_chunks_still_decode() {
        use mindmesh_core::metrics::ErrorKind;
        use mindmesh_core::reported::ReportedMetrics;
        let v1 = PersonaSampleV1 {
            ts_ms: 1_000,
            rss_bytes: 5 << 20,
            cpu_percent: 12.5,
            healthy: Some(true),
            requests: 9,
            errors: 1,
            errors_by_kind: vec![(ErrorKind::Upstream4xx(418), 1)],
            latency_p95_ms: Some(40.0),
            tokens_out: 77,
            ..Default::default()
        };
        // the bytes the old layout wrote: tag 1, then the fields in order
        let old = wire::encode(SAMPLE_V1, &v1).unwrap();
        let back: PersonaSample = decode(&old, &At("chat", 1_000)).unwrap();
        assert_eq!(back, PersonaSample::from(v1.clone()));
        assert_eq!((back.rss_bytes, back.tokens_out, back.reported.as_ref()), (5 << 20, 77, None));
        let old_chunk = wire::encode(SAMPLE_V1, &vec![v1.clone(), v1]).unwrap();
        assert_eq!(chunk_len(&old_chunk), 2);
        let chunk: Vec<PersonaSample> = decode(&old_chunk, &At("chat", 0)).unwrap();
        assert_eq!(chunk, vec![back.clone(), back.clone()]);
        // written now: version 2, with the report
        let reported = ReportedMetrics { cache_hit_rate: Some(0.8), ..Default::default() };
        let new = PersonaSample { reported: Some(reported), ..back };
        let bytes = encode(&new).unwrap();
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<PersonaSample>(&bytes, &"chat").unwrap(), new);
        let chunk_bytes = encode(&vec![new.clone()]).unwrap();
        assert_eq!((chunk_bytes[0], chunk_len(&chunk_bytes)), (2, 1));
        // a tag from the future is refused, not misread
        let mut future = bytes.clone();
        future[0] = 3;
        assert!(decode::<PersonaSample>(&future, &"chat").is_err());
    }
}
