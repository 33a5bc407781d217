//! `mindmesh brain eval` as a user runs it: the real binary on the public scenarios (the
//! target: accuracy >= 0.95, no disruptive false positive), on the brain's own variants, and on
//! unreadable files.
//!
//! The public suite is `simulations/scenarios/public` (a copy of the shared suite), or
//! `MINDMESH_PUBLIC_SCENARIOS`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DISRUPTIVE: [&str; 4] = ["restart", "hibernate", "kill", "migrate"];

fn public_dir() -> PathBuf {
    let dir = std::env::var_os("MINDMESH_PUBLIC_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/scenarios/public"));
    assert!(dir.is_dir(), "public scenarios not found at {} (set MINDMESH_PUBLIC_SCENARIOS)", dir.display());
    dir
}

fn own_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/mindmesh-brain/tests/scenarios")
}

fn mindmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mindmesh")).args(args).output().expect("run mindmesh")
}

struct Expect {
    accept: Vec<String>,
    migrate_to: Option<Vec<String>>,
    node: String,
}

/// What each scenario file expects, read independently of the brain's own loader.
fn expectations(dir: &Path) -> BTreeMap<(String, String), Expect> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let name = v["name"].as_str().unwrap().to_owned();
        for persona in v["personas"].as_array().unwrap() {
            let id = persona["id"].as_str().unwrap().to_owned();
            let x = &v["expect"][&id];
            let strings = |a: &Value| a.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect());
            out.insert(
                (name.clone(), id),
                Expect {
                    accept: strings(&x["accept"]).unwrap(),
                    migrate_to: strings(&x["migrate_to"]),
                    node: persona["node"].as_str().unwrap().to_owned(),
                },
            );
        }
    }
    out
}

/// Score `--json` output as FORMAT.md defines it: (accuracy, disruptive false positives).
fn score(dir: &Path, stdout: &[u8]) -> (f64, usize) {
    let expect = expectations(dir);
    let mut seen = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["action", "confidence", "persona", "reason", "scenario", "target"], "{line}");
        let c = v["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c));
        assert!(!v["reason"].as_str().unwrap().is_empty());
        let key = (v["scenario"].as_str().unwrap().to_owned(), v["persona"].as_str().unwrap().to_owned());
        assert!(seen.insert(key.clone(), v).is_none(), "two decisions for {key:?}");
    }
    assert_eq!(seen.len(), expect.len(), "one decision per persona per scenario");
    let (mut correct, mut fp) = (0usize, 0usize);
    for (key, e) in &expect {
        let v = &seen[key];
        let action = v["action"].as_str().unwrap();
        let mut ok = e.accept.iter().any(|a| a == action);
        if ok && action == "migrate" {
            let t = v["target"].as_str().unwrap_or("");
            ok = !t.is_empty() && t != e.node && e.migrate_to.as_ref().is_none_or(|m| m.iter().any(|x| x == t));
        }
        correct += usize::from(ok);
        let disruptive_ok = e.accept.iter().any(|a| DISRUPTIVE.contains(&a.as_str()));
        if DISRUPTIVE.contains(&action) && !disruptive_ok {
            fp += 1;
            eprintln!("disruptive false positive: {key:?} -> {action}: {}", v["reason"]);
        } else if !ok {
            eprintln!("wrong: {key:?} -> {action} (accept {:?}): {}", e.accept, v["reason"]);
        }
    }
    (correct as f64 / expect.len() as f64, fp)
}

#[test]
fn public_suite_meets_the_target() {
    let dir = public_dir();
    let out = mindmesh(&["brain", "eval", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (accuracy, fp) = score(&dir, &out.stdout);
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
    assert_eq!(fp, 0, "disruptive false positives");
}

#[test]
fn own_variants_meet_the_target_too() {
    let dir = own_dir();
    let out = mindmesh(&["brain", "eval", dir.to_str().unwrap(), "--json", "--analyst", "builtin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (accuracy, fp) = score(&dir, &out.stdout);
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
    assert_eq!(fp, 0);
}

#[test]
fn the_table_shows_every_scenario_and_the_naive_baseline() {
    let dir = public_dir();
    let out = mindmesh(&["brain", "eval", dir.to_str().unwrap(), "--min-accuracy", "0.95", "--max-disruptive-fp", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["leak-one-of-four", "gc-sawtooth-no-trend", "api-key-revoked"] {
        assert!(text.contains(&format!("== {name} (")), "{name} missing");
    }
    assert!(text.contains("== summary:"));
    let header = text.lines().find(|l| l.contains("builtin") && l.contains("naive")).expect("both columns");
    assert!(!header.is_empty());
    for row in ["accuracy", "disruptive false positives", "missed", "precision / recall per action:"] {
        assert!(text.contains(row), "{row}");
    }
    // the naive baseline alone, and a gate it fails
    let out = mindmesh(&["brain", "eval", dir.to_str().unwrap(), "--analyst", "naive", "--max-disruptive-fp", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("disruptive false positives"));
}

#[test]
fn unreadable_scenarios_fail_with_file_and_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_dir(own_dir()).unwrap().next().unwrap().unwrap().path();
    std::fs::copy(&good, tmp.path().join("good.json")).unwrap();
    std::fs::write(tmp.path().join("broken.json"), "{\"format\": \"mindmesh-scenario/1\", \"name\": ").unwrap();
    std::fs::write(tmp.path().join("wrong-version.json"), "{\"format\": \"mindmesh-scenario/9\", \"name\": \"x\", \"interval_s\": 60, \"nodes\": [], \"personas\": [], \"expect\": {}}").unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "not a scenario, ignored").unwrap();
    let out = mindmesh(&["brain", "eval", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json") && err.contains("EOF"), "{err}");
    assert!(err.contains("wrong-version.json") && err.contains("mindmesh-scenario/1"), "{err}");
    assert!(!err.contains("good.json"), "{err}");
    assert!(out.stdout.is_empty(), "nothing evaluated");

    let out = mindmesh(&["brain", "eval", "/nonexistent/scenarios"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/scenarios"));
}
