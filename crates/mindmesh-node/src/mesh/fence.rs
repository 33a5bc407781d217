//! Fencing on the node: while its lease is not held, it runs no persona. When the lease lapses
//! (partitioned from the majority, or no leader for longer than an election takes), every
//! process is SIGKILLed at once — the leader may be about to place those personas elsewhere —
//! and nothing starts again (no restart by policy, no wake on request, no reconcile) until the
//! lease is back; then the reconciler restarts whatever the registry still places here.
//!
//! The lease's expiry is also written to `<data_dir>/lease` (wall clock), so a node restarted
//! quickly keeps what it adopted until that expiry, while one that was away long enough to be
//! replaced fences what it adopted at once. A lost write only shortens the lease: safe.
//!
//! The file is opened once at start and rewritten in place (`pwrite`), never re-created: a
//! node out of file descriptors (slow clients, a leak) still renews it, so the fence guard
//! never kills healthy personas for want of a descriptor. Each write carries the expiry and
//! its bitwise complement, so a reader that catches a write halfway sees the mismatch and
//! reads again instead of taking a torn number for an expiry.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mindmesh_core::Phase;
use mindmesh_core::clock::Clock;
use mindmesh_net::MeshHandle;
use mindmesh_supervisor::{Act, SpawnGate, SupervisorHandle};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The file holding the lease's expiry, in Unix milliseconds.
pub const LEASE_FILE: &str = "lease";
/// How often the expiry is written, and a boot grace checked.
const TICK: Duration = Duration::from_millis(200);
/// Time between complaints about a lease file that cannot be written.
const COMPLAIN_EVERY: Duration = Duration::from_secs(5);

/// The lease file, held open for the node's life.
pub struct LeaseFile {
    file: File,
    path: PathBuf,
    complained: Option<Instant>,
}

impl LeaseFile {
    /// Open (or create) `<data_dir>/lease` without touching what it holds: the fence guard
    /// may be reading the previous run's expiry right now.
    pub fn open(data_dir: &Path) -> std::io::Result<LeaseFile> {
        let path = data_dir.join(LEASE_FILE);
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(&path)?;
        Ok(LeaseFile { file, path, complained: None })
    }

    /// Write the expiry in place: no new descriptor, the same bytes every time.
    pub fn write(&mut self, until_ms: u64) {
        if let Err(e) = self.file.write_all_at(encode_lease(until_ms).as_bytes(), 0)
            && self.complained.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY)
        {
            self.complained = Some(Instant::now());
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot renew the lease file: the fence guard will kill this node's personas when the last written lease runs out"
            );
        }
    }
}

/// `<expiry> <!expiry>\n`, both 20 digits: one length for every value, so an in-place write
/// always covers the last one.
pub fn encode_lease(until_ms: u64) -> String {
    format!("{until_ms:020} {:020}\n", !until_ms)
}

/// The expiry in a lease file's text, if it is whole: the current form with its check, or a
/// bare number (written by older nodes).
pub fn parse_lease(text: &str) -> Option<u64> {
    let line = text.lines().next()?.trim();
    match line.split_once(' ') {
        Some((v, check)) => {
            let v: u64 = v.parse().ok()?;
            (check.parse::<u64>().ok()? == !v).then_some(v)
        }
        None => line.parse().ok(),
    }
}

