//! Properties of persona spec validation: any spec that validates survives TOML, JSON and the
//! wire unchanged; arbitrary text never panics a parser; numbers out of range are refused
//! with the field named.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mindmesh_core::budget::{Budget, BudgetBound, BudgetEnvelope, MAX_THROTTLE_MULTIPLIER};
use mindmesh_core::config::NodeConfig;
use mindmesh_core::fuzzing::check_spec_round_trips;
use mindmesh_core::spec::{
    Importance, Limits, Maintenance, PersonaKind, PersonaSpec, Placement, Requests, RestartPolicy,
};
use proptest::prelude::*;

/// Integers as operators write them, and the extremes.
fn int() -> impl Strategy<Value = u64> {
    prop_oneof![12 => 1u64..100_000, 1 => Just(0u64), 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

/// Mostly what validates, sometimes not.
fn small() -> impl Strategy<Value = u32> {
    prop_oneof![12 => 1u32..10_000, 1 => any::<u32>()]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![8 => 0.01f64..10.0, 2 => 0.0f64..1000.0, 1 => any::<f64>(), 1 => Just(f64::NAN), 1 => Just(-0.0)]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![6 => "[a-zA-Z0-9_ .${}/-]{0,16}", 1 => "\\PC{0,40}", 1 => ".{0,8}"]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(string(), string(), 0..4)
}

fn budget() -> impl Strategy<Value = Budget> {
    (int(), small(), prop_oneof![12 => 0u8..=100, 1 => any::<u8>()], int(), small(), float(), any::<bool>()).prop_map(
        |(t, tokens, priority, mem, concurrent, throttle, allowed)| Budget {
            max_response_time_ms: t,
            tokens_per_response: tokens,
            inference_queue_priority: priority,
            max_memory_mb: mem,
            max_concurrent_inferences: concurrent,
            throttle_multiplier: throttle,
            allowed_to_run: allowed,
        },
    )
}

/// An envelope side: mostly open, sometimes a bound (valid or not against the budget).
fn bound() -> impl Strategy<Value = BudgetBound> {
    // mostly open: each set bound must also sit on the right side of the budget to validate
    (
        prop::option::weighted(0.1, int()),
        prop::option::weighted(0.1, small()),
        prop::option::weighted(0.1, prop_oneof![12 => 0u8..=100, 1 => any::<u8>()]),
        prop::option::weighted(0.1, small()),
        prop::option::weighted(0.1, float()),
    )
        .prop_map(|(t, tokens, priority, concurrent, throttle)| BudgetBound {
            max_response_time_ms: t,
            tokens_per_response: tokens,
            inference_queue_priority: priority,
            max_concurrent_inferences: concurrent,
            throttle_multiplier: throttle,
        })
}

fn spec() -> impl Strategy<Value = PersonaSpec> {
    let head = (
        prop_oneof![6 => "[a-z0-9][a-z0-9._-]{0,20}", 1 => string()],
        prop_oneof![6 => "[a-z/][a-z0-9/_.-]{0,20}", 1 => string()],
        prop::collection::vec(string(), 0..4),
        prop::collection::btree_map(prop_oneof![6 => "[A-Z][A-Z0-9_]{0,12}", 1 => string()], string(), 0..4),
        prop::option::of(string().prop_map(PathBuf::from)),
        prop::sample::select(vec![Importance::System, Importance::UserFacing, Importance::Background]),
        prop::sample::select(vec![PersonaKind::Api, PersonaKind::Local]),
        prop::option::of(string()),
        prop::sample::select(vec![RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never]),
        prop::option::of(prop_oneof![6 => "/[a-z]{0,8}", 1 => string()]),
    );
    let tail = (
        (prop::option::of(int()), prop::option::of(float())),
        (int(), float()),
        budget(),
        labels(),
        (labels(), labels()),
        prop::option::of(int()),
        ((bound(), bound()), (prop::option::weighted(0.3, int()), prop::option::weighted(0.3, int()))),
    );
    (head, tail).prop_map(
        |(
            (name, command, args, env, working_dir, importance, kind, model, restart, health_path),
            (
                (memory_max_mb, cpu_max_percent),
                (memory_mb, cpu_percent),
                budget,
                labels,
                (require, prefer),
                hibernate,
                ((min, max), (restart_after_inferences, restart_after_s)),
            ),
        )| PersonaSpec {
            name,
            command,
            args,
            env,
            working_dir,
            importance,
            kind,
            model,
            restart,
            health_path,
            limits: Limits { memory_max_mb, cpu_max_percent },
            requests: Requests { memory_mb, cpu_percent },
            budget,
            labels,
            placement: Placement { require, prefer },
            hibernate_after_idle_s: hibernate,
            adapter: None,
            sleep: None,
            metrics_path: None,
            envelope: BudgetEnvelope { min, max },
            maintenance: Maintenance { restart_after_inferences, restart_after_s },
        },
    )
}

const VALID_TOML: &str = r#"name = "chat-1"
command = "llama-server"
args = ["--port", "${MINDMESH_PORT}"]
health_path = "/health"
hibernate_after_idle_s = 900
[limits]
memory_max_mb = 4096
[budget]
inference_queue_priority = 70
throttle_multiplier = 1.0
"#;

fn field_of(spec: &PersonaSpec) -> Option<String> {
    spec.validate().err().and_then(|e| e.field().map(str::to_owned))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_global_rejects: 20_000, ..ProptestConfig::default() })]

    /// Whatever validates round-trips through TOML, JSON and postcard unchanged, and validates
    /// again after each.
    #[test]
    fn a_valid_spec_round_trips(spec in spec()) {
        prop_assume!(spec.validate().is_ok());
        check_spec_round_trips(&spec);
    }

    /// Arbitrary text never panics the spec or config parsers.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = PersonaSpec::from_toml_str(&text);
        let _ = PersonaSpec::from_json_str(&text);
        let _ = NodeConfig::from_toml_str(&text);
    }

    /// A valid spec with one line of noise spliced in anywhere: parsed or refused, no panic;
    /// what still parses is valid.
    #[test]
    fn a_spliced_spec_is_parsed_or_refused(at in 0usize..VALID_TOML.len(), noise in prop_oneof!["\\PC{0,40}", "[a-z_.]{1,24} = -?[0-9]{1,25}(\\.[0-9]+)?\n"]) {
        let mut at = at;
        while !VALID_TOML.is_char_boundary(at) {
            at -= 1;
        }
        let text = format!("{}{}{}", &VALID_TOML[..at], noise, &VALID_TOML[at..]);
        if let Ok(spec) = PersonaSpec::from_toml_str(&text) {
            prop_assert!(spec.validate().is_ok());
        }
    }

    /// Validation holds every number inside its documented range: a spec that validates has
    /// them there, and pushing one out names that field.
    #[test]
    fn numbers_out_of_range_are_refused_with_their_field(spec in spec()) {
        if spec.validate().is_ok() {
            let b = &spec.budget;
            prop_assert!(b.inference_queue_priority <= 100);
            prop_assert!(b.throttle_multiplier > 0.0 && b.throttle_multiplier <= MAX_THROTTLE_MULTIPLIER);
            prop_assert!(b.max_response_time_ms > 0 && b.tokens_per_response > 0 && b.max_memory_mb > 0);
            prop_assert!(b.max_concurrent_inferences > 0);
            prop_assert!(spec.limits.memory_max_mb != Some(0));
            prop_assert!(spec.limits.cpu_max_percent.is_none_or(|c| c.is_finite() && c > 0.0));
            prop_assert!(spec.requests.cpu_percent.is_finite() && spec.requests.cpu_percent >= 0.0);
            prop_assert!(spec.hibernate_after_idle_s != Some(0));

            let out = |f: &dyn Fn(&mut PersonaSpec)| {
                let mut s = spec.clone();
                f(&mut s);
                field_of(&s)
            };
            prop_assert_eq!(out(&|s| s.budget.inference_queue_priority = 101), Some("budget.inference_queue_priority".into()));
            prop_assert_eq!(out(&|s| s.budget.throttle_multiplier = f64::NAN), Some("budget.throttle_multiplier".into()));
            prop_assert_eq!(out(&|s| s.budget.throttle_multiplier = MAX_THROTTLE_MULTIPLIER * 2.0), Some("budget.throttle_multiplier".into()));
            prop_assert_eq!(out(&|s| s.budget.max_concurrent_inferences = 0), Some("budget.max_concurrent_inferences".into()));
            prop_assert_eq!(out(&|s| s.limits.memory_max_mb = Some(0)), Some("limits.memory_max_mb".into()));
            prop_assert_eq!(out(&|s| s.limits.cpu_max_percent = Some(f64::INFINITY)), Some("limits.cpu_max_percent".into()));
            prop_assert_eq!(out(&|s| s.requests.cpu_percent = -1.0), Some("requests.cpu_percent".into()));
            prop_assert_eq!(out(&|s| s.hibernate_after_idle_s = Some(0)), Some("hibernate_after_idle_s".into()));
        }
    }
}
