//! Entry points for coverage-guided fuzzing (`fuzz/`) and the corpus replay in `cargo test`
//! (`tests/fuzz_corpus.rs`): what a mesh member's bytes reach. Bad input is refused as the
//! node refuses it; a panic means an invariant broke.

use futures::executor::block_on;
use futures::io::Cursor;
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::registry::{ApplyCtx, Registry};
use openraft::EntryPayload;

use crate::rpc::{self, MeshRequest, MeshResponse};
use crate::transport::p2p::codec::read_frame;

/// One RPC as it arrives on a stream. The first byte picks the layer: 0 a length-prefixed frame
/// read by the request-response codec, then decoded as a request; 1 a request; 2 a response
/// (what a node reads from the peer it asked). A request that decodes must re-encode and
/// decode again, and the registry commands its Raft entries carry are applied.
pub fn mesh_rpc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let max = MeshConfig::default().max_rpc_bytes;
    match mode % 3 {
        0 => {
            // the codec refuses an oversized prefix before buffering; the fuzzer's input is small,
            // so bound the frame by it as well as by the configured maximum
            let Ok(frame) = block_on(read_frame(&mut Cursor::new(rest), max)) else { return };
            assert!(frame.len() <= rest.len().saturating_sub(4), "a frame is never longer than its bytes");
            request(&frame, max);
        }
        1 => request(rest, max),
        _ => {
            if let Ok(r) = rpc::decode::<MeshResponse>(rest, max) {
                let again = rpc::encode(&r).expect("a decoded response re-encodes");
                rpc::decode::<MeshResponse>(&again, max).expect("and decodes again");
            }
        }
    }
}

fn request(bytes: &[u8], max: usize) {
    let Ok(req) = rpc::decode::<MeshRequest>(bytes, max) else { return };
    let _ = req.kind();
    let again = rpc::encode(&req).expect("a decoded request re-encodes");
    rpc::decode::<MeshRequest>(&again, max).expect("and decodes again");
    if let MeshRequest::AppendEntries(a) = req {
        // what a follower's state machine does with them (openraft checks the log ids first)
        let mut reg = Registry::new();
        for (i, e) in a.entries.iter().enumerate() {
            let ctx = ApplyCtx { index: i as u64 + 1, term: e.log_id.leader_id.term };
            match &e.payload {
                EntryPayload::Blank => reg.apply_blank(ctx),
                EntryPayload::Normal(p) => {
                    reg.apply(p, ctx);
                }
                EntryPayload::Membership(m) => reg.apply_membership(ctx, m.voter_ids(), m.learner_ids()),
            }
            if let Err(e) = reg.check_invariants() {
                panic!("entry {i}: {e}");
            }
        }
    }
}

