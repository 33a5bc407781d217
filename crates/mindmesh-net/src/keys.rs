//! The two secrets of a node, kept in files:
//! - the **mesh key**, shared by every node of a mesh (libp2p private network, the go-libp2p
//!   `swarm.key` format: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits), written once by
//!   `mindmesh mesh init` and copied to each node;
//! - the **node identity**, an ed25519 keypair made on first start and kept in the data dir:
//!   the peer id, and from it the Raft id, stay the same across restarts.
//!
//! Both files are created with mode 0600 and never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use mindmesh_core::registry::node_id_from_bytes;
use rand::TryRngCore;
use tracing::info;

use crate::{NetError, NodeId};

/// The default file name of the mesh key in a data dir.
pub const MESH_KEY_FILE: &str = "mesh.key";
/// The file name of the node identity in a data dir.
pub const IDENTITY_FILE: &str = "node.key";
/// Larger key files are not key files.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The pre-shared key of a mesh.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MeshKey(PreSharedKey);

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MeshKey({})", self.fingerprint())
    }
}

impl MeshKey {
    /// 32 bytes from the operating system's generator.
    pub fn generate() -> Result<Self, NetError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| NetError::Key { path: String::new(), reason: format!("no randomness: {e}") })?;
        Ok(MeshKey(PreSharedKey::new(bytes)))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MeshKey(PreSharedKey::new(bytes))
    }

    /// A digest safe to print and compare between nodes: equal fingerprints, same key.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }

    pub fn psk(&self) -> PreSharedKey {
        self.0
    }

    /// Parse the key file format.
    pub fn parse(text: &str) -> Result<Self, String> {
        // the parser slices by byte offsets: hand it ASCII only
        if !text.is_ascii() {
            return Err("not a key file (non-ASCII content)".into());
        }
        text.parse::<PreSharedKey>().map(MeshKey).map_err(|e| format!("not a mesh key file: {e:?}"))
    }

    pub fn to_file_string(&self) -> String {
        self.0.to_key_file()
    }

    /// Write a new key file; an existing file is never overwritten.
    pub fn write_new(&self, path: &Path) -> Result<(), NetError> {
        let err = |reason: String| NetError::Key { path: path.display().to_string(), reason };
        write_secret(path, self.to_file_string().as_bytes()).map_err(|e| err(e.to_string()))?;
        info!(path = %path.display(), fingerprint = %self.fingerprint(), "mesh key written");
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self, NetError> {
        let err = |reason: String| NetError::Key { path: path.display().to_string(), reason };
        let text = read_small(path).map_err(|e| err(e.to_string()))?;
        MeshKey::parse(&text).map_err(err)
    }
}

/// `mindmesh mesh init`: make a key and write it to `path`.
pub fn init_mesh_key(path: &Path) -> Result<MeshKey, NetError> {
    let key = MeshKey::generate()?;
    key.write_new(path)?;
    Ok(key)
}

/// The node's identity from `<data_dir>/node.key`, made on first start.
pub fn load_or_create_identity(data_dir: &Path) -> Result<Keypair, NetError> {
    let path = data_dir.join(IDENTITY_FILE);
    let err = |reason: String| NetError::Identity { path: path.display().to_string(), reason };
    match fs::metadata(&path) {
        Ok(_) => {
            let bytes = read_bounded(&path).map_err(|e| err(e.to_string()))?;
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(format!("unreadable: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            write_secret(&path, &bytes).map_err(|e| err(e.to_string()))?;
            info!(path = %path.display(), peer_id = %key.public().to_peer_id(), "node identity created");
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The Raft id of a libp2p peer: a stable hash of its peer id.
pub fn node_id_of(peer: &libp2p::PeerId) -> NodeId {
    node_id_from_bytes(&peer.to_bytes())
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_small(path: &Path) -> std::io::Result<String> {
    let bytes = read_bounded(path)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not text"))
}

/// A key file's bytes, refused past [`MAX_KEY_FILE_BYTES`]. The read itself stops there: a
/// device or a FIFO (`--mesh-key /dev/zero`) has no size to check beforehand.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {MAX_KEY_FILE_BYTES} bytes: not a key file"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn mesh_key_file_roundtrip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MESH_KEY_FILE);
        let key = init_mesh_key(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"), "{text}");
        assert_eq!(MeshKey::read(&path).unwrap(), key);
        assert!(init_mesh_key(&path).is_err(), "an existing key is never overwritten");
        assert_eq!(MeshKey::read(&path).unwrap(), key);
    }

    #[test]
    fn bad_key_files_are_errors_not_panics() {
        for text in ["", "garbage", "/key/swarm/psk/1.0.0/\n/base16/\nzz", "/key/swarm/psk/1.0.0/\n/base16/\n€€€€"]
        {
            assert!(MeshKey::parse(text).is_err(), "{text:?}");
        }
        let mb = format!("/key/swarm/psk/1.0.0/\n/base16/\n{}", "é".repeat(32));
        assert!(MeshKey::parse(&mb).is_err());
    }

    #[test]
    fn identity_is_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        assert_eq!(node_id_of(&a.public().to_peer_id()), node_id_of(&b.public().to_peer_id()));
    }
}
