//! The fuzz corpus (`fuzz/corpus/<target>/`), replayed through the entry points the fuzz
//! targets call: every input the fuzzers kept, and every crash or hang they found (kept as
//! `crash-*` / `hang-*` once fixed), runs in `cargo test`, so CI catches a regression without
//! the fuzzer. Each input must be refused or handled without a panic, within a time bound.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` writes the seed inputs the
//! fuzzers start from (valid messages of every kind; see docs/security.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest one input may take here: a debug build on a loaded two-core machine. The fuzzers'
/// own limit on optimized code is far lower (AFL++'s default hang timeout, 1 s, was used).
const MAX_INPUT_TIME: Duration = Duration::from_secs(10);

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{}: a corpus of {} inputs", dir.display(), files.len());
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("a corpus file");
        let started = Instant::now();
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failures.push(format!("{}: panicked (message above)", f.display()));
        }
        let took = started.elapsed();
        if took > MAX_INPUT_TIME {
            failures.push(format!("{}: took {took:?}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} inputs failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn gossip_snapshot() {
    replay("gossip_snapshot", mindmesh_core::fuzzing::gossip_snapshot);
}

#[test]
fn registry() {
    replay("registry", mindmesh_core::fuzzing::registry);
}

#[test]
fn persona_spec() {
    replay("persona_spec", mindmesh_core::fuzzing::persona_spec);
}

#[test]
fn node_config() {
    replay("node_config", mindmesh_core::fuzzing::node_config);
}

#[test]
fn mesh_rpc() {
    replay("mesh_rpc", mindmesh_net::fuzzing::mesh_rpc);
}

#[test]
fn upstream_answer() {
    replay("upstream_answer", mindmesh_node::fuzzing::upstream_answer);
}

#[test]
fn scenario() {
    replay("scenario", mindmesh_brain::fuzzing::scenario);
}

/// Not a check: writes the seed corpus (generated messages, and the project's own example
/// files for the text formats) into `fuzz/corpus/`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand before a fuzzing campaign"]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = mindmesh_core::fuzzing::seeds();
    seeds.extend(mindmesh_net::fuzzing::seeds());
    seeds.extend(mindmesh_node::fuzzing::seeds());
    for example in ["deploy/examples/demo.toml", "deploy/examples/mesh-node.toml"] {
        let text = std::fs::read(root.join(example)).expect("an example config");
        let name = Path::new(example).file_stem().unwrap().to_string_lossy();
        seeds.push(("node_config", format!("seed-{name}"), text));
    }
    // the README's spec, every field set
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    let spec: String =
        readme.split("```toml\n").nth(1).and_then(|s| s.split("```").next()).expect("a TOML spec in the README").into();
    seeds.push(("persona_spec", "seed-readme".into(), [&[0u8][..], spec.as_bytes()].concat()));
    seeds.push((
        "node_config",
        "seed-minimal".into(),
        b"[node]\nname = \"n\"\n[api]\nlisten = \"127.0.0.1:0\"\n".to_vec(),
    ));
    for scenario in ["api-key-revoked.json", "cpu-saturated-batch-hog.json"] {
        let text = std::fs::read(root.join("simulations/scenarios/public").join(scenario)).expect("a scenario");
        seeds.push(("scenario", format!("seed-{scenario}"), text));
    }
    seeds.push(("scenario", "seed-small.json".into(), SMALL_SCENARIO.as_bytes().to_vec()));
    for (target, name, bytes) in seeds {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

const SMALL_SCENARIO: &str = r#"{
  "format": "mindmesh-scenario/1", "name": "s", "interval_s": 60,
  "nodes": [{"id": "a", "cpu_cores": 4, "memory_mb": 8192,
             "series": {"t": [0, 60, 120], "cpu_percent": [10, 20, null], "memory_used_mb": [1000, 1100, 1200]}}],
  "personas": [
    {"id": "leaky", "node": "a", "importance": "background",
     "series": {"t": [0, 60, 120], "memory_mb": [100, 200, 300], "requests": [5, 5, 5], "errors": [0, 1, 9],
                "latency_p95_ms": [100, 200, null]},
     "events": [{"t": 61, "kind": "restart", "detail": "exit 1"}]},
    {"id": "fine", "node": "a", "series": {"t": [0, 60, 120], "memory_mb": [1, 1, 1]}}],
  "expect": {"leaky": {"accept": ["restart"]}, "fine": {"accept": ["continue"]}}
}"#;
