//! Synthetic, seeded histories for tests and the benchmark: a persona's memory shaped as flat,
//! leaking, GC sawtooth or a late bump, with noisy traffic and latency. Deterministic for a
//! seed (a small xorshift generator, no dependency).

use mindmesh_core::{Importance, PersonaKind, Phase};

use crate::view::{HostSeries, MeshView, NodeView, PersonaSeries, PersonaView};

/// xorshift64*: enough randomness for noise, reproducible from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly normal (sum of uniforms), mean 0, sd 1.
    pub fn gauss(&mut self) -> f32 {
        (0..6).map(|_| self.unit()).sum::<f32>() - 3.0
    }
}

/// The shape of a persona's memory over its history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Memory {
    Flat,
    /// Linear growth, in MB per minute, from the start.
    Leak {
        mb_per_min: f32,
    },
    /// Climbs by `swing` (relative) over `period_min`, then drops back.
    Sawtooth {
        swing: f32,
        period_min: f32,
    },
    /// Flat, then linear growth over the last `minutes`.
    LateBump {
        minutes: f32,
        rise: f32,
    },
}

/// A persona with `n` samples every `interval_ms` from `t0_ms`.
#[allow(clippy::too_many_arguments)]
pub fn persona(
    id: &str,
    node: &str,
    kind: PersonaKind,
    base_mb: f32,
    memory: Memory,
    n: usize,
    interval_ms: u64,
    t0_ms: u64,
    rng: &mut Rng,
) -> PersonaView {
    let mut s = PersonaSeries::default();
    let per_min = 60_000.0 / interval_ms as f32;
    let base_latency = 400.0 + 800.0 * rng.unit();
    let rate = 5.0 + 20.0 * rng.unit();
    for i in 0..n {
        let t_min = i as f32 / per_min;
        let mem = match memory {
            Memory::Flat => base_mb,
            Memory::Leak { mb_per_min } => base_mb + mb_per_min * t_min,
            Memory::Sawtooth { swing, period_min } => base_mb * (1.0 + swing * (t_min % period_min) / period_min),
            Memory::LateBump { minutes, rise } => {
                let start = n as f32 / per_min - minutes;
                if t_min < start { base_mb } else { base_mb * (1.0 + rise * (t_min - start) / minutes) }
            }
        };
        s.t_ms.push(t0_ms + i as u64 * interval_ms);
        s.memory_mb.push(mem * (1.0 + 0.005 * rng.gauss()));
        s.cpu_percent.push((5.0 + rng.gauss()).max(0.1));
        let req = (rate + 2.0 * rng.gauss()).round().max(0.0);
        s.requests.push(req);
        s.errors.push(if rng.unit() < 0.01 { 1.0f32.min(req) } else { 0.0 });
        let p50 = base_latency * (1.0 + 0.1 * rng.gauss());
        s.latency_p50_ms.push(p50);
        s.latency_p95_ms.push(p50 * 1.8);
        s.latency_p99_ms.push(p50 * 2.4);
        s.queue_depth.push(if rng.unit() < 0.05 { 1.0 } else { 0.0 });
        s.restarts.push(0.0);
    }
    PersonaView {
        id: id.to_owned(),
        node: node.to_owned(),
        importance: Importance::UserFacing,
        kind,
        model: None,
        budget: None,
        envelope: Default::default(),
        memory_limit_mb: None,
        uptime_ms_at_first: Some(3_600_000),
        phase: Phase::Running,
        series: s,
        events: Vec::new(),
        recent_actions: Vec::new(),
        maintenance: Default::default(),
    }
}

pub fn node(id: &str, n: usize, interval_ms: u64, t0_ms: u64, rng: &mut Rng) -> NodeView {
    let mut s = HostSeries::default();
    for i in 0..n {
        s.t_ms.push(t0_ms + i as u64 * interval_ms);
        s.cpu_percent.push((30.0 + 5.0 * rng.gauss()).clamp(0.0, 100.0));
        s.memory_used_mb.push(16_000.0 + 200.0 * rng.gauss());
    }
    NodeView { id: id.to_owned(), cpu_cores: 16, memory_total_mb: 65_536.0, series: s }
}

/// A large mesh for the benchmark: `personas` spread over `nodes`, `samples` each, mostly
/// healthy with some sawtooth, leaks and late bumps, models shared by groups of replicas.
pub fn mesh(personas: usize, nodes: usize, samples: usize, interval_ms: u64, seed: u64) -> MeshView {
    let mut rng = Rng::new(seed);
    let t0 = 1_700_000_000_000;
    let nodes_v: Vec<NodeView> =
        (0..nodes).map(|i| node(&format!("node-{i}"), samples, interval_ms, t0, &mut rng)).collect();
    let personas_v = (0..personas)
        .map(|i| {
            let memory = match i % 100 {
                0 => Memory::Leak { mb_per_min: 0.5 },
                1..=10 => Memory::Sawtooth { swing: 0.3, period_min: 9.0 },
                11 => Memory::LateBump { minutes: 10.0, rise: 0.3 },
                _ => Memory::Flat,
            };
            let kind = if i % 4 == 0 { PersonaKind::Local } else { PersonaKind::Api };
            let base = if kind == PersonaKind::Local { 4000.0 } else { 300.0 };
            let mut p = persona(
                &format!("p-{i}"),
                &format!("node-{}", i % nodes),
                kind,
                base,
                memory,
                samples,
                interval_ms,
                t0,
                &mut rng,
            );
            p.model = Some(format!("model-{}", i % 50));
            p
        })
        .collect();
    MeshView { nodes: nodes_v, personas: personas_v }
}
