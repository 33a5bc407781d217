//! The knobs of one simulated run. Defaults: five nodes with four personas each, twenty seconds
//! of faults, then healing until the failover bound has passed, on virtual time.

use mindmesh_core::config::mesh::MeshConfig;

/// What a run does; the seed decides everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub nodes: u64,
    /// Personas placed on each node before the faults start (besides those the writes create).
    pub personas_per_node: u64,
    /// Virtual time allowed for the first election and every node's join.
    pub settle_ms: u64,
    /// Virtual time of the fault phase (crashes, partitions, loss and delay).
    pub fault_ms: u64,
    /// Virtual time after every fault is healed, before liveness is judged; at least
    /// [`SimConfig::failover_bound_ms`] plus a second is always given.
    pub heal_ms: u64,
    /// Invariants are checked after every step of this much virtual time.
    pub step_ms: u64,
    /// A write is started this often, at a random live node.
    pub write_every_ms: u64,
    /// Mean gap between two faults.
    pub fault_every_ms: u64,
    /// Largest message loss probability injected.
    pub max_loss: f64,
    /// Largest one-way delay injected.
    pub max_delay_ms: u64,
    /// A crashed persona is restarted by its node after a backoff drawn in this range.
    pub restart_backoff_ms: (u64, u64),
    /// Slack of the failover bound for what is not a lease or a failover delay: elections
    /// after healing, rejoining, the failover loop's tick, applying and propagating the moves.
    pub liveness_slack_ms: u64,
    /// Test-only breakage: a crashed node comes back with its Raft store wiped (its vote and
    /// log forgotten). Raft's guarantees rest on that store, so the checker must catch this.
    pub amnesia: bool,
    /// Test-only breakage: nodes ignore their lease (a node cut off from the quorum runs on
    /// while the mesh fails its personas over), and a crashed node's processes run on until
    /// the node is back, as if it had no fence guard. The checker must catch personas running
    /// twice.
    pub broken_fencing: bool,
    /// Test-only breakage: each node's reconciler plans a persona once and ignores later
    /// changes of its desired state. The checker must catch an operator's verb not carried out.
    pub broken_desired: bool,
    /// Test-only breakage: each node's reconciler skips the restarts it plans and reports
    /// them carried out. The checker must catch a decision logged as executed whose effect
    /// never came.
    pub broken_audit: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 5,
            personas_per_node: 4,
            settle_ms: 10_000,
            fault_ms: 20_000,
            heal_ms: 6_000,
            step_ms: 20,
            write_every_ms: 250,
            fault_every_ms: 2_500,
            max_loss: 0.2,
            max_delay_ms: 30,
            restart_backoff_ms: (100, 800),
            liveness_slack_ms: 3_000,
            amnesia: false,
            broken_fencing: false,
            broken_desired: false,
            broken_audit: false,
        }
    }
}

impl SimConfig {
    /// The mesh timings every simulated node runs with (the production defaults, but for
    /// snapshots taken and logs purged often, so nodes back from a crash or a partition are
    /// caught up by snapshot installation as well as by the log).
    pub fn mesh(&self) -> MeshConfig {
        MeshConfig {
            join_backoff_initial_ms: 100,
            join_backoff_max_ms: 1000,
            snapshot_after_logs: 20,
            snapshot_logs_kept: 5,
            ..MeshConfig::default()
        }
    }

    /// Invariant (a)'s tolerance: how long a persona may run on two nodes at once. Fencing
    /// promises no overlap at all; the lease is the bound the design states (a node stops its
    /// personas when its lease runs out, and no failover comes before that).
    pub fn overlap_tolerance_ms(&self) -> u64 {
        self.mesh().lease_ms
    }

    /// How long after an operator's verb (acknowledged, with no fault in the way) the
    /// persona's processes must match what the registry wants of it: the reconciler acts on
    /// the change when its node applies it (a heartbeat), a stop drains and waits out the
    /// persona's exit, a migration or a drain moves personas a few at a time with their state.
    pub fn action_bound_ms(&self) -> u64 {
        6_000
    }

    /// Invariant (b)'s bound: after every fault is healed (all links up, every crashed node
    /// restarted), every persona desired running runs on exactly one node within this long.
    ///
    /// The worst case is a node that cannot renew its lease right after the heal (it is still
    /// rejoining, or a new election is under way): the leader declares it lost only after
    /// `failover_after_ms` of silence counted from the leader's own election, and a node whose
    /// lease lapsed (`lease_ms` after its last renewal) starts nothing until it renews. On top,
    /// [`SimConfig::liveness_slack_ms`] (3 s by default) covers an election or two after the
    /// heal (openraft waits out a leader lease of `election_timeout_max_ms` before campaigning,
    /// then up to that long again: ≤ 1 s each), a rejoin (`join_backoff_max_ms`, 1 s), the
    /// failover loop's tick (200 ms) and the moves reaching the nodes (a heartbeat, 100 ms).
    /// Defaults: 2400 + 1800 + 3000 = 7200 ms.
    pub fn failover_bound_ms(&self) -> u64 {
        let m = self.mesh();
        m.failover_after_ms + m.lease_ms + self.liveness_slack_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_mesh_config_is_valid_and_the_bounds_follow_it() {
        let cfg = SimConfig::default();
        cfg.mesh().validate().unwrap();
        assert_eq!(cfg.overlap_tolerance_ms(), 1800);
        assert_eq!(cfg.failover_bound_ms(), 7200);
        // writes still in flight at the heal settle within a proposal's deadline, inside the bound
        assert!(cfg.mesh().propose_timeout_ms < cfg.failover_bound_ms());
    }
}
