//! The leader's failover loop: it notes when it last heard from each node (a lease renewal),
//! declares lost the nodes silent past `failover_after_ms`, and commits the plan of
//! [`mindmesh_core::failover`] — their personas to healthy nodes, pending personas to nodes
//! that now fit, drains a few migrations at a time — planned only when the registry's
//! placement or the set of lost nodes changed, not every tick. A new leader knows nothing of the past:
//! it counts every node's silence from its own election, which only delays a failover.
//!
//! A plan is only as good as the leader that made it: it plans only while a quorum backs it
//! (as it renews leases), and commits its plan itself, in the term it planned in — never
//! forwarded to a newer leader, whose nodes may have renewed their leases with it all along.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use mindmesh_core::failover;
use mindmesh_core::registry::{Command, Proposal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ctx::Ctx;
use super::leader::{self, is_leader};
use super::lease::quorum_age_ms;
use crate::NodeId;
use crate::rpc::{LeaderError, MeshRequest};
use crate::transport::Transport;

/// When the leader last heard from each node, in the term it leads; and the nodes it has
/// declared lost and is moving the personas of.
#[derive(Debug, Default)]
pub struct Heard {
    inner: Mutex<HeardInner>,
}

#[derive(Debug, Default)]
struct HeardInner {
    term: u64,
    since_ms: u64,
    last: HashMap<NodeId, u64>,
    /// Declared lost, their moves not yet committed: their renewals are refused meanwhile.
    lost: BTreeSet<NodeId>,
}

impl HeardInner {
    fn silent_ms(&self, node: NodeId, now_ms: u64) -> u64 {
        let last = self.last.get(&node).copied().unwrap_or(0).max(self.since_ms);
        now_ms.saturating_sub(last)
    }
}

impl Heard {
    /// This leader renewing its own lease.
    pub fn heard(&self, node: NodeId, at_ms: u64) {
        self.renewal(node, at_ms);
    }

    /// A renewal from `node` at `at_ms`: noted, unless this leader has declared the node lost
    /// and not yet committed the moves of its personas — then false, and the renewal must be
    /// refused. (Answered in between, it would name a log index before the moves: the node
    /// would run its personas again while their new nodes start them.)
    pub fn renewal(&self, node: NodeId, at_ms: u64) -> bool {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if h.lost.contains(&node) {
            return false;
        }
        let t = h.last.entry(node).or_insert(at_ms);
        *t = (*t).max(at_ms);
        true
    }

    /// Start counting afresh when this node begins to lead `term`.
    fn lead(&self, term: u64, now_ms: u64) {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if h.term != term {
            *h = HeardInner { term, since_ms: now_ms, last: HashMap::new(), lost: BTreeSet::new() };
        }
    }

    /// Declare lost the `nodes` silent for more than `after_ms`, in one step with the
    /// renewals: a node is either heard first (and not lost) or refused until [`Heard::release`].
    fn declare_lost(&self, nodes: impl Iterator<Item = NodeId>, now_ms: u64, after_ms: u64) -> BTreeSet<NodeId> {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let lost: BTreeSet<NodeId> = nodes.filter(|n| h.silent_ms(*n, now_ms) > after_ms).collect();
        h.lost.clone_from(&lost);
        lost
    }

    /// The moves are committed (or will never be, by this leader): renew the lost nodes again,
    /// now naming a log index that holds their moves.
    fn release(&self) {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        h.lost.clear();
    }

    /// How long `node` has been silent, as far as this leader can tell.
    fn silent_ms(&self, node: NodeId, now_ms: u64) -> u64 {
        let h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        h.silent_ms(node, now_ms)
    }
}

pub(crate) async fn run<T: Transport>(ctx: Ctx<T>, cancel: CancellationToken) {
    let every = Duration::from_millis(ctx.cfg.lease_renew_ms.min(200));
    let mut replan = failover::Replan::default();
    let mut planned_term = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // a leader cut off from the quorum hears from nobody: its "silence" says nothing
        if !is_leader(&ctx) || quorum_age_ms(&ctx).is_none_or(|a| a > ctx.cfg.max_quorum_age_ms()) {
            continue;
        }
        let term = ctx.raft.metrics().borrow().current_term;
        let now = ctx.now_ms();
        ctx.failover.lead(term, now);
        let registry = ctx.registry.borrow().clone();
        let lost: BTreeSet<NodeId> = if ctx.cfg.fencing {
            let others = registry.nodes.keys().copied().filter(|n| *n != ctx.me);
            ctx.failover.declare_lost(others, now, ctx.cfg.failover_after_ms)
        } else {
            BTreeSet::new()
        };
        if term != planned_term {
            replan.forget();
            planned_term = term;
        }
        // plan only when the placement or the lost nodes changed: the same registry and the
        // same lost nodes make the same plan, which is empty or was committed
        if !replan.needed(&registry, &lost) {
            ctx.failover.release();
            continue;
        }
        let plan = failover::plan(&registry, &lost, |n| ctx.failover.silent_ms(n, now));
        if plan.is_empty() {
            ctx.failover.release();
            continue;
        }
        info!(lost = ?lost, term, moves = plan.moves.len(), migrations = plan.migrations.len(), "failover plan");
        for cmd in plan.commands(ctx.wall_ms()) {
            let kind = cmd.kind();
            if let Err(e) = commit_here(&ctx, term, cmd).await {
                warn!(command = kind, error = %e, "failover step not committed; planned again next tick");
                replan.forget();
                break;
            }
        }
        ctx.failover.release();
    }
}

