//! `mindmesh node start`: the daemon in the foreground until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use mindmesh_core::config::NodeConfig;
use mindmesh_node::Node;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start a node in the foreground; it stops cleanly on SIGTERM or SIGINT.
    Start(StartArgs),
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Node config (TOML); personas declared in it as [[persona]] start at once.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where the node keeps its store, logs and state (overrides the config).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// API address (overrides the config); a non-loopback address needs a token.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Node name (overrides the config; default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// API bearer token (overrides the config).
    #[arg(long, env = "MINDMESH_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub async fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Start(args) => start(args).await,
    }
}

pub fn load_config(args: &StartArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut cfg = NodeConfig::from_toml_str(&text).with_context(|| format!("{}", path.display()))?;
            // a data dir the config names is relative to the config file; the default one is
            // relative to where the node is started
            let base = path.parent().unwrap_or(std::path::Path::new("."));
            let default = mindmesh_core::config::NodeSection::default().data_dir;
            if cfg.node.data_dir.is_relative() && cfg.node.data_dir != default && args.data_dir.is_none() {
                cfg.node.data_dir = base.join(&cfg.node.data_dir);
            }
            cfg
        }
        None => NodeConfig::default(),
    };
    if let Some(d) = &args.data_dir {
        config.node.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        config.api.listen = l;
    }
    if let Some(n) = &args.name {
        config.node.name = n.clone();
    }
    if let Some(t) = &args.token {
        config.api.token = Some(t.clone());
    }
    config.validate().context("invalid configuration")?;
    Ok(config)
}

async fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    raise_fd_limit();
    let config = load_config(&args)?;
    let shutdown = CancellationToken::new();
    let node = Node::start(config, shutdown.clone()).await?;
    eprintln!("mindmesh node listening on http://{}", node.api_addr);
    wait_for_signal().await?;
    tracing::info!("signal received; stopping");
    shutdown.cancel();
    node.wait().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Each persona costs the node a few descriptors (its exit watcher, probes, the gateway's
/// connections): take the hard limit rather than the usual soft 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
    }
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
