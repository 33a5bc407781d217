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

use super::budget::{effective, hold_ms};
use super::meter::Meter;

/// Node-wide figures of the gateway.
pub struct Shared {
    pub in_flight: AtomicU32,
    pub queued: AtomicU32,
    /// Tells the admission actor that a slot was freed while requests wait.
    pub kick: Notify,
    pub max_in_flight: u32,
}

impl Shared {
    pub fn new(max_in_flight: u32) -> Self {
        Shared { in_flight: AtomicU32::new(0), queued: AtomicU32::new(0), kick: Notify::new(), max_in_flight }
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
}

impl Gate {
    pub fn new(name: Arc<str>) -> Self {
        Gate {
            name,
            in_flight: AtomicU32::new(0),
            held: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            drains: AtomicU32::new(0),
            drained: Notify::new(),
            meter: Meter::default(),
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
    duty: f64,
    since: Instant,
}

/// Admit a request to `gate` if the persona is serving, not draining, and below both its own
/// and the node's concurrency; `None` leaves every count as it was.
pub fn admit(gate: &Arc<Gate>, shared: &Arc<Shared>, status: &watch::Receiver<StatusTable>) -> Option<Permit> {
    let eff = {
        let table = status.borrow();
        let s = table.get(&*gate.name)?;
        if s.phase != Phase::Running || s.port.is_none() || !s.budget.allowed_to_run {
            return None;
        }
        effective(&s.budget)
    };
    let mine = gate.in_flight.fetch_add(1, Ordering::SeqCst);
    if mine + gate.held.load(Ordering::SeqCst) >= eff.slots {
        undo(gate, shared, false);
        return None;
    }
    if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= shared.max_in_flight {
        undo(gate, shared, true);
        return None;
    }
    if gate.drains.load(Ordering::SeqCst) > 0 {
        undo(gate, shared, true);
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
            duty: eff.duty,
            since: Instant::now(),
        }),
        _ => {
            drop(table);
            undo(gate, shared, true);
            None
        }
    }
}

fn undo(gate: &Gate, shared: &Shared, node_too: bool) {
    if node_too {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    gate.in_flight.fetch_sub(1, Ordering::SeqCst);
    after_release(gate, shared);
}

fn after_release(gate: &Gate, shared: &Shared) {
    if gate.drains.load(Ordering::SeqCst) > 0 {
        gate.drained.notify_waiters();
    }
    if shared.queued.load(Ordering::SeqCst) > 0 {
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
        after_release(&self.gate, &self.shared);
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
