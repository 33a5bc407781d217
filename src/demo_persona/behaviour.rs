//! Background misbehaviour, started once at start-up: a memory leak, a CPU hog, a crash timer
//! and an abandoned grandchild. None runs unless its flag asks for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::demo_persona::state::AppState;

/// Exit status of `--crash-after-s` (sysexits' EX_SOFTWARE: "internal software error").
pub const CRASH_EXIT_CODE: i32 = 70;
/// How often the leak grows: often enough for a smooth RSS curve, rarely enough to cost nothing.
const LEAK_TICK: Duration = Duration::from_millis(100);
/// The CPU hog's duty-cycle period.
const HOG_PERIOD: Duration = Duration::from_millis(20);
const MIB: f64 = 1024.0 * 1024.0;

pub fn start(state: &Arc<AppState>, shutdown: &CancellationToken) {
    let f = &state.flags;
    if f.leak_mb_per_min > 0.0 {
        tokio::spawn(leak(f.leak_mb_per_min, f.leak_max_mb, shutdown.clone()));
    }
    if f.cpu_hog_percent > 0.0 {
        start_cpu_hog(f.cpu_hog_percent);
    }
    if let Some(s) = f.crash_after_s {
        tokio::spawn(crash_after(Duration::from_secs_f64(s), f.crash_abort));
    }
    if f.spawn_child {
        spawn_child(state);
    }
}

/// Allocate and touch memory at a steady rate, never freeing it. Tracks the target from the
/// start time rather than adding per tick, so a late tick does not lose memory.
async fn leak(mb_per_min: f64, max_mb: u64, shutdown: CancellationToken) {
    let started = Instant::now();
    let max_bytes = max_mb.saturating_mul(1024 * 1024);
    let mut held: Vec<Box<[u8]>> = Vec::new();
    let mut held_bytes: u64 = 0;
    let mut tick = tokio::time::interval(LEAK_TICK);
    tracing::info!(mb_per_min, max_mb, "leaking memory");
    while held_bytes < max_bytes {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let target = (mb_per_min * MIB * started.elapsed().as_secs_f64() / 60.0) as u64;
        let grow = target.min(max_bytes).saturating_sub(held_bytes);
        if grow == 0 {
            continue;
        }
        // a non-zero fill writes every page, so the memory is resident, not just reserved
        held.push(vec![0xa5u8; grow as usize].into_boxed_slice());
        held_bytes += grow;
    }
    tracing::info!(held_mb = held_bytes / (1024 * 1024), "leak reached its cap");
    shutdown.cancelled().await;
    drop(held);
}

/// Burn `percent` of a core: one thread per started 100 %, each busy for its share of every
/// period and asleep for the rest. Threads, not tasks, so the hog never delays a request on a
/// current-thread runtime.
fn start_cpu_hog(percent: f64) {
    let mut left = percent;
    let mut n = 0;
    while left > 0.0 {
        let share = left.min(100.0) / 100.0;
        left -= 100.0;
        let spawned = std::thread::Builder::new().name(format!("cpu-hog-{n}")).spawn(move || burn(share));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a CPU hog thread");
        }
        n += 1;
    }
    tracing::info!(percent, threads = n, "hogging CPU");
}

fn burn(share: f64) -> ! {
    let busy = HOG_PERIOD.mul_f64(share);
    let mut x: u64 = 1;
    loop {
        let t = Instant::now();
        while t.elapsed() < busy {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
            }
        }
        let rest = HOG_PERIOD.saturating_sub(t.elapsed());
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
    }
}

async fn crash_after(after: Duration, abort: bool) {
    tokio::time::sleep(after).await;
    if abort {
        tracing::error!(after_s = after.as_secs_f64(), "crashing as asked (abort)");
        std::process::abort();
    }
    tracing::error!(after_s = after.as_secs_f64(), code = CRASH_EXIT_CODE, "crashing as asked (exit)");
    std::process::exit(CRASH_EXIT_CODE);
}

/// Start `sleep 3600` in our own process group and deliberately never stop it: only a
/// supervisor that signals the whole group leaves no orphan. It is reaped if it dies first.
fn spawn_child(state: &Arc<AppState>) {
    let child = tokio::process::Command::new("sleep")
        .arg("3600")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot spawn the child process");
            return;
        }
    };
    let pid = child.id();
    state.set_child_pid(pid);
    tracing::info!(child_pid = pid, "spawned a child in our process group");
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let status = child.wait().await;
        state.set_child_pid(None);
        tracing::info!(?status, "child exited");
    });
}
