//! `mindmesh bench …`: benchmarks as subcommands (never timed tests). Each prints what it
//! measured and, with `--json`, a machine-readable record for `docs/benchmarks.md`.

mod gateway;
mod load;
mod supervise;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Gateway overhead (direct vs through the node, 1 and 64 connections) and priority under
    /// saturation.
    Gateway(gateway::GatewayArgs),
    /// Restart latency and node overhead with N supervised personas under a kill storm.
    Supervise(supervise::SuperviseArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Gateway(args) => gateway::run(args).await,
        BenchCommand::Supervise(args) => supervise::run(args).await,
    }
}
