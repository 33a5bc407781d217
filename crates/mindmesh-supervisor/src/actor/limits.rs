//! CPU limits: a cgroup quota where there is one, a SIGSTOP/SIGCONT duty cycle where not.

use mindmesh_core::PersonaSpec;
use tokio_util::sync::CancellationToken;

use super::{Supervisor, join_in_background};
use crate::throttle;

impl Supervisor {
    /// The CPU ceiling in percent of one core: the hard limit, scaled down by a throttle
    /// multiplier below 1 (a multiplier above 1 is a gateway priority boost, not more CPU).
    pub(super) fn cpu_cap_percent(spec: &PersonaSpec) -> Option<f64> {
        let m = spec.budget.throttle_multiplier;
        let hard = spec.limits.cpu_max_percent;
        if m < 1.0 { Some(m * hard.unwrap_or(100.0)) } else { hard }
    }

    pub(super) fn apply_cpu_control(&mut self, name: &str) {
        if let Some(pid) = self.slots.get(name).and_then(|s| s.life.pid()) {
            self.apply_cpu_control_to(name, pid);
        }
    }

    pub(super) fn apply_cpu_control_to(&mut self, name: &str, pgid: u32) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        let cap = Self::cpu_cap_percent(&slot.record.spec);
        if let Some(c) = slot.duty_cycle.take() {
            c.cancel();
        }
        if let Some(cgroups) = &self.cgroups {
            // a process joins its cpu cgroup only once it has a cap to enforce
            if cap.is_some() && !slot.cg_cpu {
                if slot.cgroup.is_none() {
                    match cgroups.create(name) {
                        Ok(cg) => slot.cgroup = Some(cg),
                        Err(e) => tracing::warn!(persona = name, error = %e, "cannot create a cgroup"),
                    }
                }
                if let Some(cg) = &slot.cgroup {
                    join_in_background(name, pgid, cg.procs_files(false, true));
                    slot.cg_cpu = true;
                }
            }
            if slot.cg_cpu
                && let Some(cg) = &slot.cgroup
                && let Err(e) = cg.set_cpu_max(cap)
            {
                tracing::warn!(persona = name, error = %e, "cannot set cpu limit");
            }
            if slot.cg_cpu {
                return;
            }
        }
        if let Some(cap) = cap.filter(|c| *c < 100.0) {
            let token = CancellationToken::new();
            let task = throttle::spawn_duty_cycle(self.host.clone(), pgid, cap / 100.0, token.clone());
            slot.duty_cycle = Some(throttle::DutyCycle { token, task });
        }
    }
}
