//! The reconciler: carries out on this node what the registry wants of the personas assigned
//! to it — add, remove, start at a new epoch (restart, wake, operator start), stop,
//! hibernate, kill, budget changes — through [`Control`], so every stop drains the gateway
//! first. It plans with [`mindmesh_core::reconcile::plan`] when an entry changes (and for
//! every entry once at start), runs each persona's steps in a task of its own (a slow drain of
//! one holds up no other), and reports the decisions it carried out back to the registry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::PersonaSpec;
use mindmesh_core::clock::Clock;
use mindmesh_core::reconcile::{Local, Step, plan};
use mindmesh_core::registry::{Command, NodeId, PersonaEntry, Registry};
use mindmesh_core::{Action, Phase};
use mindmesh_net::MeshHandle;
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::{Act, SupervisorHandle};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::Control;

/// How often a pass runs without a registry change (retries of failed steps).
const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Longest wait for a migrating persona to save its state and stop.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most persona tasks in flight at once.
const MAX_IN_FLIGHT: usize = 64;

pub struct Reconciler {
    pub mesh: MeshHandle,
    pub supervisor: SupervisorHandle,
    pub control: Control,
    pub store: StoreHandle,
    pub clock: Arc<dyn Clock>,
    /// False while this node is fenced (no lease): nothing starts.
    pub may_run: watch::Receiver<bool>,
    /// Broken on purpose (the simulator's check of its checks): plan a persona once, then
    /// ignore its changes. See [`crate::daemon::NodeFaults::plan_once`].
    pub plan_once: bool,
    /// Broken on purpose as well: skip every restart step and report it done. See
    /// [`crate::daemon::NodeFaults::skip_restarts`].
    pub skip_restarts: bool,
}

struct Done {
    name: String,
    ok: bool,
    outcome: String,
}

