//! Persona-reported metrics: every `reported_metrics_every_ticks` metrics ticks, each running
//! persona with a `metrics_path` is asked `GET <metrics_path>` (through the host, with the
//! health timeout and [`MAX_METRICS_BODY_BYTES`] as cap); its answer is parsed by
//! [`mindmesh_core::reported::parse`] and carried in its samples until the next one. An answer
//! that is garbage, too large, out of range or late is refused whole and counted (the
//! persona's status shows the count); the persona itself is not touched for it.

use std::time::Duration;

use mindmesh_core::Phase;
use mindmesh_core::reported::{self, MAX_METRICS_BODY_BYTES};

use super::{Internal, Supervisor};

impl Supervisor {
    /// Ask the personas that report metrics, on the ticks that are due.
    pub(super) fn fetch_reported(&mut self) {
        self.metrics_ticks = self.metrics_ticks.wrapping_add(1);
        let every = self.settings.config.reported_metrics_every_ticks.max(1);
        if !self.metrics_ticks.is_multiple_of(every) {
            return;
        }
        let timeout = Duration::from_millis(self.settings.config.health_timeout_ms);
        for (name, slot) in &mut self.slots {
            let (Some(port), Some(path)) = (slot.port, slot.record.spec.metrics_path.as_deref()) else { continue };
            // a frozen or sleeping process cannot answer; one question at a time per persona
            if slot.life.phase() != Phase::Running || slot.paused_at_ms.is_some() || slot.fetching_metrics {
                continue;
            }
            slot.fetching_metrics = true;
            let fetch = self.host.fetch_metrics(port, path, timeout, MAX_METRICS_BODY_BYTES as u64);
            let tx = self.internal_tx.clone();
            let (persona, spawn_id) = (name.clone(), slot.spawn_id);
            tokio::spawn(async move {
                let result = fetch.await;
                let _ = tx.send(Internal::Reported { name: persona, spawn_id, result }).await;
            });
        }
    }

    /// A persona's answer: kept if it parses, refused and counted if not.
    pub(super) fn on_reported(&mut self, name: &str, spawn_id: u64, result: Result<Option<Vec<u8>>, String>) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        slot.fetching_metrics = false;
        if slot.spawn_id != spawn_id {
            return;
        }
        let refused = match result {
            // no such path: it reports nothing (not an offence)
            Ok(None) => {
                slot.reported = None;
                return;
            }
            Ok(Some(body)) => match reported::parse(&body) {
                Ok(r) => {
                    slot.reported = Some(r);
                    slot.reporting_fails = false;
                    return;
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        // never trusted: the old figures go too, rather than stand for a persona that now
        // answers nonsense
        slot.reported = None;
        slot.metrics_refused += 1;
        if !std::mem::replace(&mut slot.reporting_fails, true) {
            tracing::warn!(persona = name, error = %refused, "persona's metrics refused");
        } else {
            tracing::debug!(persona = name, error = %refused, "persona's metrics refused");
        }
    }
}
