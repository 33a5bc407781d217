//! The OpenAI-compatible gateway: `POST /v1/chat/completions`, `POST /v1/completions` and
//! `GET /v1/models` on the node's HTTP server, where `model` names a persona. Every request
//! to a persona passes here: the node holds it to the persona's budget (concurrency, a shared
//! priority queue that ages, timeout, token clamp, throttle, allowed-to-run), wakes it if it
//! hibernates, drains it before it is stopped, and measures what the caller sees.
//!
//! The request path reads the supervisor's status table and the gates (atomics) without any
//! actor round trip; only requests that cannot be admitted at once go to the admission actor,
//! which owns the queue.
//!
//! # Layout
//! - [`routing`]: which persona, on which node, a model names — the one decision
//! - [`proxy`]: the request path and `/v1/models`
//! - [`upstream`]: the lean HTTP/1.1 client to the personas, pooled per persona
//! - [`request`]: peeking at a request's model and token limits; the token clamp
//! - [`gate`]: per-persona admission counts, permits, drains
//! - [`admission`]: the actor owning the node-wide queue; wake on request
//! - [`queue`]: the sans-IO queue (aged priority, FIFO per persona, timeouts)
//! - [`budget`]: what a budget means in slots, duty cycle and priority
//! - [`measure`]: a request's record and the metered answer body
//! - [`meter`]: lock-free counters and histograms per persona
//! - [`classify`]: a persona's error answer as an error kind
//! - [`error`]: the gateway's own refusals in OpenAI's error shape

mod admission;
mod budget;
mod classify;
mod error;
mod gate;
mod measure;
mod meter;
mod proxy;
mod queue;
mod request;
mod routing;
mod upstream;

pub(crate) use upstream::fuzz_answer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use mindmesh_core::clock::Clock;
use mindmesh_core::config::GatewayConfig;
use mindmesh_core::metrics::PersonaSample;
use mindmesh_supervisor::StatusTable;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use admission::Refusal;
pub use gate::DrainGuard;
pub use meter::{CumulativeSnapshot, KIND_LABELS, Live};
pub use routing::{Route, route};

use admission::{Admission, Command};
use gate::{Gate, Gates, Permit, Shared};

use crate::waker::Waker;

/// Commands waiting for the admission actor; request tasks wait (backpressure) beyond it.
const COMMAND_QUEUE: usize = 4096;

/// The gates of every persona, made before the gateway so the recorder can read its meters
/// from the start.
pub struct GateTable {
    tx: watch::Sender<Gates>,
}

impl Default for GateTable {
    fn default() -> Self {
        GateTable { tx: watch::channel(Gates::default()).0 }
    }
}

impl GateTable {
    pub fn meters(&self) -> Meters {
        Meters { gates: self.tx.subscribe() }
    }
}

/// The gateway's measurements, as the recorder takes them once per metrics tick.
#[derive(Clone)]
pub struct Meters {
    gates: watch::Receiver<Gates>,
}

impl Meters {
    /// Fill the behaviour fields of one tick's samples with the interval's measurements; a
    /// persona that had traffic but no process (hibernating, stopped) gets a sample of its own.
    pub fn fill(&self, ts_ms: u64, personas: &mut Vec<(String, PersonaSample)>) {
        let gates = self.gates.borrow().clone();
        let mut seen = std::collections::HashSet::with_capacity(personas.len());
        for (name, sample) in personas.iter_mut() {
            if let Some(g) = gates.get(name.as_str()) {
                fill_one(g, sample);
                seen.insert(name.clone());
            }
        }
        for (name, g) in gates.iter() {
            if seen.contains(&**name) {
                continue;
            }
            let mut sample = PersonaSample { ts_ms, ..PersonaSample::default() };
            if fill_one(g, &mut sample) || sample.queue_depth > 0 || sample.in_flight > 0 {
                personas.push((name.to_string(), sample));
            }
        }
    }
}

fn fill_one(g: &Gate, s: &mut PersonaSample) -> bool {
    let any = g.meter.take_interval(s);
    s.queue_depth = g.queued();
    s.in_flight = g.in_flight();
    any
}

/// What the gateway needs to route to personas of other nodes.
#[derive(Clone)]
pub struct Remote {
    pub me: mindmesh_core::registry::NodeId,
    pub registry: watch::Receiver<Arc<mindmesh_core::registry::Registry>>,
    pub forward: crate::http::forward::Forwarder,
    /// False while this node is fenced (no lease).
    pub may_run: watch::Receiver<bool>,
}

/// A persona's traffic right now, for the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub queue_depth: u32,
    pub in_flight: u32,
    pub live: Live,
}

