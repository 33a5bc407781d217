//! Subcommands, one module each.

mod bench;
mod brain;
mod client;
mod events;
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
    /// The node at a glance.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The event log.
    Events(events::EventsArgs),
    /// The brain: evaluate analysts on decision scenarios.
    #[command(subcommand)]
    Brain(brain::BrainCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Node(cmd) => node::run(cmd).await,
        Command::Persona(cmd) => persona::run(cmd, &cli.api).await,
        Command::Status { json } => status::run(json, &cli.api).await,
        Command::Events(args) => events::run(args, &cli.api).await,
        Command::Brain(cmd) => brain::run(cmd).await,
        Command::Bench(cmd) => bench::run(cmd).await,
    }
}
