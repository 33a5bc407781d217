//! The node crate's modules form layers with no import ring: every `crate::<module>` path in a
//! module's sources (a `use` line or a path inline) must name a module that `LAYERS` lists
//! below it. A ring (api → gateway → api, as there once was) fails here with the file and line.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mindmesh_node::LAYERS;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/gateway/proxy.rs` → `gateway`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

/// Every module named after `crate::` in `line`, including inside braces
/// (`use crate::{a, b::C}`).
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.push(name);
            }
        } else {
            found.push(after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
        rest = after;
    }
    found.retain(|n| !n.is_empty());
    found
}

#[test]
fn modules_use_only_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: HashMap<&str, BTreeSet<&str>> =
        LAYERS.iter().map(|(m, below)| (*m, below.iter().copied().collect())).collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules_seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        modules_seen.insert(module.clone());
        let Some(below) = allowed.get(module.as_str()) else {
            wrong.push(format!("{}: module `{module}` is missing from LAYERS", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("super::super") && file.parent() != Some(src.as_path()) {
                wrong.push(format!("{}:{}: `super::super` reaches out of its module", file.display(), i + 1));
            }
            for target in crate_paths(code) {
                let is_module = allowed.contains_key(target.as_str());
                if is_module && target != module && !below.contains(target.as_str()) {
                    wrong.push(format!("{}:{}: `{module}` uses `{target}`, not below it", file.display(), i + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // the list stays honest: every module it names exists, and every allowed use points down
    for (i, (module, below)) in LAYERS.iter().enumerate() {
        assert!(modules_seen.contains(*module), "LAYERS names `{module}`, which has no source");
        let lower: BTreeSet<&str> = LAYERS[i + 1..].iter().map(|(m, _)| *m).collect();
        for b in *below {
            assert!(lower.contains(b), "LAYERS lets `{module}` use `{b}`, which is not below it");
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    assert_eq!(crate_paths("use crate::{api::ApiError, gateway};"), ["api", "gateway"]);
    assert_eq!(crate_paths("let f = crate::http::forward::Forwarder::hops(h);"), ["http"]);
    assert_eq!(crate_paths("fn f() -> Result<(), crate::NodeError>"), ["NodeError"]);
}
