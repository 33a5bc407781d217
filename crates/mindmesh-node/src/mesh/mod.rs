//! The node in its mesh. The registry (replicated by Raft) says which personas exist, where
//! they run and in which phase; this node gossips what it sees ([`gossip`]), carries out what
//! the registry says of its own personas ([`reconcile`]), keeps the mesh's history and, when
//! it leads, runs the brain over it ([`leader`], [`history`]). A single host is a mesh of one.

pub mod checkpoint;
pub mod fence;
pub mod gossip;
pub mod guard;
pub mod history;
pub mod leader;
pub mod log_retention;
pub mod reconcile;
#[cfg(test)]
pub(crate) mod test_registry;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::PersonaSpec;
use mindmesh_core::config::NodeConfig;
use mindmesh_core::registry::{Capacity, Command};
use mindmesh_net::keys::{MESH_KEY_FILE, init_mesh_key};
use mindmesh_net::{MeshHandle, MeshParams, MeshStart, NetError, NodeProfile};
use tokio_util::sync::CancellationToken;

use crate::error::{NodeError, Result};

/// Start this node's mesh: joins the meshes it is told to, or bootstraps a mesh of its own
/// (creating its key) when it is told of none.
pub async fn start(
    config: &NodeConfig,
    node_name: &str,
    data_dir: &Path,
    db: Arc<redb::Database>,
    api_addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<MeshHandle> {
    let mut mesh = config.mesh.clone();
    if mesh.join.is_empty() {
        // bootstrapping initialises only a node that belongs to no mesh yet: safe on restarts
        mesh.bootstrap = true;
    }
    let key_path = key_path(config, data_dir);
    if !key_path.exists() {
        if !mesh.bootstrap {
            return Err(NodeError::Mesh(NetError::Key {
                path: key_path.display().to_string(),
                reason: "missing: a node joins with the mesh's key (copy it from a member; `mindmesh mesh init` writes a new one)"
                    .into(),
            }));
        }
        let key = init_mesh_key(&key_path)?;
        tracing::info!(path = %key_path.display(), fingerprint = %key.fingerprint(), "new mesh key written; copy it to the nodes that will join");
    }
    // absolute, so the mesh does not take it as relative to the data dir a second time
    mesh.key_file = Some(std::path::absolute(&key_path).map_err(|e| NodeError::io("mesh key path", e))?);
    let profile = NodeProfile {
        name: node_name.to_owned(),
        capacity: host_capacity(),
        labels: config.node.labels.clone(),
        api: advertised_api(config, api_addr),
    };
    let handle = mindmesh_net::start(
        MeshStart { config: mesh, profile, data_dir: data_dir.to_path_buf(), db: Some(db), mesh_key: None },
        cancel,
    )
    .await?;
    tracing::info!(node_id = handle.node_id(), addrs = ?handle.listen_addrs(), "mesh started");
    Ok(handle)
}

/// What a mesh on an in-memory transport starts from (the simulator): the config's mesh
/// section and this node's profile, as [`start`] would publish it.
pub fn params(
    config: &NodeConfig,
    node_name: &str,
    api_addr: SocketAddr,
    incarnation: u64,
    seed: Option<u64>,
) -> MeshParams {
    let profile = NodeProfile {
        name: node_name.to_owned(),
        capacity: host_capacity(),
        labels: config.node.labels.clone(),
        api: advertised_api(config, api_addr),
    };
    MeshParams { config: config.mesh.clone(), profile, incarnation, seed }
}

/// The host's memory and CPU, for placement.
fn host_capacity() -> Capacity {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    Capacity { memory_mb, cpu_percent: cores as f64 * 100.0 }
}

/// Where other nodes reach this node's API: the configured advertise address, the bound
/// address when it is a specific one, else the host's primary address with the bound port.
/// Where this node's mesh key is (made at the first start of a founding node).
pub fn key_path(config: &NodeConfig, data_dir: &Path) -> std::path::PathBuf {
    match &config.mesh.key_file {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => data_dir.join(p),
        None => data_dir.join(MESH_KEY_FILE),
    }
}

/// The API address other nodes are told to use.
pub fn advertised_api(config: &NodeConfig, bound: SocketAddr) -> String {
    if let Some(a) = &config.api.advertise {
        return a.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    // the address the host would use to reach the outside (no packet is sent)
    let primary = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("203.0.113.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    SocketAddr::new(primary, bound.port()).to_string()
}

/// What a config reload (SIGHUP) will do, by persona, as [`report_config_reload`] counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// In the config but placed on another node: left there.
    pub elsewhere: usize,
    /// In the previous config, not in this one: kept (see the log line for why).
    pub kept: usize,
}

/// Log what re-reading the config's `[[persona]]` list changes against the registry, persona
/// by persona (a changed one with its fields and whether it restarts), before
/// [`register_config_personas`] applies it. `previous`: the names the config held before.
///
/// Personas the config no longer names are kept, never removed: the registry cannot tell a
/// persona the file added from one an operator added or changed through the API since, and a
/// line deleted from a file is too quiet a way to stop a process. `mindmesh persona remove`
/// removes one.
pub fn report_config_reload(
    registry: &mindmesh_core::registry::Registry,
    me: mindmesh_core::registry::NodeId,
    previous: &[String],
    personas: &[PersonaSpec],
) -> ReloadSummary {
    use mindmesh_core::spec_diff::{diff, keeps_process};
    let mut sum = ReloadSummary::default();
    for spec in personas {
        match registry.personas.get(&spec.name) {
            None => {
                sum.added += 1;
                tracing::info!(persona = %spec.name, "config reload: persona added");
            }
            Some(e) if e.node.is_some_and(|n| n != me) => {
                sum.elsewhere += 1;
                tracing::warn!(persona = %spec.name, "config reload: placed on another node, left there");
            }
            Some(e) if e.spec == *spec => sum.unchanged += 1,
            Some(e) => {
                sum.changed += 1;
                let changes = diff(Some(&e.spec), spec);
                let fields: Vec<String> = changes
                    .iter()
                    .map(|c| {
                        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
                        format!("{}: {} -> {}", c.field, show(&c.old), show(&c.new))
                    })
                    .collect();
                tracing::info!(
                    persona = %spec.name,
                    restart = !keeps_process(&changes),
                    changes = %fields.join("; "),
                    "config reload: persona changed"
                );
            }
        }
    }
    for name in previous.iter().filter(|n| !personas.iter().any(|p| &p.name == *n)) {
        if registry.personas.contains_key(name) {
            sum.kept += 1;
            tracing::warn!(
                persona = %name,
                "config reload: no longer in the config, kept (a reload never removes a persona; `mindmesh persona remove` does)"
            );
        }
    }
    sum
}

/// Put the personas of the node's config into the registry, placed on this node (once a
/// leader is there to commit them); retried until it is done or the node stops.
pub async fn register_config_personas(mesh: MeshHandle, personas: Vec<PersonaSpec>, stop: CancellationToken) {
    if personas.is_empty() {
        return;
    }
    let me = mesh.node_id();
    let mut backoff = Duration::from_millis(200);
    let mut pending = personas;
    // bases before their adapters: the registry takes an adapter only once its base is there
    pending.sort_by_key(|s| s.adapter.is_some());
    while !pending.is_empty() {
        let mut left = Vec::new();
        let registry = mesh.registry();
        if registry.nodes.contains_key(&me) {
            for spec in pending {
                let cmd = match registry.personas.get(&spec.name) {
                    Some(e) if e.node != Some(me) => {
                        tracing::warn!(persona = %spec.name, "declared in the config but placed on another node: left there");
                        continue;
                    }
                    Some(e) if e.spec == spec => continue,
                    _ => Command::put_persona(spec.clone(), Some(me)),
                };
                match mesh.propose(cmd).await {
                    Ok(_) => tracing::info!(persona = %spec.name, "config persona registered"),
                    Err(NetError::Rejected(reason)) => {
                        tracing::error!(persona = %spec.name, %reason, "config persona refused");
                    }
                    Err(e) => {
                        tracing::debug!(persona = %spec.name, error = %e, "config persona not registered yet");
                        left.push(spec);
                    }
                }
            }
        } else {
            left = pending;
        }
        pending = left;
        if pending.is_empty() {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
