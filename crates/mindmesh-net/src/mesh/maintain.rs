//! The membership loop of one node: bootstrap a new mesh, or join an existing one through any
//! reachable member (retried with jittered backoff, like Nomad's `retry_join`), keep this
//! node's registry entry current, and — when leading — keep the voters at their target.

use std::collections::BTreeMap;
use std::time::Duration;

use mindmesh_core::registry::Command;
use rand::Rng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::{leader_call, propose};
use super::ctx::Ctx;
use super::leader::keep_voters;
use crate::rpc::{JoinRequest, LeaderError, MeshRequest, MeshResponse};
use crate::transport::PeerInfo;
use crate::transport::Transport;

/// How often a member checks its registration and, when leading, the voters.
const MEMBER_PERIOD: Duration = Duration::from_millis(500);

pub(crate) async fn run<T: Transport>(ctx: Ctx<T>, bootstrap: bool, mut rng: SmallRng, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(ctx.cfg.join_backoff_initial_ms);
    let mut next_join_addr = 0usize;
    let mut warned_alone = false;
    let mut tried_join_first = false;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if is_member(&ctx) {
            backoff = Duration::from_millis(ctx.cfg.join_backoff_initial_ms);
            refresh_addresses(&ctx).await;
            keep_voters(&ctx).await;
            register(&ctx).await;
            wait = MEMBER_PERIOD;
            continue;
        }
        if bootstrap {
            match ctx.raft.is_initialized().await {
                Ok(false) => {
                    // A bootstrap node whose store was lost must not found a second mesh beside
                    // the first: if a join address answers with a leader, join it instead.
                    if !tried_join_first {
                        tried_join_first = true;
                        if join_existing(&ctx).await {
                            info!("a mesh already exists: joined it instead of bootstrapping");
                            wait = MEMBER_PERIOD;
                            continue;
                        }
                    }
                    let members = BTreeMap::from([(ctx.me, (*ctx.mesh_node).clone())]);
                    match ctx.raft.initialize(members).await {
                        Ok(()) => info!(node = ctx.me, "new mesh bootstrapped"),
                        Err(e) => warn!(error = %e, "bootstrap failed"),
                    }
                    wait = Duration::from_millis(50);
                    continue;
                }
                Ok(true) => {}
                Err(_) => return, // raft stopped
            }
        }
        match join_once(&ctx, &mut next_join_addr).await {
            Ok(true) => {
                // the leader now replicates to us: give the membership time to arrive
                wait = MEMBER_PERIOD;
                continue;
            }
            Ok(false) => {
                if !warned_alone && ctx.cfg.join.is_empty() && !ctx.cfg.mdns {
                    warn!("not a member, nothing to join: set join addresses, mdns, or bootstrap");
                    warned_alone = true;
                }
            }
            Err(e) => debug!(error = %e, "join attempt failed"),
        }
        // full jitter over the current backoff, so nodes started together spread out
        wait = Duration::from_millis(rng.random_range(backoff.as_millis() as u64 / 2..=backoff.as_millis() as u64));
        backoff = (backoff * 2).min(Duration::from_millis(ctx.cfg.join_backoff_max_ms));
    }
}

/// In the membership (as a voter or a learner), as this node's Raft last heard.
fn is_member<T: Transport>(ctx: &Ctx<T>) -> bool {
    ctx.raft.metrics().borrow().membership_config.membership().get_node(&ctx.me).is_some()
}

/// One attempt: the next join address, or any connected peer; ask it to admit us.
/// `Ok(false)`: nobody to ask.
async fn join_once<T: Transport>(ctx: &Ctx<T>, next: &mut usize) -> Result<bool, crate::NetError> {
    let timeout = Duration::from_millis(ctx.cfg.connect_timeout_ms);
    let peer = if !ctx.cfg.join.is_empty() {
        let addr = &ctx.cfg.join[*next % ctx.cfg.join.len()];
        *next += 1;
        ctx.transport.dial(addr, timeout).await?
    } else {
        // mDNS (or an earlier contact) may have connected us to a member
        match ctx.transport.connected_peers().await?.into_iter().min() {
            Some(p) => p,
            None => return Ok(false),
        }
    };
    if peer == ctx.me {
        return Ok(false);
    }
    let req = JoinRequest { node: ctx.me, mesh_node: (*ctx.mesh_node).clone(), info: ctx.node_info() };
    leader_call(ctx, MeshRequest::Join(req), Some(peer)).await?;
    info!(via = peer, "admitted to the mesh");
    Ok(true)
}

