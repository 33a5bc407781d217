//! Idle hibernation: a persona with `hibernate_after_idle_s` that has had nothing to do for
//! that long — no request waiting or in flight, none finished since — is hibernated through
//! the control facade (which drains first, so a request arriving meanwhile queues and then
//! wakes it again). Idleness counts from the last request, or from the process's start.
//!
//! The tier comes from [`mindmesh_core::hibernate::idle_tier`]: paused (frozen, memory kept)
//! for a persona whose measured cold start is expensive and whose idle limit is short, on a
//! host with memory to spare; stopped otherwise. A persona left paused for
//! [`PAUSED_DEEPEN_AFTER_LIMITS`] times its idle limit goes on to stopped: its gaps are long
//! after all, and its memory is better given back.
//!
//! An adapter persona (no process of its own) hibernates in name when idle; its base
//! hibernates only once every adapter of it has, and it is idle itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::Phase;
use mindmesh_core::clock::Clock;
use mindmesh_core::hibernate::{IdleFacts, PAUSED_DEEPEN_AFTER_LIMITS, Tier, idle_tier};
use mindmesh_core::metrics::HostSample;
use mindmesh_supervisor::{Act, StatusTable};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::Control;
use crate::gateway::Gateway;

/// Personas idle past their limit at `now_ms`, each with the tier to hibernate it to and why.
pub fn due(
    table: &StatusTable,
    gateway: &Gateway,
    host: Option<&HostSample>,
    now_ms: u64,
) -> Vec<(String, Tier, String)> {
    let free_ratio = host
        .filter(|h| h.memory_total_bytes > 0)
        .map(|h| h.memory_total_bytes.saturating_sub(h.memory_used_bytes) as f64 / h.memory_total_bytes as f64);
    table
        .values()
        .filter(|s| s.budget.allowed_to_run)
        .filter_map(|s| {
            let idle_limit_s = s.hibernate_after_idle_s?;
            let limit_ms = mindmesh_core::bounds::s_to_ms(idle_limit_s);
            if s.phase == Phase::Paused {
                let paused_ms = now_ms.saturating_sub(s.paused_at_ms?);
                return (paused_ms >= limit_ms.saturating_mul(PAUSED_DEEPEN_AFTER_LIMITS)).then(|| {
                    (s.name.clone(), Tier::Stopped, format!("paused {} s: its idle gaps are long", paused_ms / 1000))
                });
            }
            if s.phase != Phase::Running {
                return None;
            }
            // a base stays up while an adapter of it is awake: their requests run on its process
            let adapter_awake = table.values().any(|a| {
                a.adapter.as_ref().is_some_and(|x| x.base == s.name)
                    && matches!(a.phase, Phase::Running | Phase::Starting)
            });
            if adapter_awake {
                return None;
            }
            let t = gateway.traffic(&s.name, now_ms).unwrap_or_default();
            if t.live.active > 0 || t.in_flight > 0 || t.queue_depth > 0 {
                return None;
            }
            let since = t.live.last_activity_ms.unwrap_or(0).max(s.started_at_ms.unwrap_or(now_ms));
            if now_ms.saturating_sub(since) < limit_ms {
                return None;
            }
            if s.adapter.is_some() {
                // nothing of its own to keep: its base holds its weights
                return Some((
                    s.name.clone(),
                    Tier::Stopped,
                    "an adapter: hibernated in name, its base keeps it loaded".into(),
                ));
            }
            let facts = IdleFacts {
                reload_ms: s.ready_ms,
                idle_limit_s,
                host_memory_free_ratio: free_ratio,
                importance: s.importance,
            };
            let (tier, why) = idle_tier(&facts);
            Some((s.name.clone(), tier, why))
        })
        .collect()
}

pub async fn run(
    control: Control,
    gateway: Gateway,
    status: watch::Receiver<StatusTable>,
    host: watch::Receiver<Option<HostSample>>,
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
                let host = host.borrow().clone();
                for (name, tier, why) in due(&table, &gateway, host.as_ref(), clock.now_ms()) {
                    if !busy.insert(name.clone()) {
                        continue;
                    }
                    let idle_s = table.get(&name).and_then(|s| s.hibernate_after_idle_s).unwrap_or(0);
                    tracing::info!(persona = %name, idle_s, tier = tier.as_str(), why, "idle: hibernating");
                    let control = control.clone();
                    let act = match tier {
                        Tier::Paused => Act::Pause,
                        Tier::Stopped => Act::Hibernate,
                    };
                    tasks.spawn(async move {
                        if let Err(e) = control.act(&name, act).await {
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
