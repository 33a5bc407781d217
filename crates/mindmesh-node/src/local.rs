//! The local operator's credential. Loopback is no trust boundary — a web page in a browser on
//! the same host reaches it — so every request needs a credential, also on loopback. For the
//! operator on the node's own host, the node makes one by itself:
//!
//! - `<data_dir>/api.token` (mode 0600): an admin bearer token named `local`, kept across
//!   restarts, for HTTP clients of this host (`curl -H "Authorization: Bearer $(cat …)"`);
//! - `<data_dir>/api.sock` (mode 0600, and only peers of the node's own user or root are
//!   served): the same rights without a token, on a listener of its own that no TCP client
//!   can crowd out — the operator's reserve when the TCP side is full;
//! - a pointer `<index>/<port>` to the data dir, where `<index>` is `$XDG_RUNTIME_DIR/mindmesh`
//!   or `/tmp/mindmesh-<uid>` (mode 0700, refused if another user owns it), so the CLI that
//!   talks to `127.0.0.1:<port>` finds the data dir from anywhere.
//!
//! [`discover`] is the CLI's side: for a loopback API address it looks in `$MINDMESH_DATA_DIR`,
//! `./mindmesh-data`, the pointer and `/var/lib/mindmesh`, and takes a data dir whose `api.addr`
//! names the same port and whose socket answers (a node killed with -9 leaves its files, and
//! another program may hold its port by now). A credential is never looked up for, so never
//! sent to, another host.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File in the data dir holding the address the API is bound to (tests and scripts read it).
pub const API_ADDR_FILE: &str = "api.addr";
/// The local admin token, in the data dir.
pub const LOCAL_TOKEN_FILE: &str = "api.token";
/// The local Unix socket, in the data dir.
pub const LOCAL_SOCKET_FILE: &str = "api.sock";
/// Where `systemd`'s unit keeps the data dir: looked at last.
const SYSTEM_DATA_DIR: &str = "/var/lib/mindmesh";
/// Random bytes in a local token (hex encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;
/// Larger files are not ours.
const MAX_SMALL_FILE_BYTES: u64 = 4096;

/// The local admin token of the node with this data dir: the one it kept, or a new one.
/// A file with looser permissions than 0600 is tightened (and said so): it is a credential.
pub fn ensure_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(LOCAL_TOKEN_FILE);
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if meta.file_type().is_file() && meta.uid() == euid() {
            if meta.mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.mode() & 0o777), "the local token was readable by others: made 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            if let Some(t) = read_small(&path).map(|t| t.trim().to_owned())
                && valid_token(&t)
            {
                return Ok(t);
            }
        }
        tracing::warn!(path = %path.display(), "the local token file is not a token of this node's user: replaced");
        fs::remove_file(&path)?;
    }
    let token = new_token()?;
    let tmp = path.with_extension("token.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(token)
}

fn new_token() -> std::io::Result<String> {
    use rand::TryRngCore;
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn valid_token(t: &str) -> bool {
    t.len() == TOKEN_BYTES * 2 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The directory of pointers from API ports to data dirs, made if missing; `None` where it
/// cannot be trusted (another user's, or open to others).
pub fn index_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("mindmesh"),
        None => std::env::temp_dir().join(format!("mindmesh-{}", euid())),
    };
    if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&dir)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        tracing::debug!(dir = %dir.display(), error = %e, "no local index");
        return None;
    }
    let meta = fs::symlink_metadata(&dir).ok()?;
    if !meta.is_dir() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "not using the local index: not a private directory of this user");
        return None;
    }
    Some(dir)
}

/// Tell local CLIs where the node serving `addr` keeps its data dir.
pub fn register(data_dir: &Path, addr: SocketAddr) {
    let Some(index) = index_dir() else { return };
    let Ok(abs) = std::path::absolute(data_dir) else { return };
    let path = index.join(addr.port().to_string());
    let tmp = index.join(format!(".{}.{}", addr.port(), std::process::id()));
    let written = fs::write(&tmp, abs.as_os_str().as_encoded_bytes()).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        tracing::debug!(path = %path.display(), error = %e, "cannot write the local index");
    }
}

/// Remove this node's pointer (only if it still points here: another node may own the port
/// now).
pub fn unregister(data_dir: &Path, addr: SocketAddr) {
    let Some(index) = index_dir() else { return };
    let path = index.join(addr.port().to_string());
    let ours = std::path::absolute(data_dir).ok();
    if read_small(&path).map(PathBuf::from) == ours {
        let _ = fs::remove_file(&path);
    }
}

