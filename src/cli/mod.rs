//! Subcommands, one module each.

mod bench;
mod brain;
mod client;
mod decisions;
mod events;
mod logs;
mod mesh;
mod moves;
mod node;
mod persona;
mod status;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mindmesh", version, about = "A mesh of peer supervisors for AI persona processes")]
pub struct Cli {
    #[command(flatten)]
    api: client::ApiArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Add, inspect and act on personas.
    #[command(subcommand)]
    Persona(persona::PersonaCommand),
    /// The node and its mesh at a glance: members, leader, personas, the brain's view.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The event log of the node.
    Events(events::EventsArgs),
    /// A persona's output (stdout and stderr), from any node of the mesh.
    Logs(logs::LogsArgs),
    /// The mesh's decision log: what the brain (or an operator) decided, why, and whether the
    /// owning node carried it out.
    Decisions(decisions::DecisionsArgs),
    /// The mesh itself: its key.
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
    /// The deterministic simulation of a mesh (seeded faults, invariants checked each step).
    Sim(mindmesh_sim::cli::SimArgs),
    /// The brain: evaluate analysts on decision scenarios.
    #[command(subcommand)]
    Brain(brain::BrainCommand),
    /// Run the demo persona: an OpenAI-compatible server with scriptable misbehaviour
    /// (`mindmesh demo-persona --help` lists its flags).
    #[command(disable_help_flag = true)]
    DemoPersona {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Benchmarks (build with --release for numbers worth reporting).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The fence guard a node starts beside itself (internal).
    #[command(hide = true)]
    FenceGuard(node::GuardArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Node(cmd) => node::run(cmd, &cli.api).await,
        Command::Decisions(args) => decisions::run(args, &cli.api).await,
        Command::Mesh(cmd) => mesh::run(cmd).await,
        Command::Sim(args) => Ok(tokio::task::spawn_blocking(move || mindmesh_sim::cli::run(&args)).await?),
        Command::Persona(cmd) => persona::run(cmd, &cli.api).await,
        Command::Status { json } => status::run(json, &cli.api).await,
        Command::Events(args) => events::run(args, &cli.api).await,
        Command::Logs(args) => logs::run(args, &cli.api).await,
        Command::Brain(cmd) => brain::run(cmd).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::FenceGuard(args) => Ok(tokio::task::spawn_blocking(move || node::guard(args)).await?),
        // normally intercepted in main() before a runtime exists; this path keeps it working
        // when reached through clap (the persona builds its own runtime on a blocking thread)
        Command::DemoPersona { args } => {
            let argv = std::iter::once(std::ffi::OsString::from("mindmesh demo-persona")).chain(args);
            Ok(tokio::task::spawn_blocking(move || crate::demo_persona::main(argv)).await?)
        }
    }
}