/// The gateway's handle: cheap to clone, shared by the HTTP handlers, the control facade and
/// the API.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    /// Personas placed on other nodes: requests for them are forwarded to those nodes.
    remote: Option<Remote>,
    shared: Arc<Shared>,
    status: watch::Receiver<StatusTable>,
    gates: watch::Receiver<Gates>,
    commands: mpsc::Sender<Command>,
    connect_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl Gateway {
    /// Start the admission actor; it runs until `cancel`, then refuses what still waits.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        config: GatewayConfig,
        remote: Option<Remote>,
        table: GateTable,
        status: watch::Receiver<StatusTable>,
        waker: Waker,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> (Gateway, tokio::task::JoinHandle<()>) {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let shared = Arc::new(Shared::new(config.max_in_flight, config.priority_reserve_share));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let gates = table.tx.subscribe();
        let actor =
            Admission::new(config, Arc::clone(&shared), status.clone(), table.tx, waker, tx.clone(), Instant::now());
        let task = tokio::spawn(actor.run(rx, cancel));
        let inner = Inner { remote, shared, status, gates, commands: tx, connect_timeout, clock };
        (Gateway { inner: Arc::new(inner) }, task)
    }

    /// Is this persona placed on another node, or leaving this one (the registry says so)?
    pub fn moved_away(&self, name: &str) -> bool {
        let Some(r) = &self.inner.remote else { return false };
        let reg = r.registry.borrow();
        reg.personas.get(name).is_some_and(|e| e.node != Some(r.me) || e.migrating_to.is_some())
    }

    /// The OpenAI routes, for the node's router (which adds the token check and body limit).
    pub fn router<S>(&self) -> Router<S> {
        Router::new()
            .route("/v1/chat/completions", post(proxy::chat))
            .route("/v1/completions", post(proxy::completions))
            .route("/v1/models", get(proxy::models))
            .with_state(self.clone())
    }

    async fn gate(&self, name: &str) -> Option<Arc<Gate>> {
        if let Some(g) = self.inner.gates.borrow().get(name) {
            return Some(Arc::clone(g));
        }
        // the persona is newer than the gate table: the actor makes its gate
        let (reply, rx) = oneshot::channel();
        self.inner.commands.send(Command::Gate { persona: name.to_owned(), reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Admit at once when nothing waits and a slot is free; else wait in the queue.
    async fn admit(&self, gate: &Arc<Gate>, arrived: Instant) -> std::result::Result<Permit, Refusal> {
        let shared = &self.inner.shared;
        if shared.queued.load(std::sync::atomic::Ordering::SeqCst) == 0
            && let Some(p) = gate::admit(gate, shared, &self.inner.status, gate::Rank::Fresh)
        {
            gate.meter.queue_wait(Duration::ZERO);
            return Ok(p);
        }
        let queued = Instant::now();
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Enqueue { persona: Arc::clone(&gate.name), arrived, reply };
        self.inner.commands.send(cmd).await.map_err(|_| Refusal::ShuttingDown)?;
        let admitted = rx.await.unwrap_or(Err(Refusal::ShuttingDown));
        // admitted requests only: a refusal is counted as an error, its wait would blur the
        // wait of those served
        if admitted.is_ok() {
            gate.meter.queue_wait(queued.elapsed());
        }
        admitted
    }

    /// Stop sending requests to `name` and wait (at most `timeout`) for those in flight; the
    /// guard lets requests through again when dropped. Also returns how many were still in
    /// flight at the end. `None` for a persona the gateway does not know.
    pub async fn drain(&self, name: &str, timeout: Duration) -> Option<(DrainGuard, u32)> {
        let gate = self.gate(name).await?;
        Some(DrainGuard::start(gate, Arc::clone(&self.inner.shared), timeout).await)
    }

    /// Drain every persona at once (node shutdown): answers in flight finish, at most
    /// `timeout`, before the supervisor stops the processes.
    pub async fn drain_all(&self, timeout: Duration) -> Vec<DrainGuard> {
        let gates = self.inner.gates.borrow().clone();
        let drains = gates.values().map(|g| DrainGuard::start(Arc::clone(g), Arc::clone(&self.inner.shared), timeout));
        futures::future::join_all(drains).await.into_iter().map(|(guard, _)| guard).collect()
    }

    /// What the API shows of a persona's traffic.
    pub fn traffic(&self, name: &str, now_ms: u64) -> Option<Traffic> {
        let gates = self.inner.gates.borrow();
        let g = gates.get(name)?;
        Some(Traffic { queue_depth: g.queued(), in_flight: g.in_flight(), live: g.meter.live(now_ms) })
    }

    /// Every persona's counters and histograms since its gate was made, for `/metrics`.
    pub fn cumulative(&self) -> Vec<(Arc<str>, CumulativeSnapshot)> {
        let gates = self.inner.gates.borrow().clone();
        let mut all: Vec<_> = gates.values().map(|g| (Arc::clone(&g.name), g.meter.cumulative())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every persona's traffic (for `/metrics` and idle hibernation).
    pub fn all_traffic(&self, now_ms: u64) -> HashMap<String, Traffic> {
        let gates = self.inner.gates.borrow().clone();
        gates
            .iter()
            .map(|(n, g)| {
                (
                    n.to_string(),
                    Traffic { queue_depth: g.queued(), in_flight: g.in_flight(), live: g.meter.live(now_ms) },
                )
            })
            .collect()
    }
}
