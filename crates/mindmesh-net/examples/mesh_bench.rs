//! Measurements of the mesh over real libp2p on loopback (5 nodes, redb stores):
//! - the gossip size of a node with 100 personas,
//! - commit latency of a registry write from the leader and from a follower (forwarded),
//! - gossip delivery latency of a snapshot to every other node,
//! - time to elect a new leader after the leader stops.
//!
//! `cargo run -p mindmesh-net --example mesh_bench -- [runs] [writes] [election_min_ms] [election_max_ms] [mem] [same-port]`
//! (defaults: 5 failovers, 200 writes, the configured 400–800 ms). Not a test: numbers only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::metrics::HostSample;
use mindmesh_core::phase::{Health, Phase};
use mindmesh_core::registry::Command;
use mindmesh_core::snapshot::{NodeSnapshot, PersonaFigures};
use mindmesh_core::spec::PersonaSpec;
use mindmesh_net::keys::MeshKey;
use mindmesh_net::{MeshHandle, MeshRole, MeshStart, NodeProfile};
use tokio_util::sync::CancellationToken;

const NODES: usize = 5;

struct Bench {
    key: MeshKey,
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<MeshHandle>>,
    join: Vec<String>,
    election_ms: (u64, u64),
    /// Keep Raft in memory instead of redb (to tell disk time from the rest).
    in_memory: bool,
    /// Restart a node on the port it had (as a node with a configured port would).
    same_port: bool,
    addrs: Vec<Option<String>>,
}

fn snapshot(personas: usize) -> NodeSnapshot {
    NodeSnapshot {
        node_id: 0,
        node_name: "worker-eu-west-3a-017".into(),
        incarnation: 0,
        seq: 0,
        ts_ms: 1_790_000_000_000,
        host: HostSample {
            cpu_percent: 97.5,
            memory_used_bytes: 250 << 30,
            memory_total_bytes: 256 << 30,
            cpu_cores: 64,
            ..Default::default()
        },
        personas: (0..personas)
            .map(|i| PersonaFigures {
                name: format!("persona-{i:03}-chat-large"),
                phase: Phase::Running,
                health: Health::Healthy,
                pid: Some(3_000_000 + i as u32),
                generation: 1000,
                epoch: 5_000_000,
                rss_bytes: 12 << 30,
                cpu_percent: 180.25,
                requests: 5000,
                errors: 250,
                latency_p95_ms: Some(1234.5),
                queue_depth: 120,
                restarts: 17,
                last_error: Some("upstream returned 503: model overloaded, retry later".into()),
                error_kinds: Vec::new(),
            })
            .collect(),
    }
}

impl Bench {
    async fn start_node(&mut self, i: usize) -> Result<()> {
        let path: PathBuf = self.dirs[i].path().to_path_buf();
        let db = if self.in_memory { None } else { Some(Arc::new(redb::Database::create(path.join("store.redb"))?)) };
        let mut config = MeshConfig::for_test();
        config.bootstrap = i == 0;
        config.join = if i == 0 { Vec::new() } else { self.join.clone() };
        config.election_timeout_min_ms = self.election_ms.0;
        config.election_timeout_max_ms = self.election_ms.1;
        if self.same_port
            && let Some(a) = &self.addrs[i]
        {
            config.listen = vec![a.clone()];
        }
        let opts = MeshStart {
            config,
            profile: NodeProfile { name: format!("bench-{i}"), ..Default::default() },
            data_dir: path,
            db,
            mesh_key: Some(self.key),
        };
        let h = mindmesh_net::start(opts, CancellationToken::new()).await?;
        if i == 0 && self.join.is_empty() {
            self.join = vec![h.listen_addrs()[0].clone()];
        }
        self.addrs[i] = Some(h.listen_addrs()[0].clone());
        self.nodes[i] = Some(h);
        Ok(())
    }

    fn live(&self) -> Vec<&MeshHandle> {
        self.nodes.iter().flatten().collect()
    }

