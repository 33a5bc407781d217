//! Idle hibernation: a persona with `hibernate_after_idle_s` that has had nothing to do for
//! that long — no request waiting or in flight, none finished since — is hibernated through
//! the control facade (which drains first, so a request arriving meanwhile queues and then
//! wakes it again). Idleness counts from the last request, or from the process's start.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::Phase;
use mindmesh_core::clock::Clock;
use mindmesh_supervisor::{Act, StatusTable};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::Control;
use crate::gateway::Gateway;

/// Personas idle past their limit at `now_ms`.
pub fn due(table: &StatusTable, gateway: &Gateway, now_ms: u64) -> Vec<String> {
    table
        .values()
        .filter(|s| s.phase == Phase::Running && s.budget.allowed_to_run)
        .filter_map(|s| {
            let limit_ms = s.hibernate_after_idle_s? * 1000;
            let t = gateway.traffic(&s.name, now_ms).unwrap_or_default();
            if t.live.active > 0 || t.in_flight > 0 || t.queue_depth > 0 {
                return None;
            }
            let since = t.live.last_activity_ms.unwrap_or(0).max(s.started_at_ms.unwrap_or(now_ms));
            (now_ms.saturating_sub(since) >= limit_ms).then(|| s.name.clone())
        })
        .collect()
}

pub async fn run(
    control: Control,
    gateway: Gateway,
    status: watch::Receiver<StatusTable>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut busy: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = tasks.join_next() => {
                if let Ok(name) = done {
                    busy.remove(&name);
                }
            }
            _ = tick.tick() => {
                let table = status.borrow().clone();
                for name in due(&table, &gateway, clock.now_ms()) {
                    if !busy.insert(name.clone()) {
                        continue;
                    }
                    let idle_s = table.get(&name).and_then(|s| s.hibernate_after_idle_s).unwrap_or(0);
                    tracing::info!(persona = %name, idle_s, "idle: hibernating");
                    let control = control.clone();
                    tasks.spawn(async move {
                        if let Err(e) = control.act(&name, Act::Hibernate).await {
                            tracing::warn!(persona = %name, error = %e, "idle hibernation failed");
                        }
                        name
                    });
                }
            }
        }
    }
    tasks.shutdown().await;
}
