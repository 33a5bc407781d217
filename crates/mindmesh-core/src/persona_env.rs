//! The environment a persona process starts with: nothing of the node's but a short allowlist.
//!
//! A persona is any program an operator (or anyone holding an `admin` token) names, and its
//! `/proc/<pid>/environ` is readable by every process of the same user. The node's own
//! environment holds its secrets — `MINDMESH_API_TOKEN` (mesh-wide admin), `MINDMESH_LLM_API_KEY`,
//! and whatever the service manager put there — so a persona never inherits it wholesale. It
//! gets, in this order (later wins):
//! 1. the node's variables named by `[supervisor] env_passthrough` (default
//!    [`DEFAULT_PASSTHROUGH`]: what programs need to find binaries, a home, a locale, a time
//!    zone and a temporary directory), never one in the node's own `MINDMESH_` namespace;
//! 2. the spec's `env`;
//! 3. the contract ([`CONTRACT`]): `MINDMESH_PORT`, `MINDMESH_PERSONA_ID`,
//!    `MINDMESH_STATE_FILE` (only when there is state to restore), `MINDMESH_EXE`, the
//!    node's instance marker and, for a model server that is the base of adapter personas,
//!    `MINDMESH_LORA_ADAPTERS`.

use std::collections::BTreeMap;

use crate::error::{CoreError, Result};

/// Where the persona must serve.
pub const ENV_PORT: &str = "MINDMESH_PORT";
/// The persona's name.
pub const ENV_PERSONA_ID: &str = "MINDMESH_PERSONA_ID";
/// State to restore, when there is some.
pub const ENV_STATE_FILE: &str = "MINDMESH_STATE_FILE";
/// The node's own executable, so a wrapper can run `$MINDMESH_EXE demo-persona`.
pub const ENV_EXE: &str = "MINDMESH_EXE";
/// Marks every process a node starts, so a restarted node (and its fence guard) finds what it
/// left behind even if it died before recording the PID.
pub const ENV_NODE_INSTANCE: &str = "MINDMESH_NODE_INSTANCE";

/// The adapters a base persona's server must load at start, as a JSON array in id order:
/// `[{"id": 0, "name": "pirate", "path": "/m/pirate.gguf", "scale": 1.0}]` (set only for a
/// persona that has adapter personas). llama.cpp numbers its `--lora` adapters in the order
/// given, and the gateway selects one per request by that id.
pub const ENV_LORA_ADAPTERS: &str = "MINDMESH_LORA_ADAPTERS";

/// Variables the node sets for every persona; a spec may not set them.
pub const CONTRACT: [&str; 6] =
    [ENV_PORT, ENV_PERSONA_ID, ENV_STATE_FILE, ENV_EXE, ENV_NODE_INSTANCE, ENV_LORA_ADAPTERS];

/// The node's namespace: its token, its LLM key and its settings live here, so no
/// passthrough pattern may reach into it.
pub const NODE_NAMESPACE: &str = "MINDMESH_";

/// What a persona inherits from the node unless the config says otherwise. A trailing `*`
/// matches any suffix.
pub const DEFAULT_PASSTHROUGH: [&str; 10] =
    ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM"];

/// Most passthrough patterns accepted.
pub const MAX_PASSTHROUGH: usize = 64;
/// Longest passthrough pattern.
const MAX_PATTERN_LEN: usize = 128;

