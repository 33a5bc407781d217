//! The leader's failover loop: it notes when it last heard from each node (a lease renewal),
//! declares lost the nodes silent past `failover_after_ms`, and commits the plan of
//! [`mindmesh_core::failover`] — their personas to healthy nodes, pending personas to nodes
//! that now fit, drains a few migrations at a time. A new leader knows nothing of the past:
//! it counts every node's silence from its own election, which only delays a failover.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use mindmesh_core::failover;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::client::propose;
use super::ctx::Ctx;
use super::leader::is_leader;
use crate::NodeId;
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
        if !is_leader(&ctx) {
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
        info!(lost = ?lost, moves = plan.moves.len(), migrations = plan.migrations.len(), "failover plan");
        for cmd in plan.commands(ctx.wall_ms()) {
            let kind = cmd.kind();
            if let Err(e) = propose(&ctx, cmd).await {
                warn!(command = kind, error = %e, "failover step not committed; planned again next tick");
                break;
            }
        }
    }
}
