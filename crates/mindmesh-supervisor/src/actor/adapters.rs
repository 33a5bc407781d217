//! Adapter personas: a LoRA adapter served by the model server of another persona, its base.
//! An adapter has no process. Its slot's lifecycle is never driven (no spawn, no signal, no
//! timer): every input is mapped here to the phase it asks for — running, hibernating (in
//! name only: the base keeps the adapter loaded, so a request wakes it at once), stopped or
//! killed. What the node shows and routes by is that phase combined with the base's
//! ([`Supervisor::adapter_view`]).
//!
//! The base's server loads all its adapters at start, listed in `MINDMESH_LORA_ADAPTERS` in id
//! order (by name), and the gateway selects one per request by that id. An adapter added while
//! its base runs without it restarts the base, so that it is loaded: a base restart (or a wake,
//! or a start on another node) always brings its adapters back.

use std::path::PathBuf;

use mindmesh_core::Phase;
use mindmesh_core::event::EventKind;
use mindmesh_core::lifecycle::{Input, Lifecycle, StopGoal};

use super::{Slot, Supervisor};
use crate::handle::Act;
use crate::status::AdapterStatus;

/// One adapter a base's server loads: its id is its index in the list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(super) struct AdapterLoad {
    pub id: u32,
    pub name: String,
    pub path: PathBuf,
    pub scale: f64,
}

/// How an adapter looks to the gateway and to `persona list`.
pub(super) struct AdapterView {
    pub phase: Phase,
    pub reason: Option<String>,
    pub port: Option<u16>,
    pub spawn_id: u64,
    pub status: AdapterStatus,
    /// Servable since then: its idle time counts from here, not from while its base loaded.
    pub up_ms: Option<u64>,
}

impl Supervisor {
    pub(super) fn is_adapter(&self, name: &str) -> bool {
        self.slots.get(name).is_some_and(|s| s.record.spec.adapter.is_some())
    }

    /// An input for an adapter, as the phase it asks for.
    pub(super) fn drive_adapter(&mut self, name: &str, input: Input) {
        let (phase, reason, kind) = match input {
            Input::Start | Input::Stop(StopGoal::Restart) => (Phase::Running, None, None),
            Input::Stop(StopGoal::Stop) => (Phase::Stopped, None, None),
            Input::Stop(StopGoal::Hibernate) => (Phase::Hibernating, None, Some(EventKind::Hibernate)),
            Input::Stop(StopGoal::Kill { reason }) => (Phase::Killed, Some(reason), None),
            // nothing else concerns a persona without a process
            _ => return,
        };
        let now = self.now();
        let Some(slot) = self.slots.get_mut(name) else { return };
        if slot.life.phase() == phase && phase != Phase::Killed {
            // nothing changes but what the mesh may have recorded with it (its epoch)
            self.changed(name);
            return;
        }
        let restarts = slot.life.restarts();
        slot.adapter_up_ms = (phase == Phase::Running).then_some(now);
        slot.life = Lifecycle::resume(slot.record.spec.restart, phase, None, None, restarts, reason);
        if let Some(kind) = kind {
            self.event(name, kind, "adapter: its base keeps it loaded; a request wakes it at once".into());
        }
        self.changed(name);
    }

    /// `act` for an adapter: the paused tier has nothing to freeze, so it is hibernation.
    pub(super) fn act_adapter(&mut self, name: &str, act: Act) {
        match act {
            Act::Pause | Act::Hibernate => self.drive_adapter(name, Input::Stop(StopGoal::Hibernate)),
            Act::Start | Act::Restart => {
                self.event(name, EventKind::Start, "adapter".into());
                self.drive_adapter(name, Input::Start);
            }
            Act::Wake { .. } => {
                self.event(name, EventKind::Wake, "adapter".into());
                self.drive_adapter(name, Input::Start);
            }
            Act::Stop => {
                self.event(name, EventKind::Stop, "operator".into());
                self.drive_adapter(name, Input::Stop(StopGoal::Stop));
            }
            Act::Kill { reason } | Act::Fence { reason } => {
                self.event(name, EventKind::Kill, reason.clone());
                self.drive_adapter(name, Input::Stop(StopGoal::Kill { reason }));
            }
        }
    }