impl Reconciler {
    pub async fn run(self, stop: CancellationToken) {
        let me = self.mesh.node_id();
        // the spec each local persona runs, to see spec changes (the status table has no spec)
        let mut specs: HashMap<String, PersonaSpec> = match self.store.list_personas().await {
            Ok(records) => records.into_iter().map(|r| (r.spec.name.clone(), r.spec)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "reconciler cannot read the local personas");
                HashMap::new()
            }
        };
        // the entry version (registry index) each persona was last planned at
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        // personas whose plan failed: the entry version it failed at and when to try again.
        // Retried at once, a step that keeps failing (a start the supervisor refuses) spun
        // this loop without end; a new version of the entry is planned at once still.
        let mut failed: HashMap<String, (u64, tokio::time::Instant)> = HashMap::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut registry = self.mesh.watch_registry();
        let mut may_run = self.may_run.clone();
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The fence only publishes a change of the lease, so any change seen while the lease is
        // held means it was lost in between and fencing may have killed what runs here.
        // Comparing with the value seen last missed a loss and a return that both landed while
        // this loop was busy (reporting to a leader it could not reach): nothing fencing had
        // stopped ever started again (simulator seeds 249, 332, 335, …).
        let mut lease_moved = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = registry.changed() => if changed.is_err() { break },
                changed = may_run.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    lease_moved = true;
                }
                Some(done) = tasks.join_next() => {
                    if let Ok(done) = done {
                        in_flight.remove(&done.name);
                        if done.ok {
                            failed.remove(&done.name);
                        } else if let Some(index) = seen.remove(&done.name) {
                            // plan it again once the retry interval has passed
                            failed.insert(done.name.clone(), (index, tokio::time::Instant::now() + RETRY_INTERVAL));
                        }
                        self.report_executed(me, &done).await;
                    }
                }
                _ = retry.tick() => {}
            }
            let reg = registry.borrow_and_update().clone();
            // until this node is registered, the registry it holds may be far behind: acting on
            // it could remove personas that are in fact still ours
            if !reg.nodes.contains_key(&me) {
                continue;
            }
            // woken by another branch, this pass must still see a change the select did not
            // (reading the value marks it seen)
            lease_moved |= may_run.has_changed().unwrap_or(false);
            let allowed = *may_run.borrow_and_update();
            if allowed && lease_moved {
                // the lease is back: what fencing stopped starts again where it is still ours
                seen.clear();
            }
            lease_moved = false;
            let local = self.supervisor.status().borrow().clone();
            let mut ours: Vec<_> = reg.personas_on(me).collect();
            // adapters first: a base started now loads the adapters its node has (one added
            // later restarts it to load it)
            ours.sort_by_key(|(_, e)| e.spec.adapter.is_none());
            for (name, entry) in ours {
                if !allowed {
                    break;
                }
                if in_flight.contains(name) || in_flight.len() >= MAX_IN_FLIGHT {
                    continue;
                }
                if failed
                    .get(name)
                    .is_some_and(|(index, until)| *index == entry.updated_index && tokio::time::Instant::now() < *until)
                {
                    continue;
                }
                if let Some(to) = entry.migrating_to {
                    if seen.get(name) != Some(&entry.updated_index) {
                        seen.insert(name.clone(), entry.updated_index);
                        tracing::info!(persona = %name, to, "migrating: drain, save state, stop, release");
                        in_flight.insert(name.clone());
                        tasks.spawn(self.release(me, name.clone(), entry.clone()));
                    }
                    continue;
                }
                if seen.get(name) == Some(&entry.updated_index) && local.contains_key(name) {
                    continue;
                }
                if self.plan_once && seen.contains_key(name) && local.contains_key(name) {
                    continue;
                }
                let status = local.get(name);
                let l =
                    status.map(|s| Local { phase: s.phase, epoch: s.epoch, budget: &s.budget, spec: specs.get(name) });
                let steps = plan(entry, l.as_ref());
                seen.insert(name.clone(), entry.updated_index);
                if steps.is_empty() {
                    continue;
                }
                tracing::info!(persona = %name, ?steps, epoch = entry.epoch, "reconciling");
                let mut spec = entry.spec.clone();
                spec.budget = entry.budget.clone();
                specs.insert(name.clone(), spec);
                in_flight.insert(name.clone());
                let steps = if self.skip_restarts {
                    steps.into_iter().filter(|s| !matches!(s, Step::Restart)).collect()
                } else {
                    steps
                };
                tasks.spawn(self.execute(name.clone(), entry.clone(), steps));
            }
            // what runs here but is no longer ours (removed, or placed elsewhere)
            for name in local.keys() {
                let ours = reg.personas.get(name).is_some_and(|e| e.node == Some(me));
                if ours || in_flight.contains(name) || in_flight.len() >= MAX_IN_FLIGHT {
                    continue;
                }
                tracing::info!(persona = %name, "no longer assigned here: removing");
                specs.remove(name);
                seen.remove(name);
                failed.remove(name);
                in_flight.insert(name.clone());
                let control = self.control.clone();
                let name = name.clone();
                tasks.spawn(async move {
                    let r = control.remove(&name).await;
                    Done { ok: r.is_ok(), outcome: r.err().map_or_else(|| "removed".into(), |e| e.to_string()), name }
                });
            }
        }
        tasks.shutdown().await;
    }

    /// The source's part of a migration: drain and hibernate the persona here (its state saved
    /// through its hook), then hand the state over through the registry, which moves it.
    fn release(&self, me: NodeId, name: String, entry: PersonaEntry) -> impl Future<Output = Done> + use<> {
        let (control, supervisor, mesh, clock) =
            (self.control.clone(), self.supervisor.clone(), self.mesh.clone(), self.clock.clone());
        async move {
            let r: Result<usize, String> = async {
                let phase = supervisor.status().borrow().get(&name).map(|s| s.phase);
                if phase.is_some_and(|p| p.has_process()) {
                    control.act(&name, Act::Hibernate).await.map_err(|e| e.to_string())?;
                    let down = [Phase::Hibernating, Phase::Stopped, Phase::Killed, Phase::Failed];
                    supervisor.wait_for(&name, &down, RELEASE_TIMEOUT).await.map_err(|e| e.to_string())?;
                }
                let state = match phase {
                    Some(_) => supervisor.saved_state(&name).await.map_err(|e| e.to_string())?,
                    None => entry.checkpoint.as_ref().map(|c| c.state.clone()),
                };
                let bytes = state.as_ref().map_or(0, Vec::len);
                let cmd = Command::CompleteMigration {
                    name: name.clone(),
                    from: me,
                    epoch: entry.epoch,
                    state,
                    at_ms: clock.now_ms(),
                };
                mesh.propose(cmd).await.map_err(|e| e.to_string())?;
                Ok(bytes)
            }
            .await;
            match r {
                Ok(bytes) => {
                    tracing::info!(persona = %name, state_bytes = bytes, "released to its new node");
                    Done { name, ok: true, outcome: format!("released with {bytes} bytes of state") }
                }
                Err(e) => {
                    tracing::warn!(persona = %name, error = %e, "migration release failed; retried");
                    Done { name, ok: false, outcome: format!("release failed: {e}") }
                }
            }
        }
    }

    fn execute(&self, name: String, entry: PersonaEntry, steps: Vec<Step>) -> impl Future<Output = Done> + use<> {
        let (control, supervisor, store) = (self.control.clone(), self.supervisor.clone(), self.store.clone());
        async move {
            let mut done = Vec::new();
            for step in steps {
                let r = run_step(&control, &supervisor, &store, &name, &entry, &step).await;
                match r {
                    Ok(()) => done.push(step_name(&step)),
                    Err(e) => {
                        tracing::warn!(persona = %name, step = step_name(&step), error = %e, "reconcile step failed");
                        return Done { name, ok: false, outcome: format!("{} failed: {e}", step_name(&step)) };
                    }
                }
            }
            Done { name, ok: true, outcome: done.join(", ") }
        }
    }

    /// Mark the decisions behind what was just carried out as executed by this node.
    async fn report_executed(&self, me: NodeId, done: &Done) {
        let reg: Arc<Registry> = self.mesh.registry();
        let Some(entry) = reg.personas.get(&done.name) else { return };
        // Only the node a persona is placed on carries out decisions about it. A source node
        // finishing its release, or a node removing a persona placed elsewhere since, reported
        // the restarts and stops still pending as executed by itself — carried out by its
        // replacement, or not at all (a move is likewise carried out where the persona lands).
        if entry.node != Some(me) || entry.migrating_to.is_some() {
            return;
        }
        let seqs: Vec<u64> = reg
            .decisions
            .iter()
            .filter(|d| {
                d.decision.persona == done.name
                    && d.verdict.is_pending()
                    && d.index <= entry.updated_index
                    && executable(d.decision.action)
            })
            .map(|d| d.seq)
            .take(mindmesh_core::registry::MAX_DECISIONS_PER_COMMAND)
            .collect();
        if seqs.is_empty() {
            return;
        }
        // one entry for all of them, not one each
        let cmd =
            Command::Report { seqs, node: me, at_ms: self.clock.now_ms(), ok: done.ok, outcome: done.outcome.clone() };
        if let Err(e) = self.mesh.propose(cmd).await {
            tracing::debug!(persona = %done.name, error = %e, "cannot report decisions carried out");
        }
    }
}

