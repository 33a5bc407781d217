//! `mindmesh bench …`: benchmarks as subcommands (never timed tests). Each prints what it
//! measured and, with `--json`, a machine-readable record for `docs/benchmarks.md`.

mod supervise;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Restart latency and node overhead with N supervised personas under a kill storm.
    Supervise(supervise::SuperviseArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Supervise(args) => supervise::run(args).await,
    }
}