/// Valid inputs of [`mesh_rpc`], as `(target, name, bytes)`: the seed corpus the fuzzer starts
/// from (`tests/fuzz_corpus.rs` writes them on request).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use std::collections::{BTreeMap, BTreeSet};

    use mindmesh_core::registry::{Capacity, Command, NodeInfo, Outcome, Proposal, ProposalId};
    use mindmesh_core::spec::PersonaSpec;
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest, VoteResponse,
    };
    use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

    use crate::raft::{Entry, MeshNode};
    use crate::rpc::{JoinRequest, LeaderReply};

    let log_id = |index| LogId::new(CommittedLeaderId::new(3, 11), index);
    let mesh_node = |n: u64| MeshNode {
        name: format!("node-{n}"),
        peer_id: String::new(),
        addrs: vec![format!("/ip4/127.0.0.1/tcp/{n}")],
    };
    let membership = Membership::new(
        vec![BTreeSet::from([11, 12, 13])],
        BTreeMap::from([(11, mesh_node(11)), (12, mesh_node(12)), (13, mesh_node(13)), (14, mesh_node(14))]),
    );
    let proposal = Proposal {
        id: ProposalId { node: 11, nonce: 5 },
        command: Command::put_persona(PersonaSpec::new("chat", "srv"), None),
    };
    let info = NodeInfo {
        id: 14,
        name: "d".into(),
        addrs: vec!["/ip4/127.0.0.1/tcp/14".into()],
        capacity: Capacity { memory_mb: 1024, cpu_percent: 200.0 },
        labels: BTreeMap::new(),
        api: "127.0.0.1:7074".into(),
    };
    let requests = [
        ("vote", MeshRequest::Vote(VoteRequest::new(Vote::new(3, 11), Some(log_id(9))))),
        (
            "heartbeat",
            MeshRequest::AppendEntries(AppendEntriesRequest {
                vote: Vote::new_committed(3, 11),
                prev_log_id: Some(log_id(9)),
                entries: Vec::new(),
                leader_commit: Some(log_id(9)),
            }),
        ),
        (
            "append",
            MeshRequest::AppendEntries(AppendEntriesRequest {
                vote: Vote::new_committed(3, 11),
                prev_log_id: Some(log_id(9)),
                entries: vec![
                    Entry { log_id: log_id(10), payload: EntryPayload::Blank },
                    Entry { log_id: log_id(11), payload: EntryPayload::Membership(membership.clone()) },
                    Entry { log_id: log_id(12), payload: EntryPayload::Normal(proposal.clone()) },
                ],
                leader_commit: Some(log_id(11)),
            }),
        ),
        (
            "install_snapshot",
            MeshRequest::InstallSnapshot(InstallSnapshotRequest {
                vote: Vote::new_committed(3, 11),
                meta: SnapshotMeta {
                    last_log_id: Some(log_id(12)),
                    last_membership: StoredMembership::new(Some(log_id(11)), membership),
                    snapshot_id: "3-11-12".into(),
                },
                offset: 0,
                data: Registry::new().encode().expect("a registry encodes"),
                done: true,
            }),
        ),
        ("propose", MeshRequest::Propose(proposal)),
        ("join", MeshRequest::Join(JoinRequest { node: 14, mesh_node: mesh_node(14), info })),
        ("leave", MeshRequest::Leave { node: 14 }),
        ("renew", MeshRequest::Renew),
    ];
    let mut out = Vec::new();
    for (name, r) in requests {
        let b = rpc::encode(&r).expect("a request encodes");
        out.push(("mesh_rpc", format!("seed-request-{name}"), [&[1u8][..], &b].concat()));
        let mut framed = vec![0u8];
        framed.extend((b.len() as u32).to_be_bytes());
        framed.extend(&b);
        out.push(("mesh_rpc", format!("seed-frame-{name}"), framed));
    }
    let responses = [
        ("vote", MeshResponse::Vote(Ok(VoteResponse::new(Vote::new(3, 11), Some(log_id(9)), true)))),
        ("append", MeshResponse::AppendEntries(Ok(AppendEntriesResponse::Success))),
        (
            "proposed",
            MeshResponse::Leader(Ok(LeaderReply::Proposed(Outcome::Persona { generation: 0, epoch: 12 }, 12))),
        ),
        (
            "not_leader",
            MeshResponse::Leader(Err(crate::rpc::LeaderError::NotLeader {
                leader: Some(11),
                leader_node: Some(mesh_node(11)),
            })),
        ),
        ("renewed", MeshResponse::Leader(Ok(LeaderReply::Renewed { log_index: 12 }))),
        ("refused", MeshResponse::Refused("wire: version 9, expected 1".into())),
    ];
    for (name, r) in responses {
        let b = rpc::encode(&r).expect("a response encodes");
        out.push(("mesh_rpc", format!("seed-response-{name}"), [&[2u8][..], &b].concat()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_is_reached() {
        let req = rpc::encode(&MeshRequest::Leave { node: 7 }).unwrap();
        let mut framed = vec![0u8];
        framed.extend((req.len() as u32).to_be_bytes());
        framed.extend(&req);
        mesh_rpc(&framed);
        mesh_rpc(&[&[1u8][..], &req].concat());
        let resp = rpc::encode(&MeshResponse::Refused("no".into())).unwrap();
        mesh_rpc(&[&[2u8][..], &resp].concat());
        mesh_rpc(&[]);
    }
}
