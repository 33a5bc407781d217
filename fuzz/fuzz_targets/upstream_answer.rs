//! `cargo afl fuzz -i corpus/upstream_answer -o out/upstream_answer target/release/upstream_answer` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_node::fuzzing::upstream_answer(data));
}
