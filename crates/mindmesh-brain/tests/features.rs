//! Features on synthetic histories: memory trend classes, peer-relative latency, error kinds
//! and bursts, idleness and hangs, and that incremental cycles see what a cold one sees; and on
//! live-short ones: minutes of data, judged from the data at hand and against the peers.

use mindmesh_brain::features::{BaseFrom, Baseline, FeatureCache, FeatureSet, MemTrend, PeerGroup, extract};
use mindmesh_brain::synth::{self, Memory, Rng};
use mindmesh_brain::view::{MeshView, PersonaView, ViewEvent, ViewEventKind};
use mindmesh_core::PersonaKind;

const MIN: u64 = 60_000;
const T0: u64 = 1_700_000_000_000;

fn persona(id: &str, memory: Memory, n: usize, interval_ms: u64, seed: u64) -> PersonaView {
    synth::persona(id, "a", PersonaKind::Api, 400.0, memory, n, interval_ms, T0, &mut Rng::new(seed))
}

fn mesh(personas: Vec<PersonaView>) -> MeshView {
    let n = personas[0].series.len();
    let interval = personas[0].series.t_ms[1] - personas[0].series.t_ms[0];
    MeshView { nodes: vec![synth::node("a", n, interval, T0, &mut Rng::new(99))], personas }
}

fn features(view: &MeshView) -> FeatureSet {
    let now = view.last_sample_ms().unwrap();
    extract(view, now, 60_000, &mut FeatureCache::default())
}

fn trend_of(memory: Memory, n: usize, interval_ms: u64) -> MemTrend {
    let v = mesh(vec![persona("p", memory, n, interval_ms, 7), persona("q", Memory::Flat, n, interval_ms, 8)]);
    features(&v).personas[0].memory.trend
}

#[test]
fn leak_sawtooth_stable_and_short_bump_are_told_apart() {
    // six hours of minutes
    assert_eq!(trend_of(Memory::Leak { mb_per_min: 0.4 }, 360, MIN), MemTrend::Leaking);
    assert_eq!(trend_of(Memory::Flat, 360, MIN), MemTrend::Stable);
    assert_eq!(trend_of(Memory::Sawtooth { swing: 0.4, period_min: 9.0 }, 360, MIN), MemTrend::Oscillating);
    // a rise over the last 10 minutes of 6 hours is not a leak
    let bump = trend_of(Memory::LateBump { minutes: 10.0, rise: 0.3 }, 360, MIN);
    assert_ne!(bump, MemTrend::Leaking);
    // the same at 10-second samples over 2 hours
    assert_eq!(trend_of(Memory::Leak { mb_per_min: 1.0 }, 720, 10_000), MemTrend::Leaking);
    assert_eq!(trend_of(Memory::Sawtooth { swing: 0.5, period_min: 5.0 }, 720, 10_000), MemTrend::Oscillating);
}

#[test]
fn a_leak_on_a_rising_gc_floor_is_a_leak_and_a_step_is_not() {
    let mut v = mesh(vec![persona("p", Memory::Sawtooth { swing: 0.3, period_min: 11.0 }, 480, MIN, 3)]);
    for (i, m) in v.personas[0].series.memory_mb.iter_mut().enumerate() {
        *m += 0.5 * i as f32; // +0.5 MB/min under the sawtooth
    }
    let f = features(&v);
    assert_eq!(f.personas[0].memory.trend, MemTrend::Leaking, "{:?}", f.personas[0].memory);

    let mut v = mesh(vec![persona("p", Memory::Flat, 360, MIN, 4)]);
    for m in v.personas[0].series.memory_mb.iter_mut().skip(120) {
        *m *= 1.35; // a cache filled once
    }
    let f = features(&v);
    assert_ne!(f.personas[0].memory.trend, MemTrend::Leaking, "{:?}", f.personas[0].memory);
    assert_ne!(f.personas[0].memory.trend, MemTrend::Growing, "{:?}", f.personas[0].memory);
}

