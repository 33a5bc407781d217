//! `mindmesh`: the command-line interface — the node daemon, the operator's commands
//! against a node's API, the brain's evaluation, benchmarks and simulations.

mod cli;
mod demo_persona;

use std::process::ExitCode;

use clap::Parser;

/// The name the demo persona's help and errors give it when run as `mindmesh demo-persona`.
pub const DEMO_PERSONA_BIN_NAME: &str = "mindmesh demo-persona";

fn main() -> ExitCode {
    // `mindmesh demo-persona …` is the demo persona itself, with its own flags and runtime
    let mut argv = std::env::args_os();
    if std::env::args_os().nth(1).is_some_and(|a| a == "demo-persona") {
        argv.next();
        argv.next();
        return demo_persona::main(std::iter::once(DEMO_PERSONA_BIN_NAME.into()).chain(argv));
    }
    let args = cli::Cli::parse();
    if !args.is_server() {
        restore_default_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::run(args));
    // blocking work still running (a stuck read, a wait on a child) must not hold the exit:
    // dropping the runtime would wait for it without bound
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust starts every program with SIGPIPE ignored, so a write to a closed pipe fails with
/// EPIPE and `println!` panics (`mindmesh persona list | head -1` exited 101). A command
/// whose reader has gone should end quietly, as `ls | head` does: the default action ends the
/// process by the signal, and the shell sees the usual 141. Servers keep it ignored (see
/// [`cli::Cli::is_server`]).
fn restore_default_sigpipe() {
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
