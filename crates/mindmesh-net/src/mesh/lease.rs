//! This node's lease: the right to run its personas, renewed with a leader that a quorum
//! acknowledged recently. A node that cannot renew (partitioned from the majority, or the
//! mesh has no leader for longer than an election takes) loses it and must stop its personas
//! before the leader may place them elsewhere (`failover_after_ms` > lease + quorum age +
//! margin; `docs/failover.md` has the argument).
//!
//! A follower asks the leader ([`MeshRequest::Renew`]); the lease then runs `lease_ms` from
//! when the request was *sent*. The leader renews its own from its last quorum
//! acknowledgement. Times are on the mesh's monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::remote;
use super::ctx::Ctx;
use super::leader::is_leader;
use crate::rpc::{LeaderReply, MeshRequest};
use crate::transport::Transport;

/// The lease as the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// May this node run its personas now?
    pub held: bool,
    /// Until when, if it was ever held (tokio's clock: virtual in the simulator).
    pub until: Option<tokio::time::Instant>,
    /// False when fencing is off: `held` is then always true.
    pub enforced: bool,
}

/// The expiry of this node's lease, shared by the renewal loop and status readers.
#[derive(Debug, Default)]
pub struct LeaseClock {
    /// `until_ms + 1`; 0: never held.
    until: AtomicU64,
}

impl LeaseClock {
    /// Extend to `until_ms` (never shortens: a late answer to an older request is older).
    pub fn extend(&self, until_ms: u64) {
        self.until.fetch_max(until_ms + 1, Ordering::Relaxed);
    }

    pub fn until_ms(&self) -> Option<u64> {
        match self.until.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t - 1),
        }
    }

    pub fn held_at(&self, now_ms: u64) -> bool {
        self.until_ms().is_some_and(|u| now_ms < u)
    }
}

/// Milliseconds since a quorum last acknowledged this node as leader; None if it does not lead.
pub(crate) fn quorum_age_ms<T: Transport>(ctx: &Ctx<T>) -> Option<u64> {
    if !is_leader(ctx) {
        return None;
    }
    let m = ctx.raft.metrics().borrow().clone();
    let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
    if voters == [ctx.me] {
        return Some(0); // a mesh of one is its own quorum
    }
    m.millis_since_quorum_ack
}

/// Renew the lease every `lease_renew_ms`, and publish it — also at the instant it runs out,
/// so the node fences on time rather than at the next renewal, even while a renewal is still
/// waiting for its answer (up to two renewal periods, then for the registry to catch up).
pub(crate) async fn run<T: Transport>(ctx: Ctx<T>, tx: watch::Sender<Lease>, cancel: CancellationToken) {
    let cfg = ctx.cfg.clone();
    let mut held = false;
    loop {
        let sent_ms = ctx.now_ms();
        let next_renewal_ms = sent_ms + cfg.lease_renew_ms;
        let renewal = renew_once(&ctx, sent_ms);
        tokio::pin!(renewal);
        let mut renewing = true;
        // publish now and at every wake: the expiry, the renewal's answer, the next renewal
        loop {
            let now = ctx.now_ms();
            let until_ms = ctx.lease.until_ms();
            let until = until_ms.map(|u| ctx.started + Duration::from_millis(u));
            let lease = Lease { held: ctx.lease.held_at(now), until, enforced: true };
            if lease.held != held {
                if lease.held {
                    info!(node = ctx.me, ?until_ms, "lease held");
                } else {
                    warn!(node = ctx.me, "lease lost: no leader backed by a quorum answered in time");
                }
                held = lease.held;
            }
            // watchers wake on a change of `held`; readers see the latest expiry too
            tx.send_if_modified(|l| {
                let changed = l.held != lease.held;
                *l = lease;
                changed
            });
            if !renewing && now >= next_renewal_ms {
                break;
            }
            // the expiry, and once this renewal is answered the next one, whichever is first
            let expiry_ms = until_ms.filter(|u| *u > now);
            let wake_ms = match (renewing, expiry_ms) {
                (true, e) => e,
                (false, Some(e)) => Some(e.min(next_renewal_ms)),
                (false, None) => Some(next_renewal_ms),
            };
            let wake = wake_ms.map(|w| ctx.started + Duration::from_millis(w));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                renewed = &mut renewal, if renewing => {
                    renewing = false;
                    if let Some(until) = renewed {
                        ctx.lease.extend(until);
                    }
                }
                _ = sleep_until(wake) => {}
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One renewal; the new expiry if it succeeded.
async fn renew_once<T: Transport>(ctx: &Ctx<T>, sent_ms: u64) -> Option<u64> {
    let cfg = &ctx.cfg;
    if let Some(age) = quorum_age_ms(ctx) {
        if age > cfg.max_quorum_age_ms() {
            return None;
        }
        ctx.failover.heard(ctx.me, sent_ms);
        // the quorum vouched for us `age` ago: count from then
        return Some(sent_ms.saturating_sub(age) + cfg.lease_ms);
    }
    let leader = ctx.raft.metrics().borrow().current_leader.filter(|l| *l != ctx.me)?;
    let wait = Duration::from_millis(cfg.lease_renew_ms * 2);
    match remote(ctx, leader, &MeshRequest::Renew, wait).await {
        Ok(Ok(LeaderReply::Renewed { log_index })) => {
            // held only once this node's registry is as new as the leader's was: a node back
            // from a partition would otherwise start personas the mesh has moved away
            let mut registry = ctx.registry.clone();
            let caught_up = tokio::time::timeout(wait, registry.wait_for(|r| r.applied_index >= log_index)).await;
            if !matches!(caught_up, Ok(Ok(_))) {
                debug!(leader, log_index, "lease renewed but the registry lags; not held yet");
                return None;
            }
            Some(sent_ms + cfg.lease_ms)
        }
        Ok(other) => {
            debug!(leader, answer = ?other, "lease not renewed");
            None
        }
        Err(e) => {
            debug!(leader, error = %e, "lease not renewed");
            None
        }
    }
}
