//! `NodeSnapshot`: what a node gossips every tick — its host figures and, per persona, the
//! phase, process and the few behaviour figures the leader's analysis needs. Large, frequent
//! and allowed to be a little stale, so it travels by gossip, not Raft.
//!
//! Size is the constraint: a node with 100 personas must fit in 8 KB. Figures are varints
//! where postcard allows, and text that personas report (error messages) is truncated per
//! persona and capped per snapshot, because it is the one field an outsider controls.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::metrics::{ErrorKind, HostSample};
use crate::phase::{Health, Phase};
use crate::spec::{MAX_NAME_LEN, validate_name};
use crate::wire;

/// Version tag of the gossip encoding.
pub const SNAPSHOT_WIRE_VERSION: u8 = 1;
/// Most personas one snapshot describes (the supervisor's default `max_personas`).
pub const MAX_SNAPSHOT_PERSONAS: usize = 2000;
/// Longest error text kept per persona.
pub const MAX_ERROR_TEXT_BYTES: usize = 96;
/// All error texts of one snapshot together; past it, the rest are dropped.
pub const MAX_TOTAL_ERROR_TEXT_BYTES: usize = 2048;
/// Largest encoded snapshot accepted (2000 personas fit with room to spare).
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024;

/// One node's view of itself at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// The sender's Raft id; a receiver refuses a snapshot whose id is not its sender's.
    pub node_id: u64,
    pub node_name: String,
    /// Distinguishes runs of the node (its start time): a restarted node starts `seq` again.
    pub incarnation: u64,
    /// Increases with every snapshot of one incarnation, so a late copy never overwrites a newer one.
    pub seq: u64,
    /// The sender's wall clock, for display; staleness is measured by the receiver.
    pub ts_ms: u64,
    pub host: HostSample,
    pub personas: Vec<PersonaFigures>,
}

/// One persona as its node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonaFigures {
    pub name: String,
    pub phase: Phase,
    pub health: Health,
    pub pid: Option<u32>,
    /// The registry's restart generation the running process belongs to.
    pub generation: u64,
    /// The fencing epoch the process was started with.
    pub epoch: u64,
    pub rss_bytes: u64,
    /// 100 = one core.
    pub cpu_percent: f32,
    /// Over the last interval.
    pub requests: u32,
    pub errors: u32,
    pub latency_p95_ms: Option<f32>,
    pub queue_depth: u32,
    pub restarts: u32,
    /// The last error the persona reported, truncated.
    pub last_error: Option<String>,
    /// Errors of the interval by kind, as the gateway classified them (at most
    /// [`MAX_ERROR_KINDS`]; usually empty).
    pub error_kinds: Vec<(ErrorKind, u32)>,
}

/// Most error kinds one persona reports per snapshot.
pub const MAX_ERROR_KINDS: usize = 8;

impl NodeSnapshot {
    /// Truncate error texts to their per-persona and per-snapshot budgets, in order: the first
    /// personas keep their text, later ones lose it once the snapshot's budget is spent.
    pub fn truncate_errors(&mut self) {
        let mut budget = MAX_TOTAL_ERROR_TEXT_BYTES;
        for p in &mut self.personas {
            if let Some(text) = p.last_error.take() {
                let kept = truncate_str(&text, MAX_ERROR_TEXT_BYTES.min(budget));
                budget -= kept.len();
                if !kept.is_empty() {
                    p.last_error = Some(kept.to_owned());
                }
            }
        }
    }

