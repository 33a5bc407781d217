//! Subcommands, one module each.

mod brain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mindmesh", version, about = "A mesh of peer supervisors for AI persona processes")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The brain: evaluate analysts on decision scenarios.
    #[command(subcommand)]
    Brain(brain::BrainCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Brain(cmd) => brain::run(cmd).await,
    }
}
