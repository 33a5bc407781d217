//! The command line as a whole: help everywhere, the node's ranges, `--api` only where used.

use clap::{CommandFactory, Parser};

use super::Cli;

/// Every command below `cmd` (itself included), with its path of names.
fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
    out.push((path.to_owned(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        walk(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

fn commands() -> Vec<(String, clap::Command)> {
    let mut root = Cli::command();
    root.build();
    let mut out = Vec::new();
    walk(&root, "mindmesh", &mut out);
    out
}

#[test]
fn every_command_and_flag_has_help() {
    let mut missing = Vec::new();
    for (path, cmd) in commands() {
        if path != "mindmesh" && cmd.get_about().is_none() && !path.split(' ').any(|w| w == "help") {
            missing.push(format!("`{path}` has no about"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("`{path}`: argument {id} has no help"));
            }
            // a choice among named values says what each means (true/false say it themselves)
            let values = arg.get_possible_values();
            // (and so do the shells clap_complete names)
            let boolean = values.iter().all(|v| matches!(v.get_name(), "true" | "false"));
            let shells = path == "mindmesh completions";
            for v in values.iter().filter(|_| !boolean && !shells) {
                if !v.is_hide_set() && v.get_help().is_none() {
                    missing.push(format!("`{path}`: value {} of {id} has no help", v.get_name()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "help missing:\n{}", missing.join("\n"));
}

#[test]
fn the_node_api_flags_are_only_where_a_node_is_asked() {
    let talks_to_a_node = |path: &str| {
        [
            "mindmesh persona",
            "mindmesh status",
            "mindmesh top",
            "mindmesh events",
            "mindmesh decisions",
            "mindmesh logs",
            "mindmesh node leave",
            "mindmesh node drain",
            "mindmesh brain snapshot",
            "mindmesh demo traffic",
        ]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p} ")))
    };
    for (path, cmd) in commands() {
        if path == "mindmesh" || path.split(' ').any(|w| w == "help") {
            continue;
        }
        let visible = |id: &str| cmd.get_arguments().any(|a| a.get_id() == id && !a.is_hide_set());
        assert_eq!(visible("api"), talks_to_a_node(&path), "`{path}`: --api");
        assert_eq!(visible("token"), talks_to_a_node(&path) || path == "mindmesh node start", "`{path}`: --token");
    }
    let root = Cli::command();
    assert!(root.get_arguments().all(|a| !matches!(a.get_id().as_str(), "api" | "token") || a.is_hide_set()));
}

#[test]
fn the_cli_takes_the_nodes_ranges() {
    use mindmesh_core::BudgetPatch;
    use mindmesh_core::budget::{Budget, MAX_QUEUE_PRIORITY, MAX_THROTTLE_MULTIPLIER};

    use super::persona::{multiplier, priority};

    // every priority an operator could type, the CLI accepts exactly what the node accepts
    for v in -300i64..=300 {
        let cli = priority(&v.to_string());
        let node = u8::try_from(v).ok().map(|p| Budget { inference_queue_priority: p, ..Budget::default() }.validate());
        assert_eq!(cli.is_ok(), node.is_some_and(|r| r.is_ok()), "priority {v}: cli {cli:?}");
    }
    assert!(priority(&MAX_QUEUE_PRIORITY.to_string()).is_ok());
    let over = (u16::from(MAX_QUEUE_PRIORITY) + 1).to_string();
    let node_says =
        BudgetPatch { inference_queue_priority: Some(MAX_QUEUE_PRIORITY + 1), ..Default::default() }.check();
    assert_eq!(priority(&over).unwrap_err(), node_says.unwrap_err().to_string(), "the node's own words");

    let edges = [
        -1.0,
        0.0,
        1e-9,
        0.5,
        1.0,
        MAX_THROTTLE_MULTIPLIER,
        MAX_THROTTLE_MULTIPLIER + 1e-9,
        11.0,
        f64::INFINITY,
        f64::NAN,
    ];
    for m in edges {
        let node = Budget { throttle_multiplier: m, ..Budget::default() }.validate();
        let cli = multiplier(&m.to_string());
        assert_eq!(cli.is_ok(), node.is_ok(), "multiplier {m}: cli {cli:?}, node {node:?}");
        if let Err(e) = node {
            assert_eq!(cli.unwrap_err(), e.to_string(), "multiplier {m}: the node's own words");
        }
    }

    // the help says the range the node enforces
    let cmd = Cli::command();
    let budget = cmd.find_subcommand("persona").and_then(|p| p.find_subcommand("budget")).expect("persona budget");
    let help =
        |id: &str| budget.get_arguments().find(|a| a.get_id() == id).and_then(|a| a.get_help()).map(|h| h.to_string());
    assert!(help("priority").unwrap().contains(&format!("0–{MAX_QUEUE_PRIORITY}")), "{:?}", help("priority"));
    assert!(
        help("multiplier").unwrap().contains(&format!("at most {MAX_THROTTLE_MULTIPLIER}")),
        "{:?}",
        help("multiplier")
    );
}

#[test]
fn negative_numbers_are_values_refused_in_the_nodes_words() {
    for args in [
        vec!["mindmesh", "persona", "throttle", "x", "--multiplier", "-1"],
        vec!["mindmesh", "persona", "budget", "x", "--multiplier", "-1"],
    ] {
        let e = Cli::try_parse_from(&args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{args:?}: {e}");
        assert!(e.to_string().contains("throttle_multiplier: must be > 0 and <= 10, got -1"), "{e}");
    }
    let e = Cli::try_parse_from(["mindmesh", "persona", "budget", "x", "--max-tokens", "-3"]).unwrap_err();
    assert!(e.to_string().contains("tokens_per_response: must be at least 1"), "{e}");
    let e = Cli::try_parse_from(["mindmesh", "persona", "budget", "x", "--priority", "-1"]).unwrap_err();
    assert!(e.to_string().contains("must be within 0..=100, got -1"), "{e}");
}

#[test]
fn durations_carry_units_and_old_flags_still_parse() {
    let ok = |args: &[&str]| Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    ok(&["mindmesh", "persona", "restart", "x", "--timeout", "45s"]);
    ok(&["mindmesh", "persona", "restart", "x", "--timeout-ms", "45000"]);
    ok(&["mindmesh", "persona", "migrate", "x", "--to", "b", "--timeout", "5m"]);
    ok(&["mindmesh", "persona", "migrate", "x", "--to", "b", "--timeout-s", "300"]);
    ok(&["mindmesh", "node", "drain", "b", "--timeout", "1h"]);
    ok(&["mindmesh", "node", "drain", "b", "--timeout-s", "90"]);
    ok(&["mindmesh", "persona", "budget", "x", "--timeout", "45s"]);
    ok(&["mindmesh", "persona", "budget", "x", "--timeout-ms", "45000"]);
    for bad in [
        vec!["mindmesh", "persona", "restart", "x", "--timeout", "45"],
        vec!["mindmesh", "persona", "restart", "x", "--timeout", "10m"],
        vec!["mindmesh", "persona", "restart", "x", "--timeout", "45s", "--timeout-ms", "1"],
        vec!["mindmesh", "persona", "budget", "x", "--timeout", "0s"],
    ] {
        assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} parsed");
    }
    // the old spellings are hidden
    let cmd = Cli::command();
    let restart = cmd.find_subcommand("persona").and_then(|p| p.find_subcommand("restart")).unwrap();
    assert!(restart.get_arguments().any(|a| a.get_id() == "timeout_ms" && a.is_hide_set()));
}

#[test]
fn the_api_flag_before_the_command_still_works_where_it_is_used() {
    Cli::try_parse_from(["mindmesh", "--api", "http://x:1", "persona", "list"]).unwrap();
    let cli = Cli::try_parse_from(["mindmesh", "--api", "http://x:1", "mesh", "init"]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let e = rt.block_on(super::run(cli)).unwrap_err();
    assert!(e.to_string().contains("--api"), "{e}");
}
