//! What changes between two versions of a persona's spec, field by field, and which changes
//! need a new process: for `persona apply` and for a node's config reload (SIGHUP).
//!
//! The restart rule is the reconciler's (see [`crate::reconcile::same_spec`]): the budget is
//! changed on the running process, everything else replaces it. Per field:
//!
//! | field | restart | why |
//! | --- | --- | --- |
//! | `budget.*` (priority, timeout, tokens, concurrency, memory, throttle, allowed_to_run) | no | the gateway and the supervisor apply a budget at run time |
//! | `command`, `args`, `env.*`, `working_dir` | yes | they are how the process was started |
//! | `limits.*` | yes | the cgroup and rlimits are set when the process is spawned |
//! | `restart`, `health_path`, `kind`, `hibernate_after_idle_s` | yes | the supervisor takes them when it registers the persona |
//! | `importance`, `model`, `labels.*`, `requests.*`, `placement.*` | yes | the same registration carries them (a later change could apply them in place) |
//! | `sleep.*`, `metrics_path` | yes | the supervisor takes them when it registers the persona |
//! | `budget.min.*`, `budget.max.*`, `maintenance.*` | yes | only the brain reads them, but the node keeps the spec it started the process with and takes a new one with a new process (a later change could apply them in place) |
//! | `adapter.*` | yes | an adapter persona has no process: it is registered anew; a changed `path` restarts its base to load it |

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::PersonaSpec;

/// What a diff shows of an env value: env is where a persona's own secrets (API keys) live.
pub const REDACTED: &str = "<redacted>";

/// One field that differs between two specs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path: `args`, `env.API_KEY`, `budget.inference_queue_priority`.
    pub field: String,
    /// The value before, as compact JSON; None: not set (or no spec before).
    pub old: Option<String>,
    /// The value after, as compact JSON; None: no longer set.
    pub new: Option<String>,
    /// Whether this change replaces the running process.
    pub restart: bool,
}

/// Does a change of this field (a dotted path) need a new process?
pub fn needs_restart(field: &str) -> bool {
    // the envelope is written inside the budget table but is not the budget in force
    let envelope = ["budget.min", "budget.max"].iter().any(|e| field == *e || field.starts_with(&format!("{e}.")));
    envelope || (field != "budget" && !field.starts_with("budget."))
}

/// The fields that differ from `old` to `new` (every set field of `new` when there is no
/// `old`), sorted by field name. Env values are shown as [`REDACTED`].
pub fn diff(old: Option<&PersonaSpec>, new: &PersonaSpec) -> Vec<FieldChange> {
    // both serialise as objects: a failure here would be a bug in the spec's own derive
    let old = old.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)).unwrap_or(Value::Null);
    let new = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk("", &old, &new, &mut out);
    out
}

/// True when the only changes are ones that keep the process.
pub fn keeps_process(changes: &[FieldChange]) -> bool {
    !changes.iter().any(|c| c.restart)
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<FieldChange>) {
    if old == new {
        return;
    }
    let recurse = |v: &Value| matches!(v, Value::Object(_) | Value::Null);
    match (old, new) {
        (Value::Object(_), _) | (_, Value::Object(_)) if recurse(old) && recurse(new) => {
            let empty = serde_json::Map::new();
            let o = old.as_object().unwrap_or(&empty);
            let n = new.as_object().unwrap_or(&empty);
            // keys of the new value, then the ones only the old value had
            let keys = n.keys().chain(o.keys().filter(|k| !n.contains_key(*k)));
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&sub, o.get(k).unwrap_or(&Value::Null), n.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ => {
            let secret = path.starts_with("env.");
            let show = |v: &Value| match v {
                Value::Null => None,
                _ if secret => Some(REDACTED.to_owned()),
                v => Some(v.to_string()),
            };
            out.push(FieldChange {
                field: path.to_owned(),
                old: show(old),
                new: show(new),
                restart: needs_restart(path),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(c: &[FieldChange]) -> Vec<&str> {
        c.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn equal_specs_differ_in_nothing() {
        let s = PersonaSpec::new("p", "srv");
        assert!(diff(Some(&s), &s).is_empty());
    }

    #[test]
    fn budget_changes_keep_the_process_and_the_rest_replace_it() {
        let old = PersonaSpec::new("p", "srv");
        let mut new = old.clone();
        new.budget.inference_queue_priority = 90;
        let c = diff(Some(&old), &new);
        assert_eq!(fields(&c), ["budget.inference_queue_priority"]);
        assert_eq!((c[0].old.as_deref(), c[0].new.as_deref()), (Some("50"), Some("90")));
        assert!(keeps_process(&c));

        new.args = vec!["--port".into(), "1".into()];
        new.limits.memory_max_mb = Some(512);
        let c = diff(Some(&old), &new);
        assert_eq!(fields(&c), ["args", "budget.inference_queue_priority", "limits.memory_max_mb"]);
        assert_eq!(c[2].old, None, "an unset limit is shown as not set");
        assert!(!keeps_process(&c));
    }

    #[test]
    fn map_entries_are_their_own_fields_and_env_values_stay_hidden() {
        let mut old = PersonaSpec::new("p", "srv");
        old.env.insert("KEY".into(), "secret-1".into());
        old.env.insert("GONE".into(), "x".into());
        let mut new = old.clone();
        new.env.insert("KEY".into(), "secret-2".into());
        new.env.remove("GONE");
        new.labels.insert("tier".into(), "gold".into());
        let c = diff(Some(&old), &new);
        assert_eq!(fields(&c), ["env.KEY", "env.GONE", "labels.tier"]);
        assert_eq!(c[0].new.as_deref(), Some(REDACTED));
        assert_eq!((c[1].old.as_deref(), c[1].new.as_deref()), (Some(REDACTED), None));
        assert!(c.iter().all(|c| !c.old.iter().chain(&c.new).any(|v| v.contains("secret"))));
    }

    #[test]
    fn without_an_old_spec_every_set_field_is_new() {
        let c = diff(None, &PersonaSpec::new("p", "srv"));
        assert!(c.iter().all(|c| c.old.is_none()));
        assert!(fields(&c).contains(&"command") && fields(&c).contains(&"budget.allowed_to_run"));
    }

    #[test]
    fn the_rule_is_the_reconcilers() {
        // a change the diff calls process-keeping is one the reconciler applies in place
        let old = PersonaSpec::new("p", "srv");
        let mut new = old.clone();
        new.budget.throttle_multiplier = 0.5;
        assert!(crate::reconcile::same_spec(&old, &new) && keeps_process(&diff(Some(&old), &new)));
        new.model = Some("m".into());
        assert!(!crate::reconcile::same_spec(&old, &new) && !keeps_process(&diff(Some(&old), &new)));
        // the envelope is written in the budget table, but is not the budget in force
        for change in [
            |s: &mut PersonaSpec| s.envelope.max.inference_queue_priority = Some(90),
            |s: &mut PersonaSpec| s.envelope.min.throttle_multiplier = Some(0.5),
            |s: &mut PersonaSpec| s.maintenance.restart_after_s = Some(3600),
        ] {
            let mut new = old.clone();
            change(&mut new);
            let d = diff(Some(&old), &new);
            assert_eq!(d.len(), 1, "{d:?}");
            assert!(!crate::reconcile::same_spec(&old, &new) && !keeps_process(&d), "{d:?}");
        }
        // budget fields whose names start like the envelope's tables are the budget's own
        assert!(!needs_restart("budget.max_memory_mb") && !needs_restart("budget.max_concurrent_inferences"));
        assert!(needs_restart("budget.max") && needs_restart("budget.min.tokens_per_response"));
    }
}
