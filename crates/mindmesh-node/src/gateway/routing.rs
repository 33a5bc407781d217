//! Where a request for a model goes. The one place that decides: a persona of this node, a
//! persona the registry places on another node (forwarded there), or nobody.

use std::collections::BTreeMap;

use mindmesh_core::registry::{NodeId, Registry};
use mindmesh_supervisor::PersonaStatus;

#[derive(Debug, Clone, PartialEq)]
pub enum Route<'a> {
    /// A persona this node supervises, in whatever phase it is.
    Local(&'a PersonaStatus),
    /// A persona on another node: its API and gateway address.
    Remote { api: String },
    /// No persona by that name.
    Unknown,
}

/// The model of an OpenAI request names a persona. This node's own personas win, so a persona
/// that is moving is served where it still runs until it is gone from here.
pub fn route<'a>(
    local: &'a BTreeMap<String, PersonaStatus>,
    registry: Option<(&Registry, NodeId)>,
    model: &str,
) -> Route<'a> {
    if let Some(s) = local.get(model) {
        return Route::Local(s);
    }
    let Some((reg, me)) = registry else { return Route::Unknown };
    match reg.personas.get(model).and_then(|e| e.node) {
        Some(node) if node != me => {
            Route::Remote { api: reg.nodes.get(&node).map(|n| n.info.api.clone()).unwrap_or_default() }
        }
        _ => Route::Unknown,
    }
}
