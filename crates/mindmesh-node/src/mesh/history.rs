//! The mesh's recent history as the brain reads it, built from gossip on every node (so a
//! node that becomes leader already has it): each node's snapshots, second by second, rolled
//! into points of `resolution_ms` per persona and per host, kept for `window_ms`.

use std::collections::{BTreeMap, HashMap};

use mindmesh_brain::view::{ViewEvent, ViewEventKind};
use mindmesh_brain::{MeshView, NodeView, PersonaView};
use mindmesh_core::mesh_view::NodeView as GossipRow;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::registry::Registry;
use mindmesh_core::snapshot::PersonaFigures;

pub struct History {
    resolution_ms: u64,
    window_ms: u64,
    view: MeshView,
    /// Samples of the point being filled, per persona and per node.
    pending: HashMap<String, Vec<PersonaSample>>,
    pending_hosts: HashMap<String, Vec<HostSample>>,
    /// The last snapshot taken in from each node: (incarnation, seq).
    last_seen: HashMap<u64, (u64, u64)>,
    /// Each persona's last error text, to add it to its events once.
    errors: HashMap<String, String>,
    /// The point being filled starts here.
    slot_ms: u64,
    trimmed_at_ms: u64,
}

impl History {
    pub fn new(resolution_ms: u64, window_ms: u64) -> Self {
        History {
            resolution_ms: resolution_ms.max(1000),
            window_ms,
            view: MeshView::default(),
            pending: HashMap::new(),
            pending_hosts: HashMap::new(),
            last_seen: HashMap::new(),
            errors: HashMap::new(),
            slot_ms: 0,
            trimmed_at_ms: 0,
        }
    }

    pub fn view(&self) -> &MeshView {
        &self.view
    }

    pub fn view_mut(&mut self) -> &mut MeshView {
        &mut self.view
    }

    /// Take in every node's latest snapshot; personas come with their spec from the registry.
    pub fn observe(&mut self, rows: &[GossipRow], registry: &Registry, now_ms: u64) {
        let slot = now_ms - now_ms % self.resolution_ms;
        if slot != self.slot_ms {
            self.close_points();
            self.slot_ms = slot;
        }
        for row in rows {
            let s = &row.snapshot;
            if row.stale || self.last_seen.get(&row.node_id) == Some(&(s.incarnation, s.seq)) {
                continue;
            }
            self.last_seen.insert(row.node_id, (s.incarnation, s.seq));
            let mut host = s.host.clone();
            host.ts_ms = now_ms;
            self.pending_hosts.entry(s.node_name.clone()).or_default().push(host);
            for p in &s.personas {
                if registry.personas.contains_key(&p.name) {
                    self.take_figures(&s.node_name, p, now_ms, registry);
                }
            }
        }
        // personas the registry no longer has leave the view
        self.view.personas.retain(|p| registry.personas.contains_key(&p.id));
        let names: std::collections::HashSet<String> = registry.nodes.values().map(|n| n.info.name.clone()).collect();
        self.view.nodes.retain(|n| names.contains(&n.id));
        if now_ms.saturating_sub(self.trimmed_at_ms) > self.window_ms / 10 {
            self.view.trim_before(now_ms.saturating_sub(self.window_ms));
            self.trimmed_at_ms = now_ms;
        }
    }

    fn take_figures(&mut self, node: &str, p: &PersonaFigures, now_ms: u64, registry: &Registry) {
        let entry = &registry.personas[&p.name];
        let i = match self.view.personas.iter().position(|v| v.id == p.name) {
            Some(i) => i,
            None => {
                let v = PersonaView::from_samples(&entry.spec, node, p.phase, &[], &[], None, self.resolution_ms);
                self.view.personas.push(v);
                self.view.personas.len() - 1
            }
        };
        let view = &mut self.view.personas[i];
        view.node = node.to_owned();
        view.phase = p.phase;
        view.budget = Some(entry.budget.clone());
        view.importance = entry.spec.importance;
        view.model = entry.spec.model.clone();
        // the spec may have been replaced since the view was made: its envelope with it (the
        // starting point is set each cycle by `set_recent_actions`)
        view.envelope.min = entry.spec.envelope.min.to_patch();
        view.envelope.max = entry.spec.envelope.max.to_patch();
        view.maintenance.policy = entry.spec.maintenance;
        if let Some(e) = &p.last_error
            && self.errors.get(&p.name) != Some(e)
        {
            self.errors.insert(p.name.clone(), e.clone());
            view.events.push(ViewEvent::new(now_ms, ViewEventKind::Error, e));
        }
        let sample = PersonaSample {
            ts_ms: now_ms,
            rss_bytes: p.rss_bytes,
            peak_rss_bytes: p.rss_bytes,
            cpu_percent: p.cpu_percent,
            restarts: p.restarts,
            healthy: Some(p.health == mindmesh_core::Health::Healthy),
            requests: p.requests,
            errors: p.errors,
            errors_by_kind: p.error_kinds.clone(),
            latency_p95_ms: p.latency_p95_ms,
            queue_depth: p.queue_depth,
            ..PersonaSample::default()
        };
        self.pending.entry(p.name.clone()).or_default().push(sample);
    }