    /// The adapters the next process of `base` loads, in id order.
    pub(super) fn adapters_to_load(&self, base: &str) -> Vec<AdapterLoad> {
        // the slots are a BTreeMap: by name, so the ids are stable for the same set
        self.slots
            .values()
            .filter_map(|s| s.record.spec.adapter.as_ref().filter(|a| a.base == base).map(|a| (s, a)))
            .enumerate()
            .map(|(i, (s, a))| AdapterLoad {
                id: i as u32,
                name: s.record.spec.name.clone(),
                path: a.path.clone(),
                scale: a.scale,
            })
            .collect()
    }

    /// An adapter was added (or changed): if its base's process runs without it, restart the
    /// base so that it loads it.
    pub(super) fn load_into_base(&mut self, adapter: &str) {
        let Some(a) = self.slots.get(adapter).and_then(|s| s.record.spec.adapter.clone()) else { return };
        let Some(b) = self.slots.get(&a.base) else { return };
        // the file is what the process loaded; a new scale needs nothing (it goes per request)
        let loaded = b.loaded_adapters.iter().any(|l| l.name == adapter && l.path == a.path);
        if !b.life.phase().has_process() || loaded {
            return;
        }
        let base = a.base;
        self.event(&base, EventKind::Restart, format!("to load its new or changed adapter {adapter}"));
        if let Err(e) = self.act(&base, Act::Restart) {
            tracing::warn!(%base, %adapter, error = %e, "cannot restart the base to load its adapter");
        }
    }

    /// An adapter as it can serve now: its own phase, and its base's when it is running.
    pub(super) fn adapter_view(&self, name: &str, s: &Slot) -> Option<AdapterView> {
        let a = s.record.spec.adapter.as_ref()?;
        let own = s.shown_phase();
        let base = self.slots.get(&a.base);
        let lora_id =
            base.and_then(|b| b.loaded_adapters.iter().find(|l| l.name == name && l.path == a.path)).map(|l| l.id);
        let status = AdapterStatus { base: a.base.clone(), lora_id, scale: a.scale };
        let down = |phase: Phase, reason: Option<String>| AdapterView {
            phase,
            reason,
            port: None,
            spawn_id: 0,
            status: status.clone(),
            up_ms: s.adapter_up_ms,
        };
        if own != Phase::Running {
            return Some(down(own, s.life.reason().map(str::to_owned)));
        }
        let Some(b) = base else {
            return Some(down(Phase::Starting, Some(format!("waiting for its base {}", a.base))));
        };
        let view = match b.shown_phase() {
            Phase::Running if b.port.is_some() && lora_id.is_some() => {
                let base_ready =
                    b.record.process.as_ref().map(|p| p.started_at_ms.saturating_add(b.ready_ms.unwrap_or(0)));
                AdapterView {
                    phase: Phase::Running,
                    reason: None,
                    port: b.port,
                    spawn_id: b.spawn_id,
                    status,
                    up_ms: s.adapter_up_ms.max(base_ready),
                }
            }
            // a request for it wakes the adapter, which wakes its base
            p @ (Phase::Paused | Phase::Hibernating) => {
                down(Phase::Hibernating, Some(format!("its base {} is {p}", a.base)))
            }
            Phase::Running if b.port.is_some() => down(
                Phase::Starting,
                Some(format!("its base {} runs without it: it loads at the base's next start", a.base)),
            ),
            p @ (Phase::Stopped | Phase::Failed | Phase::Killed) => {
                down(p, Some(format!("its base {} is {p}", a.base)))
            }
            p => down(Phase::Starting, Some(format!("its base {} is {p}", a.base))),
        };
        Some(view)
    }
}
