//! The fixed-threshold rules the design argues against, kept as the baseline every report
//! shows: restart above 500 MB, kill above 2000 ms latency, kill above 5 % errors — on the
//! latest sample, with no history, peers or host.

use mindmesh_core::{Action, AnalystKind, Decision};

use crate::view::MeshView;

pub const RESTART_ABOVE_MB: f32 = 500.0;
pub const KILL_ABOVE_LATENCY_MS: f32 = 2000.0;
pub const KILL_ABOVE_ERROR_RATE: f32 = 0.05;

pub fn decide(view: &MeshView, now_ms: u64) -> Vec<Decision> {
    view.personas
        .iter()
        .map(|p| {
            let s = &p.series;
            let end = s.end_index(now_ms);
            let d = |action, reason: String| Decision::new(&p.id, action, reason, 1.0, AnalystKind::Naive);
            if end == 0 || s.check_lengths().is_err() {
                return d(Action::Continue, "no data".into());
            }
            let i = end - 1;
            let get = |c: &[f32]| c.get(i).copied().unwrap_or(f32::NAN);
            let (req, err) = (get(&s.requests), get(&s.errors));
            if req > 0.0 && err / req > KILL_ABOVE_ERROR_RATE {
                return d(Action::Kill, format!("error rate {:.1}% > 5%", 100.0 * err / req));
            }
            let p50 = get(&s.latency_p50_ms);
            if p50 > KILL_ABOVE_LATENCY_MS {
                return d(Action::Kill, format!("latency {p50:.0} ms > 2000 ms"));
            }
            let mem = get(&s.memory_mb);
            if mem > RESTART_ABOVE_MB {
                return d(Action::Restart, format!("memory {mem:.0} MB > 500 MB"));
            }
            d(Action::Continue, "under every threshold".into())
        })
        .collect()
}
