//! The built-in analysis of a large mesh, one core: 10,000 personas with 24 h of 1-minute
//! history (14.4 M samples per measure), on 250 nodes.
//!
//!     cargo bench -p mindmesh-brain --bench cycle            # 10,000 personas
//!     cargo bench -p mindmesh-brain --bench cycle -- 2000    # another size
//!
//! Measures the first cycle (every history digested from nothing), steady cycles where one
//! new sample per persona arrived since the last (what a leader sees every minute), cycles
//! where nothing new arrived (its 10-s cycles in between), and the LLM prompt size for a
//! 100-persona mesh. Runs on a current-thread runtime: the analysis uses one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mindmesh_brain::anomaly::PersonaHealth;
use mindmesh_brain::features::{FeatureCache, extract};
use mindmesh_brain::llm::prompt;
use mindmesh_brain::{Brain, synth};
use mindmesh_core::config::BrainConfig;

const MIN: u64 = 60_000;
const HISTORY: usize = 24 * 60;
/// Steady cycles measured; `MINDMESH_BENCH_STEADY` raises it (e.g. to profile them).
const STEADY_CYCLES: usize = 30;

/// CPU time of this thread: unlike wall time, not inflated by other processes on the host.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (w, c) = (Instant::now(), thread_cpu());
    let out = f();
    (out, w.elapsed(), thread_cpu().saturating_sub(c))
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} cycles)",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

fn main() {
    let personas: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let steady_cycles: usize =
        std::env::var("MINDMESH_BENCH_STEADY").ok().and_then(|v| v.parse().ok()).unwrap_or(STEADY_CYCLES).max(2);
    let nodes = (personas / 40).max(2);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    let t = Instant::now();
    let view = synth::mesh(personas, nodes, HISTORY + steady_cycles, MIN, 42);
    let t0 = view.personas[0].series.t_ms[0];
    println!(
        "mesh: {personas} personas on {nodes} nodes, {} samples each ({} h of 1-minute history + {} new), built in {:.1} s",
        HISTORY + steady_cycles,
        HISTORY / 60,
        steady_cycles,
        t.elapsed().as_secs_f64()
    );
    let day_end = t0 + (HISTORY as u64 - 1) * MIN;

    // the first cycle: every digest built from nothing
    let mut brain = Brain::builtin(BrainConfig::default());
    let (r, wall, cpu) = timed(|| rt.block_on(brain.analyse(&view, day_end)));
    let disruptive = r.decisions.iter().filter(|d| d.action.is_disruptive()).count();
    println!(
        "first cycle (cold): wall {:.1} ms, cpu {:.1} ms, {} samples folded, {} decisions ({} disruptive after guardrails)",
        wall.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        brain.folded_samples(),
        r.decisions.len(),
        disruptive
    );

    // steady: one new sample per persona per cycle
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for k in 1..steady_cycles as u64 {
        let (_, w, c) = timed(|| black_box(rt.block_on(brain.analyse(&view, day_end + k * MIN))));
        wall.push(w);
        cpu.push(c);
    }
    println!("steady, one new sample per persona: cpu {}", stats(cpu));
    println!("                                    wall {}", stats(wall));

    // nothing new since the last cycle
    let last = day_end + (steady_cycles as u64 - 1) * MIN;
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for k in 1..=10 {
        let (_, w, c) = timed(|| black_box(rt.block_on(brain.analyse(&view, last + k * 1000))));
        wall.push(w);
        cpu.push(c);
    }
    println!("steady, no new sample: cpu {}", stats(cpu));
    println!("                       wall {}", stats(wall));

    // features alone, warm, for the split of the cost
    let mut cache = FeatureCache::default();
    let _ = extract(&view, day_end, 60_000, &mut cache);
    let mut feat = Vec::new();
    for k in 1..=10u64 {
        let (_, _, c) = timed(|| black_box(extract(&view, day_end + k * MIN, 60_000, &mut cache)));
        feat.push(c);
    }
    println!("features only, one new sample: cpu {}", stats(feat));

    // the LLM prompt for a 100-persona mesh
    let small = synth::mesh(100, 4, 240, MIN, 7);
    let now = small.last_sample_ms().unwrap_or(0);
    let set = extract(&small, now, 60_000, &mut FeatureCache::default());
    let health: Vec<PersonaHealth> = set
        .personas
        .iter()
        .map(|f| PersonaHealth { persona: f.id.clone(), score: 100, confidence: 1.0, anomalies: Vec::new() })
        .collect();
    let p = prompt::build(&set, &small, &health, 150, 16_384);
    println!(
        "LLM prompt for 100 personas: {} chars (system {} + user {}), about {} tokens; answer budget {} tokens",
        p.system.len() + p.user.len(),
        p.system.len(),
        p.user.len(),
        p.estimated_tokens(),
        p.max_completion_tokens
    );
}
