//! `mindmesh brain …` (owned by the brain work: evaluation of analysts on scenarios).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BrainCommand {
    /// Run an analyst over every scenario in DIR and score its decisions.
    Eval { dir: PathBuf },
}

pub async fn run(cmd: BrainCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BrainCommand::Eval { dir } => anyhow::bail!("brain eval {}: the brain is not built yet", dir.display()),
    }
}
