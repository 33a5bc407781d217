//! Entry points for coverage-guided fuzzing (the targets in `fuzz/`) and for the replay of
//! their corpus in `cargo test` (`tests/fuzz_corpus.rs`): one function per input surface,
//! taking arbitrary bytes. Each refuses bad input the way the node does and panics only when
//! an invariant breaks, which is what a fuzzer reports.
//!
//! The first byte of an input picks a variant where a surface has several (TOML or JSON, a
//! command sequence or a snapshot), so one corpus covers them all.

use crate::config::NodeConfig;
use crate::mesh_view::MeshView;
use crate::registry::{ApplyCtx, MAX_PROPOSAL_BYTES, Proposal, REGISTRY_WIRE_VERSION, Registry, check_step};
use crate::snapshot::{MAX_SNAPSHOT_BYTES, NodeSnapshot};
use crate::spec::PersonaSpec;
use crate::wire;

/// A gossiped `NodeSnapshot` as a peer's bytes: decode, validate; what decodes must re-encode
/// to itself and enter a mesh view.
pub fn gossip_snapshot(data: &[u8]) {
    let Ok(s) = NodeSnapshot::decode(data, MAX_SNAPSHOT_BYTES) else { return };
    s.validate().expect("a decoded snapshot is valid");
    let again = s.encode().expect("a decoded snapshot re-encodes");
    assert_eq!(NodeSnapshot::decode(&again, MAX_SNAPSHOT_BYTES).as_ref(), Ok(&s), "snapshot round trip");
    let mut view = MeshView::new();
    view.observe(s.node_id, s.clone(), 0).expect("its sender's own snapshot is taken");
    view.observe(s.node_id.wrapping_add(1), s, 1).expect_err("a snapshot claiming another sender is refused");
}

/// Registry commands as Raft delivers them. Mode byte even: a sequence of frames (2-byte
/// little-endian length, then a versioned postcard `Proposal`; length 0 is a blank entry),
/// applied in order with every invariant checked after each step, then replayed on a second
/// replica (same digest) and round-tripped through a snapshot. Odd: the rest is a registry
/// snapshot as a new member installs it.
pub fn registry(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 1 {
        registry_snapshot(rest);
        return;
    }
    let mut reg = Registry::new();
    let mut applied = Vec::new();
    let mut index = 0;
    for frame in frames(rest) {
        index += 1;
        let ctx = ApplyCtx { index, term: 1 };
        if frame.is_empty() {
            reg.apply_blank(ctx);
            applied.push(None);
            continue;
        }
        let Ok(p) = wire::decode::<Proposal>(REGISTRY_WIRE_VERSION, frame, MAX_PROPOSAL_BYTES) else {
            // a Raft entry that does not decode never reaches apply: the log refuses it
            index -= 1;
            continue;
        };
        let before = reg.clone();
        let outcome = reg.apply(&p, ctx);
        if let Err(e) = check_step(&before, &reg, index, &outcome).and_then(|()| reg.check_invariants()) {
            panic!("after {p:?} at index {index}: {e}");
        }
        applied.push(Some(p));
    }
    let mut replica = Registry::new();
    for (i, p) in applied.iter().enumerate() {
        let ctx = ApplyCtx { index: i as u64 + 1, term: 1 };
        match p {
            Some(p) => {
                replica.apply(p, ctx);
            }
            None => replica.apply_blank(ctx),
        }
    }
    assert_eq!(replica, reg, "apply is deterministic");
    let bytes = reg.encode().expect("a registry encodes");
    assert_eq!(Registry::decode(&bytes).as_ref(), Ok(&reg), "registry snapshot round trip");
}

fn registry_snapshot(bytes: &[u8]) {
    let Ok(reg) = Registry::decode(bytes) else { return };
    // A snapshot comes from the leader, a member: it may hold anything a member could build,
    // and what reads it must not panic.
    let _ = reg.check_invariants();
    let again = reg.encode().expect("a decoded registry re-encodes");
    let back = Registry::decode(&again).expect("a re-encoded registry decodes");
    assert_eq!((back.applied_index, back.digest), (reg.applied_index, reg.digest), "registry snapshot round trip");
}

/// `bytes` cut into frames of a 2-byte little-endian length each; a short tail is dropped.
fn frames(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (frame, tail) = rest.split_at(len);
        bytes = tail;
        Some(frame)
    })
}

/// A persona spec as an operator or an API client writes it. Mode byte even: TOML, odd: JSON.
/// A spec that validates must round-trip through TOML, JSON and the wire unchanged.
pub fn persona_spec(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let parsed = if mode & 1 == 0 { PersonaSpec::from_toml_str(text) } else { PersonaSpec::from_json_str(text) };
    let Ok(spec) = parsed else { return };
    check_spec_round_trips(&spec);
}

