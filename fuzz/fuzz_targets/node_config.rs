//! `cargo afl fuzz -i corpus/node_config -o out/node_config target/release/node_config` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_core::fuzzing::node_config(data));
}