/// How the operator on this host reaches a running node of this host without being told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAccess {
    pub data_dir: PathBuf,
    /// The Unix socket (it answered).
    pub socket: Option<PathBuf>,
    /// The local admin token, when readable.
    pub token: Option<String>,
}

/// The local credential of the node at `host:port`, for a loopback address only.
pub fn discover(host: &str, port: u16) -> Option<LocalAccess> {
    if !is_loopback_host(host) {
        return None;
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("MINDMESH_DATA_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(d));
    }
    candidates.push(mindmesh_core::config::NodeSection::default().data_dir);
    if let Some(index) = index_dir()
        && let Some(p) = read_small(&index.join(port.to_string()))
    {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from(SYSTEM_DATA_DIR));
    candidates.into_iter().find_map(|dir| access_in(&dir, port))
}

fn access_in(dir: &Path, port: u16) -> Option<LocalAccess> {
    let addr: SocketAddr = read_small(&dir.join(API_ADDR_FILE))?.trim().parse().ok()?;
    if addr.port() != port || !(addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        return None;
    }
    // the node must be running there now: after a kill -9 its files stay, and another
    // program may have its port — it must never be handed the token
    let socket = dir.join(LOCAL_SOCKET_FILE);
    std::os::unix::net::UnixStream::connect(&socket).ok()?;
    let token = read_small(&dir.join(LOCAL_TOKEN_FILE)).map(|t| t.trim().to_owned()).filter(|t| valid_token(t));
    Some(LocalAccess { data_dir: dir.to_path_buf(), socket: Some(socket), token })
}

/// `localhost`, a loopback IP literal, or one in brackets.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_small(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SMALL_FILE_BYTES {
        return None;
    }
    fs::read_to_string(path).ok()
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_private_kept_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let t = ensure_token(dir.path()).unwrap();
        assert!(valid_token(&t));
        let path = dir.path().join(LOCAL_TOKEN_FILE);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(ensure_token(dir.path()).unwrap(), t, "kept across restarts");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(ensure_token(dir.path()).unwrap(), t);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600, "tightened");
        fs::write(&path, "garbage").unwrap();
        let t2 = ensure_token(dir.path()).unwrap();
        assert!(valid_token(&t2) && t2 != t, "a damaged file is replaced");
    }

    #[test]
    fn discovery_needs_a_loopback_host_the_same_port_and_a_live_node() {
        let dir = tempfile::tempdir().unwrap();
        let t = ensure_token(dir.path()).unwrap();
        fs::write(dir.path().join(API_ADDR_FILE), "127.0.0.1:45678").unwrap();
        assert!(access_in(dir.path(), 45678).is_none(), "no node answers on its socket");
        let _live = std::os::unix::net::UnixListener::bind(dir.path().join(LOCAL_SOCKET_FILE)).unwrap();
        let found = access_in(dir.path(), 45678).unwrap();
        assert_eq!(found.token.as_deref(), Some(t.as_str()));
        assert!(access_in(dir.path(), 45679).is_none());
        assert!(discover("evil.example", 45678).is_none());
        assert!(discover("10.0.0.5", 45678).is_none());
        assert!(is_loopback_host("localhost") && is_loopback_host("[::1]") && is_loopback_host("127.0.0.2"));
        fs::write(dir.path().join(API_ADDR_FILE), "10.1.2.3:45678").unwrap();
        assert!(access_in(dir.path(), 45678).is_none(), "a node bound elsewhere is not local");
    }

    #[test]
    fn the_index_points_the_cli_at_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        ensure_token(dir.path()).unwrap();
        // a port no test node uses at the same time: this test's own listener holds it
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        fs::write(dir.path().join(API_ADDR_FILE), addr.to_string()).unwrap();
        let _live = std::os::unix::net::UnixListener::bind(dir.path().join(LOCAL_SOCKET_FILE)).unwrap();
        register(dir.path(), addr);
        let found = discover("127.0.0.1", addr.port()).expect("found through the index");
        assert_eq!(found.data_dir, std::path::absolute(dir.path()).unwrap());
        unregister(dir.path(), addr);
        assert!(discover("localhost", addr.port()).is_none());
    }
}
