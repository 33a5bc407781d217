//! `mindmesh node start`: the daemon in the foreground until SIGTERM or SIGINT; SIGHUP
//! re-reads the config's personas.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use mindmesh_core::clock::SystemClock;
use mindmesh_core::config::NodeConfig;
use mindmesh_node::Node;
use tokio_util::sync::CancellationToken;

use super::client::ApiArgs;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start a node in the foreground; it stops cleanly on SIGTERM or SIGINT. SIGHUP re-reads
    /// the config file's [[persona]] list and applies it (see the README, "Reloading the
    /// config").
    Start(Box<StartArgs>),
    /// Take the node (the one `--api` points at) out of its mesh cleanly, then stop it: its
    /// personas move to the other nodes first, and its process exits with status 0. Desired
    /// state: the node leaves the registry; the leader places its personas elsewhere.
    Leave {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Migrate every persona off a node, a few at a time, each with its state (like `nomad
    /// node drain`); nothing new is placed on it until `--undo`. Shows the progress, and says
    /// at once which personas have nowhere to go (failing if none can move). Desired state:
    /// the node is marked draining; each persona's placement changes as it migrates.
    Drain {
        #[command(flatten)]
        api: ApiArgs,
        /// The node's name.
        node: String,
        /// Take the node back: new personas may be placed on it again.
        #[arg(long)]
        undo: bool,
        /// Return once the drain is committed, without following it.
        #[arg(long)]
        no_wait: bool,
        /// Longest wait for the node to empty, with a unit (`90s`, `10m`).
        #[arg(long, default_value = "10m", value_parser = super::duration::parse_positive)]
        timeout: std::time::Duration,
        /// Old spelling of `--timeout`, in seconds (kept for scripts).
        #[arg(long, hide = true, conflicts_with = "timeout")]
        timeout_s: Option<u64>,
        /// One JSON object per step.
        #[arg(long)]
        json: bool,
    },
}

impl NodeCommand {
    pub fn api_args(&mut self) -> Option<&mut ApiArgs> {
        match self {
            NodeCommand::Leave { api } | NodeCommand::Drain { api, .. } => Some(api),
            NodeCommand::Start(_) => None,
        }
    }
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
    /// Found a new mesh with this node as its first member (the default when no --join is
    /// given; it creates `<data_dir>/mesh.key` if there is none).
    #[arg(long)]
    pub bootstrap: bool,
    /// Join the mesh through this member (a multiaddr, e.g. /ip4/10.0.0.5/tcp/7946);
    /// repeatable, retried with backoff.
    #[arg(long, value_name = "MULTIADDR")]
    pub join: Vec<String>,
    /// Where the mesh listens (default /ip4/0.0.0.0/tcp/7946); repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub p2p_listen: Vec<String>,
    /// The mesh address other nodes should dial (behind NAT, in containers); repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub advertise: Vec<String>,
    /// The API address other nodes should use (`host:port`).
    #[arg(long)]
    pub api_advertise: Option<String>,
    /// The mesh key file (default `<data_dir>/mesh.key`).
    #[arg(long)]
    pub mesh_key: Option<PathBuf>,
    /// How the node writes its log on stderr (`RUST_LOG` sets what it logs).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// This node was a mesh member but its store is empty or missing (lost, or moved aside
    /// after `mindmesh store check` found it damaged): start as a new member under a new
    /// identity (the old `node.key` is kept aside). Without it such a node refuses to start,
    /// since its Raft votes were in the lost store. Does nothing when the store is there.
    #[arg(long)]
    pub rejoin_as_new: bool,
}

/// What the node tells the fence guard it starts beside itself.
#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// The node's data dir (where its lease file is).
    #[arg(long)]
    data_dir: PathBuf,
    /// The node run's instance id.
    #[arg(long)]
    instance: String,
    /// The node's process id.
    #[arg(long)]
    node_pid: u32,
    /// The node's start time in clock ticks (tells a reused pid apart).
    #[arg(long)]
    node_start_ticks: u64,
}

