//! The `[mesh]` section: how a node finds its peers, proves it belongs (the mesh key), and the
//! Raft and gossip timings. Defaults: heartbeat 100 ms, election timeout 250–500 ms (see the
//! default for why not DESIGN.md's 400–800 ms), gossip every second.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::at_least;
use crate::error::{CoreError, Result};

/// Most join addresses accepted: each one is dialled in turn by the retry loop.
pub const MAX_JOIN_ADDRS: usize = 64;
/// Most voters: every commit waits for a majority of them.
pub const MAX_VOTERS: u64 = 15;
/// Largest gossip message allowed by config (a node snapshot is bounded far below it).
pub const MAX_GOSSIP_BYTES: u64 = 64 << 20;
/// Largest RPC frame allowed by config: one frame is held in memory while it is read.
pub const MAX_RPC_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/7946`.
    pub listen: Vec<String>,
    /// Multiaddrs other nodes should dial to reach this one (behind NAT, in containers);
    /// empty: the listen addresses as bound.
    pub advertise: Vec<String>,
    /// Multiaddrs of any existing members (Nomad's `retry_join`): dialled with backoff until
    /// this node is a member.
    pub join: Vec<String>,
    /// The mesh key file written by `mindmesh mesh init` (libp2p private-network format);
    /// relative paths are taken from the data dir. None: `<data_dir>/mesh.key`.
    pub key_file: Option<PathBuf>,
    /// Start a new mesh with this node as its only voter (only the first node of a mesh).
    pub bootstrap: bool,
    /// Discover peers on the local network by mDNS.
    pub mdns: bool,
    /// Voters the leader keeps (others stay learners so the mesh grows without slowing consensus).
    pub voters: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How often this node publishes its snapshot.
    pub gossip_interval_ms: u64,
    /// A node not heard from for this long is shown stale in the mesh view.
    pub stale_after_ms: u64,
    /// Deadline of one request to a peer (Raft RPC, forwarded write).
    pub rpc_timeout_ms: u64,
    /// Deadline of a write, including forwarding to the leader and waiting out an election.
    pub propose_timeout_ms: u64,
    /// Deadline of connection set-up (TCP + private network + noise + yamux). A peer with the
    /// wrong mesh key may only be refused when it passes, so keep it short.
    pub connect_timeout_ms: u64,
    pub join_backoff_initial_ms: u64,
    pub join_backoff_max_ms: u64,
    /// Largest gossip message sent or accepted.
    pub max_gossip_bytes: usize,
    /// Largest request or response frame sent or accepted.
    pub max_rpc_bytes: usize,
    /// A snapshot of the registry is taken after this many log entries.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log instead of a whole snapshot.
    pub snapshot_logs_kept: u64,
    /// Peers refused after sending this many invalid messages (and banned for `ban_ms`).
    pub max_invalid_messages: u32,
    pub ban_ms: u64,
    /// Fencing: how long a node may run its personas after the last time a leader backed by a
    /// quorum heard from it. Past it, the node stops them (it may have been replaced).
    pub lease_ms: u64,
    /// How often a node renews its lease with the leader.
    pub lease_renew_ms: u64,
    /// How long the leader waits, after last hearing from a node, before declaring it lost and
    /// moving its personas. Must exceed the lease by a margin (see [`MeshConfig::validate`]).
    pub failover_after_ms: u64,
    /// Off: no lease, no failover (a mesh of supervisors that never move personas).
    pub fencing: bool,
    /// How often each running persona's state is checkpointed off-node (through its state
    /// hook; also at once when it hibernates).
    pub checkpoint_interval_ms: u64,
    /// Largest state checkpointed; a larger one is left on its node (and an event says so).
    pub max_checkpoint_bytes: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            listen: vec!["/ip4/0.0.0.0/tcp/7946".into()],
            advertise: Vec::new(),
            join: Vec::new(),
            key_file: None,
            bootstrap: false,
            mdns: false,
            voters: 5,
            heartbeat_ms: 100,
            // DESIGN.md's 400–800 ms gave a new leader 1.2–1.6 s after the last heartbeat:
            // openraft 0.9 also waits out a leader lease (= the maximum timeout) before a
            // follower campaigns. 250–500 ms measured 0.91 s median (crates/mindmesh-net,
            // examples/mesh_bench.rs), inside the ≤ 1 s target, with 2.5 heartbeats of slack.
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            gossip_interval_ms: 1000,
            stale_after_ms: 5000,
            rpc_timeout_ms: 2000,
            propose_timeout_ms: 5000,
            connect_timeout_ms: 3000,
            join_backoff_initial_ms: 500,
            join_backoff_max_ms: 30_000,
            max_gossip_bytes: 256 * 1024,
            max_rpc_bytes: 8 * 1024 * 1024,
            snapshot_after_logs: 5000,
            snapshot_logs_kept: 1000,
            max_invalid_messages: 5,
            ban_ms: 60_000,
            // 1.8 s outlasts a leader election (0.91 s median on loopback, up to 1.6 s seen
            // between containers), so a leader's crash fences nobody; failover 2.4 s ≥ lease +
            // quorum age (0.3 s) + margin (docs/failover.md).
            lease_ms: 1800,
            lease_renew_ms: 200,
            failover_after_ms: 2400,
            fencing: true,
            checkpoint_interval_ms: 10_000,
            max_checkpoint_bytes: 64 * 1024,
        }
    }
}

impl MeshConfig {
    /// Loopback, port picked by the OS, short timeouts: for tests on one host.
    pub fn for_test() -> Self {
        MeshConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            connect_timeout_ms: 1000,
            join_backoff_initial_ms: 100,
            join_backoff_max_ms: 1000,
            gossip_interval_ms: 200,
            ..MeshConfig::default()
        }
    }

    /// The oldest quorum acknowledgement a leader may renew a lease on.
    pub fn max_quorum_age_ms(&self) -> u64 {
        self.heartbeat_ms.saturating_mul(3)
    }

    /// The shortest safe failover delay for this lease: see [`MeshConfig::validate`].
    pub fn min_failover_after_ms(&self) -> u64 {
        self.lease_ms.saturating_add(self.max_quorum_age_ms()).saturating_add(self.lease_ms / 10 + 100)
    }

    pub fn validate(&self) -> Result<()> {
        if self.join.len() > MAX_JOIN_ADDRS {
            return Err(CoreError::invalid("join", format!("at most {MAX_JOIN_ADDRS} addresses")));
        }
        for (field, addrs) in [("listen", &self.listen), ("advertise", &self.advertise), ("join", &self.join)] {
            for (i, a) in addrs.iter().enumerate() {
                if !a.starts_with('/') || a.len() > 512 {
                    return Err(CoreError::invalid(format!("{field}[{i}]"), format!("{a:?} is not a multiaddr")));
                }
            }
        }
        use crate::bounds::{MAX_COUNT, MAX_TIMER_MS, at_most, within};
        within("voters", self.voters as u64, 1, MAX_VOTERS)?;
        // upper bounds first: the relations below multiply and add these
        for (field, v) in [
            ("heartbeat_ms", self.heartbeat_ms),
            ("election_timeout_min_ms", self.election_timeout_min_ms),
            ("election_timeout_max_ms", self.election_timeout_max_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("stale_after_ms", self.stale_after_ms),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("propose_timeout_ms", self.propose_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("join_backoff_initial_ms", self.join_backoff_initial_ms),
            ("join_backoff_max_ms", self.join_backoff_max_ms),
            ("ban_ms", self.ban_ms),
            ("lease_ms", self.lease_ms),
            ("lease_renew_ms", self.lease_renew_ms),
            ("failover_after_ms", self.failover_after_ms),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
        ] {
            at_most(field, v, MAX_TIMER_MS)?;
        }
        at_most("max_gossip_bytes", self.max_gossip_bytes as u64, MAX_GOSSIP_BYTES)?;
        at_most("max_rpc_bytes", self.max_rpc_bytes as u64, MAX_RPC_BYTES)?;
        at_most("snapshot_after_logs", self.snapshot_after_logs, MAX_COUNT)?;
        at_most("snapshot_logs_kept", self.snapshot_logs_kept, MAX_COUNT)?;
        at_most("max_invalid_messages", u64::from(self.max_invalid_messages), MAX_COUNT)?;
        at_least("heartbeat_ms", self.heartbeat_ms, 10)?;
        // Raft needs several heartbeats per election timeout, or followers start elections
        // against a healthy leader.
        at_least("election_timeout_min_ms", self.election_timeout_min_ms, self.heartbeat_ms * 2)?;
        at_least("election_timeout_max_ms", self.election_timeout_max_ms, self.election_timeout_min_ms + 1)?;
        at_least("gossip_interval_ms", self.gossip_interval_ms, 10)?;
        at_least("stale_after_ms", self.stale_after_ms, self.gossip_interval_ms)?;
        at_least("rpc_timeout_ms", self.rpc_timeout_ms, 10)?;
        at_least("propose_timeout_ms", self.propose_timeout_ms, self.rpc_timeout_ms)?;
        at_least("connect_timeout_ms", self.connect_timeout_ms, 100)?;
        at_least("join_backoff_initial_ms", self.join_backoff_initial_ms, 10)?;
        at_least("join_backoff_max_ms", self.join_backoff_max_ms, self.join_backoff_initial_ms)?;
        at_least("max_gossip_bytes", self.max_gossip_bytes as u64, 1024)?;
        at_least("max_rpc_bytes", self.max_rpc_bytes as u64, 64 * 1024)?;
        at_least("snapshot_after_logs", self.snapshot_after_logs, 10)?;
        at_least("max_invalid_messages", u64::from(self.max_invalid_messages), 1)?;
        at_least("lease_renew_ms", self.lease_renew_ms, 10)?;
        // several renewals per lease, or one lost message fences a healthy node
        at_least("lease_ms", self.lease_ms, self.lease_renew_ms * 3)?;
        // the leader may move a node's personas only once that node must have stopped them:
        // its lease, plus how stale the quorum behind its last renewal may have been, plus a
        // margin for clock drift and the node's own reaction time
        at_least("failover_after_ms", self.failover_after_ms, self.min_failover_after_ms())?;
        at_least("checkpoint_interval_ms", self.checkpoint_interval_ms, 100)?;
        let max = crate::registry::MAX_CHECKPOINT_BYTES as u64;
        if self.max_checkpoint_bytes as u64 > max {
            return Err(CoreError::invalid("max_checkpoint_bytes", format!("at most {max}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_test_config_are_valid() {
        MeshConfig::default().validate().unwrap();
        MeshConfig::for_test().validate().unwrap();
    }

    #[test]
    fn timings_that_break_raft_are_refused() {
        let c = MeshConfig { election_timeout_min_ms: 150, ..MeshConfig::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("election_timeout_min_ms"));
        let c = MeshConfig { join: vec!["127.0.0.1:7946".into()], ..MeshConfig::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("join[0]"));
        let c = MeshConfig { voters: 0, ..MeshConfig::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("voters"));
        // failing over before the lost node's lease must have run out would run personas twice
        let c = MeshConfig { failover_after_ms: 2000, ..MeshConfig::default() };
        assert_eq!(c.validate().unwrap_err().field(), Some("failover_after_ms"));
    }
}
