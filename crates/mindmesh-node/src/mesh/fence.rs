//! Fencing on the node: while its lease is not held, it runs no persona. When the lease lapses
//! (partitioned from the majority, or no leader for longer than an election takes), every
//! process is SIGKILLed at once — the leader may be about to place those personas elsewhere —
//! and nothing starts again (no restart by policy, no wake on request, no reconcile) until the
//! lease is back; then the reconciler restarts whatever the registry still places here.
//!
//! The lease's expiry is also written to `<data_dir>/lease` (wall clock), so a node restarted
//! quickly keeps what it adopted until that expiry, while one that was away long enough to be
//! replaced fences what it adopted at once. A lost write only shortens the lease: safe.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

pub struct Fence {
    pub mesh: MeshHandle,
    pub supervisor: SupervisorHandle,
    pub data_dir: PathBuf,
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
        std::fs::read_to_string(data_dir.join(LEASE_FILE)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    pub async fn run(self, stop: CancellationToken) {
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
                self.persist(until_ms);
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

    fn persist(&self, until_ms: u64) {
        let path = self.data_dir.join(LEASE_FILE);
        let tmp = path.with_extension("tmp");
        let r = std::fs::write(&tmp, until_ms.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            tracing::debug!(error = %e, "cannot write the lease file");
        }
    }
}
