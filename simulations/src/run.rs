//! One seeded run: boot and settle, a fault phase with writes, a heal phase, then liveness.
//! Safety invariants are checked after every step; a broken one ends the run with its seed.
//!
//! Everything runs on one current-thread runtime with paused time, and one seed drives the
//! network's losses and delays, openraft's election timeouts, the fault schedule and the
//! writes: `--seed` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mindmesh_core::registry::{Command, Outcome};
use mindmesh_core::spec::PersonaSpec;
use mindmesh_net::transport::mem::MemStats;
use mindmesh_net::{MeshRole, NetError, NodeId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::SimError;
use crate::cluster::{Cluster, StatusEvent};
use crate::config::SimConfig;
use crate::invariants::{self, Acked, Invariant, Observation};
use crate::schedule::{Fault, schedule};

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    pub seed: u64,
    /// Virtual time the run took.
    pub virtual_ms: u64,
    /// Faults as they were applied: `(at_ms, what)`.
    pub faults: Vec<(u64, String)>,
    pub writes_started: u64,
    pub writes_acked: u64,
    /// Distinct terms that had a leader.
    pub leader_terms: usize,
    pub network: MemStats,
    /// A hash of everything observed (statuses, acknowledged writes, faults): equal for equal seeds.
    pub trace_hash: u64,
}

/// Outstanding writes at once; past it, no new write starts.
const MAX_WRITES_IN_FLIGHT: usize = 64;

enum Undo {
    Restart(NodeId),
    Heal,
    ClearLoss,
}

struct Checker {
    seed: u64,
    invariants: Vec<Box<dyn Invariant>>,
    acked: Vec<Acked>,
    trace: u64,
    leader_terms: BTreeSet<u64>,
}

