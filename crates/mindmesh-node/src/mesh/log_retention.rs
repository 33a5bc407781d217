//! Which persona logs a node keeps. Logs follow the registry: a persona that left the mesh
//! loses its logs on every node at once; one that moved to another node keeps its logs here,
//! readable with `mindmesh logs NAME --node THIS`, for `logs.retention_s` after their last
//! line; one placed here (or running here) keeps them. Only a registry that knows this node
//! is trusted: a restarting node's registry may be far behind and would delete live logs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::Clock;
use mindmesh_core::registry::{NodeId, Registry};
use mindmesh_net::MeshHandle;
use mindmesh_supervisor::SupervisorHandle;
use mindmesh_supervisor::logs::{self, files};
use tokio_util::sync::CancellationToken;

/// A pass at least this often (retention), and at most this often on registry changes.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const MIN_GAP: Duration = Duration::from_secs(1);

pub struct LogRetention {
    pub mesh: MeshHandle,
    pub supervisor: SupervisorHandle,
    /// The node's `logs/` directory.
    pub root: PathBuf,
    pub retention_ms: u64,
    pub clock: Arc<dyn Clock>,
}

/// What to do with one persona's logs.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Delete(&'static str),
}

fn judge(
    reg: &Registry,
    me: NodeId,
    name: &str,
    runs_here: bool,
    newest_ms: u64,
    now_ms: u64,
    retention_ms: u64,
) -> Verdict {
    if runs_here {
        return Verdict::Keep;
    }
    match reg.personas.get(name) {
        None => Verdict::Delete("the persona was removed"),
        Some(e) if e.node == Some(me) => Verdict::Keep,
        Some(_) if now_ms.saturating_sub(newest_ms) > retention_ms => {
            Verdict::Delete("it runs elsewhere and its logs here are past retention")
        }
        Some(_) => Verdict::Keep,
    }
}

impl LogRetention {
    pub async fn run(self, stop: CancellationToken) {
        let me = self.mesh.node_id();
        let mut registry = self.mesh.watch_registry();
        let mut status = self.supervisor.status();
        let mut local: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = registry.changed() => if changed.is_err() { break },
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // the table changes every metrics tick: look only when a persona left
                    // this node (the removal that deleted it from the registry is done)
                    let now: HashSet<String> = status.borrow_and_update().keys().cloned().collect();
                    let left = local.iter().any(|n| !now.contains(n));
                    local = now;
                    if !left {
                        continue;
                    }
                }
                _ = tick.tick() => {}
            }
            let reg = registry.borrow_and_update().clone();
            if reg.nodes.contains_key(&me) {
                self.sweep(&reg, me).await;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(MIN_GAP) => {}
            }
        }
    }

    async fn sweep(&self, reg: &Registry, me: NodeId) {
        let here: HashSet<String> = self.supervisor.status().borrow().keys().cloned().collect();
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        let now = self.clock.now_ms();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            // only what this node wrote: never anything else someone put here
            if mindmesh_core::spec::validate_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let newest_ms = files::list(&entry.path()).iter().map(|f| f.modified_ms).max().unwrap_or(0);
            let verdict = judge(reg, me, &name, here.contains(&name), newest_ms, now, self.retention_ms);
            if let Verdict::Delete(why) = verdict {
                match logs::delete(&self.root, &name) {
                    Ok(()) => tracing::info!(persona = %name, why, "persona logs deleted"),
                    Err(e) => tracing::warn!(persona = %name, error = %e, "cannot delete persona logs"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mindmesh_core::PersonaSpec;
    use mindmesh_core::registry::{ApplyCtx, Capacity, Command, NodeInfo, Proposal, ProposalId};

    use super::*;

    fn apply(reg: &mut Registry, index: u64, command: Command) {
        let p = Proposal { id: ProposalId { node: 1, nonce: index }, command };
        assert!(!reg.apply(&p, ApplyCtx { index, term: 1 }).is_rejected());
    }

    #[test]
    fn logs_follow_the_registry() {
        let mut reg = Registry::default();
        for (id, name) in [(1, "a"), (2, "b")] {
            let info = NodeInfo {
                id,
                name: name.into(),
                addrs: vec![format!("/ip4/127.0.0.1/tcp/{id}")],
                capacity: Capacity { memory_mb: 1024, cpu_percent: 100.0 },
                labels: BTreeMap::new(),
                api: String::new(),
            };
            apply(&mut reg, id, Command::AddNode(info));
        }
        apply(&mut reg, 3, Command::put_persona(PersonaSpec::new("here", "x"), Some(1)));
        apply(&mut reg, 4, Command::put_persona(PersonaSpec::new("moved", "x"), Some(2)));
        let hour = 3_600_000;
        assert_eq!(judge(&reg, 1, "here", false, 0, 10 * hour, hour), Verdict::Keep);
        assert_eq!(judge(&reg, 1, "moved", false, 9 * hour + 1, 10 * hour, hour), Verdict::Keep);
        assert!(matches!(judge(&reg, 1, "moved", false, 8 * hour, 10 * hour, hour), Verdict::Delete(_)));
        assert!(matches!(judge(&reg, 1, "gone", false, 10 * hour, 10 * hour, hour), Verdict::Delete(_)));
        // still running here (the registry moved on, the process is not stopped yet)
        assert_eq!(judge(&reg, 1, "gone", true, 0, 10 * hour, hour), Verdict::Keep);
    }
}
