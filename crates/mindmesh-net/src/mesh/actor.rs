//! The mesh actor: owns the mesh view and the status; takes the transport's events (gossip is
//! validated here, requests are served by bounded tasks) and the handle's commands.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mindmesh_core::mesh_view::{MeshView, NodeView, Observed};
use mindmesh_core::registry::{Command, Outcome};
use mindmesh_core::snapshot::NodeSnapshot;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client;
use super::ctx::Ctx;
use super::server::serve;
use super::status::{MembersCache, MeshRole, MeshStatus};
use crate::rpc::MeshRequest;
use crate::transport::{Transport, TransportEvent};
use crate::{NetError, NodeId};

/// Requests and commands handled at once; past it, requests are dropped and commands refused.
const MAX_INFLIGHT: usize = 256;
/// Peers with invalid messages counted at once.
const MAX_OFFENDERS: usize = 4096;
const TICK: Duration = Duration::from_millis(250);

pub(crate) enum MeshCommand {
    Publish { snapshot: NodeSnapshot, reply: oneshot::Sender<Result<(), NetError>> },
    View { reply: oneshot::Sender<Vec<NodeView>> },
    Propose { command: Command, reply: oneshot::Sender<Result<Outcome, NetError>> },
    Leave { node: NodeId, reply: oneshot::Sender<Result<(), NetError>> },
}

pub(crate) struct Actor<T: Transport> {
    pub ctx: Ctx<T>,
    pub commands: mpsc::Receiver<MeshCommand>,
    pub events: mpsc::Receiver<TransportEvent>,
    pub status: watch::Sender<MeshStatus>,
    /// Stops the membership loop (when this node leaves, it must not join again).
    pub maintain: CancellationToken,
    pub incarnation: u64,
    pub view: MeshView,
    pub seq: u64,
    pub tasks: JoinSet<Option<NodeId>>,
    pub invalid: BTreeMap<NodeId, u32>,
    pub invalid_since_ms: u64,
    pub connected: BTreeSet<NodeId>,
    pub members: MembersCache,
}

impl<T: Transport> Actor<T> {
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut metrics = self.ctx.raft.metrics();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // `biased`: one poll order, so the simulator replays
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(Some(offender)) = done {
                        self.penalize(offender).await;
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => break,
                },
                ev = self.events.recv() => match ev {
                    Some(e) => self.event(e).await,
                    None => {
                        warn!("transport stopped");
                        break;
                    }
                },
                changed = metrics.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.refresh_status();
                }
                _ = tick.tick() => self.housekeeping(),
            }
        }
        self.maintain.cancel();
        self.tasks.abort_all();
        if let Err(e) = self.ctx.raft.shutdown().await {
            warn!(error = %e, "raft did not stop cleanly");
        }
        self.status.send_modify(|s| s.role = MeshRole::Shutdown);
        info!(node = self.ctx.me, "mesh stopped");
    }

    async fn command(&mut self, cmd: MeshCommand) {
        match cmd {
            MeshCommand::Publish { mut snapshot, reply } => {
                snapshot.node_id = self.ctx.me;
                snapshot.incarnation = self.incarnation;
                self.seq += 1;
                snapshot.seq = self.seq;
                let r = match snapshot.encode() {
                    Ok(bytes) => {
                        // our own row of the view, as peers will see it
                        let _ = self.view.observe(self.ctx.me, snapshot, self.ctx.now_ms());
                        self.ctx.transport.publish(bytes).await
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(r);
            }
            MeshCommand::View { reply } => {
                let _ = reply.send(self.view.rows(self.ctx.now_ms(), self.ctx.cfg.stale_after_ms));
            }
            MeshCommand::Propose { command, reply } => {
                if self.tasks.len() >= MAX_INFLIGHT {
                    let _ = reply.send(Err(NetError::Busy));
                    return;
                }
                let ctx = self.ctx.clone();
                self.tasks.spawn(async move {
                    let _ = reply.send(client::propose(&ctx, command).await);
                    None
                });
            }
            MeshCommand::Leave { node, reply } => {
                if self.tasks.len() >= MAX_INFLIGHT {
                    let _ = reply.send(Err(NetError::Busy));
                    return;
                }
                if node == self.ctx.me {
                    self.maintain.cancel();
                }
                let ctx = self.ctx.clone();
                self.tasks.spawn(async move {
                    let r = client::leader_call(&ctx, MeshRequest::Leave { node }, None).await.map(|_| ());
                    let _ = reply.send(r);
                    None
                });
            }
        }
    }

    async fn event(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Gossip { from, data, verdict } => {
                let now = self.ctx.now_ms();
                let observed = NodeSnapshot::decode(&data, self.ctx.cfg.max_gossip_bytes)
                    .map_err(NetError::from)
                    .and_then(|s| self.view.observe(from, s, now).map_err(NetError::from));
                match observed {
                    Ok(Observed::Outdated) => verdict.ignore(),
                    Ok(_) => verdict.accept(),
                    Err(e) => {
                        debug!(from, error = %e, "invalid gossip dropped");
                        verdict.reject();
                        self.penalize(from).await;
                    }
                }
            }
            TransportEvent::Request { from, data, reply } => {
                if self.tasks.len() >= MAX_INFLIGHT {
                    debug!(from, "too many requests in flight: dropped");
                    return;
                }
                let ctx = self.ctx.clone();
                self.tasks.spawn(async move { (!serve(ctx, from, data, reply).await).then_some(from) });
            }
            TransportEvent::PeerUp { node } => {
                self.connected.insert(node);
            }
            TransportEvent::PeerDown { node } => {
                self.connected.remove(&node);
            }
            TransportEvent::Misbehaved { node, what } => {
                debug!(from = node, what, "protocol violation");
                self.penalize(node).await;
            }
        }
    }

    /// Count an invalid message; past the limit, ban the sender for a while.
    async fn penalize(&mut self, from: NodeId) {
        if self.invalid.len() >= MAX_OFFENDERS && !self.invalid.contains_key(&from) {
            self.invalid.clear();
        }
        let count = self.invalid.entry(from).or_default();
        *count += 1;
        if *count >= self.ctx.cfg.max_invalid_messages {
            self.invalid.remove(&from);
            warn!(node = from, "too many invalid messages: banned");
            if let Err(e) = self.ctx.transport.ban(from, Duration::from_millis(self.ctx.cfg.ban_ms)).await {
                warn!(node = from, error = %e, "ban failed");
            }
        }
    }

    fn refresh_status(&mut self) {
        let s = MeshStatus::from_metrics(
            self.ctx.me,
            &self.ctx.raft.metrics().borrow(),
            &mut self.members,
            self.ctx.leader_contact_age_ms(),
            self.connected.len(),
        );
        self.status.send_if_modified(|old| {
            let changed = *old != s;
            *old = s;
            changed
        });
    }

    fn housekeeping(&mut self) {
        self.refresh_status();
        let now = self.ctx.now_ms();
        // invalid-message counts cover one ban period
        if now.saturating_sub(self.invalid_since_ms) >= self.ctx.cfg.ban_ms {
            self.invalid.clear();
            self.invalid_since_ms = now;
        }
        // nodes silent for a dozen staleness periods have left or been removed
        self.view.expire(now, self.ctx.cfg.stale_after_ms.saturating_mul(12));
    }
}
