//! `mindmesh-sim`: run the deterministic mesh simulation (also `mindmesh sim`).

use std::process::ExitCode;

use clap::Parser;
use mindmesh_sim::cli::{SimArgs, run};

#[derive(Debug, Parser)]
#[command(about = "Deterministic simulation of a mindmesh mesh")]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() -> ExitCode {
    run(&Cli::parse().args)
}
