//! Fencing (a): a persona never runs on two nodes at the same virtual instant — beyond a
//! tolerance, the lease (the bound the design states; fencing done right shows no overlap at
//! all, and the run reports the longest it saw).
//!
//! Overlaps are measured by the process table to the microsecond from every start and stop,
//! including the processes of crashed nodes, which run on until their fence guard kills them.

use super::{Invariant, Observation};

#[derive(Debug)]
pub struct NoDoubleRun {
    tolerance_us: u64,
}

impl NoDoubleRun {
    pub fn new(tolerance_ms: u64) -> Self {
        NoDoubleRun { tolerance_us: tolerance_ms * 1000 }
    }
}

impl Invariant for NoDoubleRun {
    fn name(&self) -> &'static str {
        "no_double_run"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        match obs.procs.worst_overlap(obs.now_us) {
            Some(o) if o.length_us(obs.now_us) > self.tolerance_us => Err(format!(
                "persona {} ran on nodes {:?} at once for {:.1} ms from {:.1} ms{} (tolerance {} ms)",
                o.persona,
                o.nodes,
                o.length_us(obs.now_us) as f64 / 1000.0,
                o.from_us as f64 / 1000.0,
                if o.to_us.is_none() { ", still" } else { "" },
                self.tolerance_us / 1000
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use mindmesh_core::lifecycle::ExitStatus;

    use super::*;
    use crate::processes::{ProcEvent, ProcKind, ProcessTable};

    fn ev(at_ms: u64, node: u64, kind: ProcKind) -> ProcEvent {
        ProcEvent { at_us: at_ms * 1000, node, pid: 7, persona: "p".into(), kind }
    }
    const KILLED: ProcKind = ProcKind::Exit(ExitStatus::Signal(9));

    #[test]
    fn running_twice_past_the_tolerance_is_caught_while_it_lasts() {
        let mut procs = ProcessTable::default();
        procs.replay(&[ev(0, 1, ProcKind::Start), ev(1000, 2, ProcKind::Start)]);
        let mut inv = NoDoubleRun::new(1200);
        assert!(inv.check(&Observation::of(2000, &[], &[], &[], &procs)).is_ok(), "1 s: within the lease");
        let err = inv.check(&Observation::of(2300, &[], &[], &[], &procs)).unwrap_err();
        assert!(err.contains("nodes [1, 2]") && err.contains("still"), "{err}");
        procs.replay(&[ev(2250, 1, KILLED)]);
        assert!(inv.check(&Observation::of(2300, &[], &[], &[], &procs)).is_err(), "an ended overlap still counts");
    }

    #[test]
    fn a_hand_over_is_not_an_overlap() {
        let mut procs = ProcessTable::default();
        procs.replay(&[ev(0, 1, ProcKind::Start), ev(500, 1, KILLED), ev(500, 2, ProcKind::Start)]);
        assert!(NoDoubleRun::new(0).check(&Observation::of(9000, &[], &[], &[], &procs)).is_ok());
    }
}