/// Commit one step of a plan on this node, as the leader of `term`, or not at all. (A
/// proposal from any node is forwarded to the leader, and retried with the next one after an
/// election: a deposed leader's plan, forwarded so, moved personas off nodes that had renewed
/// their leases with the new leader all along — found by the chaos simulator.)
///
/// Within `propose_timeout_ms`: openraft 0.9 answers a write only once its entry is applied
/// here or cut by a conflicting append, so a deposed leader caught up by a snapshot waits
/// forever — and its failover loop with it (the simulator found that too). A step that timed
/// out may still be committed later; renewals name the leader's last log index, so a lost
/// node renewed meanwhile applies those moves before its lease counts.
async fn commit_here<T: Transport>(ctx: &Ctx<T>, term: u64, command: Command) -> Result<(), String> {
    if !is_leader(ctx) || ctx.raft.metrics().borrow().current_term != term {
        return Err(format!("no longer the leader of term {term}"));
    }
    let p = Proposal { id: ctx.next_proposal_id(), command };
    let deadline = Duration::from_millis(ctx.cfg.propose_timeout_ms);
    match tokio::time::timeout(deadline, leader::execute(ctx, ctx.me, MeshRequest::Propose(p))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(LeaderError::NotLeader { leader, .. })) => Err(format!("no longer the leader (now {leader:?})")),
        Ok(Err(LeaderError::Failed(reason))) => Err(reason),
        Err(_) => Err(format!("not committed within {} ms", deadline.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_declared_lost_is_refused_renewal_until_its_moves_are_committed() {
        let heard = Heard::default();
        heard.lead(2, 1000);
        assert!(heard.renewal(7, 1500));
        // 7 heard in time: not lost; 8 silent since the term began
        assert_eq!(heard.declare_lost([7, 8].into_iter(), 3400, 2000), BTreeSet::from([8]));
        // declared lost: refused, and its silence goes on
        assert!(!heard.renewal(8, 3401));
        assert_eq!(heard.silent_ms(8, 3500), 2500);
        heard.release();
        assert!(heard.renewal(8, 3600));
        assert_eq!(heard.silent_ms(8, 3600), 0);
        // a new term forgets everything: silence counts from its start
        heard.declare_lost([7, 8].into_iter(), 9000, 2000);
        heard.lead(3, 9000);
        assert!(heard.renewal(8, 9001));
        assert_eq!(heard.silent_ms(7, 9500), 500);
    }
}
