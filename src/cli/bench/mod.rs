//! `mindmesh bench …`: benchmarks as subcommands (never timed tests). Each prints what it
//! measured and, with `--json`, a machine-readable record for `docs/benchmarks.md`.

mod failover_plan;
mod gateway;
mod load;
mod qos;
mod supervise;
mod wake;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The leader's failover plan on a large registry (1,000 nodes × 100,000 personas, 1, 10
    /// and 100 nodes lost): plan, apply, and a tick on which nothing changed.
    FailoverPlan(failover_plan::FailoverPlanArgs),
    /// Gateway overhead (direct vs through the node, 1 and 64 connections) and priority under
    /// saturation.
    Gateway(gateway::GatewayArgs),
    /// The budget-allocating brain in a closed loop: a node saturated on purpose, user-facing
    /// bursts and a background flood, run with fixed budgets, the brain, and a naive rule.
    Qos(qos::QosArgs),
    /// Restart latency and node overhead with N supervised personas under a kill storm.
    Supervise(supervise::SuperviseArgs),
    /// Time to first token from a real llama.cpp persona when it is running, paused and
    /// stopped (hibernated), against the same server's own cold start.
    Wake(wake::WakeArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::FailoverPlan(args) => failover_plan::run(args).await,
        BenchCommand::Gateway(args) => gateway::run(args).await,
        BenchCommand::Qos(args) => qos::run(args).await,
        BenchCommand::Supervise(args) => supervise::run(args).await,
        BenchCommand::Wake(args) => wake::run(args).await,
    }
}
