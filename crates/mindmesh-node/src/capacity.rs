//! Memory-aware admission on this node: before a hibernated persona is woken (by a request or
//! an operator), the node checks that it fits in its capacity beside what the other personas
//! hold; if not, it evicts idle personas to the stopped tier, least valuable first, and only
//! then lets the wake go on. If nothing can make room the wake is refused, which the gateway
//! answers with 503 and `Retry-After`.
//!
//! The decision is [`mindmesh_core::evict::decide`]; this module gathers its facts (the status
//! table, the gateway's traffic, the host's memory) and carries it out through the control
//! facade, so every eviction drains first like any other hibernation. One actor admits one
//! persona at a time: two wakes never count the same freed memory twice. A persona admitted
//! holds a reservation of what it needs until its process shows in the status table (or the
//! start times out), so the next admission counts it before it has started.
//!
//! Every eviction is an `evict` event on the evicted persona; every refusal a `no_room` event
//! on the refused one, which also becomes its last error in the node's gossip: the leader sees
//! it, and placement can move the persona to a node with room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::Phase;
use mindmesh_core::clock::Clock;
use mindmesh_core::config::CapacityConfig;
use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::evict::{Ask, Resident, Verdict, decide};
use mindmesh_core::metrics::HostSample;
use mindmesh_supervisor::{Act, Report, StatusTable, SupervisorHandle};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::admit::{Inbox, NoRoom};
use crate::control::Control;
use crate::gateway::Gateway;

/// Rounds of evictions for one admission: a victim that got a request meanwhile is skipped
/// and the choice made again, at most this many times.
const MAX_ROUNDS: usize = 3;
const BYTES_PER_MB: u64 = 1024 * 1024;
/// Phases a persona leaves memory in once evicted.
const GONE: [Phase; 4] = [Phase::Hibernating, Phase::Stopped, Phase::Failed, Phase::Killed];

/// The admission actor.
pub struct Keeper {
    pub config: CapacityConfig,
    pub control: Control,
    pub supervisor: SupervisorHandle,
    pub gateway: Gateway,
    pub host: watch::Receiver<Option<HostSample>>,
    pub clock: Arc<dyn Clock>,
    /// The recorder's queue: events go to the log in order with the rest.
    pub reports: mpsc::Sender<Report>,
    /// How long an admitted persona's reservation lasts if its process never shows.
    pub reserve_for: Duration,
    /// Longest wait for an evicted persona's process to be gone.
    pub settle_timeout: Duration,
}

/// Memory promised to an admitted persona whose process has not shown yet.
struct Reservation {
    mb: u64,
    until_ms: u64,
}

impl Keeper {
    pub async fn run(self, inbox: Inbox, cancel: CancellationToken) {
        let mut inbox = inbox.into_receiver();
        let mut reserved: HashMap<String, Reservation> = HashMap::new();
        loop {
            let req = tokio::select! {
                _ = cancel.cancelled() => break,
                req = inbox.recv() => match req {
                    Some(r) => r,
                    None => break,
                },
            };
            let answer = self.admit(&req.name, &mut reserved).await;
            let _ = req.reply.send(answer);
        }
    }

    async fn admit(&self, name: &str, reserved: &mut HashMap<String, Reservation>) -> Result<(), NoRoom> {
        for _ in 0..MAX_ROUNDS {
            let table = self.supervisor.status().borrow().clone();
            let now_ms = self.clock.now_ms();
            reserved.retain(|n, r| r.until_ms > now_ms && !table.get(n).is_some_and(|s| s.phase.has_process()));
            let Some(me) = table.get(name) else {
                // not here: the wake fails on its own, with its own reason
                return Ok(());
            };
            if me.adapter.is_some() {
                // an adapter's memory is its base's: the base is admitted when it wakes
                return Ok(());
            }
            let need_mb = me.requested_memory_mb.max(me.peak_rss_bytes.div_ceil(BYTES_PER_MB));
            let ask = Ask { name: name.to_owned(), need_mb, importance: me.importance };
            let residents = self.residents(&table, reserved, now_ms);
            let capacity_mb = self.capacity_mb();
            match decide(capacity_mb, &residents, &ask) {
                Verdict::Fits { free_mb } => {
                    tracing::debug!(persona = name, need_mb, free_mb, capacity_mb, "admitted");
                    let until_ms = now_ms.saturating_add(self.reserve_for.as_millis() as u64);
                    reserved.insert(name.to_owned(), Reservation { mb: need_mb, until_ms });
                    return Ok(());
                }
                Verdict::Evict { victims, free_mb } => {
                    for v in victims {
                        // a request may have come for it since the facts were gathered
                        let t = self.gateway.traffic(&v.name, now_ms).unwrap_or_default();
                        if t.in_flight > 0 || t.queue_depth > 0 || t.live.active > 0 {
                            break;
                        }
                        self.evict(&v, name, need_mb, free_mb, capacity_mb).await;
                    }
                }
                Verdict::NoRoom(n) => {
                    let message = format!("no room on this node: {n}");
                    tracing::info!(persona = name, %message, "wake refused for want of memory");
                    let detail = format!(
                        "{message}; refused with 503, Retry-After {} s (another node may have room)",
                        self.config.retry_after_s
                    );
                    self.event(name, EventKind::NoRoom, detail).await;
                    return Err(NoRoom { retry_after_s: self.config.retry_after_s, message });
                }
            }
        }
        let message = format!("no room on this node: still short of memory after {MAX_ROUNDS} rounds of evictions");
        self.event(name, EventKind::NoRoom, message.clone()).await;
        Err(NoRoom { retry_after_s: self.config.retry_after_s, message })
    }

