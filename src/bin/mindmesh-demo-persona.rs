//! `mindmesh-demo-persona`: the demo persona as a binary of its own (small and quick to
//! start: tests, benchmarks and simulations spawn hundreds). `mindmesh demo-persona` runs the
//! same code.

#[path = "../demo_persona/mod.rs"]
mod demo_persona;

fn main() -> std::process::ExitCode {
    demo_persona::main(std::env::args_os())
}