    /// Wait until every live node follows one leader with `voters` voters.
    async fn settled(&self, voters: usize, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let s: Vec<_> = self.live().iter().map(|h| h.status()).collect();
            if let Some(l) = s[0].leader
                && s.iter().all(|x| x.leader == Some(l) && x.voters.len() == voters)
                && s.iter().filter(|x| x.role == MeshRole::Leader).count() == 1
            {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("not settled: {:?}", s.iter().map(|x| (x.node_id, x.role, x.leader)).collect::<Vec<_>>());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if let Ok(filter) = std::env::var("MESH_BENCH_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
    }
    let in_memory = std::env::args().any(|a| a == "mem");
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let runs = *args.first().unwrap_or(&5) as usize;
    let writes = *args.get(1).unwrap_or(&200) as usize;
    let election_ms = (*args.get(2).unwrap_or(&400), *args.get(3).unwrap_or(&800));

    transport_round_trip().await?;
    let bytes = snapshot(100).encode()?.len();
    println!("gossip size, 100 personas (busy node, every persona with an error text): {bytes} bytes");

    let mut b = Bench {
        key: MeshKey::generate()?,
        dirs: (0..NODES).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?,
        nodes: (0..NODES).map(|_| None).collect(),
        join: Vec::new(),
        election_ms,
        in_memory,
        same_port: std::env::args().any(|a| a == "same-port"),
        addrs: vec![None; NODES],
    };
    for i in 0..NODES {
        b.start_node(i).await?;
    }
    let leader = b.settled(NODES, Duration::from_secs(30)).await?;
    println!("{NODES} nodes over libp2p on loopback; election timeout {}–{} ms", election_ms.0, election_ms.1);

    // commit latency
    for (label, from_leader) in [("leader", true), ("follower (forwarded)", false)] {
        let h = b.live().into_iter().find(|h| (h.node_id() == leader) == from_leader).context("a node")?.clone();
        let mut ms = Vec::with_capacity(writes);
        for i in 0..writes {
            let spec = PersonaSpec::new(&format!("{}-{i}", if from_leader { "l" } else { "f" }), "srv");
            let t = Instant::now();
            h.propose(Command::put_persona(spec, None)).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "commit latency from the {label}: p50 {:.2} ms, p99 {:.2} ms ({writes} writes, {})",
            percentile(&mut ms, 0.5),
            percentile(&mut ms, 0.99),
            if b.in_memory { "Raft in memory" } else { "redb, fsync on every node" }
        );
    }

    // gossip delivery: each node publishes in turn; time until every other node's view has it
    let mut deliveries = Vec::new();
    let mut worst = Vec::new();
    for round in 0..(NODES * 10) {
        let nodes = b.live();
        let publisher = nodes[round % nodes.len()];
        publisher.publish_snapshot(snapshot(100)).await?;
        let seq = publisher
            .mesh_view()
            .await?
            .into_iter()
            .find(|v| v.node_id == publisher.node_id())
            .map(|v| v.snapshot.seq)
            .context("own row")?;
        let t = Instant::now();
        let mut pending: Vec<&MeshHandle> =
            nodes.iter().copied().filter(|h| h.node_id() != publisher.node_id()).collect();
        while !pending.is_empty() {
            if t.elapsed() > Duration::from_secs(5) {
                bail!("gossip round {round} not delivered to {} nodes", pending.len());
            }
            let mut still = Vec::new();
            for h in pending {
                let seen =
                    h.mesh_view().await?.iter().any(|v| v.node_id == publisher.node_id() && v.snapshot.seq >= seq);
                if seen {
                    deliveries.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    still.push(h);
                }
            }
            pending = still;
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        worst.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "gossip delivery (100-persona snapshot): per receiver p50 {:.2} ms, p99 {:.2} ms; to all {} others p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut deliveries, 0.5),
        percentile(&mut deliveries, 0.99),
        NODES - 1,
        percentile(&mut worst.clone(), 0.5),
        percentile(&mut worst, 0.99)
    );

    // failover (restarts need the store a node left behind: not in memory)
    let runs = if b.in_memory {
        println!("failover skipped: a node restarted on an in-memory store has lost its Raft state");
        0
    } else {
        runs
    };
    let mut elect_ms = Vec::new();
    for run in 0..runs {
        let leader = b.settled(NODES, Duration::from_secs(30)).await?;
        let i = b.nodes.iter().position(|n| n.as_ref().is_some_and(|h| h.node_id() == leader)).context("leader")?;
        let h = b.nodes[i].take().context("leader handle")?;
        let t = Instant::now();
        h.shutdown().await;
        drop(h);
        let deadline = Instant::now() + Duration::from_secs(10);
        let new_leader = loop {
            let s: Vec<_> = b.live().iter().map(|h| h.status()).collect();
            if let Some(l) = s[0].leader.filter(|l| *l != leader)
                && s.iter().all(|x| x.leader == Some(l))
            {
                break l;
            }
            if Instant::now() > deadline {
                bail!("run {run}: no new leader");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("failover {run}: leader {leader} stopped, {new_leader} leads after {ms:.0} ms");
        elect_ms.push(ms);
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.start_node(i).await?;
    }
    if !elect_ms.is_empty() {
        println!(
            "new leader after leader stop: median {:.0} ms, max {:.0} ms over {runs} runs",
            percentile(&mut elect_ms.clone(), 0.5),
            elect_ms.iter().cloned().fold(0.0, f64::max)
        );
    }
    for h in b.live() {
        h.shutdown().await;
    }
    Ok(())
}

/// Calibration: a bare request/response between two libp2p transports on loopback.
async fn transport_round_trip() -> Result<()> {
    use mindmesh_net::transport::p2p::{self, P2pConfig};
    use mindmesh_net::transport::{Transport, TransportEvent};
    let key = MeshKey::generate()?;
    let cancel = CancellationToken::new();
    let start = || p2p::start(P2pConfig::new(libp2p::identity::Keypair::generate_ed25519(), key), cancel.clone());
    let (a, _a_events, _) = start().await?;
    let (b, mut b_events, _) = start().await?;
    tokio::spawn(async move {
        while let Some(ev) = b_events.recv().await {
            if let TransportEvent::Request { data, reply, .. } = ev {
                let _ = reply.send(data);
            }
        }
    });
    let peer = a.dial(&b.listen_addrs().await?[0], Duration::from_secs(5)).await?;
    let mut ms = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        a.request(peer, vec![0; 512], Duration::from_secs(5)).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "calibration: libp2p request/response round trip on loopback p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.99)
    );
    cancel.cancel();
    Ok(())
}