/// What every valid spec must survive; shared with the property tests.
pub fn check_spec_round_trips(spec: &PersonaSpec) {
    spec.validate().expect("a parsed spec is valid");
    let json = serde_json::to_string(spec).expect("a valid spec serializes to JSON");
    let back = PersonaSpec::from_json_str(&json).unwrap_or_else(|e| panic!("JSON round trip of {json}: {e}"));
    // serde_json's float parsing (without its `float_roundtrip` feature) is not always
    // correctly rounded (a few ULPs off, found by the property tests); harmless, as replicas
    // exchange postcard, which is exact
    assert_eq!(with_floats_of(spec, &back), *spec, "JSON round trip of {json}");
    match toml::to_string(spec) {
        Ok(toml) => assert_eq!(PersonaSpec::from_toml_str(&toml).as_ref(), Ok(spec), "TOML round trip of {toml}"),
        // TOML integers are i64: a larger one still validates, but cannot be written back as
        // TOML (the upper bounds of issue 10 close this; docs/security.md)
        Err(e) => assert!(largest_integer(spec) > i64::MAX as u64, "a valid spec does not serialize to TOML: {e}"),
    }
    let wire = wire::encode(REGISTRY_WIRE_VERSION, spec).expect("a valid spec encodes");
    let back: PersonaSpec = wire::decode(REGISTRY_WIRE_VERSION, &wire, MAX_PROPOSAL_BYTES).expect("and decodes");
    assert_eq!(&back, spec, "wire round trip");
}

/// `back` with each float taken from `spec` where the two agree to within a few ULPs.
fn with_floats_of(spec: &PersonaSpec, back: &PersonaSpec) -> PersonaSpec {
    let near = |a: f64, b: f64| (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON;
    let mut b = back.clone();
    if near(spec.budget.throttle_multiplier, b.budget.throttle_multiplier) {
        b.budget.throttle_multiplier = spec.budget.throttle_multiplier;
    }
    if near(spec.requests.cpu_percent, b.requests.cpu_percent) {
        b.requests.cpu_percent = spec.requests.cpu_percent;
    }
    if let (Some(a), Some(c)) = (spec.limits.cpu_max_percent, b.limits.cpu_max_percent)
        && near(a, c)
    {
        b.limits.cpu_max_percent = Some(a);
    }
    for (a, c) in [
        (spec.envelope.min.throttle_multiplier, &mut b.envelope.min.throttle_multiplier),
        (spec.envelope.max.throttle_multiplier, &mut b.envelope.max.throttle_multiplier),
    ] {
        if let (Some(a), Some(x)) = (a, c.as_mut())
            && near(a, *x)
        {
            *x = a;
        }
    }
    b
}

fn largest_integer(spec: &PersonaSpec) -> u64 {
    let b = &spec.budget;
    [spec.limits.memory_max_mb, Some(spec.requests.memory_mb), Some(b.max_response_time_ms), Some(b.max_memory_mb)]
        .into_iter()
        .chain([
            spec.hibernate_after_idle_s,
            spec.envelope.min.max_response_time_ms,
            spec.envelope.max.max_response_time_ms,
        ])
        .chain([spec.maintenance.restart_after_inferences, spec.maintenance.restart_after_s])
        .flatten()
        .max()
        .unwrap_or(0)
}

/// The node's config file.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = NodeConfig::from_toml_str(text) else { return };
    cfg.validate().expect("a parsed config is valid");
    for p in &cfg.personas {
        check_spec_round_trips(p);
    }
}