    /// Encode for gossip. Error texts are truncated first; the result is refused if it still
    /// breaks a bound, so a node never sends what its peers would drop.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut s = self.clone();
        s.truncate_errors();
        s.validate()?;
        let bytes = wire::encode(SNAPSHOT_WIRE_VERSION, &s)?;
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(CoreError::Wire(format!("snapshot of {} bytes exceeds {MAX_SNAPSHOT_BYTES}", bytes.len())));
        }
        Ok(bytes)
    }

    /// Decode and validate bytes from the network; anything malformed is an error, never a panic.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self> {
        let mut s: NodeSnapshot = wire::decode(SNAPSHOT_WIRE_VERSION, bytes, max_len.min(MAX_SNAPSHOT_BYTES))?;
        s.validate()?;
        // what a node holds is what it would send on: an empty error text (which `encode`
        // drops) reads as none (found by fuzzing: decode and encode disagreed)
        s.truncate_errors();
        Ok(s)
    }

    pub fn validate(&self) -> Result<()> {
        if self.node_name.len() > MAX_NAME_LEN {
            return Err(CoreError::invalid("node_name", "too long"));
        }
        if self.personas.len() > MAX_SNAPSHOT_PERSONAS {
            return Err(CoreError::invalid("personas", format!("at most {MAX_SNAPSHOT_PERSONAS}")));
        }
        if !self.host.cpu_percent.is_finite() {
            return Err(CoreError::invalid("host.cpu_percent", "not a number"));
        }
        let mut error_bytes = 0usize;
        for (i, p) in self.personas.iter().enumerate() {
            let field = |f: &str| format!("personas[{i}].{f}");
            validate_name(&p.name).map_err(|e| e.within(&format!("personas[{i}]")))?;
            if !p.cpu_percent.is_finite() || p.cpu_percent < 0.0 {
                return Err(CoreError::invalid(field("cpu_percent"), "must be a non-negative number"));
            }
            if p.latency_p95_ms.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(CoreError::invalid(field("latency_p95_ms"), "must be a non-negative number"));
            }
            if p.error_kinds.len() > MAX_ERROR_KINDS {
                return Err(CoreError::invalid(field("error_kinds"), format!("at most {MAX_ERROR_KINDS}")));
            }
            if let Some(e) = &p.last_error {
                if e.len() > MAX_ERROR_TEXT_BYTES {
                    return Err(CoreError::invalid(field("last_error"), "too long"));
                }
                error_bytes += e.len();
            }
        }
        if error_bytes > MAX_TOTAL_ERROR_TEXT_BYTES {
            return Err(CoreError::invalid("personas", "error texts exceed the snapshot's budget"));
        }
        Ok(())
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy node: every figure near the top of its realistic range, every persona with an
    /// error text, names as operators write them.
    fn busy_node(personas: usize) -> NodeSnapshot {
        NodeSnapshot {
            node_id: u64::MAX - 7,
            node_name: "worker-eu-west-3a-017".into(),
            incarnation: 1_790_000_000_000,
            seq: 86_400 * 30,
            ts_ms: 1_790_000_000_000,
            host: HostSample {
                ts_ms: 1_790_000_000_000,
                cpu_percent: 97.5,
                memory_used_bytes: 250 << 30,
                memory_total_bytes: 256 << 30,
                cpu_cores: 64,
            },
            personas: (0..personas)
                .map(|i| PersonaFigures {
                    name: format!("persona-{i:03}-chat-large"),
                    phase: Phase::Running,
                    health: Health::Healthy,
                    pid: Some(3_000_000 + i as u32),
                    generation: 1_000 + i as u64,
                    epoch: 5_000_000 + i as u64,
                    rss_bytes: 12 << 30,
                    cpu_percent: 180.25,
                    requests: 5_000,
                    errors: 250,
                    latency_p95_ms: Some(1234.5),
                    queue_depth: 120,
                    restarts: 17,
                    last_error: Some("upstream returned 503: model overloaded, retry later ".repeat(4)),
                    error_kinds: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_node_with_100_personas_fits_in_8_kb() {
        let bytes = busy_node(100).encode().unwrap();
        assert!(bytes.len() <= 8 * 1024, "{} bytes", bytes.len());
        let back = NodeSnapshot::decode(&bytes, MAX_SNAPSHOT_BYTES).unwrap();
        assert_eq!(back.personas.len(), 100);
        let kept: usize = back.personas.iter().filter_map(|p| p.last_error.as_ref()).map(String::len).sum();
        assert!(kept <= MAX_TOTAL_ERROR_TEXT_BYTES);
        assert_eq!(back.personas[0].last_error.as_ref().unwrap().len(), MAX_ERROR_TEXT_BYTES);
    }

    #[test]
    fn the_largest_node_fits_the_gossip_bound() {
        let bytes = busy_node(MAX_SNAPSHOT_PERSONAS).encode().unwrap();
        assert!(bytes.len() <= MAX_SNAPSHOT_BYTES, "{} bytes", bytes.len());
        assert!(busy_node(MAX_SNAPSHOT_PERSONAS + 1).encode().is_err());
    }

    #[test]
    fn garbage_and_lies_are_refused_without_panicking() {
        let good = busy_node(3).encode().unwrap();
        // every prefix and every single-byte corruption decodes to an error or a valid value
        for n in 0..good.len() {
            let _ = NodeSnapshot::decode(&good[..n], MAX_SNAPSHOT_BYTES);
            let mut bad = good.clone();
            bad[n] ^= 0xa5;
            if let Ok(s) = NodeSnapshot::decode(&bad, MAX_SNAPSHOT_BYTES) {
                s.validate().unwrap();
            }
        }
        assert!(NodeSnapshot::decode(&good, good.len() - 1).is_err());
        let mut nan = busy_node(1);
        nan.personas[0].cpu_percent = f32::NAN;
        let raw = wire::encode(SNAPSHOT_WIRE_VERSION, &nan).unwrap();
        assert!(NodeSnapshot::decode(&raw, MAX_SNAPSHOT_BYTES).is_err());
        let mut long = busy_node(1);
        long.personas[0].last_error = Some("x".repeat(MAX_ERROR_TEXT_BYTES + 1));
        let raw = wire::encode(SNAPSHOT_WIRE_VERSION, &long).unwrap();
        assert!(NodeSnapshot::decode(&raw, MAX_SNAPSHOT_BYTES).is_err());
    }

    #[test]
    fn an_empty_error_text_decodes_as_none_so_encoding_round_trips() {
        let mut s = busy_node(2);
        s.truncate_errors();
        s.personas[0].last_error = Some(String::new());
        let raw = wire::encode(SNAPSHOT_WIRE_VERSION, &s).unwrap();
        let back = NodeSnapshot::decode(&raw, MAX_SNAPSHOT_BYTES).unwrap();
        assert_eq!(back.personas[0].last_error, None);
        assert_eq!(NodeSnapshot::decode(&back.encode().unwrap(), MAX_SNAPSHOT_BYTES).unwrap(), back);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("abc", 10), "abc");
    }
}
