//! The knobs of one simulated run. Defaults: five nodes, twenty seconds of faults, then ten
//! of healing, on virtual time.

/// What a run does; the seed decides everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub nodes: u64,
    /// Virtual time allowed for the first election and every node's join.
    pub settle_ms: u64,
    /// Virtual time of the fault phase (crashes, partitions, loss and delay).
    pub fault_ms: u64,
    /// Virtual time after every fault is healed, before liveness is judged.
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
    /// Test-only breakage: a crashed node comes back with its Raft store wiped (its vote and
    /// log forgotten). Raft's guarantees rest on that store, so the checker must catch this.
    pub amnesia: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 5,
            settle_ms: 10_000,
            fault_ms: 20_000,
            heal_ms: 6_000,
            step_ms: 20,
            write_every_ms: 250,
            fault_every_ms: 2_500,
            max_loss: 0.2,
            max_delay_ms: 30,
            amnesia: false,
        }
    }
}
