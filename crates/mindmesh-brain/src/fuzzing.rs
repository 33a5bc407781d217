//! Entry point for coverage-guided fuzzing (`fuzz/`) and the corpus replay in `cargo test`
//! (`tests/fuzz_corpus.rs`): a scenario file as `mindmesh brain eval` reads it.

use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mindmesh_core::config::BrainConfig;

use crate::eval::{self, EvalAnalyst};
use crate::scenario;

/// Parse a scenario; one that loads is then evaluated as `brain eval` does (the built-in
/// analyst primed on its history, judged against its expectations). Neither may panic.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(s) = scenario::parse(Path::new("fuzz.json"), text) else { return };
    let config = BrainConfig::default();
    let run = pin!(eval::run_scenario(&s, EvalAnalyst::Builtin, &config, &|| unreachable!("no LLM here")));
    // the built-in analyst never waits on anything: one poll finishes it
    let Poll::Ready(report) = run.poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("the built-in analyst waited");
    };
    let judged = eval::judge(&s, &report.decisions);
    let _ = eval::summarize(&judged);
}
