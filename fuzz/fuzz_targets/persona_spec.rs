//! `cargo afl fuzz -i corpus/persona_spec -o out/persona_spec target/release/persona_spec` (see docs/security.md)
fn main() {
    afl::fuzz!(|data: &[u8]| mindmesh_core::fuzzing::persona_spec(data));
}
