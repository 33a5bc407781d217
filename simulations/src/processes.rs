//! Simulated persona processes, fenced exactly as the real node fences them
//! (`crates/mindmesh-node/src/mesh/{fence,guard,reconcile}.rs`):
//!
//! - on a live node, a persona runs iff the registry the node has applied places it there with
//!   desired phase running, the node holds its lease, and it is not waiting out a restart
//!   backoff after a crash. The node's task re-evaluates that on every change of its lease or
//!   registry (not on a tick), so a process stops at the virtual instant a condition fails;
//! - a persona that crashes is restarted by its node after a short backoff (local autonomy),
//!   but only while the lease is held;
//! - when a node crashes, its processes outlive it (as real ones do) until the expiry of the
//!   lease the node last held: the fence guard kills them then.
//!
//! Each node's task reports starts and stops on one bounded channel; the [`ProcessTable`]
//! replays them (with the guard's kills at their instants) into who runs what, and measures
//! every overlap of a persona on two nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mindmesh_core::metrics::HostSample;
use mindmesh_core::phase::{Health, Phase};
use mindmesh_core::registry::{DesiredPhase, Registry};
use mindmesh_core::snapshot::{NodeSnapshot, PersonaFigures};
use mindmesh_net::{MeshHandle, NodeId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Process events buffered between two steps of the checker.
pub const EVENT_QUEUE: usize = 65_536;
/// Commands (persona crashes) queued for one node's processes.
pub const COMMAND_QUEUE: usize = 64;
/// How often a node gossips the personas it runs.
const GOSSIP_EVERY: Duration = Duration::from_millis(1000);

/// What the run asks of a node's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcCmd {
    /// Crash this persona, if it runs here.
    Crash { persona: String },
}

/// Why a process stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhy {
    /// The node's lease is no longer held; `until_us` is the expiry it had.
    Fenced { until_us: Option<u64> },
    /// The registry no longer places it here with desired phase running.
    NotPlaced,
    /// It crashed (a fault of the schedule).
    Crashed,
    /// Its node had crashed; the fence guard killed it at the lease's expiry.
    Guard,
    /// Its node had crashed, and is back (with fencing broken, nothing killed it before).
    Reboot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcKind {
    Start,
    Stop(StopWhy),
}

/// A process started or stopped, at a virtual instant (µs since the run began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEvent {
    pub at_us: u64,
    pub node: NodeId,
    /// Which run of the node (its boot count) owns the process.
    pub boots: u64,
    pub persona: String,
    pub kind: ProcKind,
}

/// Everything one node's processes need.
pub(crate) struct NodeProcs {
    pub mesh: MeshHandle,
    pub me: NodeId,
    pub boots: u64,
    pub seed: u64,
    pub started: Instant,
    pub broken_fencing: bool,
    pub restart_backoff_ms: (u64, u64),
    pub commands: mpsc::Receiver<ProcCmd>,
    pub events: mpsc::Sender<ProcEvent>,
    /// Events that did not fit the queue (the run fails as a harness error if any).
    pub dropped: Arc<AtomicU64>,
}

pub(crate) fn micros_since(started: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(started).as_micros() as u64
}

