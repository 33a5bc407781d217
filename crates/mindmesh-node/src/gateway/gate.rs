//! Per-persona admission state shared by the request path and the admission actor, as atomics
//! only: how many requests are in flight, held back by a throttle, queued, and whether a drain
//! is under way. A [`Permit`] is one admitted request; dropping it frees its slot.
//!
//! Admission increments first and checks after (limit, drain, the persona's live status), so a
//! drain that starts at any instant either sees the request in flight and waits for it, or the
//! request sees the drain and backs off: no request reaches a process that is being stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mindmesh_core::{Budget, Phase};
use mindmesh_supervisor::StatusTable;
use tokio::sync::{Notify, watch};

use super::budget::{effective, hold_ms, node_limit};
use super::meter::Meter;
use super::upstream::Pool;

/// Node-wide figures of the gateway.
pub struct Shared {
    pub in_flight: AtomicU32,
    pub queued: AtomicU32,
    /// Tells the admission actor that a slot was freed while requests wait.
    pub kick: Notify,
    pub max_in_flight: u32,
    pub reserve_share: f64,
}

impl Shared {
    pub fn new(max_in_flight: u32, reserve_share: f64) -> Self {
        Shared {
            in_flight: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            kick: Notify::new(),
            max_in_flight,
            reserve_share,
        }
    }
}

/// One persona's gate.
pub struct Gate {
    pub name: Arc<str>,
    pub in_flight: AtomicU32,
    /// Slots kept idle after a request by a throttle below 1.
    pub held: AtomicU32,
    pub queued: AtomicU32,
    /// Drains under way; while any is, nothing new is sent to the persona.
    pub drains: AtomicU32,
    /// Woken whenever a request of a draining persona ends.
    pub drained: Notify,
    pub meter: Meter,
    /// Idle keep-alive connections to the persona's process.
    pub pool: Arc<Pool>,
}

impl Gate {
    pub fn new(name: Arc<str>, max_idle: usize) -> Self {
        Gate {
            name,
            in_flight: AtomicU32::new(0),
            held: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            drains: AtomicU32::new(0),
            drained: Notify::new(),
            meter: Meter::default(),
            pool: Arc::new(Pool::new(max_idle)),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::SeqCst)
    }
}

/// Every persona's gate, published by the admission actor and read without waiting.
pub type Gates = Arc<HashMap<Arc<str>, Arc<Gate>>>;

/// One admitted request: where to send it and under which budget (read at admission, so a
/// budget change applies to requests that were still waiting).
pub struct Permit {
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    pub port: u16,
    pub spawn_id: u64,
    pub budget: Budget,
    /// An adapter persona: its id on its base's server (which `port` is) and its scale.
    pub lora: Option<(u32, f64)>,
    duty: f64,
    since: Instant,
}

/// How a request stands in the node-wide order when it is admitted.
#[derive(Debug, Clone, Copy)]
pub enum Rank {
    /// Arriving now (the request path): its budget's priority, not aged.
    Fresh,
    /// Chosen from the queue by the admission actor, with this aged priority.
    Aged(f64),
}

impl Rank {
    /// A failed attempt by the request path may have made the actor's dispatch fail meanwhile
    /// (its counts were up for a moment), so it kicks the actor; the actor's own failed
    /// attempts must not, or it would wake itself forever.
    fn kicks(self) -> bool {
        matches!(self, Rank::Fresh)
    }
}

/// Admit a request to `gate` if the persona is serving, not draining, and below both its own
/// concurrency and the node's (less the reserve kept for higher priorities); `None` leaves
/// every count as it was.
pub fn admit(
    gate: &Arc<Gate>,
    shared: &Arc<Shared>,
    status: &watch::Receiver<StatusTable>,
    rank: Rank,
) -> Option<Permit> {
    let (eff, node_max) = {
        let table = status.borrow();
        let s = table.get(&*gate.name)?;
        if s.phase != Phase::Running || s.port.is_none() || !s.budget.allowed_to_run {
            return None;
        }
        let eff = effective(&s.budget);
        let score = match rank {
            Rank::Fresh => eff.priority,
            Rank::Aged(score) => score,
        };
        (eff, node_limit(shared.max_in_flight, shared.reserve_share, score))
    };
    let kick = rank.kicks();
    let mine = gate.in_flight.fetch_add(1, Ordering::SeqCst);
    if mine + gate.held.load(Ordering::SeqCst) >= eff.slots {
        undo(gate, shared, false, kick);
        return None;
    }
    if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= node_max {
        undo(gate, shared, true, kick);
        return None;
    }
    if gate.drains.load(Ordering::SeqCst) > 0 {
        undo(gate, shared, true, kick);
        return None;
    }
    // read again: a drain that ended since the first read has stopped or replaced the process
    let table = status.borrow();
    match table.get(&*gate.name) {
        Some(s) if s.phase == Phase::Running && s.port.is_some() => Some(Permit {
            gate: Arc::clone(gate),
            shared: Arc::clone(shared),
            port: s.port.unwrap_or_default(),
            spawn_id: s.spawn_id,
            budget: s.budget.clone(),
            lora: s.adapter.as_ref().and_then(|a| Some((a.lora_id?, a.scale))),
            duty: eff.duty,
            since: Instant::now(),
        }),
        _ => {
            drop(table);
            undo(gate, shared, true, kick);
            None
        }
    }
}

fn undo(gate: &Gate, shared: &Shared, node_too: bool, kick: bool) {
    if node_too {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    gate.in_flight.fetch_sub(1, Ordering::SeqCst);
    after_release(gate, shared, kick);
}

fn after_release(gate: &Gate, shared: &Shared, kick: bool) {
    if gate.drains.load(Ordering::SeqCst) > 0 {
        gate.drained.notify_waiters();
    }
    if kick && shared.queued.load(Ordering::SeqCst) > 0 {
        shared.kick.notify_one();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        let hold = hold_ms(self.duty, self.since.elapsed().as_millis() as u64);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if hold > 0 => {
                // the request is over (a drain need not wait) but its slot stays taken a while
                self.gate.held.fetch_add(1, Ordering::SeqCst);
                self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
                let gate = Arc::clone(&self.gate);
                let shared = Arc::clone(&self.shared);
                rt.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    gate.held.fetch_sub(1, Ordering::SeqCst);
                    if shared.queued.load(Ordering::SeqCst) > 0 {
                        shared.kick.notify_one();
                    }
                });
            }
            _ => {
                self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        after_release(&self.gate, &self.shared, true);
    }
}

/// While it lives, the persona takes no new requests (they queue); dropping it lets them go.
pub struct DrainGuard {
    gate: Arc<Gate>,
    shared: Arc<Shared>,
}

impl DrainGuard {
    /// Stop admitting to `gate` and wait until its requests in flight are done, at most
    /// `timeout`. Returns the guard and how many requests were still in flight at the end.
    pub async fn start(gate: Arc<Gate>, shared: Arc<Shared>, timeout: Duration) -> (DrainGuard, u32) {
        gate.drains.fetch_add(1, Ordering::SeqCst);
        // the guard exists from here: a drain abandoned half way still ends
        let guard = DrainGuard { gate: Arc::clone(&gate), shared };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = gate.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if gate.in_flight() == 0 {
                return (guard, 0);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return (guard, gate.in_flight());
            }
        }
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        self.gate.drains.fetch_sub(1, Ordering::SeqCst);
        self.shared.kick.notify_one();
    }
}
