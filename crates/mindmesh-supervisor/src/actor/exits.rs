//! What comes back from the processes: exits, timers, health answers, saved state.

use mindmesh_core::Health;
use mindmesh_core::event::EventKind;
use mindmesh_core::lifecycle::{Input, StopGoal};
use mindmesh_core::metrics::PersonaSample;

use super::{Internal, Supervisor};
use crate::host::Sig;
use crate::status::Report;

impl Supervisor {
    pub(super) fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Exited { name, spawn_id, status } => {
                let Some(slot) = self.slots.get_mut(&name) else { return };
                if slot.spawn_id != spawn_id {
                    return;
                }
                if let Some(c) = slot.duty_cycle.take() {
                    c.cancel();
                }
                let pid = slot.life.pid();
                let oom = slot
                    .cgroup
                    .as_ref()
                    .filter(|_| slot.cg_memory)
                    .map(|c| c.oom_kills())
                    .filter(|&n| n > slot.oom_kills_seen);
                // no orphan survives its persona: the rest of its group goes with it
                if let Some(pid) = pid {
                    self.host.signal_group(pid, Sig::Kill);
                }
                if let Some(cg) = &slot.cgroup {
                    cg.kill_all();
                }
                slot.record.process = None;
                slot.port = None;
                slot.health = Health::Unknown;
                slot.saving = false;
                // figures of a gone process would read as a live one's
                slot.sample = PersonaSample::default();
                slot.reported = None;
                if let Some(n) = oom {
                    slot.oom_kills_seen = n;
                    let limit = slot.record.spec.limits.memory_max_mb.unwrap_or(0);
                    let reason = format!("memory over hard limit {limit} MB (cgroup OOM kill)");
                    self.drive(&name, Input::LimitExceeded { reason });
                }
                self.drive(&name, Input::Exited { status });
            }
            Internal::Timer { name, token } => self.drive(&name, Input::Timer { token }),
            Internal::Health { name, spawn_id, ok } => {
                let Some(slot) = self.slots.get_mut(&name) else { return };
                if slot.spawn_id != spawn_id || !slot.life.phase().has_process() || slot.paused_at_ms.is_some() {
                    return;
                }
                let health = if ok { Health::Healthy } else { Health::Unhealthy };
                if ok
                    && slot.life.phase() == mindmesh_core::Phase::Starting
                    && let Some(p) = &slot.record.process
                {
                    slot.ready_ms = Some(self.settings.clock.now_ms().saturating_sub(p.started_at_ms));
                }
                if slot.health != health {
                    let was = slot.health;
                    slot.health = health;
                    if ok {
                        slot.life.mark_running();
                    }
                    if was != Health::Unknown || !ok {
                        self.event(&name, EventKind::HealthChange, format!("{was:?} -> {health:?}").to_lowercase());
                    }
                    self.changed(&name);
                }
            }
            Internal::Reported { name, spawn_id, result } => self.on_reported(&name, spawn_id, result),
            Internal::StateSaved { name, spawn_id, result } => {
                let Some(slot) = self.slots.get_mut(&name) else { return };
                slot.saving = false;
                if slot.spawn_id != spawn_id {
                    return;
                }
                match result {
                    Ok(Some(blob)) => {
                        let path = self.state_file(&name);
                        if let Err(e) = std::fs::write(&path, &blob) {
                            self.event(&name, EventKind::Error, format!("cannot keep state: {e}"));
                        }
                        self.event(&name, EventKind::StateSaved, format!("{} bytes", blob.len()));
                        self.outbox.push(Report::State { persona: name.clone(), blob });
                    }
                    Ok(None) => self.event(&name, EventKind::Hibernate, "no state hook; nothing saved".into()),
                    Err(e) => self.event(&name, EventKind::Error, format!("state save failed: {e}")),
                }
                self.event(&name, EventKind::Hibernate, String::new());
                self.drive(&name, Input::Stop(StopGoal::Hibernate));
            }
        }
    }
}
