//! The leader's failover loop: it notes when it last heard from each node (a lease renewal),
//! declares lost the nodes silent past `failover_after_ms`, and commits the plan of
//! [`mindmesh_core::failover`] — their personas to healthy nodes, pending personas to nodes
//! that now fit, drains a few migrations at a time. A new leader knows nothing of the past:
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

/// When the leader last heard from each node, in the term it leads.
#[derive(Debug, Default)]
pub struct Heard {
    inner: Mutex<HeardInner>,
}

#[derive(Debug, Default)]
struct HeardInner {
    term: u64,
    since_ms: u64,
    last: HashMap<NodeId, u64>,
}

impl Heard {
    pub fn heard(&self, node: NodeId, at_ms: u64) {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = h.last.entry(node).or_insert(at_ms);
        *t = (*t).max(at_ms);
    }

    /// Start counting afresh when this node begins to lead `term`.
    fn lead(&self, term: u64, now_ms: u64) {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if h.term != term {
            *h = HeardInner { term, since_ms: now_ms, last: HashMap::new() };
        }
    }

    /// How long `node` has been silent, as far as this leader can tell.
    fn silent_ms(&self, node: NodeId, now_ms: u64) -> u64 {
        let h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let last = h.last.get(&node).copied().unwrap_or(0).max(h.since_ms);
        now_ms.saturating_sub(last)
    }
}

pub(crate) async fn run<T: Transport>(ctx: Ctx<T>, cancel: CancellationToken) {
    let every = Duration::from_millis(ctx.cfg.lease_renew_ms.min(200));
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
            registry
                .nodes
                .keys()
                .copied()
                .filter(|n| *n != ctx.me && ctx.failover.silent_ms(*n, now) > ctx.cfg.failover_after_ms)
                .collect()
        } else {
            BTreeSet::new()
        };
        let plan = failover::plan(&registry, &lost, |n| ctx.failover.silent_ms(n, now));
        if plan.is_empty() {
            continue;
        }
        info!(lost = ?lost, term, moves = plan.moves.len(), migrations = plan.migrations.len(), "failover plan");
        for cmd in plan.commands(ctx.wall_ms()) {
            let kind = cmd.kind();
            if let Err(e) = commit_here(&ctx, term, cmd).await {
                warn!(command = kind, error = %e, "failover step not committed; planned again next tick");
                break;
            }
        }
    }
}

/// Commit one step of a plan on this node, as the leader of `term`, or not at all. (A
/// proposal from any node is forwarded to the leader, and retried with the next one after an
/// election: a deposed leader's plan, forwarded so, moved personas off nodes that had renewed
/// their leases with the new leader all along — found by the chaos simulator.)
async fn commit_here<T: Transport>(ctx: &Ctx<T>, term: u64, command: Command) -> Result<(), String> {
    if !is_leader(ctx) || ctx.raft.metrics().borrow().current_term != term {
        return Err(format!("no longer the leader of term {term}"));
    }
    let p = Proposal { id: ctx.next_proposal_id(), command };
    match leader::execute(ctx, ctx.me, MeshRequest::Propose(p)).await {
        Ok(_) => Ok(()),
        Err(LeaderError::NotLeader { leader, .. }) => Err(format!("no longer the leader (now {leader:?})")),
        Err(LeaderError::Failed(reason)) => Err(reason),
    }
}
