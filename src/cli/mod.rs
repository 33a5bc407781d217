//! Subcommands, one module each.
//!
//! Conventions every command keeps (tested in `tests` below and in `tests/cli.rs`): every
//! command and flag has help; durations carry units (`--timeout 45s`, see [`duration`]);
//! ranges are the node's own (taken from `mindmesh-core`); tables have headers and show local
//! dates with how long ago, while `--json` keeps epoch milliseconds; `--api`/`--token` appear
//! only on the commands that talk to a node.

mod bench;
mod brain;
pub mod client;
mod config;
mod decisions;
mod demo;
mod docs;
pub mod duration;
mod events;
mod files;
mod log_args;
mod logs;
mod mesh;
mod moves;
mod node;
mod persona;
mod status;
mod store;
mod table;
mod top;
mod when;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mindmesh", version, about = "A mesh of peer supervisors for AI persona processes")]
pub struct Cli {
    /// Where `--api` used to go (before the command): still accepted for the commands that talk
    /// to a node, so older scripts keep working; hidden, as it belongs after the command.
    #[arg(long, hide = true)]
    api: Option<String>,
    /// As the hidden `--api` above, for `--token`.
    #[arg(long, hide = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node, take it out of its mesh, drain it.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Add, inspect and act on personas.
    Persona(persona::PersonaArgs),
    /// The node and its mesh at a glance: members, leader, personas, the brain's view.
    Status(status::StatusArgs),
    /// A live view of the mesh: nodes and every persona sorted by CPU, memory or latency
    /// (`c`, `m`, `l`), phase changes and decisions as they happen; `q` quits.
    Top(top::TopArgs),
    /// The event log of the node.
    Events(events::EventsArgs),
    /// A persona's output (stdout and stderr), from any node of the mesh.
    Logs(logs::LogsArgs),
    /// The mesh's decision log: what the brain (or an operator) decided, why, and whether the
    /// owning node carried it out.
    Decisions(decisions::DecisionsArgs),
    /// Check node configs and persona specs without starting anything.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// The mesh itself: its key.
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
    /// A node's store file: verify it and count its rows.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// The deterministic simulation of a mesh (seeded faults, invariants checked each step).
    Sim(mindmesh_sim::cli::SimArgs),
    /// The brain: evaluate analysts on decision scenarios, replay a live moment.
    #[command(subcommand)]
    Brain(brain::BrainCommand),
    /// The demo's helpers: `demo traffic` sends the requests the demo personas need.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Run the demo persona: an OpenAI-compatible server with scriptable misbehaviour
    /// (`mindmesh demo-persona --help` lists its flags).
    #[command(disable_help_flag = true)]
    DemoPersona {
        /// The demo persona's own flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) for every command and flag.
    Completions(docs::CompletionsArgs),
    /// Write man pages for every command, generated from the same definition as `--help`.
    Man(docs::ManArgs),
    /// Benchmarks (build with --release for numbers worth reporting).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The fence guard a node starts beside itself (internal).
    #[command(hide = true)]
    FenceGuard(node::GuardArgs),
}

impl Command {
    /// The node API arguments of a command that talks to a node.
    fn api_args(&mut self) -> Option<&mut client::ApiArgs> {
        match self {
            Command::Persona(p) => Some(&mut p.api),
            Command::Status(s) => Some(&mut s.api),
            Command::Events(e) => Some(&mut e.api),
            Command::Top(t) => Some(&mut t.api),
            Command::Logs(l) => Some(&mut l.api),
            Command::Decisions(d) => Some(&mut d.api),
            Command::Node(n) => n.api_args(),
            Command::Brain(b) => b.api_args(),
            Command::Demo(d) => d.api_args(),
            _ => None,
        }
    }
}

impl Cli {
    /// A long-lived server (a node, the fence guard, the demo persona), rather than a command
    /// whose output an operator pipes into `head` or `grep`. A server keeps SIGPIPE ignored:
    /// a peer that hangs up on it must never kill it.
    pub fn is_server(&self) -> bool {
        matches!(
            self.command,
            Command::Node(node::NodeCommand::Start(_)) | Command::FenceGuard(_) | Command::DemoPersona { .. }
        )
    }
}

pub async fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.api.is_some() || cli.token.is_some() {
        let Some(api) = cli.command.api_args() else {
            anyhow::bail!("--api and --token are for the commands that talk to a node; this one does not");
        };
        if let Some(a) = cli.api.take() {
            api.api = a;
        }
        if let Some(t) = cli.token.take() {
            api.token = Some(t);
        }
    }
    match cli.command {
        Command::Node(cmd) => node::run(cmd).await,
        Command::Decisions(args) => decisions::run(args).await,
        Command::Mesh(cmd) => mesh::run(cmd).await,
        Command::Store(cmd) => store::run(cmd).await,
        Command::Config(cmd) => config::run(cmd).await,
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
        Command::Sim(args) => Ok(tokio::task::spawn_blocking(move || mindmesh_sim::cli::run(&args)).await?),
        Command::Persona(args) => persona::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Top(args) => top::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Brain(cmd) => brain::run(cmd).await,
        Command::Demo(cmd) => demo::run(cmd).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::FenceGuard(args) => Ok(tokio::task::spawn_blocking(move || node::guard(args)).await?),
        // normally intercepted in main() before a runtime exists; this path keeps it working
        // when reached through clap (the persona builds its own runtime on a blocking thread)
        Command::DemoPersona { args } => {
            let argv = std::iter::once(std::ffi::OsString::from(crate::DEMO_PERSONA_BIN_NAME)).chain(args);
            Ok(tokio::task::spawn_blocking(move || crate::demo_persona::main(argv)).await?)
        }
    }
}

#[cfg(test)]
mod tests;
