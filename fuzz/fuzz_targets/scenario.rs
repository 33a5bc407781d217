//! `cargo afl fuzz -i corpus/scenario -o out/scenario target/release/scenario` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_brain::fuzzing::scenario(data));
}
