//! The fault schedule: a pure function of the seed, so a run can be printed before it starts
//! and replayed. Faults name roles ("the leader", "some follower"), resolved against the
//! cluster when they fire.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::SimConfig;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Crash the current leader; restart it after `down_ms`.
    CrashLeader { down_ms: u64 },
    /// Crash one live node (`pick` chooses among them); restart it after `down_ms`.
    CrashOne { pick: u64, down_ms: u64 },
    /// Cut the current leader off from everyone for `for_ms`.
    IsolateLeader { for_ms: u64 },
    /// Cut `size` nodes (a minority; `pick` chooses) off from the rest for `for_ms`.
    PartitionMinority { size: usize, pick: u64, for_ms: u64 },
    /// Lose messages with probability `loss` and delay them up to `max_delay_ms`, for `for_ms`.
    Lossy { loss: f64, max_delay_ms: u64, for_ms: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// From the start of the fault phase.
    pub at_ms: u64,
    pub fault: Fault,
}

/// The faults of one run.
pub fn schedule(seed: u64, cfg: &SimConfig) -> Vec<Scheduled> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let minority = ((cfg.nodes as usize).saturating_sub(1) / 2).max(1);
    let mut out = Vec::new();
    let mut at_ms = rng.random_range(0..=cfg.fault_every_ms);
    while at_ms < cfg.fault_ms {
        let lasting = rng.random_range(500..=4000);
        let fault = match rng.random_range(0..5u8) {
            0 => Fault::CrashLeader { down_ms: lasting },
            1 => Fault::CrashOne { pick: rng.random(), down_ms: lasting },
            2 => Fault::IsolateLeader { for_ms: lasting },
            3 => Fault::PartitionMinority { size: rng.random_range(1..=minority), pick: rng.random(), for_ms: lasting },
            _ => Fault::Lossy {
                loss: rng.random_range(0.0..=cfg.max_loss),
                max_delay_ms: rng.random_range(0..=cfg.max_delay_ms),
                for_ms: lasting,
            },
        };
        out.push(Scheduled { at_ms, fault });
        at_ms += rng.random_range(cfg.fault_every_ms / 2..=cfg.fault_every_ms * 3 / 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule() {
        let cfg = SimConfig::default();
        assert_eq!(schedule(3, &cfg), schedule(3, &cfg));
        assert_ne!(schedule(3, &cfg), schedule(4, &cfg));
        assert!(schedule(3, &cfg).iter().all(|s| s.at_ms < cfg.fault_ms));
        assert!(!schedule(3, &cfg).is_empty());
    }
}