/// Does `pattern` (a name, or a prefix ending in `*`) match `name`?
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Check the `env_passthrough` list: names of `[A-Za-z0-9_]` with an optional trailing `*`,
/// and none that could let a `MINDMESH_` variable through (`MINDMESH_API_TOKEN`, `M*`, `*`).
pub fn validate_passthrough(field: &str, patterns: &[String]) -> Result<()> {
    if patterns.len() > MAX_PASSTHROUGH {
        return Err(CoreError::invalid(field, format!("at most {MAX_PASSTHROUGH} patterns")));
    }
    for (i, p) in patterns.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let stem = p.strip_suffix('*').unwrap_or(p);
        if stem.is_empty() || p.len() > MAX_PATTERN_LEN || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(CoreError::invalid(
                f,
                format!("{p:?}: a variable name of A-Z, a-z, 0-9 and '_', optionally ending in '*'"),
            ));
        }
        // reaches the namespace if it names something inside it, or is a prefix of it
        let reaches_node = stem.starts_with(NODE_NAMESPACE) || (p.ends_with('*') && NODE_NAMESPACE.starts_with(stem));
        if reaches_node {
            return Err(CoreError::invalid(
                f,
                format!(
                    "{p:?} would pass the node's own {NODE_NAMESPACE}* variables (its API token, its LLM key) to \
                     personas; set what a persona needs in its spec's env instead"
                ),
            ));
        }
    }
    Ok(())
}

/// The node's variables a persona inherits: those matching a pattern, never a `MINDMESH_` one
/// (checked again here so that a list that skipped validation still cannot leak a secret).
pub fn inherited<I, K, V>(node_env: I, patterns: &[String]) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    node_env
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .filter(|(k, _)| !k.starts_with(NODE_NAMESPACE) && patterns.iter().any(|p| pattern_matches(p, k)))
        .collect()
}

/// The whole environment of one persona process: `inherited`, then the spec's `env`, then the
/// contract variables (which always win).
pub fn compose(
    inherited: &BTreeMap<String, String>,
    spec_env: &BTreeMap<String, String>,
    contract: impl IntoIterator<Item = (&'static str, String)>,
) -> BTreeMap<String, String> {
    let mut env = inherited.clone();
    env.extend(spec_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(contract.into_iter().map(|(k, v)| (k.to_owned(), v)));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_PASSTHROUGH.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_the_allowlist_passes_and_never_the_node_namespace() {
        let node = [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/op"),
            ("LC_ALL", "C.UTF-8"),
            ("MINDMESH_API_TOKEN", "secret-token-0123456789"),
            ("MINDMESH_LLM_API_KEY", "sk-secret"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("RUST_LOG", "debug"),
        ];
        let got = inherited(node, &defaults());
        assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), ["HOME", "LC_ALL", "PATH"]);
        // even a list that slipped past validation cannot pass the node's secrets
        let got = inherited(node, &["*".to_owned()]);
        assert!(got.keys().all(|k| !k.starts_with("MINDMESH_")), "{got:?}");
        assert!(got.contains_key("RUST_LOG"));
    }

    #[test]
    fn spec_env_overrides_inherited_and_the_contract_overrides_both() {
        let inh = inherited([("PATH", "/usr/bin"), ("TZ", "UTC")], &defaults());
        let spec: BTreeMap<String, String> =
            [("TZ".to_owned(), "Europe/Paris".to_owned()), ("MODEL".to_owned(), "m".to_owned())].into();
        let env = compose(&inh, &spec, [(ENV_PORT, "4242".to_owned())]);
        assert_eq!(env["TZ"], "Europe/Paris");
        assert_eq!(env["PATH"], "/usr/bin");
        assert_eq!(env["MODEL"], "m");
        assert_eq!(env[ENV_PORT], "4242");
    }

    #[test]
    fn patterns_reaching_the_node_namespace_are_refused() {
        validate_passthrough("p", &defaults()).unwrap();
        validate_passthrough("p", &["HF_*".to_owned(), "CUDA_VISIBLE_DEVICES".to_owned()]).unwrap();
        for bad in ["MINDMESH_API_TOKEN", "MINDMESH_*", "MIND*", "M*", "*", "", "A B", "X=Y", "PATH**"] {
            let e = validate_passthrough("p", &["PATH".to_owned(), bad.to_owned()]).unwrap_err();
            assert_eq!(e.field(), Some("p[1]"), "{bad:?} accepted");
        }
        let many: Vec<String> = (0..=MAX_PASSTHROUGH).map(|i| format!("V{i}")).collect();
        assert_eq!(validate_passthrough("p", &many).unwrap_err().field(), Some("p"));
    }
}
