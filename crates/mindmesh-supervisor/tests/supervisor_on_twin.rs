//! The real supervisor over the in-memory process host, on paused time: minutes of restarts,
//! crash loops and hibernations run in milliseconds, and each run is the same.

use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::config::SupervisorConfig;
use mindmesh_core::lifecycle::ExitStatus;
use mindmesh_core::{BudgetPatch, PersonaSpec, Phase};
use mindmesh_supervisor::host::{HostEventKind, MemHost, Program, TokioClock};
use mindmesh_supervisor::{Act, Report, Supervisor, SupervisorHandle, SupervisorSettings};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(600);

struct Rig {
    host: MemHost,
    sup: SupervisorHandle,
    _dir: tempfile::TempDir,
    _reports: tokio::task::JoinHandle<()>,
}

fn rig(seed: u64) -> Rig {
    rig_on(seed, MemHost::new(seed))
}

fn rig_on(seed: u64, host: MemHost) -> Rig {
    let host = host
        .with_program("server", Program::server().with_state(b"remembered".to_vec()))
        .with_program("crasher", Program::silent().exits_after(30, ExitStatus::Signal(11)));
    let dir = tempfile::tempdir().unwrap();
    let settings = SupervisorSettings {
        config: SupervisorConfig::default(),
        data_dir: dir.path().to_path_buf(),
        // the twin's processes write nothing
        logs: None,
        instance: "twin".into(),
        max_state_bytes: 1024,
        clock: Arc::new(TokioClock::new(1_000_000)),
        spawn_gate: None,
        host: Arc::new(host.clone()),
        rng_seed: Some(seed),
    };
    let (tx, mut rx) = mpsc::channel::<Report>(1024);
    // the reports go nowhere here: drain them so the supervisor never waits
    let reports = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (sup, _task) = Supervisor::spawn(settings, tx, CancellationToken::new()).unwrap();
    Rig { host, sup, _dir: dir, _reports: reports }
}

fn server(name: &str) -> PersonaSpec {
    PersonaSpec { health_path: Some("/health".into()), ..PersonaSpec::new(name, "server") }
}