/// Valid inputs of each target above, as `(target, name, bytes)`: the seed corpus the fuzzers
/// start from (`tests/fuzz_corpus.rs` writes them on request).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use crate::action::{Action, AnalystKind, Decision};
    use crate::budget::BudgetPatch;
    use crate::metrics::{ErrorKind, HostSample};
    use crate::phase::{Health, Phase};
    use crate::registry::{Capacity, Command, DesiredPhase, NodeInfo, ProposalId, Reassignment};
    use crate::snapshot::PersonaFigures;

    let mut out = Vec::new();
    for n in [0usize, 1, 3] {
        let s = NodeSnapshot {
            node_id: 42,
            node_name: "node-a".into(),
            incarnation: 1_790_000_000_000,
            seq: 17,
            ts_ms: 1_790_000_000_500,
            host: HostSample {
                ts_ms: 1,
                cpu_percent: 37.5,
                memory_used_bytes: 3 << 30,
                memory_total_bytes: 8 << 30,
                cpu_cores: 4,
            },
            personas: (0..n)
                .map(|i| PersonaFigures {
                    name: format!("chat-{i}"),
                    phase: if i == 2 { Phase::Hibernating } else { Phase::Running },
                    health: Health::Healthy,
                    pid: Some(4000 + i as u32),
                    generation: i as u64,
                    epoch: 9,
                    rss_bytes: 300 << 20,
                    cpu_percent: 12.5,
                    requests: 30,
                    errors: 2,
                    latency_p95_ms: Some(850.0),
                    queue_depth: 1,
                    restarts: 0,
                    last_error: (i == 1).then(|| "upstream 503".to_owned()),
                    error_kinds: vec![(ErrorKind::Upstream5xx, 2)],
                })
                .collect(),
        };
        out.push(("gossip_snapshot", format!("seed-{n}-personas"), s.encode().expect("a valid snapshot")));
    }

    let node = |id: u64, name: &str| {
        Command::AddNode(NodeInfo {
            id,
            name: name.into(),
            addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 7000 + id)],
            capacity: Capacity { memory_mb: 8192, cpu_percent: 400.0 },
            labels: [("gpu".to_owned(), "false".to_owned())].into(),
            api: format!("127.0.0.1:{}", 7070 + id),
        })
    };
    let mut spec = PersonaSpec::new("chat", "llama-server");
    spec.args = vec!["--port".into(), "${MINDMESH_PORT}".into()];
    spec.limits.memory_max_mb = Some(4096);
    let mut decision = Decision::new("chat", Action::Restart, "memory grows 30 MB/min", 0.8, AnalystKind::Builtin);
    decision.target = Some("2".into());
    let commands = vec![
        node(1, "a"),
        node(2, "b"),
        Command::put_persona(spec.clone(), Some(1)),
        Command::put_persona(PersonaSpec::new("idle", "x"), None),
        Command::AssignPersona { name: "idle".into(), node: Some(2) },
        Command::SetPhase { name: "idle".into(), phase: DesiredPhase::Hibernating, reason: Some("idle".into()) },
        Command::BumpGeneration { name: "chat".into(), expected: 0 },
        Command::SetBudget {
            name: "chat".into(),
            patch: BudgetPatch { inference_queue_priority: Some(90), ..Default::default() },
        },
        Command::RecordDecisions { decisions: vec![decision], at_ms: 1000 },
        Command::MarkExecuted { seq: 1, node: 1, at_ms: 1001, ok: true, outcome: "restarted".into() },
        Command::Checkpoint { name: "chat".into(), node: 1, epoch: 7, state: b"state".to_vec(), at_ms: 1002 },
        Command::Migrate { name: "chat".into(), to: 2 },
        Command::CompleteMigration { name: "chat".into(), from: 1, epoch: 7, state: Some(b"s2".to_vec()), at_ms: 1003 },
        Command::Reassign { moves: vec![Reassignment { name: "idle".into(), from: Some(2), to: Some(1) }] },
        Command::SetDraining { id: 2, draining: true },
        Command::RemovePersona { name: "idle".into() },
        Command::RemoveNode { id: 2 },
    ];
    let mut seq = vec![0u8];
    let mut reg = Registry::new();
    for (i, command) in commands.into_iter().enumerate() {
        let p = Proposal { id: ProposalId { node: 1, nonce: i as u64 }, command };
        let b = wire::encode(REGISTRY_WIRE_VERSION, &p).expect("a proposal encodes");
        let mut one = vec![0u8];
        for s in [&mut seq, &mut one] {
            s.extend((b.len() as u16).to_le_bytes());
            s.extend(&b);
        }
        out.push(("registry", format!("seed-{}", p.command.kind()), one));
        reg.apply(&p, ApplyCtx { index: i as u64 + 1, term: 1 });
        if i == 3 {
            // a blank entry (a new leader's first) between commands
            seq.extend([0, 0]);
        }
    }
    out.push(("registry", "seed-sequence".into(), seq));
    let mut snapshot = vec![1u8];
    snapshot.extend(reg.encode().expect("a registry encodes"));
    out.push(("registry", "seed-snapshot".into(), snapshot));

    let json = serde_json::to_string(&spec).expect("a spec serializes");
    out.push(("persona_spec", "seed-json".into(), [&[1u8][..], json.as_bytes()].concat()));
    let toml = toml::to_string(&spec).expect("a spec serializes");
    out.push(("persona_spec", "seed-toml".into(), [&[0u8][..], toml.as_bytes()].concat()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Command, ProposalId};

    fn frame(p: &Proposal) -> Vec<u8> {
        let b = wire::encode(REGISTRY_WIRE_VERSION, p).unwrap();
        let mut out = (b.len() as u16).to_le_bytes().to_vec();
        out.extend(b);
        out
    }

    #[test]
    fn frames_cut_and_drop_a_short_tail() {
        let got: Vec<&[u8]> = frames(&[1, 0, 7, 0, 0, 3, 0, 1]).collect();
        assert_eq!(got, vec![&[7u8][..], &[][..]]);
    }

    #[test]
    fn a_command_sequence_reaches_apply() {
        let mut input = vec![0u8];
        let put = Command::put_persona(PersonaSpec::new("a", "x"), None);
        input.extend(frame(&Proposal { id: ProposalId { node: 1, nonce: 1 }, command: put }));
        input.extend([0, 0]);
        registry(&input);
        registry(&[1]);
        persona_spec(b"\0name = \"a\"\ncommand = \"x\"");
        persona_spec(b"\x01{\"name\":\"a\",\"command\":\"x\"}");
        node_config(b"[node]\nname = \"n\"");
        gossip_snapshot(&[]);
    }
}
