//! Entry points for coverage-guided fuzzing (`fuzz/`) and the corpus replay in `cargo test`
//! (`tests/fuzz_corpus.rs`): what a persona's bytes reach in the node.

/// A persona's answer to the gateway, as its connection delivers it (see the gateway's
/// upstream client): refused or decoded to its end, never a panic, a spin or more body than
/// was sent.
pub fn upstream_answer(data: &[u8]) {
    crate::gateway::fuzz_answer(data);
}

/// Answers of each kind the upstream client reads, as `(target, name, bytes)`: the seed corpus
/// the fuzzer starts from (`tests/fuzz_corpus.rs` writes them on request). The first byte is the
/// size of the pieces they arrive in.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let answers: [(&str, &[u8]); 5] = [
        ("length", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"choices\":[],\"x\":1}"),
        ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n6\r\ndata: \r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"),
        ("until-close", b"HTTP/1.0 500 Internal\r\nConnection: close\r\n\r\n{\"error\":{\"message\":\"boom\"}}"),
        ("continue", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
        ("keep-alive", b"HTTP/1.1 429 Too Many Requests\r\nConnection: keep-alive\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n{}"),
    ];
    let mut out = Vec::new();
    for (name, answer) in answers {
        for piece in [1u8, 16, 255] {
            out.push(("upstream_answer", format!("seed-{name}-{piece}"), [&[piece][..], answer].concat()));
        }
    }
    out
}
