//! The fault schedule, operators' verbs interleaved: a pure function of the seed, so a run can be printed before it starts
//! and replayed. Faults name roles ("the leader", "some follower", "some running persona"),
//! resolved against the cluster when they fire.

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
    /// Cut the current leader and `size - 1` other nodes (a minority) off from the majority
    /// for `for_ms`: the majority must elect a leader of its own and fail the minority over.
    LeaderInMinority { size: usize, pick: u64, for_ms: u64 },
    /// Cut `size` nodes (a minority, the leader among them if `with_leader`) off and heal the
    /// cut again, `cycles` times: `cut_ms` cut, `healed_ms` healed.
    Flapping { size: usize, pick: u64, with_leader: bool, cycles: u32, cut_ms: u64, healed_ms: u64 },
    /// Lose messages with probability `loss` and delay them up to `max_delay_ms`, for `for_ms`.
    Lossy { loss: f64, max_delay_ms: u64, for_ms: u64 },
    /// `count` running personas crash (`pick` chooses); their nodes restart them after a
    /// backoff, if they still hold their lease.
    PersonaCrashes { count: u32, pick: u64 },
    /// Not a fault: an operator's verb, through the API of the node that runs the persona.
    Operator { verb: Verb, pick: u64 },
}

/// What an operator does (the CLI's verbs, as API calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Hibernate,
    /// `persona start` (a wake of a hibernating persona).
    Start,
    Stop,
    Restart,
    /// `persona budget --allowed-to-run <bool>`.
    AllowedToRun(bool),
    /// `persona migrate --to <picked node>`.
    Migrate {
        to_pick: u64,
    },
    /// `node drain` of the picked persona's node; `undo` ends a drain.
    Drain {
        undo: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// From the start of the fault phase.
    pub at_ms: u64,
    pub fault: Fault,
}

/// Most cut/heal cycles of one flapping partition.
pub const MAX_FLAPS: u32 = 6;

/// The faults of one run.
pub fn schedule(seed: u64, cfg: &SimConfig) -> Vec<Scheduled> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let minority = ((cfg.nodes as usize).saturating_sub(1) / 2).max(1);
    let mut out = Vec::new();
    let mut at_ms = rng.random_range(0..=cfg.fault_every_ms);
    while at_ms < cfg.fault_ms {
        // long enough, often, for the leader to declare a node lost (failover_after_ms, 2 s)
        let lasting = rng.random_range(500..=4500);
        let fault = match rng.random_range(0..14u8) {
            0 => Fault::CrashLeader { down_ms: lasting },
            1 => Fault::CrashOne { pick: rng.random(), down_ms: lasting },
            2 => Fault::IsolateLeader { for_ms: lasting },
            3 => Fault::PartitionMinority { size: rng.random_range(1..=minority), pick: rng.random(), for_ms: lasting },
            4 => Fault::LeaderInMinority { size: rng.random_range(1..=minority), pick: rng.random(), for_ms: lasting },
            5 => Fault::Flapping {
                size: rng.random_range(1..=minority),
                pick: rng.random(),
                with_leader: rng.random_bool(0.5),
                cycles: rng.random_range(2..=MAX_FLAPS),
                // around the lease (1.2 s) and the failover delay (2 s): renewals and
                // failovers race the cuts
                cut_ms: rng.random_range(100..=2500),
                healed_ms: rng.random_range(50..=600),
            },
            6 => Fault::PersonaCrashes { count: rng.random_range(1..=3), pick: rng.random() },
            7 => Fault::PersonaCrashes { count: rng.random_range(1..=2), pick: rng.random() },
            9..=13 => {
                let verb = match rng.random_range(0..10u8) {
                    0 | 1 => Verb::Hibernate,
                    2 | 3 => Verb::Start,
                    4 => Verb::Stop,
                    5 => Verb::Restart,
                    6 => Verb::AllowedToRun(rng.random_bool(0.5)),
                    7 | 8 => Verb::Migrate { to_pick: rng.random() },
                    _ => Verb::Drain { undo: rng.random_bool(0.5) },
                };
                Fault::Operator { verb, pick: rng.random() }
            }
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

    #[test]
    fn every_kind_of_fault_is_scheduled_across_seeds() {
        let cfg = SimConfig::default();
        let faults: Vec<Fault> = (0..20).flat_map(|s| schedule(s, &cfg)).map(|s| s.fault).collect();
        let kinds = [
            |f: &Fault| matches!(f, Fault::CrashLeader { .. }),
            |f: &Fault| matches!(f, Fault::CrashOne { .. }),
            |f: &Fault| matches!(f, Fault::IsolateLeader { .. }),
            |f: &Fault| matches!(f, Fault::PartitionMinority { .. }),
            |f: &Fault| matches!(f, Fault::LeaderInMinority { .. }),
            |f: &Fault| matches!(f, Fault::Flapping { .. }),
            |f: &Fault| matches!(f, Fault::Lossy { .. }),
            |f: &Fault| matches!(f, Fault::PersonaCrashes { .. }),
            |f: &Fault| matches!(f, Fault::Operator { verb: Verb::Hibernate, .. }),
            |f: &Fault| matches!(f, Fault::Operator { verb: Verb::Start, .. }),
            |f: &Fault| matches!(f, Fault::Operator { verb: Verb::AllowedToRun(false), .. }),
            |f: &Fault| matches!(f, Fault::Operator { verb: Verb::Migrate { .. }, .. }),
            |f: &Fault| matches!(f, Fault::Operator { verb: Verb::Drain { undo: false }, .. }),
        ];
        for (i, is) in kinds.iter().enumerate() {
            assert!(faults.iter().any(is), "fault kind {i} never scheduled");
        }
        let minority = (cfg.nodes as usize - 1) / 2;
        for f in &faults {
            if let Fault::PartitionMinority { size, .. }
            | Fault::LeaderInMinority { size, .. }
            | Fault::Flapping { size, .. } = f
            {
                assert!((1..=minority).contains(size), "{f:?} is not a minority");
            }
        }
    }
}
