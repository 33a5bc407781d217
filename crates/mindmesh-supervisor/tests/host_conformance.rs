//! One conformance suite for the process seam, run against the real host (processes, signals,
//! `/proc`, HTTP probes) and against its in-memory twin (on paused time): whatever the
//! supervisor may rely on, both do.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::lifecycle::ExitStatus;
use mindmesh_supervisor::host::{MemHost, OsHost, ProcessHost, Program, Sig};
use mindmesh_supervisor::process::{ENV_NODE_INSTANCE, ENV_PERSONA_ID, ENV_PORT, SpawnPlan};
use tokio::sync::mpsc;

/// Long enough for a loaded machine; the twin never needs it (its time is virtual).
const DEADLINE: Duration = Duration::from_secs(20);

/// What the server kind answers at [`METRICS_PATH`].
const METRICS: &[u8] = br#"{"cache_hit_rate": 0.5}"#;
const METRICS_PATH: &str = "/mindmesh/metrics";

/// The kinds of process the suite starts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Serves `GET /` with 200 once up, and [`METRICS`] at [`METRICS_PATH`]; stops on SIGTERM.
    Server,
    /// Exits by itself soon, with code 3.
    ExitsWith3,
    /// Ignores SIGTERM; only SIGKILL ends it.
    IgnoresTerm,
    /// Runs, serves nothing, stops on SIGTERM.
    Sleeper,
}

/// How one host starts each kind.
trait Fixture {
    fn host(&self) -> Arc<dyn ProcessHost>;
    fn program(&self, kind: Kind, port: u16) -> (PathBuf, Vec<String>);
    fn instance(&self) -> String;
}

fn plan(f: &dyn Fixture, persona: &str, kind: Kind, port: u16) -> SpawnPlan {
    let (program, args) = f.program(kind, port);
    let env = BTreeMap::from([
        (ENV_NODE_INSTANCE.to_owned(), f.instance()),
        (ENV_PERSONA_ID.to_owned(), persona.to_owned()),
        (ENV_PORT.to_owned(), port.to_string()),
    ]);
    SpawnPlan { persona: persona.to_owned(), program, args, env, working_dir: None, log_dir: None }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut).await.unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// Wait until `probe` answers `want` (probing every 50 ms).
