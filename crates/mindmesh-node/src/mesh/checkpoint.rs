//! State checkpoints: each persona this node runs has its state saved off-node — in the
//! registry, so every replica holds it — every `checkpoint_interval_ms` (through its
//! `POST /mindmesh/state/save` hook, without stopping it) and as soon as it hibernates. A
//! failover then restores the latest checkpoint instead of a blank persona. Only the node that
//! runs a persona at the registry's epoch may checkpoint it (the registry refuses the others),
//! and only a state that changed is sent again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::Phase;
use mindmesh_core::clock::Clock;
use mindmesh_core::registry::Command;
use mindmesh_net::MeshHandle;
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::SupervisorHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often hibernations are looked for (between full checkpoints).
const TICK: Duration = Duration::from_secs(1);

pub struct Checkpointer {
    pub mesh: MeshHandle,
    pub supervisor: SupervisorHandle,
    pub store: StoreHandle,
    pub clock: Arc<dyn Clock>,
    pub interval: Duration,
    pub max_bytes: usize,
    pub may_run: watch::Receiver<bool>,
}

impl Checkpointer {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = tokio::time::Instant::now();
        let mut phases: HashMap<String, Phase> = HashMap::new();
        let mut too_big: HashMap<String, usize> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !*self.may_run.borrow() {
                continue;
            }
            let full = last_full.elapsed() >= self.interval;
            if full {
                last_full = tokio::time::Instant::now();
            }
            let me = self.mesh.node_id();
            let registry = self.mesh.registry();
            let table = self.supervisor.status().borrow().clone();
            for (name, entry) in registry.personas_on(me) {
                let Some(local) = table.get(name) else { continue };
                let became_hibernating =
                    local.phase == Phase::Hibernating && phases.get(name) != Some(&Phase::Hibernating);
                phases.insert(name.clone(), local.phase);
                if entry.migrating_to.is_some() || local.epoch != entry.epoch {
                    continue; // a migration carries its own state; a stale run checkpoints nothing
                }
                let state = match local.phase {
                    Phase::Running if full => self.supervisor.save_state(name).await,
                    Phase::Hibernating if became_hibernating || full => self
                        .store
                        .get_state(name)
                        .await
                        .map_err(|e| mindmesh_supervisor::SupervisorError::Probe(e.to_string())),
                    _ => continue,
                };
                let state = match state {
                    Ok(Some(s)) => s,
                    Ok(None) => continue, // no state hook
                    Err(e) => {
                        tracing::debug!(persona = %name, error = %e, "no checkpoint this time");
                        continue;
                    }
                };
                if state.len() > self.max_bytes {
                    if too_big.insert(name.clone(), state.len()) != Some(state.len()) {
                        tracing::warn!(persona = %name, bytes = state.len(), max = self.max_bytes, "state too large to checkpoint off-node");
                    }
                    continue;
                }
                if entry.checkpoint.as_ref().is_some_and(|c| c.state == state) {
                    continue;
                }
                let bytes = state.len();
                let cmd = Command::Checkpoint {
                    name: name.clone(),
                    node: me,
                    epoch: entry.epoch,
                    state,
                    at_ms: self.clock.now_ms(),
                };
                match self.mesh.propose(cmd).await {
                    Ok(_) => tracing::debug!(persona = %name, bytes, "checkpointed"),
                    Err(e) => tracing::debug!(persona = %name, error = %e, "checkpoint not committed"),
                }
            }
            phases.retain(|n, _| table.contains_key(n));
        }
    }
}
