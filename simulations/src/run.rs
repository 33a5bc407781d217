//! One seeded run: boot and settle, place the personas, a fault phase with writes, a heal
//! phase, then liveness. Every invariant is checked after every step; a broken one ends the
//! run with its seed.
//!
//! Everything runs on one current-thread runtime with paused time, and one seed drives the
//! network's losses and delays, openraft's election timeouts, the fault schedule, the writes
//! and the personas' restart backoffs: `--seed` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mindmesh_core::action::{Action, AnalystKind};
use mindmesh_core::registry::{Command, DesiredPhase, Outcome, Registry};
use mindmesh_core::spec::PersonaSpec;
use mindmesh_net::transport::mem::MemStats;
use mindmesh_net::{MeshRole, NetError, NodeId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::SimError;
use crate::cluster::{Cluster, PERSONA_COMMAND, StatusEvent};
use crate::config::SimConfig;
use crate::invariants::{self, Acked, Acted, Invariant, Observation, desired_running};
use crate::processes::{ProcEvent, ProcessTable, micros_since};
use crate::schedule::{Fault, Verb, schedule};

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    pub seed: u64,
    /// Virtual time the run took.
    pub virtual_ms: u64,
    /// The timeline: faults as they were applied, the heal, and the leader's failovers, as
    /// `(at_ms, what)`.
    pub faults: Vec<(u64, String)>,
    pub writes_started: u64,
    pub writes_acked: u64,
    /// Distinct terms that had a leader.
    pub leader_terms: usize,
    /// Personas in the registry at the end (all desired running).
    pub personas: usize,
    /// Personas the leader moved off nodes it declared lost.
    pub failovers: u64,
    /// Persona processes that crashed (and were restarted by their node).
    pub persona_crashes: u64,
    /// Operators' verbs the mesh acknowledged, and those it refused (e.g. 409).
    pub verbs_acked: u64,
    pub verbs_refused: u64,
    /// The longest time any persona ran on two nodes at once (µs); fencing promises 0.
    pub max_overlap_us: u64,
    /// Overlaps longer than an instant.
    pub overlaps: u64,
    /// The longest a node ran a persona past its lease's expiry (µs).
    pub max_fence_lag_us: u64,
    /// From the heal until every persona desired running ran on exactly its node (ms).
    pub recovered_ms: Option<u64>,
    pub network: MemStats,
    /// A hash of everything observed (statuses, processes, acknowledged writes, faults): equal
    /// for equal seeds.
    pub trace_hash: u64,
}

/// Outstanding writes at once; past it, no new write starts.
const MAX_WRITES_IN_FLIGHT: usize = 64;
/// Virtual time a run may take beyond its phases before it is judged stuck.
const RUN_CAP_SLACK_MS: u64 = 60_000;
/// Entries kept in a run's timeline.
const MAX_TIMELINE: usize = 10_000;

/// What the fault phase does later: undo a fault, or the next half-cycle of a flapping one.
#[derive(Debug, Clone)]
enum Later {
    Restart(NodeId),
    /// Cut the network into these groups (a flapping partition, cut again).
    Cut(Vec<Vec<NodeId>>),
    /// Heal the cuts, the fault still going on (a flapping partition between cuts).
    Mend,
    /// Heal the cuts: the partition fault is over.
    Heal,
    ClearLoss,
}

struct Checker {
    seed: u64,
    cfg: SimConfig,
    invariants: Vec<Box<dyn Invariant>>,
    acked: Vec<Acked>,
    trace: u64,
    leader_terms: BTreeSet<u64>,
    procs: ProcessTable,
    /// Process events replayed since the last step.
    events: Vec<ProcEvent>,
    /// Fence guards of crashed nodes: when each kills its node's processes.
    guards: Vec<(u64, NodeId)>,
    /// How long past its lease's expiry a live node was seen still running personas (µs, at
    /// the checker's step).
    max_fence_lag_us: u64,
    healed_at_ms: Option<u64>,
    recovered_ms: Option<u64>,
    /// Operators' verbs acknowledged since the last step.
    acted: Vec<Acted>,
    /// A fault started since the last step.
    disturbed: bool,
    /// Operators' verbs carried out (acknowledged) and refused.
    verbs_acked: u64,
    verbs_refused: u64,
    /// The next decision sequence number to look at for failovers.
    next_decision: u64,
    failovers: u64,
    timeline: Vec<(u64, String)>,
}

