//! State machine safety: the registry's digest chains every applied entry, so two replicas
//! that applied the same number of entries must show the same digest.

use std::collections::BTreeMap;

use super::{Invariant, Observation};

/// Digests remembered; the oldest indexes go first past this.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
pub struct ReplicasAgree {
    seen: BTreeMap<u64, (u64, u64)>,
}

impl Invariant for ReplicasAgree {
    fn name(&self) -> &'static str {
        "replicas_agree"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        for (node, r) in obs.registries {
            if r.applied_index == 0 {
                continue;
            }
            match self.seen.get(&r.applied_index) {
                Some((digest, other)) if *digest != r.digest => {
                    return Err(format!(
                        "at index {} node {node} holds digest {:x}, node {other} held {digest:x}",
                        r.applied_index, r.digest
                    ));
                }
                Some(_) => {}
                None => {
                    if self.seen.len() >= MAX_REMEMBERED {
                        self.seen.pop_first();
                    }
                    self.seen.insert(r.applied_index, (r.digest, *node));
                }
            }
        }
        Ok(())
    }
}
