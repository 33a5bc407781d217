//! What a node keeps about each persona it supervises, so that a node killed at any instant
//! comes back knowing its personas, their phases and the processes it left behind.

use serde::{Deserialize, Serialize};

use crate::phase::Phase;
use crate::spec::PersonaSpec;
use crate::spec_v3::PersonaSpecV3;
use crate::spec_v4::PersonaSpecV4;

/// A process the node started: enough to find it again after the node restarts and to be
/// sure it is the same process (a PID alone may have been reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    pub port: u16,
    pub started_at_ms: u64,
    /// The cgroup the process was put in, if any.
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaRecord {
    pub spec: PersonaSpec,
    pub phase: Phase,
    /// Why it is killed or failed, for status.
    pub reason: Option<String>,
    /// Automatic restarts since registration.
    pub restarts: u32,
    /// Bumped by every restart the mesh asks for, so a replayed request restarts nothing twice.
    pub generation: u64,
    /// The registry epoch of the last start the mesh asked for: the reconciler starts the
    /// persona anew only when the registry's epoch moves past it (so a crash loop the node
    /// stopped stays stopped until an operator or a decision acts).
    pub epoch: u64,
    pub process: Option<ProcessRecord>,
    pub added_ms: u64,
    pub updated_ms: u64,
}

impl PersonaRecord {
    pub fn new(spec: PersonaSpec, now_ms: u64) -> Self {
        PersonaRecord {
            spec,
            phase: Phase::Pending,
            reason: None,
            restarts: 0,
            generation: 0,
            epoch: 0,
            process: None,
            added_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    /// Should the persona be running after a node restart? Phases at rest stay at rest.
    pub fn wants_running(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Starting | Phase::Running | Phase::Backoff | Phase::Stopping)
    }
}

/// [`PersonaRecord`] as a node stored it under an earlier spec wire version `S` (a frozen
/// spec): the record's own fields and their order never changed, only its spec did, so a
/// node upgraded in place reads the records it wrote before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaRecordWith<S> {
    pub spec: S,
    pub phase: Phase,
    pub reason: Option<String>,
    pub restarts: u32,
    pub generation: u64,
    pub epoch: u64,
    pub process: Option<ProcessRecord>,
    pub added_ms: u64,
    pub updated_ms: u64,
}

/// Record version 1: the spec before its wire version 4 ([`PersonaSpecV3`]).
pub type PersonaRecordV1 = PersonaRecordWith<PersonaSpecV3>;
/// Record version 2: the spec of wire version 4 ([`PersonaSpecV4`]), before the budget
/// envelope and maintenance.
pub type PersonaRecordV2 = PersonaRecordWith<PersonaSpecV4>;

impl<S: Into<PersonaSpec>> From<PersonaRecordWith<S>> for PersonaRecord {
    fn from(r: PersonaRecordWith<S>) -> Self {
        PersonaRecord {
            spec: r.spec.into(),
            phase: r.phase,
            reason: r.reason,
            restarts: r.restarts,
            generation: r.generation,
            epoch: r.epoch,
            process: r.process,
            added_ms: r.added_ms,
            updated_ms: r.updated_ms,
        }
    }
}

impl<S> From<&PersonaRecord> for PersonaRecordWith<S>
where
    for<'a> S: From<&'a PersonaSpec>,
{
    /// As the older version would have stored it (the spec's later fields dropped), for tests.
    fn from(r: &PersonaRecord) -> Self {
        PersonaRecordWith {
            spec: S::from(&r.spec),
            phase: r.phase,
            reason: r.reason.clone(),
            restarts: r.restarts,
            generation: r.generation,
            epoch: r.epoch,
            process: r.process.clone(),
            added_ms: r.added_ms,
            updated_ms: r.updated_ms,
        }
    }
}