impl Checker {
    fn mix(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.trace ^= u64::from(*b);
            self.trace = self.trace.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn note(&mut self, at_ms: u64, what: String) {
        debug!(seed = self.seed, at_ms, %what, "timeline");
        self.mix(what.as_bytes());
        if self.timeline.len() < MAX_TIMELINE {
            self.timeline.push((at_ms, what));
        }
    }

    /// Replay the hosts' process events up to now into the process table; play the fence
    /// guards of crashed nodes whose lease ran out; measure how late live nodes fence.
    fn absorb(&mut self, cluster: &Cluster) -> Result<(), SimError> {
        let now_us = cluster.now_us();
        let mut i = 0;
        while i < self.guards.len() {
            let (at_us, id) = self.guards[i];
            if at_us > now_us {
                i += 1;
                continue;
            }
            self.guards.swap_remove(i);
            // the guard kills unless the node is back and renewed its lease
            let renewed = cluster.handle(id).is_some_and(|h| h.lease().held);
            if !renewed {
                let killed = cluster.guard_kills(id);
                if killed > 0 {
                    self.note(cluster.now_ms(), format!("fence guard of node {id}: {killed} process(es) killed"));
                }
            }
        }
        let events = cluster.drain_process_events().map_err(|detail| SimError::Harness { seed: self.seed, detail })?;
        self.procs.replay(&events);
        self.events.extend(events);
        for (id, h) in cluster.live() {
            let lease = h.lease();
            if let Some(until) = lease.until.filter(|_| !lease.held) {
                let until_us = micros_since(cluster.started, until);
                if now_us > until_us && !self.procs.run_by(id).is_empty() {
                    self.max_fence_lag_us = self.max_fence_lag_us.max(now_us - until_us);
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, cluster: &mut Cluster) -> Result<(), SimError> {
        if let Some(panic) = crate::panics::take() {
            return Err(SimError::Panic { seed: self.seed, at_ms: cluster.now_ms(), detail: panic });
        }
        let mut statuses: Vec<StatusEvent> = Vec::new();
        while let Ok(s) = cluster.status_rx.try_recv() {
            statuses.push(s);
        }
        for s in &statuses {
            tracing::trace!(at_ms = s.at_ms, node = s.node, term = s.term, role = ?s.role, leader = ?s.leader, "status");
            let role = s.role as u8;
            self.mix(&[&s.at_ms.to_le_bytes()[..], &s.node.to_le_bytes(), &s.term.to_le_bytes(), &[role]].concat());
            if s.role == MeshRole::Leader {
                self.leader_terms.insert(s.term);
            }
        }
        self.absorb(cluster)?;
        let registries = cluster.registries();
        self.note_failovers(cluster.now_ms(), &registries);
        let acted = std::mem::take(&mut self.acted);
        let disturbed = std::mem::take(&mut self.disturbed);
        let events = std::mem::take(&mut self.events);
        let unsettled: BTreeSet<NodeId> =
            cluster.nodes.keys().copied().filter(|id| cluster.handle(*id).is_none_or(|h| !h.lease().held)).collect();
        let obs = Observation {
            now_ms: cluster.now_ms(),
            now_us: cluster.now_us(),
            statuses: &statuses,
            registries: &registries,
            acked: &self.acked,
            procs: &self.procs,
            healed_at_ms: self.healed_at_ms,
            acted: &acted,
            events: &events,
            disturbed,
            unsettled: &unsettled,
        };
        for inv in &mut self.invariants {
            inv.check(&obs).map_err(|detail| SimError::Violation {
                seed: self.seed,
                invariant: inv.name(),
                at_ms: obs.now_ms,
                detail,
            })?;
        }
        if let Some(healed) = self.healed_at_ms
            && self.recovered_ms.is_none()
            && desired_running::judge(&obs).is_ok()
        {
            self.recovered_ms = Some(obs.now_ms - healed);
        }
        Ok(())
    }

    /// Failover decisions the newest registry recorded since the last step, on the timeline:
    /// one line per lost node, with where its personas went.
    fn note_failovers(&mut self, now_ms: u64, registries: &[(NodeId, std::sync::Arc<Registry>)]) {
        let Some((_, newest)) = registries.iter().max_by_key(|(_, r)| r.applied_index) else { return };
        // "failover: node sim-4 silent for 2200 ms" → ["w-3 → sim-1", …]
        let mut moves: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in newest.decisions_since(self.next_decision) {
            self.next_decision = d.seq + 1;
            let failover = d.decision.analyst == AnalystKind::Failover && d.decision.action == Action::Migrate;
            if let Some((why, _)) =
                d.decision.reason.split_once("; ").filter(|(why, _)| failover && why.starts_with("failover:"))
            {
                let to = d.decision.target.as_deref().unwrap_or("?");
                moves.entry(why.to_owned()).or_default().push(format!("{} → {to}", d.decision.persona));
            }
        }
        for (why, moved) in moves {
            self.failovers += moved.len() as u64;
            let shown: Vec<&str> = moved.iter().take(6).map(String::as_str).collect();
            let more = if moved.len() > shown.len() {
                format!(" and {} more", moved.len() - shown.len())
            } else {
                String::new()
            };
            self.note(now_ms, format!("leader: {why}; moved {}: {}{more}", moved.len(), shown.join(", ")));
        }
    }

    /// Crash a node; its processes outlive it until its lease's expiry (with fencing broken,
    /// until it is back).
    async fn crash(&mut self, cluster: &mut Cluster, id: NodeId, wipe: bool) -> Result<(), SimError> {
        let seed = self.seed;
        let crashed = cluster.crash(id, wipe).await.map_err(|e| SimError::Mesh { seed, error: e })?;
        self.absorb(cluster)?;
        // with fencing broken there is no guard: the processes run on until the node is back
        if let Some(c) = crashed
            && !self.cfg.broken_fencing
        {
            let now_us = cluster.now_us();
            let until_us = c.lease.until.filter(|_| c.lease.held).map_or(now_us, |u| micros_since(cluster.started, u));
            self.guards.push((until_us.max(now_us), id));
        }
        Ok(())
    }

    async fn boot(&mut self, cluster: &mut Cluster, id: NodeId) -> Result<(), SimError> {
        let seed = self.seed;
        self.absorb(cluster)?;
        cluster.boot(id).await.map_err(|e| SimError::Mesh { seed, error: e })?;
        Ok(())
    }
}

/// Run one seed; the timeline goes to `timeline` whatever the outcome.
pub(crate) async fn run(seed: u64, cfg: SimConfig, timeline: &mut Vec<(u64, String)>) -> Result<SimReport, SimError> {
    let cancel = CancellationToken::new();
    let mut cluster =
        Cluster::new(seed, &cfg, cancel.clone()).map_err(|e| SimError::Harness { seed, detail: e.to_string() })?;
    let mut checker = Checker {
        seed,
        cfg: cfg.clone(),
        invariants: invariants::all(&cfg),
        acked: Vec::new(),
        trace: 0xcbf2_9ce4_8422_2325,
        leader_terms: BTreeSet::new(),
        procs: ProcessTable::default(),
        events: Vec::new(),
        guards: Vec::new(),
        max_fence_lag_us: 0,
        acted: Vec::new(),
        disturbed: false,
        verbs_acked: 0,
        verbs_refused: 0,
        healed_at_ms: None,
        recovered_ms: None,
        next_decision: 0,
        failovers: 0,
        timeline: Vec::new(),
    };
    // every phase is bounded, so a run past this much virtual time waits for something that
    // never comes (an await without a deadline): a bug to report, not to sit out
    let cap_ms = cfg.settle_ms + cfg.fault_ms + cfg.heal_ms + cfg.failover_bound_ms() + RUN_CAP_SLACK_MS;
    let r = match tokio::time::timeout(Duration::from_millis(cap_ms), phases(seed, &cfg, &mut cluster, &mut checker))
        .await
    {
        Ok(r) => r,
        Err(_) => Err(SimError::Liveness {
            seed,
            detail: format!("the run did not end within {cap_ms} virtual ms: something awaited without a deadline"),
        }),
    };
    *timeline = std::mem::take(&mut checker.timeline);
    cluster.shutdown().await;
    cancel.cancel();
    r.map(|report| SimReport { faults: timeline.clone(), ..report })
}

async fn phases(
    seed: u64,
    cfg: &SimConfig,
    cluster: &mut Cluster,
    checker: &mut Checker,
) -> Result<SimReport, SimError> {
    let mesh = |e: NetError| SimError::Mesh { seed, error: e };
    let mut rng = SmallRng::seed_from_u64(seed);
    let (ack_tx, mut ack_rx) = mpsc::channel::<(String, Result<Outcome, NetError>)>(MAX_WRITES_IN_FLIGHT * 2);
    let mut in_flight = 0usize;
    let mut writes_started = 0u64;
    let step = Duration::from_millis(cfg.step_ms);

    // --- boot and settle: one leader, every node a registered member
    for id in 1..=cfg.nodes {
        checker.boot(cluster, id).await?;
    }
    let settle_deadline = cluster.now_ms() + cfg.settle_ms;
    loop {
        tokio::time::sleep(step).await;
        checker.step(cluster)?;
        let regs = cluster.registries();
        let agreed = agreed_leader(cluster).is_some();
        if agreed && regs.iter().all(|(_, r)| r.nodes.len() as u64 == cfg.nodes) {
            break;
        }
        if cluster.now_ms() > settle_deadline {
            return Err(SimError::Liveness { seed, detail: "the mesh did not form".into() });
        }
    }
    info!(seed, at_ms = cluster.now_ms(), "mesh formed");

    // --- the personas: several on every node, placed through the registry
    let h = cluster
        .live()
        .map(|(_, h)| h.clone())
        .next()
        .ok_or_else(|| SimError::Liveness { seed, detail: "no live node to place personas through".into() })?;
    for node in 1..=cfg.nodes {
        for i in 0..cfg.personas_per_node {
            let name = format!("p-{node}-{i}");
            writes_started += 1;
            match h.propose(Command::put_persona(PersonaSpec::new(&name, PERSONA_COMMAND), Some(node))).await {
                Ok(Outcome::Persona { epoch, .. }) => checker.acked.push(Acked { name, index: epoch }),
                other => {
                    return Err(SimError::Liveness { seed, detail: format!("placing {name} failed: {other:?}") });
                }
            }
        }
    }
    checker.step(cluster)?;

    // --- faults, with writes going on
    let fault_start = cluster.now_ms();
    let mut pending = schedule(seed, cfg).into_iter().peekable();
    let mut later: Vec<(u64, Later)> = Vec::new();
    let mut next_write = fault_start;
    let mut isolated: BTreeSet<NodeId> = BTreeSet::new();
    let minority = ((cfg.nodes as usize).saturating_sub(1) / 2).max(1);
    while cluster.now_ms() < fault_start + cfg.fault_ms {
        let now = cluster.now_ms();
        while let Some(s) = pending.next_if(|s| fault_start + s.at_ms <= now) {
            let out = cluster.down().len() + isolated.len();
            let mut ctx = FaultCtx { cluster, checker, now, out, minority, isolated: &mut isolated, later: &mut later };
            if let Fault::Operator { verb, pick } = s.fault {
                let what = operate(ctx.cluster, ctx.checker, verb, pick, now).await?;
                checker.note(now, what);
            } else if let Some(what) = apply_fault(&mut ctx, &s.fault, cfg).await? {
                checker.disturbed = true;
                checker.note(now, what);
            }
        }
        later.sort_by_key(|(at, _)| *at);
        while later.first().is_some_and(|(at, _)| *at <= now) {
            let (_, l) = later.remove(0);
            match l {
                Later::Restart(id) => {
                    checker.boot(cluster, id).await?;
                    checker.note(now, format!("restart node {id}"));
                }
                Later::Cut(groups) => cluster.net.partition(groups).await.map_err(mesh)?,
                Later::Mend => cluster.net.heal().await.map_err(mesh)?,
                Later::Heal => {
                    cluster.net.heal().await.map_err(mesh)?;
                    checker.note(now, format!("heal the partition of {isolated:?}"));
                    isolated.clear();
                }
                Later::ClearLoss => cluster.net.set_faults(0.0, 0, 0).await.map_err(mesh)?,
            }
        }
        if now >= next_write && in_flight < MAX_WRITES_IN_FLIGHT {
            start_write(cluster, &mut rng, writes_started, &ack_tx, cfg.nodes);
            writes_started += 1;
            in_flight += 1;
            next_write = now + cfg.write_every_ms;
        }
        // a fault going on (a node down or cut off, a heal or a restart to come) voids the
        // judgement of operators' verbs
        if !later.is_empty() || !isolated.is_empty() || !cluster.down().is_empty() {
            checker.disturbed = true;
        }
        tokio::time::sleep(step).await;
        collect_acks(&mut ack_rx, checker, &mut in_flight);
        checker.step(cluster)?;
    }

    // --- heal everything, restart every crashed node
    cluster.net.heal().await.map_err(mesh)?;
    cluster.net.set_faults(0.0, 0, 0).await.map_err(mesh)?;
    for id in cluster.down() {
        checker.boot(cluster, id).await?;
    }
    let healed_at = cluster.now_ms();
    checker.healed_at_ms = Some(healed_at);
    checker.note(healed_at, "heal: every link up, every node running".into());
    info!(seed, at_ms = healed_at, "healed");
    // long enough for the failover bound to pass, and the desired_running check to hold a while
    let heal_end = healed_at + cfg.heal_ms.max(cfg.failover_bound_ms() + 1000);
    while cluster.now_ms() < heal_end {
        tokio::time::sleep(step).await;
        collect_acks(&mut ack_rx, checker, &mut in_flight);
        checker.step(cluster)?;
    }

    // --- liveness: a leader, a new write commits, every replica caught up, gossip fresh
    let leader = agreed_leader(cluster)
        .ok_or_else(|| SimError::Liveness { seed, detail: format!("no agreed leader: {:?}", statuses(cluster)) })?;
    let via = cluster.live().map(|(id, _)| id).find(|id| *id != leader).unwrap_or(leader);
    let h = cluster.handle(via).expect("live").clone();
    let spec = PersonaSpec::new("final-write", PERSONA_COMMAND);
    writes_started += 1;
    match h.propose(Command::put_persona(spec, None)).await {
        Ok(Outcome::Persona { epoch, .. }) => checker.acked.push(Acked { name: "final-write".into(), index: epoch }),
        other => return Err(SimError::Liveness { seed, detail: format!("a write after healing failed: {other:?}") }),
    }
    info!(seed, at_ms = cluster.now_ms(), "final write committed");
    let judge_end = cluster.now_ms() + 10_000;
    loop {
        tokio::time::sleep(step).await;
        collect_acks(&mut ack_rx, checker, &mut in_flight);
        checker.step(cluster)?;
        match caught_up(cluster, &checker.acked, cfg.nodes).await {
            Ok(()) => {
                info!(seed, at_ms = cluster.now_ms(), "caught up");
                break;
            }
            Err(detail) if cluster.now_ms() > judge_end => return Err(SimError::Liveness { seed, detail }),
            Err(detail) => debug!(seed, %detail, "not caught up yet"),
        }
    }
    let recovered_ms = checker.recovered_ms.ok_or_else(|| SimError::Liveness {
        seed,
        detail: "the personas desired running never all ran where placed after healing".into(),
    })?;
    let acked_bytes: Vec<u8> =
        checker.acked.iter().flat_map(|a| [a.name.as_bytes(), &a.index.to_le_bytes()].concat()).collect();
    checker.mix(&acked_bytes);
    let procs_trace = checker.procs.trace;
    checker.mix(&procs_trace.to_le_bytes());
    let now_us = cluster.now_us();
    let personas = cluster
        .registries()
        .iter()
        .max_by_key(|(_, r)| r.applied_index)
        .map_or(0, |(_, r)| r.personas.values().filter(|p| p.phase == DesiredPhase::Running).count());
    Ok(SimReport {
        seed,
        virtual_ms: cluster.now_ms(),
        faults: Vec::new(),
        writes_started,
        writes_acked: checker.acked.len() as u64,
        leader_terms: checker.leader_terms.len(),
        personas,
        failovers: checker.failovers,
        persona_crashes: checker.procs.crashes,
        verbs_acked: checker.verbs_acked,
        verbs_refused: checker.verbs_refused,
        max_overlap_us: checker.procs.worst_overlap(now_us).map_or(0, |o| o.length_us(now_us)),
        overlaps: checker.procs.overlaps_ended,
        max_fence_lag_us: checker.max_fence_lag_us,
        recovered_ms: Some(recovered_ms),
        network: cluster.net.stats().await.map_err(mesh)?,
        trace_hash: checker.trace,
    })
}

/// The run's state a fault acts on.
struct FaultCtx<'a> {
    cluster: &'a mut Cluster,
    checker: &'a mut Checker,
    now: u64,
    /// Nodes down or cut off now.
    out: usize,
    minority: usize,
    isolated: &'a mut BTreeSet<NodeId>,
    later: &'a mut Vec<(u64, Later)>,
}

/// Apply a fault if it keeps at most a minority out (down or cut off); what was done.
async fn apply_fault(ctx: &mut FaultCtx<'_>, fault: &Fault, cfg: &SimConfig) -> Result<Option<String>, SimError> {
    let seed = ctx.checker.seed;
    let mesh = |e: NetError| SimError::Mesh { seed, error: e };
    let live: Vec<NodeId> = ctx.cluster.live().map(|(id, _)| id).collect();
    let leader = ctx.cluster.leader();
    let (now, out, minority) = (ctx.now, ctx.out, ctx.minority);
    // `size` nodes starting at `pick`, the leader first if it must be among them
    let side = |size: usize, pick: u64, with: Option<NodeId>| -> Vec<NodeId> {
        let mut side: Vec<NodeId> = with.into_iter().collect();
        let others: Vec<NodeId> = live.iter().copied().filter(|id| Some(*id) != with).collect();
        let start = (pick % others.len().max(1) as u64) as usize;
        side.extend((0..others.len()).map(|i| others[(start + i) % others.len()]).take(size - side.len()));
        side
    };
    let rest = |cluster: &Cluster, side: &[NodeId]| -> Vec<NodeId> {
        cluster.nodes.keys().copied().filter(|id| !side.contains(id)).collect()
    };
    Ok(match fault {
        Fault::CrashLeader { down_ms } => match leader {
            Some(l) if out < minority && !ctx.isolated.contains(&l) => {
                ctx.checker.crash(ctx.cluster, l, cfg.amnesia).await?;
                ctx.later.push((now + down_ms, Later::Restart(l)));
                Some(format!("crash leader {l} for {down_ms} ms"))
            }
            _ => None,
        },
        Fault::CrashOne { pick, down_ms } => {
            let candidates: Vec<NodeId> = live.iter().copied().filter(|id| !ctx.isolated.contains(id)).collect();
            if out < minority && !candidates.is_empty() {
                let id = candidates[(*pick % candidates.len() as u64) as usize];
                ctx.checker.crash(ctx.cluster, id, cfg.amnesia).await?;
                ctx.later.push((now + down_ms, Later::Restart(id)));
                Some(format!("crash node {id} for {down_ms} ms"))
            } else {
                None
            }
        }
        Fault::IsolateLeader { for_ms } => match leader {
            Some(l) if ctx.isolated.is_empty() && out < minority => {
                let groups = vec![vec![l], rest(ctx.cluster, &[l])];
                ctx.cluster.net.partition(groups).await.map_err(mesh)?;
                ctx.isolated.insert(l);
                ctx.later.push((now + for_ms, Later::Heal));
                Some(format!("isolate leader {l} for {for_ms} ms"))
            }
            _ => None,
        },
        Fault::PartitionMinority { size, pick, for_ms } => {
            if !ctx.isolated.is_empty() || out + size > minority || live.len() <= *size {
                None
            } else {
                let side = side(*size, *pick, None);
                let groups = vec![side.clone(), rest(ctx.cluster, &side)];
                ctx.cluster.net.partition(groups).await.map_err(mesh)?;
                ctx.isolated.extend(side.iter().copied());
                ctx.later.push((now + for_ms, Later::Heal));
                Some(format!("partition {side:?} away for {for_ms} ms"))
            }
        }
        Fault::LeaderInMinority { size, pick, for_ms } => match leader {
            Some(l) if ctx.isolated.is_empty() && out + size <= minority && live.len() > *size => {
                let side = side(*size, *pick, Some(l));
                let majority = rest(ctx.cluster, &side);
                ctx.cluster.net.partition(vec![side.clone(), majority.clone()]).await.map_err(mesh)?;
                ctx.isolated.extend(side.iter().copied());
                ctx.later.push((now + for_ms, Later::Heal));
                Some(format!("partition leader {l} with {side:?} from the majority {majority:?} for {for_ms} ms"))
            }
            _ => None,
        },
        Fault::Flapping { size, pick, with_leader, cycles, cut_ms, healed_ms } => {
            let with = if *with_leader { leader } else { None };
            if !ctx.isolated.is_empty()
                || out + size > minority
                || live.len() <= *size
                || (*with_leader && with.is_none())
            {
                None
            } else {
                let side = side(*size, *pick, with);
                let groups = vec![side.clone(), rest(ctx.cluster, &side)];
                ctx.cluster.net.partition(groups.clone()).await.map_err(mesh)?;
                ctx.isolated.extend(side.iter().copied());
                let mut at = now;
                for c in 0..*cycles {
                    at += cut_ms;
                    if c + 1 == *cycles {
                        ctx.later.push((at, Later::Heal));
                    } else {
                        ctx.later.push((at, Later::Mend));
                        at += healed_ms;
                        ctx.later.push((at, Later::Cut(groups.clone())));
                    }
                }
                Some(format!(
                    "flap {side:?}{}: cut {cut_ms} ms, healed {healed_ms} ms, {cycles} times",
                    if with.is_some() { " (with the leader)" } else { "" }
                ))
            }
        }
        Fault::Lossy { loss, max_delay_ms, for_ms } => {
            ctx.cluster.net.set_faults(*loss, 0, *max_delay_ms).await.map_err(mesh)?;
            ctx.later.push((now + for_ms, Later::ClearLoss));
            Some(format!("loss {:.0}% delay ≤{max_delay_ms} ms for {for_ms} ms", loss * 100.0))
        }
        Fault::Operator { .. } => None,
        Fault::PersonaCrashes { count, pick } => {
            ctx.checker.absorb(ctx.cluster)?;
            // the personas live nodes run (not a crashed node's orphans)
            let running: Vec<(NodeId, String)> = ctx
                .cluster
                .nodes
                .iter()
                .filter(|(_, n)| n.node.is_some())
                .flat_map(|(id, _)| ctx.checker.procs.run_by(*id).into_iter().map(|p| (*id, p.clone())))
                .collect();
            let mut crashed = Vec::new();
            for i in 0..(*count as usize).min(running.len()) {
                let (node, persona) = &running[((*pick as usize).wrapping_add(i * 7919)) % running.len()];
                if !crashed.contains(persona) && ctx.cluster.crash_persona(*node, persona) {
                    crashed.push(persona.clone());
                }
            }
            (!crashed.is_empty()).then(|| format!("crash persona(s) {crashed:?}"))
        }
    })
}

/// Carry out an operator's verb on a persona picked by `pick` (among those placed on live
/// nodes), through the API of the node that runs it, as the CLI would; what was done.
async fn operate(
    cluster: &Cluster,
    checker: &mut Checker,
    verb: Verb,
    pick: u64,
    now: u64,
) -> Result<String, SimError> {
    use axum::body::Body;
    use axum::http::{Method, Request};

    let Some((_, reg)) = cluster.registries().into_iter().max_by_key(|(_, r)| r.applied_index) else {
        return Ok(format!("operator: {verb:?}: no live node"));
    };
    let placed: Vec<(&String, NodeId)> = reg
        .personas
        .iter()
        .filter_map(|(name, e)| e.node.map(|n| (name, n)))
        .filter(|(_, n)| cluster.node(*n).is_some())
        .collect();
    if placed.is_empty() {
        return Ok(format!("operator: {verb:?}: no persona on a live node"));
    }
    let (persona, node) = placed[(pick % placed.len() as u64) as usize];
    let persona = persona.clone();
    let on = |n: NodeId| format!("sim-{n}");
    let (method, path, body, what, personas) = match verb {
        Verb::Hibernate | Verb::Start | Verb::Stop | Verb::Restart => {
            let action = format!("{verb:?}").to_lowercase();
            let path = format!("/api/v1/personas/{persona}/{action}");
            (Method::POST, path, String::new(), format!("{action} {persona}"), vec![persona.clone()])
        }
        Verb::AllowedToRun(allowed) => (
            Method::PATCH,
            format!("/api/v1/personas/{persona}/budget"),
            serde_json::json!({ "allowed_to_run": allowed }).to_string(),
            format!("budget {persona} allowed_to_run={allowed}"),
            vec![persona.clone()],
        ),
        Verb::Migrate { to_pick } => {
            let targets: Vec<NodeId> = reg
                .nodes
                .iter()
                .filter(|(id, e)| **id != node && !e.draining && cluster.node(**id).is_some())
                .map(|(id, _)| *id)
                .collect();
            let Some(to) = targets.get((to_pick % targets.len().max(1) as u64) as usize) else {
                return Ok(format!("operator: migrate {persona}: no node to move it to"));
            };
            (
                Method::POST,
                format!("/api/v1/personas/{persona}/migrate"),
                serde_json::json!({ "to": on(*to) }).to_string(),
                format!("migrate {persona} from {} to {}", on(node), on(*to)),
                vec![persona.clone()],
            )
        }
        Verb::Drain { undo } => {
            let open = reg.nodes.values().filter(|e| !e.draining).count();
            // keep a majority of nodes open: personas drained off must have somewhere to go
            if !undo && open <= reg.nodes.len() / 2 + 1 {
                return Ok(format!("operator: drain {}: too few nodes left open", on(node)));
            }
            let moved: Vec<String> = reg.personas_on(node).map(|(n, _)| n.clone()).collect();
            (
                Method::POST,
                format!("/api/v1/nodes/{}/drain", on(node)),
                serde_json::json!({ "undo": undo }).to_string(),
                format!("{} {}", if undo { "undrain" } else { "drain" }, on(node)),
                moved,
            )
        }
    };
    let req = Request::builder()
        .method(method)
        .uri(&path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a valid request");
    let Some(n) = cluster.node(node) else { return Ok(format!("operator: {what}: node down")) };
    // A verb may wait up to the proposal timeout; meanwhile the fence guards of crashed nodes
    // must still act on time. Awaited alone, the call held them back: a crashed node's
    // processes outlived its lease by seconds and seemed to run twice (seeds 1174, 1304).
    let call = n.call(req);
    tokio::pin!(call);
    let status = loop {
        tokio::select! {
            answer = &mut call => break answer.status(),
            _ = tokio::time::sleep(Duration::from_millis(checker.cfg.step_ms)) => checker.absorb(cluster)?,
        }
    };
    if status.is_success() {
        checker.verbs_acked += 1;
        checker.acted.push(Acted { what: format!("operator: {what}"), at_ms: now, personas });
    } else {
        checker.verbs_refused += 1;
    }
    Ok(format!("operator: {what} on {} → {}", on(node), status.as_u16()))
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
    let spec = PersonaSpec::new(&name, PERSONA_COMMAND);
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
/// registry places on it running.
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
            // every persona placed there, whatever its desired phase: a hibernating or stopped
            // persona is still its node's to keep
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
