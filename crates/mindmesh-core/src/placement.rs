//! Where a persona goes: among the live nodes that are not draining and carry the labels it
//! requires, those with room for its requests; of them, the one meeting most of its preferred
//! labels, then the least loaded. Pure: the leader or an API handler gathers each node's load
//! and calls [`place`]; failover and drains call it for every persona they move.

use crate::registry::{Capacity, NodeId, Registry};
use crate::spec::PersonaSpec;

/// One candidate node and what is already placed on it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    pub id: NodeId,
    pub name: String,
    pub capacity: Capacity,
    /// Memory requested by the personas placed on it.
    pub requested_memory_mb: u64,
    pub requested_cpu_percent: f64,
    pub personas: usize,
    /// Heard from recently (gossip); a node that is not live gets nothing new.
    pub live: bool,
    /// Being drained: gets nothing new.
    pub draining: bool,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl NodeLoad {
    /// Count a persona placed on it (a planner placing many in one pass).
    pub fn add(&mut self, spec: &PersonaSpec) {
        self.requested_memory_mb = self.requested_memory_mb.saturating_add(spec.requests.memory_mb);
        self.requested_cpu_percent += spec.requests.cpu_percent;
        self.personas += 1;
    }
}

/// The load of every node in the registry; `live` says which are heard from. One pass over
/// the personas: the leader of a 100,000-persona mesh calls it every failover tick.
pub fn loads(registry: &Registry, live: impl Fn(NodeId) -> bool) -> Vec<NodeLoad> {
    let mut by_id: std::collections::HashMap<NodeId, (u64, f64, usize)> = std::collections::HashMap::new();
    for p in registry.personas.values() {
        if let Some(n) = p.node {
            let e = by_id.entry(n).or_default();
            e.0 = e.0.saturating_add(p.spec.requests.memory_mb);
            e.1 += p.spec.requests.cpu_percent;
            e.2 += 1;
        }
    }
    registry
        .nodes
        .values()
        .map(|n| {
            let (mem, cpu, count) = by_id.get(&n.info.id).copied().unwrap_or_default();
            NodeLoad {
                id: n.info.id,
                name: n.info.name.clone(),
                capacity: n.info.capacity.clone(),
                requested_memory_mb: mem,
                requested_cpu_percent: cpu,
                personas: count,
                live: live(n.info.id),
                draining: n.draining,
                labels: n.info.labels.clone(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlacementError {
    NoLiveNode,
    /// No live node carries the labels it requires.
    NoLabels(String),
    /// No live node has room for what the persona requests.
    NoRoom {
        memory_mb: u64,
        cpu_percent: f64,
    },
}

impl std::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementError::NoLiveNode => f.write_str("no live node to place it on"),
            PlacementError::NoLabels(want) => write!(f, "no live node has the required labels {want}"),
            PlacementError::NoRoom { memory_mb, cpu_percent } => {
                write!(f, "no live node has room for {memory_mb} MB and {cpu_percent:.0} % CPU (its requests)")
            }
        }
    }
}

/// The eligible node meeting most preferences that would be least loaded, by the larger of its
/// memory and CPU shares once the persona is added; ties go to fewer personas, then to the name.
pub fn place(spec: &PersonaSpec, nodes: &[NodeLoad]) -> Result<NodeId, PlacementError> {
    place_index(spec, nodes).map(|i| nodes[i].id)
}

/// [`place`], answering the position in `nodes` (for planners that update loads as they go).
pub fn place_index(spec: &PersonaSpec, nodes: &[NodeLoad]) -> Result<usize, PlacementError> {
    let live: Vec<(usize, &NodeLoad)> = nodes.iter().enumerate().filter(|(_, n)| n.live && !n.draining).collect();
    if live.is_empty() {
        return Err(PlacementError::NoLiveNode);
    }
    let live: Vec<(usize, &NodeLoad)> = live.into_iter().filter(|(_, n)| spec.placement.admits(&n.labels)).collect();
    if live.is_empty() {
        let want: Vec<String> = spec.placement.require.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(PlacementError::NoLabels(want.join(",")));
    }
    let (mem, cpu) = (spec.requests.memory_mb, spec.requests.cpu_percent);
    let share = |used: f64, cap: f64| if cap > 0.0 { used / cap } else { 0.0 };
    live.into_iter()
        .filter(|(_, n)| {
            fits(n.requested_memory_mb.saturating_add(mem), n.capacity.memory_mb as f64)
                && fits_f(n.requested_cpu_percent + cpu, n.capacity.cpu_percent)
        })
        .map(|(i, n)| {
            let load = share(n.requested_memory_mb.saturating_add(mem) as f64, n.capacity.memory_mb as f64)
                .max(share(n.requested_cpu_percent + cpu, n.capacity.cpu_percent));
            (i, n, spec.placement.preference_score(&n.labels), load)
        })
        .min_by(|(_, a, pa, la), (_, b, pb, lb)| {
            pb.cmp(pa).then(la.total_cmp(lb)).then(a.personas.cmp(&b.personas)).then(a.name.cmp(&b.name))
        })
        .map(|(i, ..)| i)
        .ok_or(PlacementError::NoRoom { memory_mb: mem, cpu_percent: cpu })
}

/// A capacity of 0 means unknown: anything fits.
fn fits(want: u64, cap: f64) -> bool {
    cap <= 0.0 || want as f64 <= cap
}

fn fits_f(want: f64, cap: f64) -> bool {
    cap <= 0.0 || want <= cap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, mem_used: u64, personas: usize, live: bool) -> NodeLoad {
        NodeLoad {
            id,
            name: format!("n{id}"),
            capacity: Capacity { memory_mb: 1000, cpu_percent: 200.0 },
            requested_memory_mb: mem_used,
            requested_cpu_percent: 0.0,
            personas,
            live,
            draining: false,
            labels: Default::default(),
        }
    }

    #[test]
    fn least_loaded_live_node_wins() {
        let mut spec = PersonaSpec::new("p", "x");
        spec.requests.memory_mb = 100;
        let nodes = [node(1, 500, 1, true), node(2, 100, 5, true), node(3, 0, 0, false)];
        assert_eq!(place(&spec, &nodes), Ok(2));
        // equal loads: fewer personas
        let nodes = [node(1, 0, 3, true), node(2, 0, 1, true)];
        assert_eq!(place(&spec, &nodes), Ok(2));
    }

    #[test]
    fn labels_are_required_or_preferred_and_draining_nodes_get_nothing() {
        let mut spec = PersonaSpec::new("p", "x");
        spec.placement.require.insert("gpu".into(), "true".into());
        let mut gpu = node(1, 900, 9, true);
        gpu.labels.insert("gpu".into(), "true".into());
        let nodes = [gpu.clone(), node(2, 0, 0, true)];
        assert_eq!(place(&spec, &nodes), Ok(1), "required beats load");
        assert!(matches!(place(&spec, &[node(2, 0, 0, true)]), Err(PlacementError::NoLabels(_))));
        let mut spec = PersonaSpec::new("p", "x");
        spec.placement.prefer.insert("gpu".into(), "true".into());
        assert_eq!(place(&spec, &nodes), Ok(1), "preferred beats load");
        gpu.draining = true;
        assert_eq!(place(&spec, &[gpu, node(2, 0, 0, true)]), Ok(2));
    }

    #[test]
    fn nothing_fits_is_a_clear_error() {
        let mut spec = PersonaSpec::new("p", "x");
        spec.requests.memory_mb = 2000;
        assert!(matches!(place(&spec, &[node(1, 0, 0, true)]), Err(PlacementError::NoRoom { .. })));
        assert_eq!(place(&spec, &[node(1, 0, 0, false)]), Err(PlacementError::NoLiveNode));
    }
}