/// The personas the node must run now, by the rules above.
fn wanted(registry: &Registry, me: NodeId, may_run: bool, backoff: &BTreeMap<String, Instant>) -> BTreeSet<String> {
    if !may_run {
        return BTreeSet::new();
    }
    registry
        .personas_on(me)
        .filter(|(name, p)| p.phase == DesiredPhase::Running && !backoff.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect()
}

impl NodeProcs {
    fn emit(&self, persona: &str, kind: ProcKind) {
        let ev = ProcEvent {
            at_us: micros_since(self.started, Instant::now()),
            node: self.me,
            boots: self.boots,
            persona: persona.to_owned(),
            kind,
        };
        tracing::trace!(node = self.me, boots = self.boots, persona, ?kind, at_us = ev.at_us, "process");
        if self.events.try_send(ev).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The node's supervisor, simulated: runs until the node crashes (the task is aborted).
    pub async fn run(mut self) {
        let mut lease_rx = self.mesh.watch_lease();
        let mut registry_rx = self.mesh.watch_registry();
        let mut rng = SmallRng::seed_from_u64(self.seed ^ self.me.rotate_left(17) ^ (self.boots << 40));
        let mut running: BTreeSet<String> = BTreeSet::new();
        let mut backoff: BTreeMap<String, Instant> = BTreeMap::new();
        let mut next_gossip = Instant::now();
        loop {
            let lease = *lease_rx.borrow_and_update();
            let registry = registry_rx.borrow_and_update().clone();
            let now = Instant::now();
            backoff.retain(|_, until| *until > now);
            let may_run = self.broken_fencing || lease.held;
            let want = wanted(&registry, self.me, may_run, &backoff);
            for name in running.difference(&want) {
                let why = if may_run {
                    StopWhy::NotPlaced
                } else {
                    StopWhy::Fenced { until_us: lease.until.map(|u| micros_since(self.started, u)) }
                };
                self.emit(name, ProcKind::Stop(why));
            }
            for name in want.difference(&running) {
                self.emit(name, ProcKind::Start);
            }
            running = want;
            if now >= next_gossip {
                next_gossip = now + GOSSIP_EVERY;
                if self.mesh.publish_snapshot(snapshot(self.me, &registry, &running)).await.is_err() {
                    return;
                }
            }
            let next_restart = backoff.values().min().copied();
            // biased: a replayed seed must take the same branch when several are ready
            tokio::select! {
                biased;
                changed = lease_rx.changed() => if changed.is_err() { return },
                changed = registry_rx.changed() => if changed.is_err() { return },
                cmd = self.commands.recv() => match cmd {
                    Some(ProcCmd::Crash { persona }) => {
                        if running.remove(&persona) {
                            self.emit(&persona, ProcKind::Stop(StopWhy::Crashed));
                            let (lo, hi) = self.restart_backoff_ms;
                            let pause = Duration::from_millis(rng.random_range(lo..=hi.max(lo)));
                            backoff.insert(persona, Instant::now() + pause);
                        }
                    }
                    None => return,
                },
                _ = sleep_until_opt(next_restart) => {}
                _ = tokio::time::sleep_until(next_gossip) => {}
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the node gossips: the personas it runs, with figures derived from their entries.
fn snapshot(me: NodeId, registry: &Registry, running: &BTreeSet<String>) -> NodeSnapshot {
    let personas = running
        .iter()
        .filter_map(|name| registry.personas.get(name).map(|p| (name, p)))
        .map(|(name, p)| PersonaFigures {
            name: name.clone(),
            phase: Phase::Running,
            health: Health::Healthy,
            pid: Some(1000 + (p.created_index % 30_000) as u32),
            generation: p.generation,
            epoch: p.epoch,
            rss_bytes: 64 << 20,
            cpu_percent: 5.0,
            ..Default::default()
        })
        .collect();
    NodeSnapshot {
        node_id: me,
        node_name: format!("sim-{me}"),
        incarnation: 0,
        seq: 0,
        ts_ms: 0,
        host: HostSample { cpu_cores: 4, memory_total_bytes: 16 << 30, ..Default::default() },
        personas,
    }
}

/// A persona running on two (or more) nodes at once, for `[from_us, to_us)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub persona: String,
    pub nodes: Vec<NodeId>,
    pub from_us: u64,
    /// None: still going on.
    pub to_us: Option<u64>,
}

impl Overlap {
    pub fn length_us(&self, now_us: u64) -> u64 {
        self.to_us.unwrap_or(now_us).saturating_sub(self.from_us)
    }
}

/// Processes of a crashed node, left running until the guard kills them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Orphans {
    node: NodeId,
    boots: u64,
    /// None: nothing kills them (fencing broken) until the node is back.
    until_us: Option<u64>,
}

/// Who runs what, replayed from the nodes' events; the overlaps seen so far.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// persona → node → the runs of that node holding it (boot counts: a crashed run's
    /// orphans and the restarted node's own process may coexist on one node).
    running: BTreeMap<String, BTreeMap<NodeId, BTreeSet<u64>>>,
    orphans: Vec<Orphans>,
    /// Overlaps going on, by persona.
    ongoing: BTreeMap<String, Overlap>,
    /// The longest overlap that has ended.
    worst_ended: Option<Overlap>,
    /// Overlaps longer than an instant that ended.
    pub overlaps_ended: u64,
    pub starts: u64,
    pub crashes: u64,
    /// How long after its lease's expiry a node stopped a process for want of a lease (the
    /// lease watch should flip exactly at expiry).
    pub max_fence_lag_us: u64,
    /// A trace of the events, for the run's hash.
    pub trace: u64,
}

impl ProcessTable {
    /// Replay the events of a step (in time order) and the guard's kills due by `now_us`.
    pub fn replay(&mut self, events: &[ProcEvent], now_us: u64) {
        for ev in events {
            self.reap(ev.at_us);
            self.apply(ev);
        }
        self.reap(now_us);
    }

    /// The nodes running `persona` now.
    pub fn nodes_running(&self, persona: &str) -> BTreeSet<NodeId> {
        self.running.get(persona).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    /// Every persona running somewhere, with its nodes.
    pub fn running(&self) -> impl Iterator<Item = (&String, BTreeSet<NodeId>)> {
        self.running.iter().map(|(name, nodes)| (name, nodes.keys().copied().collect()))
    }

    /// The personas run `boots` of `node` runs (not its orphans).
    pub fn run_by(&self, node: NodeId, boots: u64) -> Vec<&String> {
        self.running
            .iter()
            .filter(|(_, nodes)| nodes.get(&node).is_some_and(|runs| runs.contains(&boots)))
            .map(|(name, _)| name)
            .collect()
    }

    /// The longest overlap so far, ended or going on at `now_us`.
    pub fn worst_overlap(&self, now_us: u64) -> Option<&Overlap> {
        self.worst_ended.iter().chain(self.ongoing.values()).max_by_key(|o| o.length_us(now_us))
    }

    /// Node `node`'s run `boots` crashed at `now_us`: its processes run on until `until_us`
    /// (the lease it held; None: until it is back).
    pub fn crashed(&mut self, node: NodeId, boots: u64, now_us: u64, until_us: Option<u64>) {
        self.orphans.push(Orphans { node, boots, until_us: until_us.map(|u| u.max(now_us)) });
        self.reap(now_us);
    }

    /// Node `node` is back at `now_us`: orphans nothing killed stop now (the node's
    /// reconciler removes what it did not start).
    pub fn rebooted(&mut self, node: NodeId, now_us: u64) {
        self.reap(now_us);
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.orphans).into_iter().partition(|o| o.node == node && o.until_us.is_none());
        self.orphans = kept;
        for o in gone {
            self.release(o.node, o.boots, now_us, StopWhy::Reboot);
        }
    }

    fn reap(&mut self, now_us: u64) {
        loop {
            let due = self
                .orphans
                .iter()
                .enumerate()
                .filter(|(_, o)| o.until_us.is_some_and(|u| u <= now_us))
                .min_by_key(|(_, o)| o.until_us)
                .map(|(i, _)| i);
            let Some(i) = due else { return };
            let o = self.orphans.remove(i);
            self.release(o.node, o.boots, o.until_us.unwrap_or(now_us), StopWhy::Guard);
        }
    }

    fn release(&mut self, node: NodeId, boots: u64, at_us: u64, why: StopWhy) {
        let held: Vec<String> = self
            .running
            .iter()
            .filter(|(_, nodes)| nodes.get(&node).is_some_and(|runs| runs.contains(&boots)))
            .map(|(name, _)| name.clone())
            .collect();
        for persona in held {
            self.apply(&ProcEvent { at_us, node, boots, persona, kind: ProcKind::Stop(why) });
        }
    }

    fn mix(&mut self, ev: &ProcEvent) {
        let kind = match ev.kind {
            ProcKind::Start => 0u8,
            ProcKind::Stop(_) => 1,
        };
        let bytes = [&ev.at_us.to_le_bytes()[..], &ev.node.to_le_bytes(), ev.persona.as_bytes(), &[kind]].concat();
        for b in bytes {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn apply(&mut self, ev: &ProcEvent) {
        self.mix(ev);
        match ev.kind {
            ProcKind::Start => {
                self.starts += 1;
                let nodes = self.running.entry(ev.persona.clone()).or_default();
                nodes.entry(ev.node).or_default().insert(ev.boots);
                if nodes.len() > 1 && !self.ongoing.contains_key(&ev.persona) {
                    let o = Overlap {
                        persona: ev.persona.clone(),
                        nodes: nodes.keys().copied().collect(),
                        from_us: ev.at_us,
                        to_us: None,
                    };
                    self.ongoing.insert(ev.persona.clone(), o);
                } else if let Some(o) = self.ongoing.get_mut(&ev.persona) {
                    o.nodes = nodes.keys().copied().collect();
                }
            }
            ProcKind::Stop(why) => {
                match why {
                    StopWhy::Crashed => self.crashes += 1,
                    StopWhy::Fenced { until_us: Some(u) } => {
                        let lag_us = ev.at_us.saturating_sub(u);
                        if lag_us > 0 {
                            tracing::debug!(persona = %ev.persona, node = ev.node, lag_us, "fenced after the lease's expiry");
                        }
                        self.max_fence_lag_us = self.max_fence_lag_us.max(lag_us);
                    }
                    _ => {}
                }
                let Some(nodes) = self.running.get_mut(&ev.persona) else { return };
                if let Some(runs) = nodes.get_mut(&ev.node) {
                    runs.remove(&ev.boots);
                    if runs.is_empty() {
                        nodes.remove(&ev.node);
                    }
                }
                let left = nodes.len();
                if left == 0 {
                    self.running.remove(&ev.persona);
                }
                if left < 2
                    && let Some(mut o) = self.ongoing.remove(&ev.persona)
                {
                    o.to_us = Some(ev.at_us);
                    if o.length_us(0) > 0 {
                        self.overlaps_ended += 1;
                        tracing::debug!(persona = %o.persona, nodes = ?o.nodes, from_us = o.from_us, length_us = o.length_us(0), "double run");
                    }
                    if self.worst_ended.as_ref().is_none_or(|w| o.length_us(0) > w.length_us(0)) {
                        self.worst_ended = Some(o);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_us: u64, node: NodeId, boots: u64, persona: &str, kind: ProcKind) -> ProcEvent {
        ProcEvent { at_us, node, boots, persona: persona.into(), kind }
    }

    #[test]
    fn a_persona_on_two_nodes_is_an_overlap_measured_to_the_microsecond() {
        let mut t = ProcessTable::default();
        t.replay(&[ev(100, 1, 1, "p", ProcKind::Start), ev(200, 2, 1, "p", ProcKind::Start)], 250);
        assert_eq!(t.nodes_running("p"), BTreeSet::from([1, 2]));
        assert_eq!(t.worst_overlap(250).map(|o| o.length_us(250)), Some(50));
        t.replay(&[ev(300, 1, 1, "p", ProcKind::Stop(StopWhy::NotPlaced))], 400);
        assert_eq!(t.worst_overlap(400).map(|o| o.length_us(400)), Some(100));
        assert_eq!(t.overlaps_ended, 1);
        // a hand-over at one instant is no overlap
        t.replay(&[ev(500, 2, 1, "p", ProcKind::Stop(StopWhy::NotPlaced)), ev(500, 3, 1, "p", ProcKind::Start)], 600);
        t.replay(&[ev(700, 1, 2, "p", ProcKind::Start), ev(700, 3, 1, "p", ProcKind::Stop(StopWhy::Crashed))], 800);
        assert_eq!(t.overlaps_ended, 1, "two events of one instant overlap for no time");
        assert_eq!(t.worst_overlap(800).map(|o| o.length_us(800)), Some(100));
        assert_eq!(t.crashes, 1);
    }

    #[test]
    fn a_crashed_nodes_processes_run_until_its_lease_expires() {
        let mut t = ProcessTable::default();
        t.replay(&[ev(0, 1, 1, "p", ProcKind::Start), ev(0, 1, 1, "q", ProcKind::Start)], 10);
        t.crashed(1, 1, 10, Some(1000));
        t.replay(&[], 999);
        assert_eq!(t.nodes_running("p"), BTreeSet::from([1]));
        // the replacement starts before the guard's kill: an overlap until the kill
        t.replay(&[ev(900, 2, 1, "p", ProcKind::Start)], 2000);
        assert_eq!(t.nodes_running("p"), BTreeSet::from([2]));
        assert!(t.nodes_running("q").is_empty());
        assert_eq!(t.worst_overlap(2000).map(|o| o.length_us(2000)), Some(100));
    }

    #[test]
    fn with_fencing_broken_orphans_run_until_their_node_is_back() {
        let mut t = ProcessTable::default();
        t.replay(&[ev(0, 1, 1, "p", ProcKind::Start)], 10);
        t.crashed(1, 1, 10, None);
        t.replay(&[ev(5000, 2, 1, "p", ProcKind::Start)], 9000);
        assert_eq!(t.worst_overlap(9000).map(|o| o.length_us(9000)), Some(4000));
        // the restarted node starts its own before the orphans are gone: same node, no overlap
        t.replay(&[ev(9500, 1, 2, "q", ProcKind::Start)], 9500);
        t.rebooted(1, 10_000);
        assert_eq!(t.nodes_running("p"), BTreeSet::from([2]));
        assert_eq!(t.nodes_running("q"), BTreeSet::from([1]));
        assert_eq!(t.worst_overlap(10_000).map(|o| o.length_us(10_000)), Some(5000));
    }

    #[test]
    fn a_late_fence_is_measured() {
        let mut t = ProcessTable::default();
        t.replay(&[ev(0, 1, 1, "p", ProcKind::Start)], 0);
        t.replay(&[ev(1300, 1, 1, "p", ProcKind::Stop(StopWhy::Fenced { until_us: Some(1000) }))], 1300);
        assert_eq!(t.max_fence_lag_us, 300);
    }
}