#[test]
fn a_short_bump_is_a_spike_above_its_usual_peak() {
    let v = mesh(vec![persona("p", Memory::LateBump { minutes: 10.0, rise: 0.3 }, 360, MIN, 5)]);
    let m = &features(&v).personas[0].memory;
    assert!(m.spike_frac > 0.15, "{m:?}");
    let v = mesh(vec![persona("p", Memory::Sawtooth { swing: 0.4, period_min: 9.0 }, 360, MIN, 5)]);
    assert!(features(&v).personas[0].memory.spike_frac < 0.05, "a sawtooth at its peak is not a spike");
}

fn slow_down(p: &mut PersonaView, last: usize, factor: f32) {
    let n = p.series.len();
    for c in [&mut p.series.latency_p50_ms, &mut p.series.latency_p95_ms, &mut p.series.latency_p99_ms] {
        for v in &mut c[n - last..] {
            *v *= factor;
        }
    }
}

#[test]
fn latency_is_judged_against_its_own_baseline_and_its_replicas() {
    let replicas = |slow: &[usize]| {
        let mut ps: Vec<PersonaView> = (0..4)
            .map(|i| {
                let mut p = persona(&format!("r{i}"), Memory::Flat, 240, MIN, 10 + i as u64);
                p.model = Some("llama".into());
                p
            })
            .collect();
        for &i in slow {
            slow_down(&mut ps[i], 60, 2.2);
        }
        features(&mesh(ps))
    };
    // one replica slow for an hour: far above its own baseline, its replicas are not
    let f = replicas(&[1]);
    let l = &f.personas[1].latency;
    assert!(l.ratio > 1.8 && l.prev_ratio > 1.5, "{l:?}");
    assert!(l.degraded_for_ms >= 45 * MIN, "{l:?}");
    assert_eq!(l.peer_group, PeerGroup::SameModel);
    assert!(l.peer_ratio < 1.2, "{l:?}");
    assert!(f.personas[1].latency_degraded());
    assert!(!f.personas[0].latency_degraded());
    // all replicas slow: each is degraded, and so are its peers — a shared cause
    let f = replicas(&[0, 1, 2, 3]);
    assert!(f.personas.iter().all(|p| p.latency.peer_ratio > 1.8));
    assert!(f.mesh.degraded_share > 0.9);
}

#[test]
fn a_long_degradation_does_not_become_its_own_baseline() {
    // slow for 2.5 of 4 hours: a median over history would call slow "normal"
    let mut p = persona("p", Memory::Flat, 240, MIN, 21);
    slow_down(&mut p, 150, 2.0);
    let f = features(&mesh(vec![p, persona("q", Memory::Flat, 240, MIN, 22)]));
    let l = &f.personas[0].latency;
    assert!(l.ratio > 1.7, "{l:?}");
    assert!(l.degraded_for_ms > 120 * MIN, "{l:?}");
}

fn with_errors(p: &mut PersonaView, last: usize, rate: f32, detail: &str) {
    let n = p.series.len();
    for i in n - last..n {
        let r = p.series.requests[i];
        p.series.errors[i] = (r * rate).round();
        let t = p.series.t_ms[i];
        p.events.push(ViewEvent::new(t, ViewEventKind::Error, detail));
    }
}

#[test]
fn error_bursts_and_their_kinds() {
    let mut flaky = persona("flaky", Memory::Flat, 240, MIN, 31);
    with_errors(&mut flaky, 90, 0.08, "503 Service Unavailable: model overloaded");
    let mut revoked = persona("revoked", Memory::Flat, 240, MIN, 32);
    with_errors(&mut revoked, 20, 1.0, "401 Unauthorized: invalid api key");
    let mut client = persona("client", Memory::Flat, 240, MIN, 33);
    with_errors(&mut client, 90, 0.08, "400 context_length_exceeded");
    let mut clump = persona("clump", Memory::Flat, 240, MIN, 34);
    let n = clump.series.len();
    for i in n - 14..n - 11 {
        clump.series.errors[i] = (clump.series.requests[i] * 0.4).round();
    }
    let quiet = persona("quiet", Memory::Flat, 240, MIN, 35);
    let f = features(&mesh(vec![flaky, revoked, client, clump, quiet]));
    let by = |id: &str| f.personas.iter().find(|p| p.id == id).unwrap();
    use mindmesh_brain::classify::ErrorClass::*;
    let e = &by("flaky").errors;
    assert!(e.burst, "{e:?}");
    assert!(e.mix.share(Recoverable) > 0.9);
    let e = &by("revoked").errors;
    assert!(e.rate_last10 > 0.9 && e.mix.share(Permanent) > 0.9, "{e:?}");
    let e = &by("client").errors;
    assert!(e.mix.share(ClientEdge) > 0.9, "{e:?}");
    let e = &by("clump").errors;
    assert!(!e.burst, "a three-minute clump is not a burst: {e:?}");
    assert!(!by("quiet").errors.burst);
}