/// Decisions that ask a node to do something (the others are only recorded).
pub fn executable(action: Action) -> bool {
    action.asks_a_node()
}

async fn run_step(
    control: &Control,
    supervisor: &SupervisorHandle,
    store: &StoreHandle,
    name: &str,
    entry: &PersonaEntry,
    step: &Step,
) -> Result<(), String> {
    let epoch = Some(entry.epoch);
    let r = match step {
        Step::Add { start } => {
            let mut spec = entry.spec.clone();
            spec.budget = entry.budget.clone();
            match (&entry.checkpoint, *start) {
                // new here (failover, migration): start from the state it last saved elsewhere
                (Some(cp), true) => {
                    store.put_state(name, cp.state.clone()).await.map_err(|e| e.to_string())?;
                    supervisor.add_at(spec, false, entry.epoch).await.map_err(|e| e.to_string())?;
                    let wake = Act::Wake { state: Some(cp.state.clone()) };
                    supervisor.act_at(name, wake, epoch).await.map(|_| ())
                }
                (Some(cp), false) => {
                    store.put_state(name, cp.state.clone()).await.map_err(|e| e.to_string())?;
                    supervisor.add_at(spec, false, entry.epoch).await
                }
                (None, start) => supervisor.add_at(spec, start, entry.epoch).await,
            }
        }
        Step::Remove => control.remove(name).await,
        Step::SetBudget(patch) => control.set_budget(name, patch.clone()).await.map(|_| ()),
        Step::Start => {
            let hibernating = supervisor.status().borrow().get(name).is_some_and(|s| s.phase == Phase::Hibernating);
            let act = if hibernating {
                Act::Wake { state: store.get_state(name).await.map_err(|e| e.to_string())? }
            } else {
                Act::Start
            };
            control.act_at(name, act, epoch).await.map(|_| ())
        }
        Step::Restart => control.act_at(name, Act::Restart, epoch).await.map(|_| ()),
        Step::Stop => control.act(name, Act::Stop).await.map(|_| ()),
        Step::Hibernate => control.act(name, Act::Hibernate).await.map(|_| ()),
        Step::Pause => control.act(name, Act::Pause).await.map(|_| ()),
        // the thaw is the wake: it carries the entry's new epoch
        Step::Resume => control.act_at(name, Act::Wake { state: None }, epoch).await.map(|_| ()),
        Step::Kill { reason } => control.act(name, Act::Kill { reason: reason.clone() }).await.map(|_| ()),
    };
    r.map_err(|e| e.to_string())
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Add { .. } => "add",
        Step::Remove => "remove",
        Step::SetBudget(_) => "budget",
        Step::Start => "start",
        Step::Restart => "restart",
        Step::Stop => "stop",
        Step::Hibernate => "hibernate",
        Step::Pause => "pause",
        Step::Resume => "resume",
        Step::Kill { .. } => "kill",
    }
}
