//! `mindmesh mesh init`: a new mesh key. Every node of a mesh holds the same key (libp2p
//! private network); a node without it cannot connect to the others.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Write a new mesh key (never overwrites one): copy it to every node's data dir as
    /// `mesh.key`, or point `--mesh-key` at it.
    Init {
        /// Where to write the key.
        #[arg(long, default_value = "mesh.key")]
        out: PathBuf,
    },
}

pub async fn run(cmd: MeshCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MeshCommand::Init { out } => {
            let key = mindmesh_net::keys::init_mesh_key(&out).with_context(|| format!("{}", out.display()))?;
            println!("mesh key written to {} (fingerprint {})", out.display(), key.fingerprint());
            println!("give every node of the mesh this file (mode 0600): it is the mesh's only secret");
            Ok(ExitCode::SUCCESS)
        }
    }
}
