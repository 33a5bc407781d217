//! Bookkeeping: time, spawn ids, files, ports, and what goes out (records, events, status).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mindmesh_core::event::{Event, EventKind};

use super::Supervisor;
use crate::status::{PersonaStatus, Report};

impl Supervisor {
    pub(super) fn now(&self) -> u64 {
        self.settings.clock.now_ms()
    }

    pub(super) fn bump_spawn_id(&mut self) -> u64 {
        self.next_spawn_id += 1;
        self.next_spawn_id
    }

    pub(super) fn state_file(&self, name: &str) -> PathBuf {
        self.settings.data_dir.join("state").join(format!("{name}.state"))
    }

    pub(super) fn event(&mut self, name: &str, kind: EventKind, detail: String) {
        let now = self.now();
        tracing::info!(persona = name, kind = kind.as_str(), %detail, "event");
        self.outbox.push(Report::Event(Event::new(now, name, kind, detail)));
    }

    /// Sync the durable record with the lifecycle, emit it, publish status, wake waiters,
    /// and finish a removal once the process is gone.
    pub(super) fn changed(&mut self, name: &str) {
        let now = self.now();
        let Some(slot) = self.slots.get_mut(name) else { return };
        if slot.record.spec.health_path.is_none() && slot.life.pid().is_some() {
            // nothing to probe: up once spawned
            slot.life.mark_running();
        }
        if slot.paused_at_ms.is_some() && slot.life.phase() != mindmesh_core::Phase::Running {
            // it exited or is being stopped: no longer frozen (a stop sends SIGCONT)
            slot.paused_at_ms = None;
        }
        let phase = slot.shown_phase();
        if !slot.life.phase().has_process() {
            slot.record.process = None;
        }
        slot.record.phase = phase;
        slot.record.reason = slot.life.reason().map(str::to_owned);
        slot.record.restarts = slot.life.restarts();
        slot.record.updated_ms = now;
        let record = slot.record.clone();
        let mut i = 0;
        while i < slot.waiters.len() {
            if slot.waiters[i].0.contains(&phase) {
                let (_, tx) = slot.waiters.swap_remove(i);
                let _ = tx.send(Ok(phase));
            } else {
                i += 1;
            }
        }
        let removing = slot.remove_reply.is_some() && !phase.has_process();
        self.outbox.push(Report::Record(Box::new(record)));
        if removing {
            self.finish_remove(name);
        } else {
            self.publish_status();
        }
    }

    pub(super) fn publish_status(&self) {
        let table: BTreeMap<String, PersonaStatus> = self
            .slots
            .iter()
            .map(|(name, s)| {
                let spec = &s.record.spec;
                let adapter = self.adapter_view(name, s);
                let status = PersonaStatus {
                    name: name.clone(),
                    phase: adapter.as_ref().map_or_else(|| s.shown_phase(), |a| a.phase),
                    reason: match &adapter {
                        Some(a) => a.reason.clone(),
                        None => s.life.reason().map(str::to_owned),
                    },
                    pid: s.life.pid(),
                    port: match &adapter {
                        Some(a) => a.port,
                        None => s.port.filter(|_| s.life.phase().has_process()),
                    },
                    restarts: s.life.restarts(),
                    generation: s.record.generation,
                    epoch: s.record.epoch,
                    health: s.health,
                    importance: spec.importance,
                    model: spec.model.clone(),
                    budget: spec.budget.clone(),
                    rss_bytes: s.sample.rss_bytes,
                    peak_rss_bytes: s.peak_rss_bytes,
                    cpu_percent: s.sample.cpu_percent,
                    started_at_ms: match &adapter {
                        Some(a) => a.up_ms,
                        None => s.record.process.as_ref().map(|p| p.started_at_ms),
                    },
                    spawn_id: adapter.as_ref().map_or(s.spawn_id, |a| a.spawn_id),
                    hibernate_after_idle_s: spec.hibernate_after_idle_s,
                    paused_at_ms: s.paused_at_ms,
                    ready_ms: s.ready_ms,
                    requested_memory_mb: spec.requests.memory_mb,
                    adapters: s.loaded_adapters.iter().map(|a| a.name.clone()).collect(),
                    adapter: adapter.map(|a| a.status),
                };
                (name.clone(), status)
            })
            .collect();
        self.status_tx.send_replace(Arc::new(table));
    }
}
