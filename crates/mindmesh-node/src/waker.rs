//! Waking a hibernating persona with the state it saved: the gateway wakes on request and the
//! control facade on an operator's word, so it sits below both.

use mindmesh_core::Phase;
use mindmesh_core::registry::{Command, DesiredPhase};
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::{Act, SupervisorHandle};

/// Brings a hibernating persona back with the state it saved.
#[derive(Clone)]
pub struct Waker {
    supervisor: SupervisorHandle,
    store: StoreHandle,
    /// In a mesh: wake only what the registry places here, and only while the lease is held.
    mesh: Option<(mindmesh_net::MeshHandle, tokio::sync::watch::Receiver<bool>)>,
}

impl Waker {
    pub fn new(supervisor: SupervisorHandle, store: StoreHandle) -> Self {
        Waker { supervisor, store, mesh: None }
    }

    /// Refuse to wake a persona that is fenced, migrating or placed elsewhere: waking it here
    /// would run it twice.
    pub fn guarded(mut self, mesh: mindmesh_net::MeshHandle, may_run: tokio::sync::watch::Receiver<bool>) -> Self {
        self.mesh = Some((mesh, may_run));
        self
    }

    /// Wake `name` for a request that waits for it. A persona the mesh wants hibernating (an
    /// operator's or the brain's word) is woken through the registry: the request's wake is
    /// committed as `desired = running`, and this node's reconciler starts it at the new epoch —
    /// otherwise the next replan would hibernate it again and every request would pay a cold
    /// start. One the node hibernated by itself (idle) the mesh still wants running: it wakes
    /// here at once.
    ///
    /// An adapter persona is served by its base's process: waking the adapter wakes its base
    /// too, when that is hibernated (by the same rules).
    pub async fn wake(&self, name: &str) -> Result<Phase, String> {
        let phase = self.wake_one(name).await?;
        let base = {
            let table = self.supervisor.status().borrow().clone();
            table
                .get(name)
                .and_then(|s| s.adapter.as_ref())
                .map(|a| a.base.clone())
                .filter(|base| table.get(base).is_some_and(|b| b.phase.is_hibernated()))
        };
        if let Some(base) = base {
            tracing::info!(adapter = name, %base, "waking the base of an adapter");
            self.wake_one(&base).await.map_err(|e| format!("its base {base}: {e}"))?;
        }
        Ok(phase)
    }

    async fn wake_one(&self, name: &str) -> Result<Phase, String> {
        if let Some((mesh, may_run)) = &self.mesh {
            if !*may_run.borrow() {
                return Err("this node is fenced (no lease): it wakes nothing".into());
            }
            let reg = mesh.registry();
            if let Some(e) = reg.personas.get(name) {
                if e.node != Some(mesh.node_id()) || e.migrating_to.is_some() {
                    return Err(format!("{name} is placed on another node or moving there"));
                }
                match e.phase {
                    DesiredPhase::Running => {}
                    DesiredPhase::Hibernating | DesiredPhase::Paused => {
                        let wake =
                            Command::SetPhase { name: name.to_owned(), phase: DesiredPhase::Running, reason: None };
                        mesh.propose(wake).await.map_err(|e| format!("the mesh cannot commit its wake: {e}"))?;
                        return Ok(Phase::Hibernating);
                    }
                    other => return Err(format!("the mesh wants {name} {} (an operator's word)", other.as_str())),
                }
            }
        }
        let state = self.store.get_state(name).await.map_err(|e| format!("cannot read its saved state: {e}"))?;
        self.supervisor.act(name, Act::Wake { state }).await.map_err(|e| e.to_string())
    }
}
