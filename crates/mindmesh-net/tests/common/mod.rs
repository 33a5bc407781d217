//! What the libp2p mesh tests share: a node of a mesh over real libp2p on loopback, its Raft
//! log in a redb file of its own.

use std::sync::Arc;

use anyhow::Result;
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::registry::Capacity;
use mindmesh_net::keys::MeshKey;
use mindmesh_net::{MeshHandle, MeshStart, NodeProfile};
use tokio_util::sync::CancellationToken;

pub struct Node {
    pub handle: MeshHandle,
    _dir: tempfile::TempDir,
}

/// A node named `name` holding `key`: it founds a mesh (`bootstrap`) or joins the addresses in
/// `join`; `tune` adjusts its test config (timings, ban length) before it starts.
pub async fn node(
    name: &str,
    key: MeshKey,
    bootstrap: bool,
    join: Vec<String>,
    tune: impl FnOnce(&mut MeshConfig),
) -> Result<Node> {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(redb::Database::create(dir.path().join("store.redb"))?);
    let mut config = MeshConfig::for_test();
    config.bootstrap = bootstrap;
    config.join = join;
    tune(&mut config);
    let opts = MeshStart {
        config,
        profile: NodeProfile {
            name: name.into(),
            capacity: Capacity { memory_mb: 4096, cpu_percent: 200.0 },
            labels: Default::default(),
            api: String::new(),
        },
        data_dir: dir.path().to_path_buf(),
        db: Some(db),
        mesh_key: Some(key),
    };
    let handle = mindmesh_net::start(opts, CancellationToken::new()).await?;
    Ok(Node { handle, _dir: dir })
}
