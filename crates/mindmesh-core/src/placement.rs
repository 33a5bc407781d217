//! Where a new persona goes: the node with the most room for it, among the live ones. Pure:
//! the leader or an API handler gathers each node's load and calls [`place`].

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
}

/// The load of every node in the registry; `live` says which are heard from.
pub fn loads(registry: &Registry, live: impl Fn(NodeId) -> bool) -> Vec<NodeLoad> {
    registry
        .nodes
        .values()
        .map(|n| {
            let on: Vec<_> = registry.personas.values().filter(|p| p.node == Some(n.info.id)).collect();
            NodeLoad {
                id: n.info.id,
                name: n.info.name.clone(),
                capacity: n.info.capacity.clone(),
                requested_memory_mb: on.iter().map(|p| p.spec.requests.memory_mb).sum(),
                requested_cpu_percent: on.iter().map(|p| p.spec.requests.cpu_percent).sum(),
                personas: on.len(),
                live: live(n.info.id),
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlacementError {
    NoLiveNode,
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
            PlacementError::NoRoom { memory_mb, cpu_percent } => {
                write!(f, "no live node has room for {memory_mb} MB and {cpu_percent:.0} % CPU (its requests)")
            }
        }
    }
}

/// The live node that would be least loaded, by the larger of its memory and CPU shares
/// once the persona is added; ties go to fewer personas, then to the name.
pub fn place(spec: &PersonaSpec, nodes: &[NodeLoad]) -> Result<NodeId, PlacementError> {
    let live: Vec<&NodeLoad> = nodes.iter().filter(|n| n.live).collect();
    if live.is_empty() {
        return Err(PlacementError::NoLiveNode);
    }
    let (mem, cpu) = (spec.requests.memory_mb, spec.requests.cpu_percent);
    let share = |used: f64, cap: f64| if cap > 0.0 { used / cap } else { 0.0 };
    live.into_iter()
        .filter(|n| {
            fits(n.requested_memory_mb + mem, n.capacity.memory_mb as f64)
                && fits_f(n.requested_cpu_percent + cpu, n.capacity.cpu_percent)
        })
        .map(|n| {
            let load = share((n.requested_memory_mb + mem) as f64, n.capacity.memory_mb as f64)
                .max(share(n.requested_cpu_percent + cpu, n.capacity.cpu_percent));
            (n, load)
        })
        .min_by(|(a, la), (b, lb)| la.total_cmp(lb).then(a.personas.cmp(&b.personas)).then(a.name.cmp(&b.name)))
        .map(|(n, _)| n.id)
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
    fn nothing_fits_is_a_clear_error() {
        let mut spec = PersonaSpec::new("p", "x");
        spec.requests.memory_mb = 2000;
        assert!(matches!(place(&spec, &[node(1, 0, 0, true)]), Err(PlacementError::NoRoom { .. })));
        assert_eq!(place(&spec, &[node(1, 0, 0, false)]), Err(PlacementError::NoLiveNode));
    }
}