/// Run the fence guard (see `mindmesh_node::mesh::guard`) until its node is gone.
pub fn guard(a: GuardArgs) -> ExitCode {
    init_logging(LogFormat::Text);
    let args = mindmesh_node::mesh::guard::GuardArgs {
        data_dir: a.data_dir,
        instance: a.instance,
        node_pid: a.node_pid,
        node_start_ticks: a.node_start_ticks,
    };
    mindmesh_node::mesh::guard::run(&args);
    ExitCode::SUCCESS
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One line of text per record.
    Text,
    /// One JSON object per record.
    Json,
}

pub async fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Start(args) => start(*args).await,
        NodeCommand::Leave { api } => {
            let client = super::client::Client::new(&api)?;
            let _: serde_json::Value = client.post("/api/v1/node/leave", &serde_json::json!({})).await?;
            println!("left the mesh; the node is stopping");
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Drain { api, node, undo, no_wait, timeout, timeout_s, json } => {
            let client = super::client::Client::new(&api)?;
            let timeout = timeout_s.map_or(timeout, std::time::Duration::from_secs);
            super::moves::drain(&client, &node, undo, !no_wait, timeout, json).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn load_config(args: &StartArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = super::files::read_text(path, super::files::MAX_CONFIG_FILE_BYTES, "config")?;
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
    if args.bootstrap {
        config.mesh.bootstrap = true;
    }
    if !args.join.is_empty() {
        config.mesh.join = args.join.clone();
    }
    if !args.p2p_listen.is_empty() {
        config.mesh.listen = args.p2p_listen.clone();
    }
    if !args.advertise.is_empty() {
        config.mesh.advertise = args.advertise.clone();
    }
    if let Some(a) = &args.api_advertise {
        config.api.advertise = Some(a.clone());
    }
    if let Some(k) = &args.mesh_key {
        // relative to where the command runs, not to the data dir
        config.mesh.key_file = Some(std::path::absolute(k).with_context(|| format!("{}", k.display()))?);
    }
    config.validate().context("invalid configuration")?;
    Ok(config)
}

async fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    raise_fd_limit();
    ignore_sigxfsz();
    let config = load_config(&args)?;
    let stop_bound = stop_bound(&config);
    let shutdown = CancellationToken::new();
    let exe = std::env::current_exe().ok();
    let mut deps = mindmesh_node::daemon::NodeDeps::os(&config, Arc::new(SystemClock), exe)?;
    deps.rejoin_as_new = args.rejoin_as_new;
    let mut current = config.clone();
    let node = Node::start_with(config, deps, shutdown.clone()).await?;
    let store_failure = node.store_failure();
    // not eprintln!: a node whose stderr reader went away must keep running, not panic
    let _ = writeln!(std::io::stderr(), "mindmesh node listening on http://{}", node.api_addr);
    // A signal, or the node stopping itself (`node leave`): either way the process ends once
    // the node has stopped — exit 0, so a service manager that restarts on failure leaves a
    // node that left the mesh stopped instead of showing it active with its ports closed.
    // SIGHUP re-reads the config's personas and goes on.
    let mut signals = Signals::install()?;
    let mut register: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = signals.term.recv() => tracing::info!("SIGTERM received; stopping"),
            _ = signals.int.recv() => tracing::info!("SIGINT received; stopping"),
            _ = signals.hup.recv() => {
                reload(&args, &node, &mut current, &mut register, &shutdown);
                continue;
            }
            _ = shutdown.cancelled() => tracing::info!("the node stopped itself; exiting"),
        }
        break;
    }
    shutdown.cancel();
    if tokio::time::timeout(stop_bound, node.wait()).await.is_err() {
        tracing::error!(
            bound_ms = stop_bound.as_millis() as u64,
            "the node did not stop within its bound; exiting without finishing (the log's last \"stopped task\" lines say where it hung; personas still running are adopted at the next start)"
        );
        return Ok(ExitCode::FAILURE);
    }
    // a node stopped by its store's failure exits non-zero: a service manager restarts it
    // into the refusal or the check it needs, and nobody mistakes it for a clean stop
    if let Some(e) = store_failure.error() {
        return Err(e.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills the process with no
/// word of why (and with its personas left to the fence guard). Ignored, the write fails with
/// EFBIG instead: the store reports it and the node stops in order, saying which file failed.
/// Personas get the default back (see the supervisor's spawn).
fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to SIG_IGN is sound at any time.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// The longest a stop may take: the API's grace for requests under way, the gateway's drain,
/// each persona's stop grace (they stop at once, side by side) and a margin. A backstop, not
/// the plan — each part is bounded on its own — so that a part that hangs anyway (it did: a
/// queue kept open by the node itself) cannot hold the process until a service manager
/// SIGKILLs it without a word.
fn stop_bound(config: &NodeConfig) -> Duration {
    let parts_ms = [config.api.shutdown_grace_ms, config.gateway.drain_timeout_ms, config.supervisor.stop_grace_ms];
    Duration::from_millis(parts_ms.iter().fold(0u64, |a, b| a.saturating_add(*b))).saturating_add(STOP_MARGIN)
}

/// What a stop may take beyond its configured parts: the store's close, the mesh's goodbye.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// The signals a running node answers: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install SIGHUP handler")?,
        })
    }
}