    /// Roll the point being filled into one sample per persona and per node.
    fn close_points(&mut self) {
        let at = self.slot_ms + self.resolution_ms - 1;
        let pending = std::mem::take(&mut self.pending);
        for (name, samples) in pending {
            if let (Some(mut s), Some(view)) =
                (PersonaSample::rollup(&samples), self.view.personas.iter_mut().find(|v| v.id == name))
            {
                s.ts_ms = at;
                view.push_sample(&s);
            }
        }
        let hosts = std::mem::take(&mut self.pending_hosts);
        for (node, samples) in hosts {
            let Some(mut s) = HostSample::rollup(&samples) else { continue };
            s.ts_ms = at;
            match self.view.nodes.iter_mut().find(|n| n.id == node) {
                Some(n) => n.push_sample(&s),
                None => self.view.nodes.push(NodeView::from_samples(&node, &[s], self.resolution_ms)),
            }
        }
    }

    /// The brain's cooldown reads the disruptive decisions already committed for a persona.
    pub fn set_recent_actions(&mut self, registry: &Registry) {
        let mut by_persona: BTreeMap<&str, Vec<(u64, mindmesh_core::Action)>> = BTreeMap::new();
        for d in &registry.decisions {
            if d.decision.action.is_disruptive() || d.decision.action == mindmesh_core::Action::Throttle {
                by_persona.entry(d.decision.persona.as_str()).or_default().push((d.decided_at_ms, d.decision.action));
            }
        }
        for p in &mut self.view.personas {
            p.recent_actions = by_persona.remove(p.id.as_str()).unwrap_or_default();
        }
        // what the brain gives back to: the spec, but an operator's change is the operator's
        // word (the after values of the brain's budget decisions say which values are its own)
        let mut brain_after: BTreeMap<&str, Vec<&mindmesh_core::BudgetPatch>> = BTreeMap::new();
        for d in &registry.decisions {
            if d.decision.action == mindmesh_core::Action::Budget
                && matches!(d.by, mindmesh_core::registry::Actor::Analyst { .. })
                && let Some(change) = &d.budget
            {
                brain_after.entry(d.decision.persona.as_str()).or_default().push(&change.after);
            }
        }
        for p in &mut self.view.personas {
            if let Some(entry) = registry.personas.get(&p.id) {
                let brain = mindmesh_brain::budget::brain_values(brain_after.remove(p.id.as_str()).unwrap_or_default());
                p.envelope.spec = Some(mindmesh_brain::budget::start_point(&entry.budget, &entry.spec.budget, &brain));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::Phase;
    use mindmesh_core::snapshot::NodeSnapshot;

    fn registry() -> Registry {
        crate::mesh::test_registry::one_node(&["p"])
    }

    fn row(seq: u64, rss_mb: u64) -> GossipRow {
        GossipRow {
            node_id: 1,
            age_ms: 0,
            stale: false,
            snapshot: NodeSnapshot {
                node_id: 1,
                node_name: "a".into(),
                incarnation: 1,
                seq,
                ts_ms: 0,
                host: HostSample { cpu_percent: 10.0, memory_total_bytes: 1 << 30, cpu_cores: 2, ..Default::default() },
                personas: vec![PersonaFigures {
                    name: "p".into(),
                    phase: Phase::Running,
                    pid: Some(7),
                    rss_bytes: rss_mb << 20,
                    requests: 2,
                    ..Default::default()
                }],
            },
        }
    }

    #[test]
    fn seconds_roll_into_points_and_repeats_are_ignored() {
        let reg = registry();
        let mut h = History::new(10_000, 3_600_000);
        for i in 0..25u64 {
            h.observe(&[row(i, 100 + i)], &reg, 1_000_000 + i * 1000);
            h.observe(&[row(i, 100 + i)], &reg, 1_000_000 + i * 1000 + 500); // same seq: ignored
        }
        let p = &h.view().personas[0];
        assert_eq!(p.series.t_ms.len(), 2, "two closed 10-s points");
        assert_eq!(p.series.requests[0], 20.0, "counters summed over the point");
        assert_eq!(h.view().nodes.len(), 1);
        assert_eq!(h.view().nodes[0].series.t_ms.len(), 2);
    }
}