#[test]
fn idle_and_hung_differ_by_the_queue() {
    let mut idle = persona("idle", Memory::Flat, 240, MIN, 41);
    let mut hung = persona("hung", Memory::Flat, 240, MIN, 42);
    let n = idle.series.len();
    for i in n - 25..n {
        idle.series.requests[i] = 0.0;
        idle.series.queue_depth[i] = 0.0;
    }
    for i in n - 8..n {
        hung.series.requests[i] = 0.0;
        hung.series.queue_depth[i] = 4.0 * (i + 9 - n) as f32;
    }
    let f = features(&mesh(vec![idle, hung]));
    let (a, b) = (&f.personas[0].activity, &f.personas[1].activity);
    assert!(a.idle && !a.unresponsive, "{a:?}");
    assert!(b.unresponsive && !b.idle, "{b:?}");
}

#[test]
fn incremental_cycles_match_a_cold_analysis() {
    let v = synth::mesh(60, 3, 400, MIN, 5);
    let mut warm = FeatureCache::default();
    let end = v.last_sample_ms().unwrap();
    for k in (0..30).rev() {
        let _ = extract(&v, end - k * MIN, 60_000, &mut warm);
    }
    let inc = extract(&v, end, 60_000, &mut warm);
    let cold = extract(&v, end, 60_000, &mut FeatureCache::default());
    assert_eq!(serde_json::to_string(&inc).unwrap(), serde_json::to_string(&cold).unwrap());
}

#[test]
fn samples_after_now_are_ignored_and_old_data_is_stale() {
    let v = mesh(vec![persona("p", Memory::Flat, 240, MIN, 51)]);
    let end = v.last_sample_ms().unwrap();
    let f = extract(&v, end - 60 * MIN, 60_000, &mut FeatureCache::default());
    assert_eq!(f.personas[0].samples, 180);
    assert!(!f.personas[0].stale);
    let f = extract(&v, end + 10 * MIN, 60_000, &mut FeatureCache::default());
    assert!(f.personas[0].stale);
}

/// `n` samples 10 s apart of a persona that started with the trace.
fn live(id: &str, model: &str, n: usize, seed: u64) -> PersonaView {
    let mut p = synth::persona(id, "a", PersonaKind::Api, 90.0, Memory::Flat, n, 10_000, T0, &mut Rng::new(seed));
    p.model = Some(model.into());
    p.uptime_ms_at_first = Some(10_000);
    p
}

#[test]
fn minutes_of_growth_are_growth_with_its_fit_and_time_to_limit() {
    // 30 MB/min for 8 minutes, over a 200 MB budget, 512 MB hard limit
    let mut leaky = live("leaky", "sum", 49, 61);
    for (i, m) in leaky.series.memory_mb.iter_mut().enumerate() {
        *m += 5.0 * i as f32;
    }
    leaky.budget = Some(mindmesh_core::Budget { max_memory_mb: 200, ..Default::default() });
    leaky.memory_limit_mb = Some(512.0);
    let f = features(&mesh(vec![leaky, live("flat", "sum", 49, 62)]));
    let m = &f.personas[0].memory;
    assert_eq!(m.trend, MemTrend::Growing, "not unknown: {m:?}");
    let line = m.recent.unwrap();
    assert!(line.r2 > 0.98 && (line.slope_mb_per_min - 30.0).abs() < 2.0, "{line:?}");
    assert!(m.growing_now && m.over_budget() && m.growth_needs_action(), "{m:?}");
    let to_limit = m.minutes_to_limit.unwrap();
    assert!((to_limit - (512.0 - m.now_mb) / line.slope_mb_per_min).abs() < 0.01, "{m:?}");
    let flat = &f.personas[1].memory;
    assert_eq!(flat.trend, MemTrend::Stable, "eight minutes of a flat line is stable, not unknown: {flat:?}");
    assert!(!flat.growing_now);
    // two minutes say nothing yet
    let f = features(&mesh(vec![live("young", "sum", 12, 63)]));
    assert_eq!(f.personas[0].memory.trend, MemTrend::Unknown);
}

