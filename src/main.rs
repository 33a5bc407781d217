//! `mindmesh`: the command-line interface — the node daemon, the operator's commands
//! against a node's API, the brain's evaluation, benchmarks and simulations.

mod cli;
mod demo_persona;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `mindmesh demo-persona …` is the demo persona itself, with its own flags and runtime
    let mut argv = std::env::args_os();
    if std::env::args_os().nth(1).is_some_and(|a| a == "demo-persona") {
        let program = argv.next().unwrap_or_default();
        argv.next();
        return demo_persona::main(std::iter::once(program).chain(argv));
    }
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
