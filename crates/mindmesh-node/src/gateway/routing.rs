//! Where a request for a model goes. The one place that decides: today a persona of this node
//! or nobody; with the mesh, also "remote, on node X".

use std::collections::BTreeMap;

use mindmesh_supervisor::PersonaStatus;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route<'a> {
    /// A persona this node supervises, in whatever phase it is.
    Local(&'a PersonaStatus),
    /// No persona by that name.
    Unknown,
}

/// The model of an OpenAI request names a persona.
pub fn route<'a>(local: &'a BTreeMap<String, PersonaStatus>, model: &str) -> Route<'a> {
    match local.get(model) {
        Some(s) => Route::Local(s),
        None => Route::Unknown,
    }
}