#[test]
fn a_replica_always_slower_than_its_siblings_is_judged_against_them() {
    let mut slow = live("slow", "llama", 120, 71);
    for c in [&mut slow.series.latency_p50_ms, &mut slow.series.latency_p95_ms, &mut slow.series.latency_p99_ms] {
        for v in c.iter_mut() {
            *v *= 10.0;
        }
    }
    let f = features(&mesh(vec![slow, live("fast-1", "llama", 120, 72), live("fast-2", "llama", 120, 73)]));
    let l = &f.personas[0].latency;
    assert_eq!(l.baseline, Baseline::Replicas, "{l:?}");
    assert!(l.ratio > 5.0 && l.replica_ratio > 7.0, "{l:?}");
    assert!(l.degraded_for_ms >= 15 * MIN, "high since its warm-up ended: {l:?}");
    assert!(f.personas[0].latency_degraded());
    for fast in &f.personas[1..] {
        assert!(!fast.latency_degraded(), "{:?}", fast.latency);
        assert!(fast.latency.ratio < 1.0, "{:?}", fast.latency);
    }
}

#[test]
fn failing_since_the_start_is_judged_against_the_others_and_shared_failure_is_shared() {
    let mut bad = live("bad", "m-bad", 60, 81);
    let n = bad.series.len();
    with_errors(&mut bad, n, 0.25, "500 Internal Server Error");
    let mut twins: Vec<PersonaView> = (0..2).map(|i| live(&format!("twin-{i}"), "m-twin", 60, 82 + i)).collect();
    for t in &mut twins {
        with_errors(t, n, 0.12, "503 Service Unavailable");
    }
    let mut all = vec![bad, live("ok-1", "m-ok", 60, 85), live("ok-2", "m-ok2", 60, 86)];
    all.extend(twins);
    let f = features(&mesh(all));
    let by = |id: &str| f.personas.iter().find(|p| p.id == id).unwrap();
    let e = &by("bad").errors;
    assert_eq!(e.base_from, BaseFrom::Peers, "{e:?}");
    assert!(e.burst && e.rate_base < 0.01, "{e:?}");
    // the twins fail alike: against the rest of the mesh it is a burst, and their peer fails as much
    let e = &by("twin-0").errors;
    assert!(e.burst && e.peer_rate > 0.08, "{e:?}");
    assert!(!by("ok-1").errors.burst && !by("ok-1").errors.elevated);
}

#[test]
fn never_asked_since_it_started_is_idle_once_long_enough() {
    let mut quiet = live("quiet", "q", 90, 91);
    for i in 0..quiet.series.len() {
        quiet.series.requests[i] = 0.0;
        quiet.series.errors[i] = 0.0;
    }
    let f = features(&mesh(vec![quiet, live("busy", "b", 90, 92)]));
    assert!(f.personas[0].activity.idle, "15 min never asked: {:?}", f.personas[0].activity);
    assert!(!f.personas[1].activity.idle);
    // five minutes without a request is no idleness yet
    let mut young = live("young", "q", 30, 93);
    for i in 0..young.series.len() {
        young.series.requests[i] = 0.0;
        young.series.errors[i] = 0.0;
    }
    let f = features(&mesh(vec![young]));
    assert!(!f.personas[0].activity.idle, "{:?}", f.personas[0].activity);
}
