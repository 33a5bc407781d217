//! The admission actor: owns the node-wide queue of requests that could not be admitted at
//! once, and the table of gates. It hands out permits in aged-priority order as slots free
//! up, wakes hibernating personas once for all their waiting requests, times requests out by
//! their persona's live budget, and refuses them with a reason when their persona stops, is
//! removed or is no longer allowed to run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use mindmesh_core::Phase;
use mindmesh_core::config::GatewayConfig;
use mindmesh_supervisor::StatusTable;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::budget::{effective, node_limit};
use super::gate::{Gate, Gates, Permit, Rank, Shared, admit};
use super::queue::{Lane, Queue};
use crate::waker::{WakeError, Waker};

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    QueueFull {
        retry_after_s: u32,
    },
    NotAllowed,
    /// The persona is down and nothing is bringing it back (stopped, failed, killed, never
    /// started).
    Unavailable {
        phase: Phase,
        reason: Option<String>,
    },
    /// Removed while the request waited.
    Gone,
    /// Its budget's `max_response_time_ms` passed while it waited.
    Timeout {
        waited_ms: u64,
        limit_ms: u64,
    },
    WakeFailed(String),
    /// Its wake needs memory this node does not have, and nothing idle could be evicted.
    NoRoom {
        retry_after_s: u32,
        message: String,
    },
    ShuttingDown,
}

pub type Reply = oneshot::Sender<Result<Permit, Refusal>>;

pub(crate) enum Command {
    Enqueue {
        persona: Arc<str>,
        arrived: Instant,
        reply: Reply,
    },
    /// The gate of a persona the request path saw before the actor did.
    Gate {
        persona: String,
        reply: oneshot::Sender<Option<Arc<Gate>>>,
    },
    WakeFailed {
        persona: Arc<str>,
        error: WakeError,
    },
}

pub(crate) struct Admission {
    pub config: GatewayConfig,
    pub shared: Arc<Shared>,
    pub status: watch::Receiver<StatusTable>,
    pub gates: watch::Sender<Gates>,
    pub waker: Waker,
    pub commands_tx: mpsc::Sender<Command>,
    pub epoch: Instant,
    queue: Queue<Reply>,
    /// Personas a wake was asked for, until they leave `hibernating`.
    waking: HashSet<Arc<str>>,
}

/// What to do with a persona's waiting requests, judged from its status.
enum Verdict {
    Wait,
    Wake,
    Refuse(Refusal),
}

impl Admission {
    pub fn new(
        config: GatewayConfig,
        shared: Arc<Shared>,
        status: watch::Receiver<StatusTable>,
        gates: watch::Sender<Gates>,
        waker: Waker,
        commands_tx: mpsc::Sender<Command>,
        epoch: Instant,
    ) -> Self {
        Admission {
            config,
            shared,
            status,
            gates,
            waker,
            commands_tx,
            epoch,
            queue: Queue::default(),
            waking: HashSet::new(),
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let shared = Arc::clone(&self.shared);
        self.sync_gates();
        loop {
            let next = self.queue.next_deadline_ms(|p| self.timeout_ms(p));
            let sleep_until = next.map(|ms| tokio::time::Instant::from_std(self.epoch) + ms_duration(ms));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                changed = self.status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.status.borrow_and_update();
                    self.sync_gates();
                    self.settle_all();
                }
                _ = shared.kick.notified() => {}
                _ = sleep(sleep_until), if sleep_until.is_some() => {}
            }
            self.expire();
            self.dispatch();
        }
        for (persona, w) in self.queue.take_everything() {
            let _ = w.item.send(Err(Refusal::ShuttingDown));
            self.count_queued(&persona);
        }
        tracing::debug!("gateway admission stopped");
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn arrival_ms(&self, arrived: Instant) -> u64 {
        arrived.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The persona's live timeout (0 for a persona that is gone: its requests are due).
    fn timeout_ms(&self, persona: &str) -> u64 {
        self.status.borrow().get(persona).map_or(0, |s| s.budget.max_response_time_ms)
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Enqueue { persona, arrived, reply } => self.enqueue(persona, arrived, reply),
            Command::Gate { persona, reply } => {
                self.sync_gates();
                let _ = reply.send(self.gates.borrow().get(persona.as_str()).cloned());
            }
            Command::WakeFailed { persona, error } => {
                self.waking.remove(&persona);
                let refusal = match error {
                    WakeError::NoRoom(n) => Refusal::NoRoom { retry_after_s: n.retry_after_s, message: n.message },
                    WakeError::Failed(why) => {
                        tracing::warn!(%persona, error = %why, "wake on request failed");
                        Refusal::WakeFailed(why)
                    }
                };
                self.refuse_all(&persona, refusal);
            }
        }
    }

    fn enqueue(&mut self, persona: Arc<str>, arrived: Instant, reply: Reply) {
        match self.verdict(&persona) {
            Verdict::Refuse(r) => {
                let _ = reply.send(Err(r));
                return;
            }
            Verdict::Wake => self.wake(&persona),
            Verdict::Wait => {}
        }
        let full = self.queue.len() >= self.config.max_queued as usize
            || self.queue.len_of(&persona) >= self.config.max_queued_per_persona as usize;
        if full {
            let _ = reply.send(Err(Refusal::QueueFull { retry_after_s: self.config.retry_after_s }));
            return;
        }
        let arrived_ms = self.arrival_ms(arrived);
        self.queue.push(Arc::clone(&persona), reply, arrived_ms);
        // counted before any dispatch is tried, so a slot freed meanwhile kicks us
        self.count_queued(&persona);
    }

