//! The end of the supervisor: every process stopped within the grace period.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Internal, Supervisor};
use crate::host::Sig;
use crate::status::Report;

impl Supervisor {
    /// SIGTERM every process group, wait out the grace period for exits, SIGKILL the rest.
    /// Recorded phases stay as they were: a node restart brings back what was running.
    pub(super) async fn stop_all(&mut self, internal: &mut mpsc::Receiver<Internal>) {
        let mut alive: HashMap<String, u64> = HashMap::new();
        for (name, slot) in &mut self.slots {
            if let Some(c) = slot.duty_cycle.take() {
                c.cancel();
            }
            if let Some(pid) = slot.life.pid() {
                self.host.signal_group(pid, Sig::Term);
                self.host.signal_group(pid, Sig::Cont);
                alive.insert(name.clone(), slot.spawn_id);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.settings.config.stop_grace_ms);
        while !alive.is_empty() {
            match tokio::time::timeout_at(deadline, internal.recv()).await {
                Ok(Some(Internal::Exited { name, spawn_id, .. })) => {
                    if alive.get(&name) == Some(&spawn_id) {
                        alive.remove(&name);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for name in alive.keys() {
            if let Some(pid) = self.slots.get(name).and_then(|s| s.life.pid()) {
                tracing::warn!(persona = %name, pid, "did not stop within the grace period; SIGKILL");
                self.host.signal_group(pid, Sig::Kill);
            }
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let slot = self.slots.get_mut(&name).expect("listed above");
            if let Some(cg) = &slot.cgroup {
                cg.kill_all();
                cg.remove();
            }
            if slot.record.process.take().is_some() {
                slot.record.updated_ms = self.settings.clock.now_ms();
                self.outbox.push(Report::Record(Box::new(slot.record.clone())));
            }
        }
    }
}