async fn probe_until(host: &Arc<dyn ProcessHost>, port: u16, want: bool) {
    within(&format!("probe of port {port} = {want}"), async {
        while host.probe(port, "/").await != want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn suite(f: &dyn Fixture) {
    let host = f.host();
    let no_ports = HashSet::new();

    // a missing program does not spawn
    let mut missing = plan(f, "missing", Kind::Sleeper, 1);
    missing.program = PathBuf::from("/nonexistent/mindmesh-no-such-program");
    assert!(host.spawn(&missing).is_err(), "a missing program spawned");

    // a process lives until SIGTERM and reports the signal
    let port = host.free_port(&no_ports).unwrap();
    let sleeper = host.spawn(&plan(f, "sleeper", Kind::Sleeper, port)).unwrap();
    assert!(sleeper.pid > 0);
    assert!(host.group_alive(sleeper.pid));
    // it is found again by its instance marker, with its persona and port
    // (the shell is exec'ing `sleep` just now: while a process execs, its environment cannot
    // be read, so a scan at that instant misses it and the next one finds it)
    let mut found = host.scan_instance(&f.instance());
    for _ in 0..40 {
        if found.iter().any(|p| p.pid == sleeper.pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        found = host.scan_instance(&f.instance());
    }
    let me = found.iter().find(|p| p.pid == sleeper.pid).expect("scan finds the sleeper");
    assert_eq!((me.persona.as_str(), me.port, me.start_ticks), ("sleeper", Some(port), sleeper.start_ticks));
    assert!(host.scan_instance("another-instance").iter().all(|p| p.pid != sleeper.pid));
    // nothing serves its port
    assert!(!host.probe(port, "/").await, "a process serving nothing answered a probe");
    let watched = host.watch_exit(sleeper.pid).expect("a live process can be watched");
    host.signal_group(sleeper.pid, Sig::Term);
    assert_eq!(within("sleeper exit", sleeper.exited).await, ExitStatus::Signal(15));
    within("watch of the sleeper", watched).await;
    assert!(!host.group_alive(sleeper.pid));
    // signalling a group that is gone is harmless
    host.signal_group(sleeper.pid, Sig::Kill);

    // an exit of its own, with its code
    let port = host.free_port(&no_ports).unwrap();
    let quitter = host.spawn(&plan(f, "quitter", Kind::ExitsWith3, port)).unwrap();
    assert_eq!(within("quitter exit", quitter.exited).await, ExitStatus::Code(3));

    // SIGTERM ignored, SIGKILL not
    let port = host.free_port(&no_ports).unwrap();
    let stubborn = host.spawn(&plan(f, "stubborn", Kind::IgnoresTerm, port)).unwrap();
    let mut exited = stubborn.exited;
    // give a shell time to set its trap before the signal
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.signal_group(stubborn.pid, Sig::Term);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut exited).await.is_err(),
        "a process ignoring SIGTERM exited on it"
    );
    assert!(host.group_alive(stubborn.pid));
    host.signal_group(stubborn.pid, Sig::Kill);
    assert_eq!(within("stubborn exit", exited).await, ExitStatus::Signal(9));

    // a server answers its probe once up, not while frozen, again once thawed; it has no
    // state hook; it shows in a sample with its memory
    let taken: HashSet<u16> = HashSet::from([port]);
    let port = host.free_port(&taken).unwrap();
    assert!(!taken.contains(&port));
    let server = host.spawn(&plan(f, "server", Kind::Server, port)).unwrap();
    probe_until(&host, port, true).await;
    assert_eq!(within("save state", host.save_state(port, Duration::from_secs(5), 1024)).await, Ok(None));
    // its own metrics: the body at its path, none at another, an error past the size cap
    let fetch = |path: &str, max_bytes: u64| host.fetch_metrics(port, path, Duration::from_secs(5), max_bytes);
    assert_eq!(within("metrics", fetch(METRICS_PATH, 1024)).await, Ok(Some(METRICS.to_vec())));
    assert_eq!(within("metrics elsewhere", fetch("/mindmesh/nothing-here", 1024)).await, Ok(None));
    let small = within("oversized metrics", fetch(METRICS_PATH, 4)).await;
    assert!(small.as_ref().is_err_and(|e| e.contains("larger than")), "{small:?}");
    let (tx, mut rx) = mpsc::channel(2);
    let sampler = host.sampler(tx, 1).unwrap();
    assert!(sampler.request(42, vec![server.pid]));
    let reading = within("a reading", rx.recv()).await.expect("sampler alive");
    assert_eq!(reading.ts_ms, 42);
    assert!(reading.processes.get(&server.pid).is_some_and(|r| r.rss_bytes > 0), "{reading:?}");
    host.signal_group(server.pid, Sig::Stop);
    probe_until(&host, port, false).await;
    host.signal_group(server.pid, Sig::Cont);
    probe_until(&host, port, true).await;
    // a SIGTERM to a frozen process takes effect once it is thawed
    host.signal_group(server.pid, Sig::Stop);
    host.signal_group(server.pid, Sig::Term);
    host.signal_group(server.pid, Sig::Cont);
    assert_eq!(within("server exit", server.exited).await, ExitStatus::Signal(15));
    assert!(!host.probe(port, "/").await, "a probe answered for a process that exited");
    assert!(host.save_state(port, Duration::from_secs(1), 1024).await.is_err());
    assert!(host.fetch_metrics(port, METRICS_PATH, Duration::from_secs(1), 1024).await.is_err());
    assert!(host.watch_exit(server.pid).is_none() || !host.group_alive(server.pid));
}

struct Os {
    host: Arc<dyn ProcessHost>,
    instance: String,
    /// The server's document root, holding [`METRICS`] at [`METRICS_PATH`].
    root: PathBuf,
}

impl Fixture for Os {
    fn host(&self) -> Arc<dyn ProcessHost> {
        self.host.clone()
    }
    fn instance(&self) -> String {
        self.instance.clone()
    }
    fn program(&self, kind: Kind, port: u16) -> (PathBuf, Vec<String>) {
        let sh = |script: &str| (PathBuf::from("/bin/sh"), vec!["-c".to_owned(), script.to_owned()]);
        match kind {
            Kind::Server => (
                PathBuf::from("python3"),
                [
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    &self.root.display().to_string(),
                    &port.to_string(),
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
            Kind::ExitsWith3 => sh("sleep 0.2; exit 3"),
            Kind::IgnoresTerm => sh("trap '' TERM; sleep 60"),
            Kind::Sleeper => sh("exec sleep 60"),
        }
    }
}

struct Mem {
    host: MemHost,
}

impl Fixture for Mem {
    fn host(&self) -> Arc<dyn ProcessHost> {
        Arc::new(self.host.clone())
    }
    fn instance(&self) -> String {
        "conformance-mem".into()
    }
    fn program(&self, kind: Kind, _port: u16) -> (PathBuf, Vec<String>) {
        let name = match kind {
            Kind::Server => "server",
            Kind::ExitsWith3 => "exits-with-3",
            Kind::IgnoresTerm => "ignores-term",
            Kind::Sleeper => "sleeper",
        };
        (PathBuf::from(name), Vec::new())
    }
}

#[tokio::test]
async fn the_os_host_conforms() {
    let host: Arc<dyn ProcessHost> = Arc::new(OsHost::new(500).unwrap());
    let resolved = mindmesh_supervisor::process::resolve_program("python3");
    assert!(resolved.is_absolute(), "python3 is needed for the OS host's health server");
    let instance = format!("conformance-os-{}", std::process::id());
    let root = std::env::temp_dir().join(&instance);
    std::fs::create_dir_all(root.join("mindmesh")).unwrap();
    std::fs::write(root.join(METRICS_PATH.trim_start_matches('/')), METRICS).unwrap();
    suite(&Os { host, instance, root: root.clone() }).await;
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(start_paused = true)]
async fn the_in_memory_host_conforms() {
    let host = MemHost::new(7)
        .with_program("server", Program::server().with_metrics(METRICS_PATH, METRICS))
        .with_program("exits-with-3", Program::silent().exits_after(200, ExitStatus::Code(3)))
        .with_program("ignores-term", Program::silent().ignoring_term())
        .with_program("sleeper", Program::silent());
    suite(&Mem { host: host.clone() }).await;
    // the observer saw every start and exit, in order
    let (events, dropped) = host.drain_events();
    assert_eq!(dropped, 0);
    let started = events.iter().filter(|e| e.kind == mindmesh_supervisor::host::HostEventKind::Spawned).count();
    assert_eq!(started, 4, "{events:?}");
    assert_eq!(events.len(), 8, "{events:?}");
    assert!(host.processes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_in_memory_host_replays_from_its_seed() {
    async fn run(seed: u64) -> Vec<(u16, u64)> {
        let host = MemHost::new(seed).with_program("server", Program::server());
        let mut out = Vec::new();
        for i in 0..5 {
            let port = host.free_port(&HashSet::new()).unwrap();
            let env = BTreeMap::from([(ENV_PORT.to_owned(), port.to_string())]);
            let plan = SpawnPlan {
                persona: format!("p{i}"),
                program: PathBuf::from("server"),
                args: Vec::new(),
                env,
                working_dir: None,
                log_dir: None,
            };
            let started = tokio::time::Instant::now();
            let p = host.spawn(&plan).unwrap();
            while !host.probe(port, "/").await {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            out.push((port, started.elapsed().as_millis() as u64));
            host.signal_group(p.pid, Sig::Kill);
        }
        out
    }
    assert_eq!(run(1).await, run(1).await);
    assert_ne!(run(1).await, run(2).await);
}