/// Ask each join address once whether a mesh with a leader exists, and if so join it. Quick:
/// one request per address, no waiting for an election that nobody runs yet.
async fn join_existing<T: Transport>(ctx: &Ctx<T>) -> bool {
    let timeout = Duration::from_millis(ctx.cfg.connect_timeout_ms);
    let req =
        MeshRequest::Join(JoinRequest { node: ctx.me, mesh_node: (*ctx.mesh_node).clone(), info: ctx.node_info() });
    let Ok(bytes) = crate::rpc::encode(&req) else { return false };
    for addr in &ctx.cfg.join {
        let Ok(peer) = ctx.transport.dial(addr, timeout).await else { continue };
        if peer == ctx.me {
            continue;
        }
        let rpc_timeout = Duration::from_millis(ctx.cfg.rpc_timeout_ms);
        let Ok(answer) = ctx.transport.request(peer, bytes.clone(), rpc_timeout).await else { continue };
        match crate::rpc::decode::<MeshResponse>(&answer, ctx.cfg.max_rpc_bytes) {
            Ok(MeshResponse::Leader(Ok(_))) => return true,
            Ok(MeshResponse::Leader(Err(LeaderError::NotLeader { leader: Some(l), leader_node }))) => {
                if let Some(n) = leader_node {
                    let info = PeerInfo { node_id: l, peer_id: n.peer_id, addrs: n.addrs };
                    let _ = ctx.transport.add_peer(info).await;
                }
                return leader_call(ctx, req, Some(l)).await.is_ok();
            }
            _ => {}
        }
    }
    false
}

/// Make the registry's entry for this node match what it is now (addresses change on restart).
async fn register<T: Transport>(ctx: &Ctx<T>) {
    let wanted = ctx.node_info();
    let current = ctx.registry.borrow().nodes.get(&ctx.me).map(|n| n.info.clone());
    if current.as_ref() == Some(&wanted) || ctx.raft.metrics().borrow().current_leader.is_none() {
        return;
    }
    match propose(ctx, Command::AddNode(wanted)).await {
        Ok(_) => debug!("registry entry updated"),
        Err(e) => debug!(error = %e, "registry entry not updated yet"),
    }
}

/// After a restart on new addresses (a port picked by the OS, a container's new IP), the
/// membership still holds the old ones and the leader could not reach this node: ask the
/// leader, through any other member, to update them (a join of a known node does that).
async fn refresh_addresses<T: Transport>(ctx: &Ctx<T>) {
    let (known, other) = {
        let m = ctx.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let known = membership.get_node(&ctx.me).cloned();
        let other =
            m.current_leader.filter(|l| *l != ctx.me).or_else(|| membership.voter_ids().find(|id| *id != ctx.me));
        (known, other)
    };
    if known.as_ref() == Some(&*ctx.mesh_node) {
        return;
    }
    // with no other member to ask, this node leads (a mesh of one) and updates itself
    let req = JoinRequest { node: ctx.me, mesh_node: (*ctx.mesh_node).clone(), info: ctx.node_info() };
    match leader_call(ctx, MeshRequest::Join(req), other).await {
        Ok(_) => info!("membership updated with this node's new addresses"),
        Err(e) => debug!(error = %e, "addresses not updated yet"),
    }
}

/// A voter that (re)starts into a mesh with other voters holds its first campaign until it has
/// heard from a leader, or for two maximal election timeouts. Otherwise it campaigns before the
/// leader reaches it (the leader may still be backing off from its old address), with a term
/// that makes the leader step down on its next append: an election for nothing.
pub(crate) async fn election_grace<T: Transport>(ctx: Ctx<T>, cancel: CancellationToken) {
    let others_vote = {
        let m = ctx.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership.voter_ids().any(|id| id == ctx.me) && membership.voter_ids().any(|id| id != ctx.me)
    };
    if !others_vote {
        return;
    }
    ctx.raft.runtime_config().elect(false);
    let grace = Duration::from_millis(ctx.cfg.election_timeout_max_ms * 2);
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.cfg.heartbeat_ms));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ctx.leader_contact_age_ms().is_some() || started.elapsed() >= grace {
            ctx.raft.runtime_config().elect(true);
            debug!(waited_ms = started.elapsed().as_millis() as u64, "elections enabled");
            return;
        }
    }
}
