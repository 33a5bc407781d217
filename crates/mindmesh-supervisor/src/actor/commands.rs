//! What the handle asks of the supervisor: add, remove, act, budgets, saved state.

use std::time::Duration;

use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::lifecycle::{Input, Lifecycle, StopGoal};
use mindmesh_core::metrics::PersonaSample;
use mindmesh_core::{Budget, BudgetPatch, Health, PersonaRecord, PersonaSpec, Phase};
use tokio::sync::oneshot;

use super::{Internal, Slot, Supervisor};
use crate::error::{Result, SupervisorError};
use crate::handle::{Act, Command};
use crate::host::Sig;
use crate::process;
use crate::status::Report;

impl Supervisor {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Add { spec, start, epoch, reply } => {
                let _ = reply.send(self.add(*spec, start, epoch));
            }
            Command::Restore { records, reply } => {
                let _ = reply.send(self.restore(records));
            }
            Command::Remove { name, reply } => self.remove(&name, reply),
            Command::Act { name, act, epoch, reply } => {
                if let (Some(e), Some(slot)) = (epoch, self.slots.get_mut(&name)) {
                    slot.record.epoch = e;
                }
                let _ = reply.send(self.act(&name, act));
            }
            Command::SetBudget { name, patch, reply } => {
                let _ = reply.send(self.set_budget(&name, &patch));
            }
            Command::WaitFor { name, phases, reply } => match self.slots.get_mut(&name) {
                None => {
                    let _ = reply.send(Err(SupervisorError::NotFound(name)));
                }
                Some(slot) if phases.contains(&slot.shown_phase()) => {
                    let _ = reply.send(Ok(slot.shown_phase()));
                }
                Some(slot) => slot.waiters.push((phases, reply)),
            },
            Command::SaveState { name, reply } => self.save_state(&name, reply),
            Command::CheckProgram { spec, reply } => {
                let resolved = process::resolve_program(&spec.command);
                let checked = self
                    .host
                    .check_program(&spec.command, &resolved, spec.working_dir.as_deref())
                    .map_err(|reason| SupervisorError::Command { command: spec.command.clone(), reason });
                let _ = reply.send(checked);
            }
            Command::SavedState { name, reply } => {
                let r = if self.slots.contains_key(&name) {
                    match std::fs::read(self.state_file(&name)) {
                        Ok(b) => Ok(Some(b)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(SupervisorError::io("read state file", e)),
                    }
                } else {
                    Err(SupervisorError::NotFound(name))
                };
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    pub(super) fn add(&mut self, spec: PersonaSpec, start: bool, epoch: u64) -> Result<()> {
        spec.validate()?;
        if self.slots.contains_key(&spec.name) {
            return Err(SupervisorError::Exists(spec.name));
        }
        if self.slots.len() >= self.settings.config.max_personas {
            return Err(SupervisorError::Full(self.settings.config.max_personas));
        }
        let now = self.now();
        let name = spec.name.clone();
        let record = PersonaRecord { epoch, ..PersonaRecord::new(spec, now) };
        self.insert_slot(record, Lifecycle::new(Default::default()));
        self.event(&name, EventKind::Added, String::new());
        if start && self.slots[&name].record.spec.budget.allowed_to_run {
            self.drive(&name, Input::Start);
        } else {
            self.changed(&name);
        }
        self.load_into_base(&name);
        Ok(())
    }

    pub(super) fn insert_slot(&mut self, record: PersonaRecord, mut life: Lifecycle) {
        life.set_policy(record.spec.restart);
        let name = record.spec.name.clone();
        let slot = Slot {
            record,
            life,
            spawn_id: 0,
            port: None,
            cgroup: None,
            cg_memory: false,
            cg_cpu: false,
            oom_kills_seen: 0,
            health: Health::Unknown,
            sample: PersonaSample::default(),
            peak_rss_bytes: 0,
            duty_cycle: None,
            paused_at_ms: None,
            ready_ms: None,
            saving: false,
            loaded_adapters: Vec::new(),
            adapter_up_ms: None,
            remove_reply: None,
            waiters: Vec::new(),
        };
        self.slots.insert(name, slot);
    }

    pub(super) fn remove(&mut self, name: &str, reply: oneshot::Sender<Result<()>>) {
        let Some(slot) = self.slots.get_mut(name) else {
            let _ = reply.send(Err(SupervisorError::NotFound(name.to_owned())));
            return;
        };
        slot.remove_reply = Some(reply);
        if slot.life.phase().has_process() {
            self.drive(name, Input::Stop(StopGoal::Stop));
        } else {
            self.finish_remove(name);
        }
    }

    pub(super) fn finish_remove(&mut self, name: &str) {
        let Some(mut slot) = self.slots.remove(name) else { return };
        if let Some(c) = slot.duty_cycle.take() {
            c.cancel();
        }
        if let Some(cg) = &slot.cgroup {
            cg.kill_all();
            cg.remove();
        }
        let _ = std::fs::remove_file(self.state_file(name));
        // its files stay: the node deletes them when the persona leaves the mesh, or keeps
        // them readable for a while when it moved to another node
        if let Some(logs) = &mut self.logs {
            logs.release(name);
        }
        for (_, w) in slot.waiters.drain(..) {
            let _ = w.send(Err(SupervisorError::NotFound(name.to_owned())));
        }
        let now = self.now();
        self.outbox.push(Report::Event(Event::new(now, name, EventKind::Removed, "")));
        self.outbox.push(Report::Removed(name.to_owned()));
        self.publish_status();
        if let Some(reply) = slot.remove_reply.take() {
            let _ = reply.send(Ok(()));
        }
    }

    pub(super) fn act(&mut self, name: &str, act: Act) -> Result<Phase> {
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        if slot.remove_reply.is_some() {
            return Err(SupervisorError::Conflict(format!("{name} is being removed")));
        }
        let starts = matches!(act, Act::Start | Act::Restart | Act::Wake { .. });
        if starts && !slot.record.spec.budget.allowed_to_run {
            return Err(SupervisorError::Conflict(format!(
                "{name} is not allowed to run (budget.allowed_to_run = false)"
            )));
        }
        if slot.record.spec.adapter.is_some() {
            self.act_adapter(name, act);
            return Ok(self.slots.get(name).map_or(Phase::Stopped, |s| s.shown_phase()));
        }
        if slot.paused_at_ms.is_some() {
            match act {
                Act::Pause => return Ok(Phase::Paused),
                Act::Start | Act::Wake { .. } => {
                    self.resume(name);
                    return Ok(self.slots.get(name).map_or(Phase::Stopped, |s| s.shown_phase()));
                }
                // the state hook needs a live process
                Act::Hibernate => self.resume(name),
                // the stop's SIGTERM is followed by a SIGCONT (so the group acts on it);
                // SIGKILL needs none
                Act::Stop | Act::Restart | Act::Kill { .. } | Act::Fence { .. } => self.end_pause(name),
            }
        }
        let Some(slot) = self.slots.get_mut(name) else { return Err(SupervisorError::NotFound(name.to_owned())) };
        let phase = slot.life.phase();
        match act {
            Act::Pause => self.pause(name)?,
            Act::Start => {
                self.event(name, EventKind::Start, "operator".into());
                self.drive(name, Input::Start);
            }
            Act::Stop => {
                self.event(name, EventKind::Stop, "operator".into());
                self.drive(name, Input::Stop(StopGoal::Stop));
            }
            Act::Restart => {
                if phase.has_process() {
                    self.drive(name, Input::Stop(StopGoal::Restart));
                } else {
                    self.drive(name, Input::Start);
                }
            }
            Act::Kill { reason } => self.drive(name, Input::Stop(StopGoal::Kill { reason })),
            Act::Fence { reason } => {
                if let Some(pid) = slot.life.pid() {
                    self.host.signal_group(pid, Sig::Kill);
                }
                if let Some(cg) = &slot.cgroup {
                    cg.kill_all();
                }
                self.event(name, EventKind::Kill, reason.clone());
                self.drive(name, Input::Stop(StopGoal::Kill { reason }));
            }
            Act::Wake { state } => {
                if let Some(blob) = state {
                    let path = self.state_file(name);
                    std::fs::write(&path, blob).map_err(|e| SupervisorError::io("write state file", e))?;
                }
                self.event(name, EventKind::Wake, String::new());
                self.drive(name, Input::Start);
            }
            Act::Hibernate => self.hibernate(name),
        }
        Ok(self.slots.get(name).map_or(Phase::Stopped, |s| s.shown_phase()))
    }

    pub(super) fn save_state(&mut self, name: &str, reply: oneshot::Sender<Result<Option<Vec<u8>>>>) {
        let Some(slot) = self.slots.get(name) else {
            let _ = reply.send(Err(SupervisorError::NotFound(name.to_owned())));
            return;
        };
        // a frozen process cannot answer its hook (shown as paused, not running)
        let (Phase::Running, Some(port)) = (slot.shown_phase(), slot.port) else {
            let _ = reply.send(Err(SupervisorError::Conflict(format!("{name} is not running"))));
            return;
        };
        let save = self.host.save_state(
            port,
            Duration::from_millis(self.settings.config.stop_grace_ms),
            self.settings.max_state_bytes,
        );
        tokio::spawn(async move {
            let r = save.await.map_err(SupervisorError::Probe);
            let _ = reply.send(r);
        });
    }

    /// Save state through the persona's hook (if it answers), then stop it. A persona that
    /// is not running just moves to `hibernating` with the state it last saved.
    pub(super) fn hibernate(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        if slot.saving {
            return;
        }
        match (slot.life.phase(), slot.port) {
            (Phase::Running | Phase::Starting, Some(port)) => {
                slot.saving = true;
                let spawn_id = slot.spawn_id;
                let save = self.host.save_state(
                    port,
                    Duration::from_millis(self.settings.config.stop_grace_ms),
                    self.settings.max_state_bytes,
                );
                let tx = self.internal_tx.clone();
                let persona = name.to_owned();
                tokio::spawn(async move {
                    let result = save.await;
                    let _ = tx.send(Internal::StateSaved { name: persona, spawn_id, result }).await;
                });
            }
            _ => {
                self.event(name, EventKind::Hibernate, "not running; state kept as last saved".into());
                self.drive(name, Input::Stop(StopGoal::Hibernate));
            }
        }
    }

    pub(super) fn set_budget(&mut self, name: &str, patch: &BudgetPatch) -> Result<Budget> {
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let budget = slot.record.spec.budget.patched(patch).map_err(|e| e.within("budget"))?;
        let old = std::mem::replace(&mut slot.record.spec.budget, budget.clone());
        let detail = serde_json::to_string(patch).unwrap_or_default();
        if (old.throttle_multiplier - budget.throttle_multiplier).abs() > f64::EPSILON {
            self.event(name, EventKind::Throttle, format!("multiplier {}", budget.throttle_multiplier));
        }
        self.event(name, EventKind::Budget, detail);
        self.apply_cpu_control(name);
        if !budget.allowed_to_run && self.slots[name].life.phase().has_process() {
            self.drive(name, Input::Stop(StopGoal::Stop));
        } else {
            self.changed(name);
        }
        Ok(budget)
    }
}
