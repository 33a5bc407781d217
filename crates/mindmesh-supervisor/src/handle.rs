//! The supervisor's public face: a cloneable handle whose methods send commands over a
//! bounded channel to the supervisor task and wait for its answer.

use std::time::Duration;

use mindmesh_core::{Budget, BudgetPatch, PersonaRecord, PersonaSpec, Phase};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Result, SupervisorError};
use crate::status::StatusTable;

/// What an operator, a decision or the gateway asks of one persona.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    Start,
    Stop,
    Restart,
    /// Save state through the persona's hook, then stop; `wake` brings it back with it.
    Hibernate,
    /// Freeze the process group (the paused tier): memory kept, `wake` thaws it.
    Pause,
    /// Start again, restoring the given state blob (or the last one saved here).
    Wake {
        state: Option<Vec<u8>>,
    },
    /// Stop and stay down until an operator starts it.
    Kill {
        reason: String,
    },
    /// Fencing: the node lost its lease, so the process must be gone now — SIGKILL to the
    /// whole group at once, no grace; it stays down (killed, with the reason) until the mesh
    /// starts it again.
    Fence {
        reason: String,
    },
}

impl Act {
    pub fn name(&self) -> &'static str {
        match self {
            Act::Start => "start",
            Act::Stop => "stop",
            Act::Restart => "restart",
            Act::Hibernate => "hibernate",
            Act::Pause => "pause",
            Act::Wake { .. } => "wake",
            Act::Kill { .. } => "kill",
            Act::Fence { .. } => "fence",
        }
    }
}

/// What a restarted node found of the processes its previous run left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Still running and taken over as they are.
    pub adopted: Vec<String>,
    /// Found but not adoptable (or duplicated): killed and started afresh.
    pub replaced: Vec<String>,
    /// Not found: started afresh.
    pub started: Vec<String>,
    /// Processes of this node with no persona to own them: killed.
    pub strays_killed: usize,
}

pub(crate) enum Command {
    Add { spec: Box<PersonaSpec>, start: bool, epoch: u64, reply: oneshot::Sender<Result<()>> },
    Restore { records: Vec<PersonaRecord>, reply: oneshot::Sender<RestoreSummary> },
    Remove { name: String, reply: oneshot::Sender<Result<()>> },
    Act { name: String, act: Act, epoch: Option<u64>, reply: oneshot::Sender<Result<Phase>> },
    SetBudget { name: String, patch: BudgetPatch, reply: oneshot::Sender<Result<Budget>> },
    WaitFor { name: String, phases: Vec<Phase>, reply: oneshot::Sender<Result<Phase>> },
    SaveState { name: String, reply: oneshot::Sender<Result<Option<Vec<u8>>>> },
    SavedState { name: String, reply: oneshot::Sender<Result<Option<Vec<u8>>>> },
    CheckProgram { spec: Box<PersonaSpec>, reply: oneshot::Sender<Result<()>> },
    Shutdown { reply: oneshot::Sender<()> },
}

#[derive(Clone)]
pub struct SupervisorHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) status: watch::Receiver<StatusTable>,
    pub(crate) limits: &'static str,
}

impl SupervisorHandle {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| SupervisorError::Stopped)?;
        rx.await.map_err(|_| SupervisorError::Stopped)
    }

    /// Register a persona (validated), and start it at once if `start`.
    pub async fn add(&self, spec: PersonaSpec, start: bool) -> Result<()> {
        self.add_at(spec, start, 0).await
    }

    /// [`SupervisorHandle::add`] for a persona the mesh placed here at registry `epoch`.
    pub async fn add_at(&self, spec: PersonaSpec, start: bool, epoch: u64) -> Result<()> {
        self.call(|reply| Command::Add { spec: Box::new(spec), start, epoch, reply }).await?
    }

    /// Would this node find the program `spec` names, runnable? [`SupervisorError::Command`]
    /// says why not; nothing is added either way.
    pub async fn check_command(&self, spec: &PersonaSpec) -> Result<()> {
        self.call(|reply| Command::CheckProgram { spec: Box::new(spec.clone()), reply }).await?
    }

    /// Take over the personas a previous run of this node recorded: adopt their processes
    /// where they still run, replace them otherwise, kill strays.
    pub async fn restore(&self, records: Vec<PersonaRecord>) -> Result<RestoreSummary> {
        self.call(|reply| Command::Restore { records, reply }).await
    }

    /// Stop (gracefully) and forget a persona.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.call(|reply| Command::Remove { name: name.to_owned(), reply }).await?
    }

    /// Ask for an action; returns the phase right after the request was taken (the action
    /// may still be under way: see [`SupervisorHandle::wait_for`]).
    pub async fn act(&self, name: &str, act: Act) -> Result<Phase> {
        self.call(|reply| Command::Act { name: name.to_owned(), act, epoch: None, reply }).await?
    }

    /// [`SupervisorHandle::act`] on behalf of the mesh: records `epoch` as the registry epoch
    /// the persona now follows (kept across node restarts in its record).
    pub async fn act_at(&self, name: &str, act: Act, epoch: Option<u64>) -> Result<Phase> {
        self.call(|reply| Command::Act { name: name.to_owned(), act, epoch, reply }).await?
    }

    /// Change the budget at run time; the new budget applies at once (CPU throttle included).
    pub async fn set_budget(&self, name: &str, patch: BudgetPatch) -> Result<Budget> {
        self.call(|reply| Command::SetBudget { name: name.to_owned(), patch, reply }).await?
    }

    /// Wait until the persona is in one of `phases` (at most `timeout`).
    pub async fn wait_for(&self, name: &str, phases: &[Phase], timeout: Duration) -> Result<Phase> {
        let phases = phases.to_vec();
        let fut = self.call(|reply| Command::WaitFor { name: name.to_owned(), phases, reply });
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r?,
            Err(_) => Err(SupervisorError::Timeout(timeout.as_millis() as u64)),
        }
    }

    /// Ask a running persona for its state (its `POST /mindmesh/state/save` hook) without
    /// stopping it: a checkpoint. `None` if it has no hook.
    pub async fn save_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.call(|reply| Command::SaveState { name: name.to_owned(), reply }).await?
    }

    /// The state this node last kept for a persona (saved at hibernation, or handed to it at a
    /// wake), as the persona would find it in `MINDMESH_STATE_FILE`.
    pub async fn saved_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.call(|reply| Command::SavedState { name: name.to_owned(), reply }).await?
    }

    /// How hard limits and throttling are enforced on this host: "cgroup v1", "cgroup v2" or
    /// "measured + signals".
    pub fn limits_enforcement(&self) -> &'static str {
        self.limits
    }

    /// The live status table; cheap to read, updated on every change and metrics tick.
    pub fn status(&self) -> watch::Receiver<StatusTable> {
        self.status.clone()
    }

    /// Stop every persona gracefully (their recorded phases stay as they were, so the next
    /// start of the node brings back what was running) and end the supervisor.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}
