//! openraft's network over the [`Transport`]: each RPC is one request/response. An append
//! that would not fit a frame is refused with `PayloadTooLarge` and a smaller batch hint, so
//! openraft splits it; snapshots go in chunks (`snapshot_max_chunk_size`).

use openraft::RPCTypes;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use std::time::Duration;

use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tracing::trace;

use super::{MeshNode, TypeConfig, rpc_deadline};
use crate::rpc::{self, MeshRequest, MeshResponse};
use crate::transport::{PeerInfo, Transport};
use crate::{NetError, NodeId};

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, MeshNode, RaftError<NodeId, E>>>;

#[derive(Clone)]
pub struct RaftNet<T: Transport> {
    pub(crate) transport: T,
    pub(crate) rpc_timeout_ms: u64,
    pub(crate) heartbeat_ms: u64,
    pub(crate) max_rpc_bytes: usize,
}

pub struct RaftConn<T: Transport> {
    me: NodeId,
    target: NodeId,
    net: RaftNet<T>,
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for RaftNet<T> {
    type Network = RaftConn<T>;

    async fn new_client(&mut self, target: NodeId, node: &MeshNode) -> RaftConn<T> {
        // the membership knows how to reach every member, even one we never met
        let peer = PeerInfo { node_id: target, peer_id: node.peer_id.clone(), addrs: node.addrs.clone() };
        if let Err(e) = self.transport.add_peer(peer).await {
            trace!(target, error = %e, "peer address not usable");
        }
        RaftConn { me: self.transport.local_id(), target, net: self.clone() }
    }
}

impl<T: Transport> RaftConn<T> {
    async fn call<E: std::error::Error>(
        &self,
        action: RPCTypes,
        req: &MeshRequest,
        option: &RPCOption,
    ) -> Result<MeshResponse, RPCError<NodeId, MeshNode, RaftError<NodeId, E>>> {
        let bytes = rpc::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let deadline = rpc_deadline(option.hard_ttl(), self.net.rpc_timeout_ms);
        match self.net.transport.request(self.target, bytes, deadline).await {
            Ok(answer) => rpc::decode::<MeshResponse>(&answer, self.net.max_rpc_bytes)
                .map_err(|e| RPCError::Network(NetworkError::new(&e))),
            Err(e @ (NetError::Unreachable(_) | NetError::Dial { .. })) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(NetError::Timeout(_)) => {
                Err(RPCError::Timeout(Timeout { action, id: self.me, target: self.target, timeout: deadline }))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, got: &MeshResponse) -> RPCError<NodeId, MeshNode, RaftError<NodeId, E>> {
        let e = NetError::Protocol(format!("node {} answered {got:?}", self.target));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for RaftConn<T> {
    /// After `Unreachable`, retry at the heartbeat's pace rather than openraft's 500 ms: a
    /// restarted member is reachable again as soon as its new address is known.
    fn backoff(&self) -> Backoff {
        let pause = Duration::from_millis(self.net.heartbeat_ms.max(10));
        Backoff::new(std::iter::repeat(pause))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let entries = rpc.entries.len() as u64;
        let req = MeshRequest::AppendEntries(rpc);
        // refuse early what the transport would refuse, with a hint openraft understands
        if entries > 1 {
            let size = rpc::encode(&req).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > self.net.max_rpc_bytes {
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)));
            }
        }
        match self.call(RPCTypes::AppendEntries, &req, &option).await? {
            MeshResponse::AppendEntries(Ok(r)) => Ok(r),
            MeshResponse::AppendEntries(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let req = MeshRequest::InstallSnapshot(rpc);
        match self.call(RPCTypes::InstallSnapshot, &req, &option).await? {
            MeshResponse::InstallSnapshot(Ok(r)) => Ok(r),
            MeshResponse::InstallSnapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        let req = MeshRequest::Vote(rpc);
        match self.call(RPCTypes::Vote, &req, &option).await? {
            MeshResponse::Vote(Ok(r)) => Ok(r),
            MeshResponse::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(&other)),
        }
    }
}
