//! `cargo afl fuzz -i corpus/gossip_snapshot -o out/gossip_snapshot target/release/gossip_snapshot` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_core::fuzzing::gossip_snapshot(data));
}