#[tokio::test(start_paused = true)]
async fn a_crashing_persona_is_restarted_then_killed_as_a_crash_loop() {
    let r = rig(1);
    r.sup.add(PersonaSpec::new("c", "crasher"), true).await.unwrap();
    let phase = r.sup.wait_for("c", &[Phase::Killed], LONG).await.unwrap();
    assert_eq!(phase, Phase::Killed);
    let (events, _) = r.host.drain_events();
    let spawns = events.iter().filter(|e| e.kind == HostEventKind::Spawned).count();
    let crashes = events.iter().filter(|e| e.kind == HostEventKind::Exited(ExitStatus::Signal(11))).count();
    let limit = SupervisorConfig::default().crash_loop_max_restarts as usize;
    assert!(spawns > limit, "{spawns} spawns for a crash-loop limit of {limit}");
    assert_eq!(spawns, crashes);
    assert!(r.host.processes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn hibernation_keeps_the_state_and_a_wake_brings_the_process_back() {
    let r = rig(2);
    r.sup.add(server("s"), true).await.unwrap();
    r.sup.wait_for("s", &[Phase::Running], LONG).await.unwrap();
    assert_eq!(r.host.processes().len(), 1);
    r.sup.act("s", Act::Hibernate).await.unwrap();
    r.sup.wait_for("s", &[Phase::Hibernating], LONG).await.unwrap();
    assert!(r.host.processes().is_empty(), "a hibernating persona has no process");
    let state = r.sup.saved_state("s").await.unwrap();
    assert_eq!(state.as_deref(), Some(&b"remembered"[..]));
    r.sup.act("s", Act::Wake { state }).await.unwrap();
    r.sup.wait_for("s", &[Phase::Running], LONG).await.unwrap();
    assert_eq!(r.host.processes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn taking_away_the_right_to_run_stops_the_process() {
    let r = rig(3);
    r.sup.add(server("s"), true).await.unwrap();
    r.sup.wait_for("s", &[Phase::Running], LONG).await.unwrap();
    let patch = BudgetPatch { allowed_to_run: Some(false), ..Default::default() };
    r.sup.set_budget("s", patch).await.unwrap();
    r.sup.wait_for("s", &[Phase::Stopped], LONG).await.unwrap();
    assert!(r.host.processes().is_empty());
    r.sup.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_seed_replays_the_same_run() {
    async fn run(seed: u64) -> Vec<(u128, String)> {
        let r = rig(seed);
        let origin = tokio::time::Instant::now();
        r.sup.add(PersonaSpec::new("c", "crasher"), true).await.unwrap();
        r.sup.wait_for("c", &[Phase::Killed], LONG).await.unwrap();
        let (events, _) = r.host.drain_events();
        events.into_iter().map(|e| ((e.at - origin).as_micros(), format!("{:?} {}", e.kind, e.pid))).collect()
    }
    assert_eq!(run(9).await, run(9).await);
}

#[tokio::test(start_paused = true)]
async fn a_persona_gets_the_allowlist_the_spec_and_the_contract_never_the_nodes_secrets() {
    let node_env = [
        ("PATH", "/usr/bin"),
        ("LC_ALL", "C.UTF-8"),
        ("MINDMESH_API_TOKEN", "node-admin-token-0123456789"),
        ("MINDMESH_LLM_API_KEY", "sk-node"),
        ("AWS_SECRET_ACCESS_KEY", "not-listed"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let r = rig_on(7, MemHost::new(7).with_node_environment(node_env));
    let mut spec = server("s");
    spec.env.insert("MODEL_DIR".into(), "/models".into());
    r.sup.add(spec, true).await.unwrap();
    r.sup.wait_for("s", &[Phase::Running], LONG).await.unwrap();
    let procs = r.host.processes();
    let env = &procs[0].env;
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "LC_ALL",
            "MINDMESH_EXE",
            "MINDMESH_NODE_INSTANCE",
            "MINDMESH_PERSONA_ID",
            "MINDMESH_PORT",
            "MODEL_DIR",
            "PATH"
        ]
    );
    assert_eq!(env["MINDMESH_PERSONA_ID"], "s");
    assert_eq!(env["MINDMESH_NODE_INSTANCE"], "twin");
}

/// An adapter persona has no process: it is running on its base's port once the base's process
/// loaded it (its id in `MINDMESH_LORA_ADAPTERS`), shows its base's hibernation, hibernates in
/// name by itself, and one added while its base runs without it restarts the base to load it.
#[tokio::test(start_paused = true)]
async fn an_adapter_rides_on_its_base_and_a_new_one_restarts_the_base() {
    let r = rig(4);
    let status = |name: &str| r.sup.status().borrow().get(name).cloned().unwrap();
    r.sup.add(PersonaSpec::adapter("b-adapter", "base", "/m/b.gguf", 0.5), true).await.unwrap();
    assert_eq!(status("b-adapter").phase, Phase::Starting, "no base yet: it waits");
    r.sup.add(server("base"), true).await.unwrap();
    r.sup.wait_for("base", &[Phase::Running], LONG).await.unwrap();
    let procs = r.host.processes();
    assert_eq!(procs.len(), 1, "the adapter has no process of its own");
    let loaded: serde_json::Value = serde_json::from_str(&procs[0].env["MINDMESH_LORA_ADAPTERS"]).unwrap();
    assert_eq!(loaded, serde_json::json!([{"id": 0, "name": "b-adapter", "path": "/m/b.gguf", "scale": 0.5}]));
    let a = status("b-adapter");
    assert_eq!((a.phase, a.port, a.pid), (Phase::Running, status("base").port, None));
    assert_eq!(a.adapter.as_ref().map(|a| (a.lora_id, a.scale)), Some((Some(0), 0.5)));

    // a new adapter sorts first: the base restarts to load both, the ids follow the names
    let first_pid = procs[0].pid;
    r.sup.add(PersonaSpec::adapter("a-adapter", "base", "/m/a.gguf", 1.0), true).await.unwrap();
    let restarted = tokio::time::timeout(LONG, async {
        loop {
            let s = status("base");
            if s.phase == Phase::Running && s.pid != Some(first_pid) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(restarted.adapters, ["a-adapter", "b-adapter"]);
    assert_eq!(status("b-adapter").adapter.unwrap().lora_id, Some(1));

    // hibernating an adapter is in name only; hibernating the base shows on its adapters
    r.sup.act("a-adapter", Act::Hibernate).await.unwrap();
    assert_eq!(status("a-adapter").phase, Phase::Hibernating);
    assert_eq!(r.host.processes().len(), 1, "the base runs on");
    r.sup.act("base", Act::Hibernate).await.unwrap();
    r.sup.wait_for("base", &[Phase::Hibernating], LONG).await.unwrap();
    let b = status("b-adapter");
    assert_eq!((b.phase, b.reason.as_deref()), (Phase::Hibernating, Some("its base base is hibernating")));
    // waking the adapter alone does not start the base (the node's waker wakes both)
    r.sup.act("a-adapter", Act::Wake { state: None }).await.unwrap();
    assert_eq!(status("a-adapter").phase, Phase::Hibernating);
    r.sup.act("base", Act::Wake { state: None }).await.unwrap();
    r.sup.wait_for("base", &[Phase::Running], LONG).await.unwrap();
    assert_eq!(status("a-adapter").phase, Phase::Running);
    // removing an adapter touches no process; adding it back with another file (a changed
    // spec is a remove and an add) restarts the base to load the new file
    let pid = status("base").pid;
    r.sup.remove("a-adapter").await.unwrap();
    assert_eq!((r.host.processes().len(), status("base").pid), (1, pid));
    r.sup.add(PersonaSpec::adapter("a-adapter", "base", "/m/a2.gguf", 1.0), true).await.unwrap();
    let reloaded = tokio::time::timeout(LONG, async {
        loop {
            let p = r.host.processes();
            if p.len() == 1 && Some(p[0].pid) != pid && status("base").phase == Phase::Running {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(reloaded[0].env["MINDMESH_LORA_ADAPTERS"].contains("/m/a2.gguf"));
    assert_eq!(status("a-adapter").adapter.unwrap().lora_id, Some(0));
    r.sup.shutdown().await;
}
