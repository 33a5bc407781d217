//! The paused tier: the persona's process group frozen with SIGSTOP, its memory kept, thawed
//! with SIGCONT. The lifecycle still says running (the process lives; an exit while frozen is
//! a crash like any other); the slot's `paused_at_ms` marks the freeze and the published phase
//! says `paused`. Health probes skip a frozen process, so it never reads as hung.

use mindmesh_core::Phase;
use mindmesh_core::event::EventKind;

use super::{Slot, Supervisor};
use crate::error::{Result, SupervisorError};
use crate::host::Sig;

impl Slot {
    /// The phase the node shows: the lifecycle's, or `paused` for a frozen running process.
    pub(super) fn shown_phase(&self) -> Phase {
        match self.life.phase() {
            Phase::Running if self.paused_at_ms.is_some() => Phase::Paused,
            p => p,
        }
    }
}

impl Supervisor {
    /// Freeze a running persona's process group.
    pub(super) fn pause(&mut self, name: &str) -> Result<()> {
        let now = self.now();
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let (Phase::Running, Some(pid)) = (slot.life.phase(), slot.life.pid()) else {
            return Err(SupervisorError::Conflict(format!(
                "{name} is {}: only a running persona can be paused",
                slot.life.phase()
            )));
        };
        slot.paused_at_ms = Some(now);
        let rss_mb = slot.sample.rss_bytes / (1024 * 1024);
        match slot.duty_cycle.take() {
            // a throttled persona's duty cycle ends with a SIGCONT: freeze after it
            Some(duty) => {
                duty.cancel();
                let host = self.host.clone();
                tokio::spawn(async move {
                    let _ = duty.task.await;
                    host.signal_group(pid, Sig::Stop);
                });
            }
            None => self.host.signal_group(pid, Sig::Stop),
        }
        self.event(name, EventKind::Hibernate, format!("paused (SIGSTOP; {rss_mb} MB kept)"));
        self.changed(name);
        Ok(())
    }

    /// Thaw a frozen persona: it serves again at once.
    pub(super) fn resume(&mut self, name: &str) {
        let now = self.now();
        let Some(slot) = self.slots.get_mut(name) else { return };
        let Some(since) = slot.paused_at_ms.take() else { return };
        if let Some(pid) = slot.life.pid() {
            self.host.signal_group(pid, Sig::Cont);
            // a throttled persona gets its duty cycle (or nothing, under a cgroup quota) back
            self.apply_cpu_control_to(name, pid);
        }
        self.event(name, EventKind::Wake, format!("resumed after {} ms paused", now.saturating_sub(since)));
        self.changed(name);
    }

    /// Forget the pause of a persona about to be stopped: the stop's SIGTERM is followed by a
    /// SIGCONT, so the group wakes to act on it.
    pub(super) fn end_pause(&mut self, name: &str) {
        if let Some(slot) = self.slots.get_mut(name) {
            slot.paused_at_ms = None;
        }
    }
}
