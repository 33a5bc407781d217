//! The node's one door for acting on a persona: operators (API, CLI), idle hibernation and —
//! later — the mesh's reconciler all come through here, so every stop of a serving process
//! drains the gateway first: new requests queue, requests in flight finish (within the drain
//! timeout), then the supervisor stops, restarts or hibernates the process.

use std::time::Duration;

use mindmesh_core::{Budget, BudgetPatch, Phase};
use mindmesh_supervisor::{Act, SupervisorError, SupervisorHandle};

use crate::gateway::Gateway;
use crate::waker::Waker;

/// Phases that show a process on its way out (or already replaced).
const LEFT_RUNNING: [Phase; 8] = [
    Phase::Stopping,
    Phase::Stopped,
    Phase::Hibernating,
    Phase::Killed,
    Phase::Failed,
    Phase::Backoff,
    Phase::Starting,
    Phase::Pending,
];

#[derive(Clone)]
pub struct Control {
    supervisor: SupervisorHandle,
    gateway: Gateway,
    waker: Waker,
    drain_timeout: Duration,
    /// Longest wait for a drained process to start going (a hibernation saves state first).
    settle_timeout: Duration,
}

impl Control {
    pub fn new(
        supervisor: SupervisorHandle,
        gateway: Gateway,
        waker: Waker,
        drain_timeout: Duration,
        settle_timeout: Duration,
    ) -> Self {
        Control { supervisor, gateway, waker, drain_timeout, settle_timeout }
    }

    /// Carry out `act`; restart, stop and hibernate of a persona with a process drain first.
    /// A kill does not wait: it is for a persona that must stop now, and its requests in flight
    /// get an explicit error. Returns the phase right after the supervisor took the action.
    pub async fn act(&self, name: &str, act: Act) -> Result<Phase, SupervisorError> {
        self.act_at(name, act, None).await
    }

    /// [`Control::act`] on behalf of the mesh, which records the registry `epoch` it follows.
    pub async fn act_at(&self, name: &str, act: Act, epoch: Option<u64>) -> Result<Phase, SupervisorError> {
        // a pause drains too: a request frozen mid-answer would wait for the next wake
        let drains = matches!(act, Act::Restart | Act::Stop | Act::Hibernate | Act::Pause);
        let serving = self.supervisor.status().borrow().get(name).is_some_and(|s| s.phase.has_process());
        if !drains || !serving {
            return self.supervisor.act_at(name, act, epoch).await;
        }
        let what = act.name();
        let guard = self.drain(name, what).await;
        // the requests of its adapter personas run on this process too
        let adapters: Vec<String> = {
            let table = self.supervisor.status().borrow().clone();
            table
                .values()
                .filter(|s| s.adapter.as_ref().is_some_and(|a| a.base == name))
                .map(|s| s.name.clone())
                .collect()
        };
        let mut adapter_guards = Vec::with_capacity(adapters.len());
        for a in &adapters {
            adapter_guards.push(self.drain(a, what).await);
        }
        let phase = self.supervisor.act_at(name, act, epoch).await?;
        if phase == Phase::Running {
            // a hibernation saves state before it stops: keep new requests off until it goes
            let _ = self.supervisor.wait_for(name, &LEFT_RUNNING, self.settle_timeout).await;
        }
        drop(guard);
        drop(adapter_guards);
        Ok(phase)
    }

    /// Change a budget at run time (the gateway applies it at once, to waiting requests too);
    /// a change that takes away the right to run drains first, as a stop does.
    pub async fn set_budget(&self, name: &str, patch: BudgetPatch) -> Result<Budget, SupervisorError> {
        let serving = self.supervisor.status().borrow().get(name).is_some_and(|s| s.phase.has_process());
        if patch.allowed_to_run != Some(false) || !serving {
            return self.supervisor.set_budget(name, patch).await;
        }
        let _guard = self.drain(name, "budget").await;
        self.supervisor.set_budget(name, patch).await
    }

    /// Drain, then stop and forget the persona; requests still waiting for it are refused.
    pub async fn remove(&self, name: &str) -> Result<(), SupervisorError> {
        let _guard = self.drain(name, "remove").await;
        self.supervisor.remove(name).await
    }

    pub async fn wake(&self, name: &str) -> Result<Phase, crate::waker::WakeError> {
        self.waker.wake(name).await
    }

    /// Make room for `name` to start here (see [`Waker::admit`]).
    pub async fn admit(&self, name: &str) -> Result<(), crate::admit::NoRoom> {
        self.waker.admit(name).await
    }

    async fn drain(&self, name: &str, why: &str) -> Option<crate::gateway::DrainGuard> {
        let started = std::time::Instant::now();
        let (guard, left) = self.gateway.drain(name, self.drain_timeout).await?;
        let waited_ms = started.elapsed().as_millis() as u64;
        if left > 0 {
            tracing::warn!(
                persona = name,
                action = why,
                left,
                waited_ms,
                "drain timed out; requests in flight will fail"
            );
        } else {
            tracing::info!(persona = name, action = why, waited_ms, "drained");
        }
        Some(guard)
    }
}
