//! Sampling the processes and probing their health on the supervisor's ticks.

use mindmesh_core::lifecycle::Input;
use mindmesh_core::metrics::PersonaSample;
use mindmesh_core::{Health, Phase};

use super::{Internal, Supervisor};
use crate::sampler::Reading;
use crate::status::Report;

impl Supervisor {
    pub(super) fn request_sample(&mut self) {
        let pids: Vec<u32> = self.slots.values().filter_map(|s| s.life.pid()).collect();
        let now = self.now();
        if !self.sampler.request(now, pids) {
            tracing::debug!("sampler busy; tick skipped");
        }
    }

    pub(super) fn on_reading(&mut self, reading: Reading) {
        let mut samples = Vec::with_capacity(self.slots.len());
        let mut over_limit = Vec::new();
        for (name, slot) in &mut self.slots {
            let Some(pid) = slot.life.pid() else { continue };
            let Some(r) = reading.processes.get(&pid) else { continue };
            slot.peak_rss_bytes = slot.peak_rss_bytes.max(r.rss_bytes);
            slot.sample = PersonaSample {
                ts_ms: reading.ts_ms,
                rss_bytes: r.rss_bytes,
                peak_rss_bytes: slot.peak_rss_bytes,
                cpu_percent: r.cpu_percent,
                disk_read_bytes: r.disk_read_bytes,
                disk_written_bytes: r.disk_written_bytes,
                restarts: slot.life.restarts(),
                healthy: match slot.health {
                    Health::Unknown => None,
                    h => Some(h == Health::Healthy),
                },
                reported: slot.reported.clone(),
                ..PersonaSample::default()
            };
            samples.push((name.clone(), slot.sample.clone()));
            // without a memory cgroup the node is the limit's enforcer
            if !slot.cg_memory
                && let Some(limit_mb) = slot.record.spec.limits.memory_max_mb
                && r.rss_bytes > mindmesh_core::bounds::mb_to_bytes(limit_mb)
            {
                over_limit.push((
                    name.clone(),
                    format!("rss {} MB over hard limit {limit_mb} MB (measured)", r.rss_bytes / (1024 * 1024)),
                ));
            }
        }
        for (name, reason) in over_limit {
            self.drive(&name, Input::LimitExceeded { reason });
        }
        self.outbox.push(Report::Samples { ts_ms: reading.ts_ms, personas: samples, host: reading.host });
        self.publish_status();
    }

    pub(super) fn probe_all(&mut self) {
        for (name, slot) in &self.slots {
            let (Some(port), Some(path)) = (slot.port, slot.record.spec.health_path.clone()) else { continue };
            // starting personas are probed by their start-up prober
            // a frozen process cannot answer: that is not a hang
            if slot.life.phase() != Phase::Running || slot.paused_at_ms.is_some() {
                continue;
            }
            let probe = self.host.probe(port, &path);
            let tx = self.internal_tx.clone();
            let persona = name.clone();
            let spawn_id = slot.spawn_id;
            tokio::spawn(async move {
                let ok = probe.await;
                let _ = tx.send(Internal::Health { name: persona, spawn_id, ok }).await;
            });
        }
    }
}
