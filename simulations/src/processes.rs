//! Who runs what, observed rather than modelled: every simulated node is a real
//! [`mindmesh_node::Node`] whose supervisor spawns through its own in-memory process host
//! ([`MemHost`](mindmesh_supervisor::host::MemHost)), and each host logs every start and exit.
//! The checker drains those logs after every step and replays them here, in time order, into
//! the table of which persona runs on which node — including the processes a crashed node left
//! behind, which run on in its host until its fence guard (played by the run) kills them or the
//! node, back up, adopts or kills them.

use std::collections::{BTreeMap, BTreeSet};

use mindmesh_core::lifecycle::ExitStatus;
use mindmesh_net::NodeId;
use tokio::time::Instant;

/// The signal the run crashes persona processes with (a segfault).
pub const CRASH_SIGNAL: i32 = 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcKind {
    Start,
    Exit(ExitStatus),
}

/// A process started or ended on a node's host, at a virtual instant (µs since the run began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEvent {
    pub at_us: u64,
    pub node: NodeId,
    pub pid: u32,
    pub persona: String,
    pub kind: ProcKind,
}

pub(crate) fn micros_since(started: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(started).as_micros() as u64
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

/// Who runs what, replayed from the hosts' events; the overlaps seen so far.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// persona → the processes running it, as (node, pid).
    running: BTreeMap<String, BTreeSet<(NodeId, u32)>>,
    /// Overlaps going on, by persona.
    ongoing: BTreeMap<String, Overlap>,
    /// The longest overlap that has ended.
    worst_ended: Option<Overlap>,
    /// Overlaps longer than an instant that ended.
    pub overlaps_ended: u64,
    pub starts: u64,
    /// Processes that ended by the run's crash signal.
    pub crashes: u64,
    /// A trace of the events, for the run's hash.
    pub trace: u64,
}

fn nodes_of(procs: &BTreeSet<(NodeId, u32)>) -> BTreeSet<NodeId> {
    procs.iter().map(|(n, _)| *n).collect()
}

impl ProcessTable {
    /// Replay the events of a step, in time order.
    pub fn replay(&mut self, events: &[ProcEvent]) {
        for ev in events {
            self.apply(ev);
        }
    }

    /// The nodes running `persona` now.
    pub fn nodes_running(&self, persona: &str) -> BTreeSet<NodeId> {
        self.running.get(persona).map(nodes_of).unwrap_or_default()
    }

    /// Every persona running somewhere, with its nodes.
    pub fn running(&self) -> impl Iterator<Item = (&String, BTreeSet<NodeId>)> {
        self.running.iter().map(|(name, procs)| (name, nodes_of(procs)))
    }

    /// The personas running on `node`.
    pub fn run_by(&self, node: NodeId) -> Vec<&String> {
        self.running.iter().filter(|(_, procs)| procs.iter().any(|(n, _)| *n == node)).map(|(name, _)| name).collect()
    }

    /// The longest overlap so far, ended or going on at `now_us`.
    pub fn worst_overlap(&self, now_us: u64) -> Option<&Overlap> {
        self.worst_ended.iter().chain(self.ongoing.values()).max_by_key(|o| o.length_us(now_us))
    }

    fn mix(&mut self, ev: &ProcEvent) {
        let kind = match ev.kind {
            ProcKind::Start => 0u8,
            ProcKind::Exit(_) => 1,
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
                let procs = self.running.entry(ev.persona.clone()).or_default();
                procs.insert((ev.node, ev.pid));
                let nodes = nodes_of(procs);
                if nodes.len() > 1 {
                    let o = self.ongoing.entry(ev.persona.clone()).or_insert_with(|| Overlap {
                        persona: ev.persona.clone(),
                        nodes: Vec::new(),
                        from_us: ev.at_us,
                        to_us: None,
                    });
                    o.nodes = nodes.into_iter().collect();
                }
            }
            ProcKind::Exit(status) => {
                if status == ExitStatus::Signal(CRASH_SIGNAL) {
                    self.crashes += 1;
                }
                let Some(procs) = self.running.get_mut(&ev.persona) else { return };
                procs.remove(&(ev.node, ev.pid));
                let left = nodes_of(procs).len();
                if procs.is_empty() {
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

    fn ev(at_us: u64, node: NodeId, pid: u32, kind: ProcKind) -> ProcEvent {
        ProcEvent { at_us, node, pid, persona: "p".into(), kind }
    }
    const KILLED: ProcKind = ProcKind::Exit(ExitStatus::Signal(9));

    #[test]
    fn a_persona_on_two_nodes_is_an_overlap_measured_to_the_microsecond() {
        let mut t = ProcessTable::default();
        t.replay(&[ev(100, 1, 10, ProcKind::Start), ev(200, 2, 10, ProcKind::Start)]);
        assert_eq!(t.nodes_running("p"), BTreeSet::from([1, 2]));
        assert_eq!(t.worst_overlap(250).map(|o| o.length_us(250)), Some(50));
        t.replay(&[ev(300, 1, 10, KILLED)]);
        assert_eq!(t.worst_overlap(400).map(|o| o.length_us(400)), Some(100));
        assert_eq!(t.overlaps_ended, 1);
        // a hand-over at one instant is no overlap
        t.replay(&[ev(500, 2, 10, KILLED), ev(500, 3, 11, ProcKind::Start)]);
        t.replay(&[ev(700, 1, 12, ProcKind::Start), ev(700, 3, 11, ProcKind::Exit(ExitStatus::Signal(CRASH_SIGNAL)))]);
        assert_eq!(t.overlaps_ended, 1, "two events of one instant overlap for no time");
        assert_eq!(t.worst_overlap(800).map(|o| o.length_us(800)), Some(100));
        assert_eq!(t.crashes, 1);
    }

    #[test]
    fn two_processes_of_one_node_are_no_double_run() {
        // an orphan of a crashed run and the restarted node's own process, on one host
        let mut t = ProcessTable::default();
        t.replay(&[ev(0, 1, 10, ProcKind::Start), ev(50, 1, 11, ProcKind::Start)]);
        assert_eq!(t.nodes_running("p"), BTreeSet::from([1]));
        assert!(t.worst_overlap(100).is_none());
        t.replay(&[ev(60, 1, 10, KILLED)]);
        assert_eq!(t.run_by(1), vec!["p"]);
    }
}