impl Checker {
    fn mix(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.trace ^= u64::from(*b);
            self.trace = self.trace.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn step(&mut self, cluster: &mut Cluster) -> Result<(), SimError> {
        let mut statuses: Vec<StatusEvent> = Vec::new();
        while let Ok(s) = cluster.status_rx.try_recv() {
            statuses.push(s);
        }
        for s in &statuses {
            let role = s.role as u8;
            self.mix(&[&s.at_ms.to_le_bytes()[..], &s.node.to_le_bytes(), &s.term.to_le_bytes(), &[role]].concat());
            if s.role == MeshRole::Leader {
                self.leader_terms.insert(s.term);
            }
        }
        let registries = cluster.registries();
        let obs =
            Observation { now_ms: cluster.now_ms(), statuses: &statuses, registries: &registries, acked: &self.acked };
        for inv in &mut self.invariants {
            inv.check(&obs).map_err(|detail| SimError::Violation {
                seed: self.seed,
                invariant: inv.name(),
                at_ms: obs.now_ms,
                detail,
            })?;
        }
        Ok(())
    }
}

pub(crate) async fn run(seed: u64, cfg: SimConfig) -> Result<SimReport, SimError> {
    let cancel = CancellationToken::new();
    let mesh = |e: NetError| SimError::Mesh { seed, source: e };
    let mut cluster = Cluster::new(seed, cfg.nodes, cancel.clone());
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut checker = Checker {
        seed,
        invariants: invariants::all(),
        acked: Vec::new(),
        trace: 0xcbf2_9ce4_8422_2325,
        leader_terms: BTreeSet::new(),
    };
    let (ack_tx, mut ack_rx) = mpsc::channel::<(String, Result<Outcome, NetError>)>(MAX_WRITES_IN_FLIGHT * 2);
    let mut in_flight = 0usize;
    let mut writes_started = 0u64;
    let mut faults: Vec<(u64, String)> = Vec::new();
    let step = Duration::from_millis(cfg.step_ms);

    // --- boot and settle: one leader, every node a registered member
    for id in 1..=cfg.nodes {
        cluster.boot(id).await.map_err(mesh)?;
    }
    let settle_deadline = cluster.now_ms() + cfg.settle_ms;
    loop {
        tokio::time::sleep(step).await;
        checker.step(&mut cluster)?;
        let regs = cluster.registries();
        let agreed = agreed_leader(&cluster).is_some();
        if agreed && regs.iter().all(|(_, r)| r.nodes.len() as u64 == cfg.nodes) {
            break;
        }
        if cluster.now_ms() > settle_deadline {
            return Err(SimError::Liveness { seed, detail: "the mesh did not form".into() });
        }
    }
    info!(seed, at_ms = cluster.now_ms(), "mesh formed");

    // --- faults, with writes going on
    let fault_start = cluster.now_ms();
    let mut pending = schedule(seed, &cfg).into_iter().peekable();
    let mut undo: Vec<(u64, Undo)> = Vec::new();
    let mut next_write = fault_start;
    let mut isolated: BTreeSet<NodeId> = BTreeSet::new();
    let minority = ((cfg.nodes as usize).saturating_sub(1) / 2).max(1);
    while cluster.now_ms() < fault_start + cfg.fault_ms {
        let now = cluster.now_ms();
        while let Some(s) = pending.next_if(|s| fault_start + s.at_ms <= now) {
            let out = cluster.down().len() + isolated.len();
            let applied =
                apply_fault(&mut cluster, &s.fault, now, out, minority, &mut isolated, &mut undo, cfg.amnesia)
                    .await
                    .map_err(mesh)?;
            if let Some(what) = applied {
                debug!(seed, at_ms = now, %what, "fault");
                checker.mix(what.as_bytes());
                faults.push((now, what));
            }
        }
        undo.sort_by_key(|(at, _)| *at);
        while undo.first().is_some_and(|(at, _)| *at <= now) {
            let (_, u) = undo.remove(0);
            match u {
                Undo::Restart(id) => cluster.boot(id).await.map_err(mesh)?,
                Undo::Heal => {
                    cluster.net.heal().await.map_err(mesh)?;
                    isolated.clear();
                }
                Undo::ClearLoss => cluster.net.set_faults(0.0, 0, 0).await.map_err(mesh)?,
            }
        }
        if now >= next_write && in_flight < MAX_WRITES_IN_FLIGHT {
            start_write(&cluster, &mut rng, writes_started, &ack_tx, cfg.nodes);
            writes_started += 1;
            in_flight += 1;
            next_write = now + cfg.write_every_ms;
        }
        tokio::time::sleep(step).await;
        collect_acks(&mut ack_rx, &mut checker, &mut in_flight);
        checker.step(&mut cluster)?;
    }

    // --- heal everything, restart every crashed node
    cluster.net.heal().await.map_err(mesh)?;
    cluster.net.set_faults(0.0, 0, 0).await.map_err(mesh)?;
    for id in cluster.down() {
        cluster.boot(id).await.map_err(mesh)?;
    }
    faults.push((cluster.now_ms(), "heal".into()));
    info!(seed, at_ms = cluster.now_ms(), "healed");
    let heal_end = cluster.now_ms() + cfg.heal_ms;
    while cluster.now_ms() < heal_end {
        tokio::time::sleep(step).await;
        collect_acks(&mut ack_rx, &mut checker, &mut in_flight);
        checker.step(&mut cluster)?;
    }

    // --- liveness: a leader, a new write commits, every replica caught up, gossip fresh
    let leader = agreed_leader(&cluster)
        .ok_or_else(|| SimError::Liveness { seed, detail: format!("no agreed leader: {:?}", statuses(&cluster)) })?;
    let via = cluster.live().map(|(id, _)| id).find(|id| *id != leader).unwrap_or(leader);
    let h = cluster.handle(via).expect("live").clone();
    let spec = PersonaSpec::new("final-write", "sim");
    writes_started += 1;
    match h.propose(Command::put_persona(spec, None)).await {
        Ok(Outcome::Persona { epoch, .. }) => checker.acked.push(Acked { name: "final-write".into(), index: epoch }),
        other => return Err(SimError::Liveness { seed, detail: format!("a write after healing failed: {other:?}") }),
    }
    info!(seed, at_ms = cluster.now_ms(), "final write committed");
    let judge_end = cluster.now_ms() + 10_000;
    loop {
        tokio::time::sleep(step).await;
        collect_acks(&mut ack_rx, &mut checker, &mut in_flight);
        checker.step(&mut cluster)?;
        match caught_up(&cluster, &checker.acked, cfg.nodes).await {
            Ok(()) => {
                info!(seed, at_ms = cluster.now_ms(), "caught up");
                break;
            }
            Err(detail) if cluster.now_ms() > judge_end => return Err(SimError::Liveness { seed, detail }),
            Err(detail) => debug!(seed, %detail, "not caught up yet"),
        }
    }
    let acked_bytes: Vec<u8> =
        checker.acked.iter().flat_map(|a| [a.name.as_bytes(), &a.index.to_le_bytes()].concat()).collect();
    checker.mix(&acked_bytes);
    let report = SimReport {
        seed,
        virtual_ms: cluster.now_ms(),
        faults,
        writes_started,
        writes_acked: checker.acked.len() as u64,
        leader_terms: checker.leader_terms.len(),
        network: cluster.net.stats().await.map_err(mesh)?,
        trace_hash: checker.trace,
    };
    for id in cluster.live().map(|(id, _)| id).collect::<Vec<_>>() {
        cluster.crash(id, false).await.map_err(mesh)?;
    }
    cancel.cancel();
    Ok(report)
}

/// Apply a fault if it keeps at most a minority out (down or cut off); what was done.
#[allow(clippy::too_many_arguments)] // the run's state, passed apart so each stays plain
async fn apply_fault(
    cluster: &mut Cluster,
    fault: &Fault,
    now: u64,
    out: usize,
    minority: usize,
    isolated: &mut BTreeSet<NodeId>,
    undo: &mut Vec<(u64, Undo)>,
    amnesia: bool,
) -> Result<Option<String>, NetError> {
    let live: Vec<NodeId> = cluster.live().map(|(id, _)| id).collect();
    let leader = cluster.leader();
    Ok(match fault {
        Fault::CrashLeader { down_ms } => match leader {
            Some(l) if out < minority && !isolated.contains(&l) => {
                cluster.crash(l, amnesia).await?;
                undo.push((now + down_ms, Undo::Restart(l)));
                Some(format!("crash leader {l} for {down_ms} ms"))
            }
            _ => None,
        },
        Fault::CrashOne { pick, down_ms } => {
            let candidates: Vec<NodeId> = live.iter().copied().filter(|id| !isolated.contains(id)).collect();
            if out < minority && !candidates.is_empty() {
                let id = candidates[(*pick % candidates.len() as u64) as usize];
                cluster.crash(id, amnesia).await?;
                undo.push((now + down_ms, Undo::Restart(id)));
                Some(format!("crash node {id} for {down_ms} ms"))
            } else {
                None
            }
        }
        Fault::IsolateLeader { for_ms } => match leader {
            Some(l) if isolated.is_empty() && out < minority => {
                let rest: Vec<NodeId> = cluster.nodes.keys().copied().filter(|id| *id != l).collect();
                cluster.net.partition(vec![vec![l], rest]).await?;
                isolated.insert(l);
                undo.push((now + for_ms, Undo::Heal));
                Some(format!("isolate leader {l} for {for_ms} ms"))
            }
            _ => None,
        },
        Fault::PartitionMinority { size, pick, for_ms } => {
            if !isolated.is_empty() || out + size > minority || live.len() <= *size {
                None
            } else {
                let start = (*pick % live.len() as u64) as usize;
                let side: Vec<NodeId> = (0..*size).map(|i| live[(start + i) % live.len()]).collect();
                let rest: Vec<NodeId> = cluster.nodes.keys().copied().filter(|id| !side.contains(id)).collect();
                cluster.net.partition(vec![side.clone(), rest]).await?;
                isolated.extend(side.iter().copied());
                undo.push((now + for_ms, Undo::Heal));
                Some(format!("partition {side:?} away for {for_ms} ms"))
            }
        }
        Fault::Lossy { loss, max_delay_ms, for_ms } => {
            cluster.net.set_faults(*loss, 0, *max_delay_ms).await?;
            undo.push((now + for_ms, Undo::ClearLoss));
            Some(format!("loss {:.0}% delay ≤{max_delay_ms} ms for {for_ms} ms", loss * 100.0))
        }
    })
}

/// A write of a new persona at a random live node, placed on a random node.
fn start_write(
    cluster: &Cluster,
    rng: &mut SmallRng,
    k: u64,
    acks: &mpsc::Sender<(String, Result<Outcome, NetError>)>,
    nodes: u64,
) {
    let live: Vec<_> = cluster.live().map(|(_, h)| h.clone()).collect();
    if live.is_empty() {
        return;
    }
    let h = live[rng.random_range(0..live.len())].clone();
    let name = format!("w-{k}");
    let spec = PersonaSpec::new(&name, "sim");
    let place = Some(rng.random_range(1..=nodes));
    let tx = acks.clone();
    tokio::spawn(async move {
        let r = h.propose(Command::put_persona(spec, place)).await;
        let _ = tx.try_send((name, r));
    });
}

fn collect_acks(
    rx: &mut mpsc::Receiver<(String, Result<Outcome, NetError>)>,
    checker: &mut Checker,
    in_flight: &mut usize,
) {
    while let Ok((name, r)) = rx.try_recv() {
        *in_flight = in_flight.saturating_sub(1);
        if let Ok(Outcome::Persona { epoch, .. }) = r {
            checker.acked.push(Acked { name, index: epoch });
        }
    }
}

/// The leader every live node follows, with exactly one node in the leader role.
fn agreed_leader(cluster: &Cluster) -> Option<NodeId> {
    let s: Vec<_> = cluster.live().map(|(_, h)| h.status()).collect();
    let leader = s.first()?.leader?;
    let one = s.iter().filter(|x| x.role == MeshRole::Leader).count() == 1;
    (one && s.iter().all(|x| x.leader == Some(leader))).then_some(leader)
}

fn statuses(cluster: &Cluster) -> Vec<(NodeId, MeshRole, u64, Option<NodeId>)> {
    cluster.live().map(|(_, h)| h.status()).map(|s| (s.node_id, s.role, s.term, s.leader)).collect()
}

/// Every replica has every acknowledged write, and every node's gossip shows the personas the
/// registry places on it.
async fn caught_up(cluster: &Cluster, acked: &[Acked], nodes: u64) -> Result<(), String> {
    let last = acked.iter().map(|a| a.index).max().unwrap_or(0);
    for (id, r) in cluster.registries() {
        if r.applied_index < last {
            return Err(format!("node {id} applied {} < {last}", r.applied_index));
        }
        if let Some(a) = acked.iter().find(|a| !r.personas.contains_key(&a.name)) {
            return Err(format!("node {id} lacks {:?}", a.name));
        }
    }
    for (id, h) in cluster.live() {
        let registry = h.registry();
        let view = h.mesh_view().await.map_err(|e| e.to_string())?;
        if view.len() as u64 != nodes || view.iter().any(|v| v.stale) {
            return Err(format!(
                "node {id} sees {} nodes, stale: {:?}",
                view.len(),
                view.iter().filter(|v| v.stale).map(|v| v.node_id).collect::<Vec<_>>()
            ));
        }
        for v in &view {
            let gossiped: BTreeSet<&str> = v.snapshot.personas.iter().map(|p| p.name.as_str()).collect();
            let placed: BTreeSet<&str> = registry.personas_on(v.node_id).map(|(n, _)| n.as_str()).collect();
            if gossiped != placed {
                let diff: BTreeMap<&str, bool> =
                    placed.symmetric_difference(&gossiped).map(|n| (*n, placed.contains(n))).collect();
                return Err(format!("node {id}'s view of node {}: gossip and registry differ {diff:?}", v.node_id));
            }
        }
    }
    Ok(())
}
