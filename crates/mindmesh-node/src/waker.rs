//! Waking a hibernating persona with the state it saved: the gateway wakes on request and the
//! control facade on an operator's word, so it sits below both. A wake that needs memory the
//! node does not have is admitted first ([`crate::admit`]): idle personas are evicted to
//! make room, or the wake is refused without being tried.

use mindmesh_core::Phase;
use mindmesh_core::registry::{Command, DesiredPhase};
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::{Act, SupervisorHandle};

use crate::admit::{Admitter, NoRoom};

/// Why a wake did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum WakeError {
    /// No memory for it here, and nothing idle to evict: try again later, or elsewhere.
    NoRoom(NoRoom),
    Failed(String),
}

impl std::fmt::Display for WakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WakeError::NoRoom(n) => f.write_str(&n.message),
            WakeError::Failed(why) => f.write_str(why),
        }
    }
}

fn failed(why: impl Into<String>) -> WakeError {
    WakeError::Failed(why.into())
}

/// Brings a hibernating persona back with the state it saved.
#[derive(Clone)]
pub struct Waker {
    supervisor: SupervisorHandle,
    store: StoreHandle,
    /// In a mesh: wake only what the registry places here, and only while the lease is held.
    mesh: Option<(mindmesh_net::MeshHandle, tokio::sync::watch::Receiver<bool>)>,
    /// Memory-aware admission; none: every wake is let through.
    admit: Option<Admitter>,
}

impl Waker {
    pub fn new(supervisor: SupervisorHandle, store: StoreHandle) -> Self {
        Waker { supervisor, store, mesh: None, admit: None }
    }

    /// Refuse to wake a persona that is fenced, migrating or placed elsewhere: waking it here
    /// would run it twice.
    pub fn guarded(mut self, mesh: mindmesh_net::MeshHandle, may_run: tokio::sync::watch::Receiver<bool>) -> Self {
        self.mesh = Some((mesh, may_run));
        self
    }

    /// Admit every wake against the node's capacity first.
    pub fn admitting(mut self, admit: Admitter) -> Self {
        self.admit = Some(admit);
        self
    }

    /// Admit `name` against the node's capacity without waking it: an operator's start or
    /// wake, which the mesh's reconciler carries out once committed. Evictions make room, or
    /// the refusal says why and nothing should be committed.
    pub async fn admit(&self, name: &str) -> Result<(), NoRoom> {
        match &self.admit {
            Some(a) => a.admit(name).await,
            None => Ok(()),
        }
    }

    /// Wake `name` for a request that waits for it. A persona the mesh wants hibernating (an
    /// operator's or the brain's word) is woken through the registry: the request's wake is
    /// committed as `desired = running`, and this node's reconciler starts it at the new epoch —
    /// otherwise the next replan would hibernate it again and every request would pay a cold
    /// start. One the node hibernated by itself (idle, or evicted) the mesh still wants running:
    /// it wakes here at once. Either way it is admitted first: evictions make room for it, or
    /// the wake is refused and nothing is committed.
    ///
    /// An adapter persona is served by its base's process: waking the adapter wakes its base
    /// too, when that is hibernated (by the same rules, admission included: the memory is the
    /// base's).
    pub async fn wake(&self, name: &str) -> Result<Phase, WakeError> {
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
            self.wake_one(&base).await.map_err(|e| match e {
                WakeError::NoRoom(n) => {
                    WakeError::NoRoom(NoRoom { message: format!("its base {base}: {}", n.message), ..n })
                }
                WakeError::Failed(why) => failed(format!("its base {base}: {why}")),
            })?;
        }
        Ok(phase)
    }

    async fn wake_one(&self, name: &str) -> Result<Phase, WakeError> {
        let mut through_mesh = None;
        if let Some((mesh, may_run)) = &self.mesh {
            if !*may_run.borrow() {
                return Err(failed("this node is fenced (no lease): it wakes nothing"));
            }
            let reg = mesh.registry();
            if let Some(e) = reg.personas.get(name) {
                if e.node != Some(mesh.node_id()) || e.migrating_to.is_some() {
                    return Err(failed(format!("{name} is placed on another node or moving there")));
                }
                match e.phase {
                    DesiredPhase::Running => {}
                    DesiredPhase::Hibernating | DesiredPhase::Paused => through_mesh = Some(mesh.clone()),
                    other => {
                        return Err(failed(format!("the mesh wants {name} {} (an operator's word)", other.as_str())));
                    }
                }
            }
        }
        if let Some(admit) = &self.admit {
            admit.admit(name).await.map_err(WakeError::NoRoom)?;
        }
        if let Some(mesh) = through_mesh {
            let wake = Command::SetPhase { name: name.to_owned(), phase: DesiredPhase::Running, reason: None };
            mesh.propose(wake).await.map_err(|e| failed(format!("the mesh cannot commit its wake: {e}")))?;
            return Ok(Phase::Hibernating);
        }
        let state =
            self.store.get_state(name).await.map_err(|e| failed(format!("cannot read its saved state: {e}")))?;
        self.supervisor.act(name, Act::Wake { state }).await.map_err(|e| failed(e.to_string()))
    }
}
