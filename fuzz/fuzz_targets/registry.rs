//! `cargo afl fuzz -i corpus/registry -o out/registry target/release/registry` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_core::fuzzing::registry(data));
}
