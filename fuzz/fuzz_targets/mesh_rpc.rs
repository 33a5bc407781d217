//! `cargo afl fuzz -i corpus/mesh_rpc -o out/mesh_rpc target/release/mesh_rpc` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_net::fuzzing::mesh_rpc(data));
}