    fn verdict(&self, persona: &str) -> Verdict {
        let table = self.status.borrow();
        let Some(s) = table.get(persona) else { return Verdict::Refuse(Refusal::Gone) };
        if !s.budget.allowed_to_run {
            return Verdict::Refuse(Refusal::NotAllowed);
        }
        match s.phase {
            // any tier: the request waits for the wake, never a 404 or 503 for it
            Phase::Hibernating | Phase::Paused => Verdict::Wake,
            Phase::Stopped | Phase::Failed | Phase::Killed | Phase::Pending => {
                Verdict::Refuse(Refusal::Unavailable { phase: s.phase, reason: s.reason.clone() })
            }
            Phase::Starting | Phase::Running | Phase::Backoff | Phase::Stopping => Verdict::Wait,
        }
    }

    /// One wake for all the requests waiting on a hibernating persona.
    fn wake(&mut self, persona: &Arc<str>) {
        if !self.waking.insert(Arc::clone(persona)) {
            return;
        }
        tracing::info!(%persona, "waking on request");
        let waker = self.waker.clone();
        let tx = self.commands_tx.clone();
        let persona = Arc::clone(persona);
        tokio::spawn(async move {
            if let Err(error) = waker.wake(&persona).await {
                let _ = tx.send(Command::WakeFailed { persona, error }).await;
            }
        });
    }

    /// Judge every persona with waiting requests again (its status changed).
    fn settle_all(&mut self) {
        {
            let table = self.status.borrow();
            self.waking.retain(|p| table.get(&**p).is_some_and(|s| s.phase.is_hibernated()));
        }
        let personas: Vec<Arc<str>> = self.queue.personas().cloned().collect();
        for persona in personas {
            match self.verdict(&persona) {
                Verdict::Wait => {}
                Verdict::Wake => self.wake(&persona),
                Verdict::Refuse(r) => self.refuse_all(&persona, r),
            }
        }
    }

    fn refuse_all(&mut self, persona: &str, refusal: Refusal) {
        for w in self.queue.take_all(persona) {
            let _ = w.item.send(Err(refusal.clone()));
        }
        self.count_queued(persona);
    }

    fn expire(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let now = self.now_ms();
        let status = self.status.clone();
        let timeout = |p: &str| status.borrow().get(p).map_or(0, |s| s.budget.max_response_time_ms);
        let expired = self.queue.expire(now, timeout);
        for (persona, w) in expired {
            let limit_ms = timeout(&persona);
            let _ = w.item.send(Err(Refusal::Timeout { waited_ms: now.saturating_sub(w.arrived_ms), limit_ms }));
            self.count_queued(&persona);
        }
    }

    /// Hand out permits while a slot is free, best aged priority first.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            if self.shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) >= self.shared.max_in_flight {
                return;
            }
            let table = self.status.borrow().clone();
            let gates = self.gates.borrow().clone();
            let lane = |name: &str| {
                let s = table.get(name)?;
                let g = gates.get(name)?;
                let e = effective(&s.budget);
                let busy = g.in_flight() + g.held.load(std::sync::atomic::Ordering::SeqCst);
                let open = s.phase == Phase::Running
                    && s.port.is_some()
                    && s.budget.allowed_to_run
                    && g.drains.load(std::sync::atomic::Ordering::SeqCst) == 0
                    && busy < e.slots;
                Some(Lane { priority: e.priority, open })
            };
            let Some((persona, score)) = self.queue.pick(self.now_ms(), self.config.aging_ms_per_point, lane) else {
                return;
            };
            let Some(gate) = gates.get(&persona).cloned() else { return };
            // the reserve kept for higher priorities: nothing ranked lower can start either
            let node_max = node_limit(self.shared.max_in_flight, self.shared.reserve_share, score);
            if self.shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) >= node_max {
                return;
            }
            let Some(w) = self.queue.pop(&persona) else { return };
            if w.item.is_closed() {
                // the caller has gone while it waited
                self.count_queued(&persona);
                continue;
            }
            match admit(&gate, &self.shared, &self.status, Rank::Aged(score)) {
                Some(permit) => {
                    self.count_queued(&persona);
                    // a caller gone since: the permit comes back and its drop frees the slot
                    let _ = w.item.send(Ok(permit));
                }
                None => {
                    // lost a race with the request path; the slot's release kicks us again
                    self.queue.push_front(persona, w);
                    return;
                }
            }
        }
    }

    fn count_queued(&self, persona: &str) {
        self.shared.queued.store(self.queue.len() as u32, std::sync::atomic::Ordering::SeqCst);
        if let Some(g) = self.gates.borrow().get(persona) {
            g.queued.store(self.queue.len_of(persona) as u32, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Keep one gate per persona of the status table; requests waiting on a persona that is
    /// gone are refused.
    fn sync_gates(&mut self) {
        let table = self.status.borrow().clone();
        let current = self.gates.borrow().clone();
        let same = current.len() == table.len() && table.keys().all(|k| current.contains_key(k.as_str()));
        if same {
            return;
        }
        let mut next: HashMap<Arc<str>, Arc<Gate>> = HashMap::with_capacity(table.len());
        for name in table.keys() {
            let gate = match current.get(name.as_str()) {
                Some(g) => Arc::clone(g),
                None => {
                    let name: Arc<str> = name.as_str().into();
                    Arc::new(Gate::new(name, self.config.pool_idle_per_persona))
                }
            };
            next.insert(Arc::clone(&gate.name), gate);
        }
        self.gates.send_replace(Arc::new(next));
        let gone: Vec<Arc<str>> = self.queue.personas().filter(|p| !table.contains_key(&***p)).cloned().collect();
        for persona in gone {
            self.refuse_all(&persona, Refusal::Gone);
        }
    }
}

fn ms_duration(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