/// Read a lease file, again if a write was caught halfway: `Ok(None)` when there is none.
pub fn read_lease(path: &Path) -> std::io::Result<Option<u64>> {
    for _ in 0..5 {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Some(v) = parse_lease(&text) {
                    return Ok(Some(v));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the lease file holds no whole expiry"))
}

pub struct Fence {
    pub mesh: MeshHandle,
    pub supervisor: SupervisorHandle,
    pub lease_file: LeaseFile,
    pub clock: Arc<dyn Clock>,
    /// True while this node may run personas.
    pub may_run: watch::Sender<bool>,
    /// The supervisor's spawn gate: the same limit, checked at every spawn.
    pub gate: Arc<SpawnGate>,
    /// The lease's length, for the expiry written while the node runs unfenced without one
    /// (alone in its mesh, or fencing off).
    pub lease_ms: u64,
}

impl Fence {
    /// The expiry a previous run of this node left (Unix ms), if any: the spawn gate's first
    /// limit, so what a restarted node adopts or restores runs only within its old lease.
    pub fn boot_grace_until_ms(data_dir: &std::path::Path) -> u64 {
        read_lease(&data_dir.join(LEASE_FILE)).ok().flatten().unwrap_or(0)
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let mut lease_rx = self.mesh.watch_lease();
        let mut written_ms = 0u64;
        let mut fenced_once = false;
        loop {
            let lease = *lease_rx.borrow_and_update();
            let now_ms = self.clock.now_ms();
            // alone in the registry, no other node could be running our personas
            let alone = self.mesh.registry().nodes.keys().all(|id| *id == self.mesh.node_id());
            // the expiry the spawn gate and the fence guard enforce, even if this task is late
            let until_ms = match lease.until {
                Some(until) if lease.enforced => {
                    Some(now_ms + until.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64)
                }
                _ if alone || !lease.enforced => Some(now_ms + self.lease_ms),
                _ => None,
            };
            if let Some(u) = until_ms {
                self.gate.extend(u);
            }
            let until_ms = self.gate.until_ms();
            if until_ms > written_ms {
                self.lease_file.write(until_ms);
                written_ms = until_ms;
            }
            let may_run = now_ms < until_ms;
            let was = *self.may_run.borrow();
            if was != may_run || (!may_run && !fenced_once) {
                self.may_run.send_replace(may_run);
                if may_run {
                    tracing::info!("lease held: personas may run");
                    fenced_once = false;
                } else {
                    self.fence_all().await;
                    fenced_once = true;
                }
            }
            // wake at the next tick, or at the expiry if it comes first
            let pause = match until_ms.checked_sub(now_ms) {
                Some(left) if left > 0 => TICK.min(Duration::from_millis(left)),
                _ => TICK,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = lease_rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// SIGKILL every persona process of this node now.
    async fn fence_all(&self) {
        let table = self.supervisor.status().borrow().clone();
        let live: Vec<String> = table
            .values()
            .filter(|s| s.phase.has_process() || matches!(s.phase, Phase::Backoff | Phase::Pending))
            .map(|s| s.name.clone())
            .collect();
        tracing::warn!(personas = live.len(), "lease lost: fencing every persona of this node");
        for name in live {
            // epoch 0: whatever the registry says when the lease is back starts it anew
            let act = Act::Fence { reason: "fenced: this node lost its lease (no quorum)".into() };
            if let Err(e) = self.supervisor.act_at(&name, act, Some(0)).await {
                tracing::error!(persona = %name, error = %e, "cannot fence");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_rewritten_in_place_and_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEASE_FILE), "1700000000000").unwrap();
        assert_eq!(Fence::boot_grace_until_ms(dir.path()), 1_700_000_000_000, "an older node's bare number");
        let mut f = LeaseFile::open(dir.path()).unwrap();
        assert_eq!(Fence::boot_grace_until_ms(dir.path()), 1_700_000_000_000, "opening changes nothing");
        f.write(1_700_000_001_000);
        assert_eq!(Fence::boot_grace_until_ms(dir.path()), 1_700_000_001_000);
        f.write(u64::MAX);
        f.write(5);
        assert_eq!(read_lease(&dir.path().join(LEASE_FILE)).unwrap(), Some(5));
        // a torn read: digits of two writes mixed
        let torn = format!("{}{}", &encode_lease(1_700_000_009_999)[..10], &encode_lease(1_600_000_000_000)[10..]);
        assert_eq!(parse_lease(&torn), None);
        assert_eq!(read_lease(&dir.path().join("none")).unwrap(), None);
    }
}
