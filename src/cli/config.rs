//! `mindmesh config check FILE…`: validate node configs and persona specs without starting
//! anything — every problem of every file, each with its file and field, and an exit status
//! for scripts and CI (0: all valid, 1: a problem somewhere).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use mindmesh_core::config::NodeConfig;
use mindmesh_core::spec::parse_toml;
use mindmesh_core::{CoreError, PersonaSpec};
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check node configs and persona specs: every problem is listed with its file and field
    /// path; exit status 0 when every file is valid, 1 otherwise.
    Check {
        /// Node configs (TOML) and persona specs (TOML, or JSON by the .json extension).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// What the files are; by default a TOML file with a top-level `name` or `command` is
        /// a persona spec, any other a node config.
        #[arg(long, value_enum, default_value_t = Kind::Auto)]
        kind: Kind,
        /// One JSON array with a record per file.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Tell by the file's contents.
    Auto,
    /// A node config (`mindmesh node start --config`).
    Node,
    /// A persona spec (`mindmesh persona add` / `apply`).
    Persona,
}

/// What was found in one file.
#[derive(Debug, Serialize)]
struct Checked {
    file: String,
    kind: Kind,
    ok: bool,
    /// Personas a node config declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    personas: Option<usize>,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    /// Dotted path of the field (`persona[1].budget.max_memory_mb`); empty for the whole file
    /// (unreadable, or a syntax error whose message has the line).
    field: String,
    message: String,
}

impl From<CoreError> for Problem {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { field, message } => Problem { field, message },
            other => Problem { field: String::new(), message: other.to_string() },
        }
    }
}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { files, kind, json } => {
            let checked: Vec<Checked> = files.iter().map(|f| check(f, kind)).collect();
            if json {
                super::table::json(&checked)?;
            } else {
                print(&checked);
            }
            let ok = checked.iter().all(|c| c.ok);
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// Every problem of a node config file, as (field, message): for a node that refuses a
/// reload (SIGHUP) and logs why.
pub(super) fn node_config_problems(path: &Path) -> Vec<(String, String)> {
    check(path, Kind::Node).problems.into_iter().map(|p| (p.field, p.message)).collect()
}

fn check(path: &Path, kind: Kind) -> Checked {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let problems = vec![Problem { field: String::new(), message: format!("cannot read: {e}") }];
            return Checked { file, kind, ok: false, personas: None, problems };
        }
    };
    let kind = match kind {
        Kind::Auto => guess(&file, &text),
        k => k,
    };
    let (personas, problems) = match kind {
        Kind::Persona => (None, PersonaSpec::check_file_contents(&file, &text).err().unwrap_or_default()),
        _ => match parse_toml::<NodeConfig>(&text) {
            Ok(mut cfg) => {
                // as `node start` takes it: a token in the environment counts (systemd units
                // and containers pass it so, never in the file)
                if cfg.api.token.is_none() {
                    cfg.api.token = std::env::var("MINDMESH_API_TOKEN").ok();
                }
                let mut problems = cfg.problems();
                for p in &mut problems {
                    if let CoreError::Invalid { field, message } = p
                        && field == "api.token"
                        && cfg.api.token.is_none()
                    {
                        message.push_str(" (in the file, or MINDMESH_API_TOKEN in the node's environment)");
                    }
                }
                (Some(cfg.personas.len()), problems)
            }
            Err(e) => (None, vec![e]),
        },
    };
    let problems: Vec<Problem> = problems.into_iter().map(Problem::from).collect();
    let personas = personas.filter(|_| problems.is_empty());
    Checked { file, kind, ok: problems.is_empty(), personas, problems }
}

/// A JSON file is a persona spec (node configs are TOML); a TOML document with a top-level
/// `name` or `command` is one too; anything else (an empty file included) is a node config.
fn guess(file: &str, text: &str) -> Kind {
    if file.ends_with(".json") {
        return Kind::Persona;
    }
    match text.parse::<toml::Table>() {
        Ok(t) if t.contains_key("name") || t.contains_key("command") => Kind::Persona,
        Ok(_) => Kind::Node,
        // unparseable: judge by the lines, so the syntax error is reported against the right kind
        Err(_) => {
            let top_level_key = |k: &str| {
                text.lines()
                    .map(str::trim_start)
                    .take_while(|l| !l.starts_with('['))
                    .any(|l| l.strip_prefix(k).is_some_and(|r| r.trim_start().starts_with('=')))
            };
            if top_level_key("name") || top_level_key("command") { Kind::Persona } else { Kind::Node }
        }
    }
}

fn print(checked: &[Checked]) {
    for c in checked {
        let what = match (c.kind, c.personas) {
            (Kind::Persona, _) => "persona spec".to_owned(),
            (_, Some(1)) => "node config, 1 persona".to_owned(),
            (_, Some(n)) => format!("node config, {n} personas"),
            (_, None) => "node config".to_owned(),
        };
        if c.ok {
            println!("{}: ok ({what})", c.file);
            continue;
        }
        for p in &c.problems {
            if p.field.is_empty() {
                println!("{}: {}", c.file, p.message.trim_end().replace('\n', "\n    "));
            } else {
                println!("{}: {}: {}", c.file, p.field, p.message);
            }
        }
    }
    let bad: Vec<&Checked> = checked.iter().filter(|c| !c.ok).collect();
    if !bad.is_empty() {
        let n: usize = bad.iter().map(|c| c.problems.len()).sum();
        eprintln!("{} of {} file(s) invalid ({n} problem(s))", bad.len(), checked.len());
    }
}
