//! `mindmesh-demo-persona`: a small OpenAI-compatible persona with scriptable misbehaviour,
//! used by mindmesh's tests, simulations, benchmarks and README demo. It honours the persona
//! contract of DESIGN.md: it serves on `MINDMESH_PORT`, calls itself `MINDMESH_PERSONA_ID`,
//! restores `MINDMESH_STATE_FILE`, and offers the state hook.
//!
//! # Layout
//! - `flags`: every flag, each also an env var `MINDMESH_DEMO_<FLAG>` (`mindmesh-demo-persona --help`)
//! - `state`: counters, memory, the state blob and its restore
//! - `http`: routes, `/health`, `/v1/models`, `/mindmesh/state/save`, response headers
//! - `reported`: `/mindmesh/metrics`, its own figures (prompt cache, KV use, counters)
//! - `completions`: `/v1/chat/completions` and `/v1/completions`, whole or streamed (SSE)
//! - `openai`: OpenAI's request, response, chunk and error shapes
//! - `faults`: injected errors (seeded), added latency and its ramp
//! - `behaviour`: memory leak, CPU hog, crash timer, abandoned grandchild
//! - `tokens`: the answer text, laid out once
//! - `server`: bounded listener, graceful shutdown
//!
//! # Endpoints
//! `POST /v1/chat/completions`, `POST /v1/completions` (`"stream": true` for SSE, one chunk per
//! token, `stream_options.include_usage` honoured, then `data: [DONE]`), `GET /v1/models`,
//! `GET /health`, `POST /mindmesh/state/save`, `GET /mindmesh/metrics`. Every response carries `x-mindmesh-persona-id`
//! and `x-mindmesh-state-restored: true|false`.
//!
//! # Exit
//! 0 after SIGTERM or SIGINT (in-flight requests get `--shutdown-grace-ms`); 2 on bad flags;
//! 1 when it cannot serve (port taken); 70 by `--crash-after-s`, or death by SIGABRT with
//! `--crash-abort`. With `--ignore-sigterm` only SIGINT or SIGKILL stop it.

mod behaviour;
mod completions;
mod faults;
mod flags;
mod http;
mod openai;
mod reported;
mod server;
mod state;
mod tokens;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::demo_persona::flags::Flags;
use crate::demo_persona::state::{AppState, Restore, StateBlob};

/// Run the persona with these arguments (the first is the program name), as the
/// `mindmesh-demo-persona` binary does and as `mindmesh demo-persona` does, so a node started
/// with `cargo run` has its demo personas without building a second binary.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let flags = Flags::parse_and_check(args);
    init_logging(flags.idle);
    if flags.ignore_sigterm
        && let Err(e) = ignore_sigterm()
    {
        eprintln!("error: cannot ignore SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    let seed = flags.seed.unwrap_or_else(clock_seed);
    let (restore, blob) = state::load(flags.state_file.as_deref());
    let runtime = if flags.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(flags.threads)).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags, seed, restore, blob)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags, seed: u64, restore: Restore, blob: Option<StateBlob>) -> anyhow::Result<()> {
    let addr = SocketAddr::new(flags.host, flags.port);
    let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = tcp.local_addr().context("no local address")?;
    match &restore {
        Restore::Fresh => {}
        Restore::Restored { file, from_persona_id, .. } => {
            tracing::info!(file = %file.display(), from = %from_persona_id, "state restored");
        }
        Restore::Failed { file, error } => {
            tracing::warn!(file = %file.display(), %error, "state not restored, starting fresh");
        }
    }
    let max_connections = flags.max_connections as usize;
    let grace = Duration::from_millis(flags.shutdown_grace_ms);
    let state = Arc::new(AppState::new(flags, seed, restore, blob)?);
    let shutdown = CancellationToken::new();
    watch_signals(state.flags.ignore_sigterm, shutdown.clone())?;
    behaviour::start(&state, &shutdown);

    // the one line on stdout, so whoever started us with port 0 learns where we are
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{local}");
    let _ = out.flush();
    drop(out);
    tracing::info!(persona = %state.flags.persona_id, %local, seed, "serving");

    let app = http::router(Arc::clone(&state));
    server::serve(server::BoundedListener::new(tcp, max_connections), app, shutdown, grace).await.context("serving")?;
    tracing::info!(persona = %state.flags.persona_id, "stopped");
    Ok(())
}

/// SIGINT always stops us; SIGTERM too unless it is ignored (then no handler is installed, so
/// the disposition stays SIG_IGN).
fn watch_signals(ignore_sigterm: bool, shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut term =
        if ignore_sigterm { None } else { Some(signal(SignalKind::terminate()).context("SIGTERM handler")?) };
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = int.recv() => "SIGINT",
            Some(_) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => "SIGTERM",
        };
        tracing::info!(signal = which, "stopping");
        shutdown.cancel();
    });
    Ok(())
}

fn ignore_sigterm() -> nix::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code; nothing else has touched SIGTERM yet
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.map(|_| ())
}

fn init_logging(idle: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if idle { "warn" } else { "info" };
    let filter = EnvFilter::try_from_env("MINDMESH_DEMO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