    /// Move one victim to the stopped tier (drained first, as any hibernation) and wait for its
    /// process to be gone, so the memory is free before the wake starts loading.
    async fn evict(&self, v: &mindmesh_core::evict::Victim, asker: &str, need_mb: u64, free_mb: u64, cap_mb: u64) {
        tracing::info!(persona = %v.name, tier = v.tier.as_str(), frees_mb = v.frees_mb, for_persona = asker, why = %v.why, "evicting");
        let detail = format!(
            "evicted from {} to {} for {asker} (needs {need_mb} MB, {free_mb} MB of {cap_mb} MB free): frees {} MB; \
             least valuable idle persona ({})",
            v.from,
            v.tier.as_str(),
            v.frees_mb,
            v.why
        );
        self.event(&v.name, EventKind::Evict, detail).await;
        if let Err(e) = self.control.act(&v.name, Act::Hibernate).await {
            tracing::warn!(persona = %v.name, error = %e, "eviction failed");
            return;
        }
        if let Err(e) = self.supervisor.wait_for(&v.name, &GONE, self.settle_timeout).await {
            tracing::warn!(persona = %v.name, error = %e, "evicted persona did not stop in time");
        }
    }

    fn capacity_mb(&self) -> u64 {
        let host_mb = self.host.borrow().as_ref().map(|h| h.memory_total_bytes / BYTES_PER_MB);
        self.config.memory_mb(host_mb)
    }

    /// Every persona as admission sees it, reservations included (as personas starting).
    fn residents(&self, table: &StatusTable, reserved: &HashMap<String, Reservation>, now_ms: u64) -> Vec<Resident> {
        let mut out: Vec<Resident> = table
            .values()
            // an adapter persona holds nothing of its own (its base's process does), and
            // hibernating it would free nothing
            .filter(|s| s.phase.has_process() && s.adapter.is_none())
            .map(|s| {
                let t = self.gateway.traffic(&s.name, now_ms).unwrap_or_default();
                let since = t.live.last_activity_ms.unwrap_or(0).max(s.started_at_ms.unwrap_or(now_ms));
                Resident {
                    name: s.name.clone(),
                    phase: s.phase,
                    held_mb: s.requested_memory_mb.max(s.rss_bytes.div_ceil(BYTES_PER_MB)),
                    importance: s.importance,
                    priority: s.budget.inference_queue_priority,
                    busy: t.in_flight > 0 || t.queue_depth > 0 || t.live.active > 0,
                    idle_ms: now_ms.saturating_sub(since),
                    reload_ms: s.ready_ms,
                }
            })
            .collect();
        for (name, r) in reserved {
            if out.iter().any(|x| &x.name == name) {
                continue;
            }
            let importance = table.get(name).map(|s| s.importance).unwrap_or_default();
            out.push(Resident {
                name: name.clone(),
                phase: Phase::Starting,
                held_mb: r.mb,
                importance,
                priority: 0,
                busy: true,
                idle_ms: 0,
                reload_ms: None,
            });
        }
        out
    }

    async fn event(&self, persona: &str, kind: EventKind, detail: String) {
        let event = Event::new(self.clock.now_ms(), persona, kind, detail);
        if self.reports.send(Report::Event(event)).await.is_err() {
            tracing::error!(persona, "the event log is closed: an admission event went unrecorded");
        }
    }
}
