//! This node's snapshot, published every gossip interval: its host and, per persona, the
//! figures the leader's brain and the other nodes' status need.

use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::Clock;
use mindmesh_core::metrics::HostSample;
use mindmesh_core::snapshot::{MAX_ERROR_KINDS, NodeSnapshot, PersonaFigures};
use mindmesh_net::MeshHandle;
use mindmesh_supervisor::StatusTable;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::recorder::Latest;

pub struct Gossip {
    pub mesh: MeshHandle,
    pub node_name: String,
    pub status: watch::Receiver<StatusTable>,
    pub latest: watch::Receiver<Arc<Latest>>,
    pub host: watch::Receiver<Option<HostSample>>,
    pub clock: Arc<dyn Clock>,
    pub interval: Duration,
}

impl Gossip {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let snapshot = self.snapshot();
            if let Err(e) = self.mesh.publish_snapshot(snapshot).await {
                tracing::debug!(error = %e, "snapshot not published");
            }
        }
    }

    fn snapshot(&self) -> NodeSnapshot {
        let table = self.status.borrow().clone();
        let latest = self.latest.borrow().clone();
        let now = self.clock.now_ms();
        let personas = table
            .values()
            .map(|s| {
                let sample = latest.samples.get(&s.name);
                let mut error_kinds = sample.map(|x| x.errors_by_kind.clone()).unwrap_or_default();
                error_kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
                error_kinds.truncate(MAX_ERROR_KINDS);
                PersonaFigures {
                    name: s.name.clone(),
                    phase: s.phase,
                    health: s.health,
                    pid: s.pid,
                    generation: s.generation,
                    epoch: s.epoch,
                    rss_bytes: s.rss_bytes,
                    cpu_percent: if s.cpu_percent.is_finite() { s.cpu_percent.max(0.0) } else { 0.0 },
                    requests: sample.map_or(0, |x| x.requests),
                    errors: sample.map_or(0, |x| x.errors),
                    latency_p95_ms: sample.and_then(|x| x.latency_p95_ms).filter(|v| v.is_finite() && *v >= 0.0),
                    queue_depth: sample.map_or(0, |x| x.queue_depth),
                    restarts: s.restarts,
                    last_error: latest.last_error.get(&s.name).cloned(),
                    error_kinds,
                }
            })
            .collect();
        NodeSnapshot {
            node_id: 0,
            node_name: self.node_name.clone(),
            incarnation: 0,
            seq: 0,
            ts_ms: now,
            host: self.host.borrow().clone().unwrap_or(HostSample { ts_ms: now, ..HostSample::default() }),
            personas,
        }
    }
}