/// SIGHUP: re-read the config file and apply its `[[persona]]` list as at start-up (added and
/// changed personas are put in the registry, placed on this node; a changed one restarts only
/// if more than its budget changed). A config with any problem is refused whole, every problem
/// logged, nothing changed. Personas the file no longer names are kept (see
/// `mindmesh_node::mesh::report_config_reload`), as are those added through the API. The rest
/// of the config (listen addresses, mesh, store, …) takes effect at the next start only.
fn reload(
    args: &StartArgs,
    node: &Node,
    current: &mut NodeConfig,
    register: &mut Option<tokio::task::JoinHandle<()>>,
    stop: &CancellationToken,
) {
    let Some(path) = &args.config else {
        tracing::warn!("SIGHUP: the node was started without --config; there is nothing to re-read");
        return;
    };
    tracing::info!(config = %path.display(), "SIGHUP: re-reading the config's [[persona]] list");
    let new = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            let problems = super::config::node_config_problems(path);
            for (field, message) in &problems {
                tracing::error!(config = %path.display(), %field, %message, "config reload: problem");
            }
            tracing::error!(
                config = %path.display(),
                problems = problems.len(),
                error = %format!("{e:#}"),
                "config reload refused: nothing changed"
            );
            return;
        }
    };
    let without_personas = |c: &NodeConfig| NodeConfig { personas: Vec::new(), ..c.clone() };
    if without_personas(current) != without_personas(&new) {
        tracing::warn!(
            "config reload: only [[persona]] is applied now; the config's other changes take effect at the next start"
        );
    }
    let previous: Vec<String> = current.personas.iter().map(|p| p.name.clone()).collect();
    let sum =
        mindmesh_node::mesh::report_config_reload(&node.mesh.registry(), node.mesh.node_id(), &previous, &new.personas);
    tracing::info!(
        added = sum.added,
        changed = sum.changed,
        unchanged = sum.unchanged,
        elsewhere = sum.elsewhere,
        kept = sum.kept,
        "config reload: applying the [[persona]] list"
    );
    // a registration still retrying (no leader yet) would apply the older list after this one
    if let Some(old) = register.take() {
        old.abort();
    }
    *register = Some(tokio::spawn(mindmesh_node::mesh::register_config_personas(
        node.mesh.clone(),
        new.personas.clone(),
        stop.clone(),
    )));
    *current = new;
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

/// What a node logs when `RUST_LOG` says nothing: its own INFO, and only the warnings of
/// openraft and libp2p, whose INFO records are their internals (votes, log ids, peer ids)
/// and made a third of a quiet node's log. `RUST_LOG=info,openraft=info` brings them back.
pub const DEFAULT_LOG_FILTER: &str = "info,openraft=warn,libp2p=warn";

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
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
