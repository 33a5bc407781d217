//! What `deploy/` ships, checked: the container image and the 3-node compose mesh, run for real
//! where a Docker engine answers (the leader's container killed, a new leader elected; and,
//! once failover exists, a real network partition); the systemd unit with `systemd-analyze
//! verify` where it is installed; the Kubernetes manifests against Kubernetes' own schemas
//! (kubernetes-validate, which `.ci/run` installs) and against what the node accepts.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::missing;
use mindmesh_core::config::NodeConfig;
use serde_json::Value;

const MINDMESH: &str = env!("CARGO_BIN_EXE_mindmesh");
/// The container tests share the machine's two cores and its Docker engine: one at a time.
static DOCKER: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct ScriptRun {
    success: bool,
    output: String,
    elapsed: Duration,
}

/// Run one of the container scripts with the debug binary, in its own process group, its
/// output into a file. Past `timeout` the group gets SIGTERM (the script's trap tears the mesh
/// down), then SIGKILL a minute later.
fn run_container_script(script: &str, timeout: Duration) -> ScriptRun {
    use std::os::unix::process::CommandExt;
    let mut log = tempfile::tempfile().expect("temp file");
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(repo().join("deploy").join(script))
        .arg(MINDMESH)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log.try_clone().expect("dup"))
        .process_group(0)
        .spawn()
        .expect("run bash");
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let mut signalled = None;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        let over = started.elapsed();
        if over > timeout && signalled.is_none() {
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
            signalled = Some(Instant::now());
        }
        if signalled.is_some_and(|t| t.elapsed() > Duration::from_secs(60)) {
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut output = String::new();
    use std::io::Seek;
    log.seek(std::io::SeekFrom::Start(0)).expect("seek");
    log.read_to_string(&mut output).expect("read the script's output");
    if signalled.is_some() {
        output.push_str(&format!("\n(test: stopped after {timeout:?})\n"));
    }
    ScriptRun { success: status.success(), output, elapsed: started.elapsed() }
}

/// `key=value` pairs of the script's `timing:` line.
fn timings(output: &str) -> Vec<(String, f64)> {
    let line = output.lines().find_map(|l| l.strip_prefix("timing: ")).expect("a timing: line");
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_owned(), v.parse().unwrap_or_else(|_| panic!("a number in {kv}")))
        })
        .collect()
}

fn timing(t: &[(String, f64)], key: &str) -> f64 {
    t.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in {t:?}")).1
}

/// The run's compose project, as the script announced it.
fn project(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.split("] run ").nth(1))
        .and_then(|r| r.split(':').next())
        .expect("a 'run <project>:' line")
        .to_owned()
}

/// Nothing of the run is left: containers, networks, volumes (by project label), its image.
fn assert_nothing_left(project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    for args in [
        vec!["ps", "-aq", "--filter", &label],
        vec!["network", "ls", "-q", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
    ] {
        let out = Command::new("docker").args(&args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let left = String::from_utf8_lossy(&out.stdout);
        assert!(left.trim().is_empty(), "docker {args:?} still lists: {left}");
    }
    let image = format!("mindmesh-test:{project}");
    let out = Command::new("docker").args(["image", "inspect", &image]).output().expect("docker");
    assert!(!out.status.success(), "the image {image} is left behind");
}

#[test]
fn compose_mesh_elects_a_new_leader_when_the_leaders_container_is_killed() {
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let run = run_container_script("container-test.sh", Duration::from_secs(300));
    println!("{}", run.output);
    if run.output.lines().any(|l| l.starts_with("skipped: no Docker engine")) {
        assert!(run.success, "a skip exits 0");
        eprintln!("skipped: no Docker engine answers here");
        return;
    }
    assert!(run.success, "deploy/container-test.sh failed after {:?}:\n{}", run.elapsed, run.output);
    assert!(run.output.contains("placement checked: each of 6 personas"), "{}", run.output);
    assert!(run.output.contains("container test passed"), "{}", run.output);
    let t = timings(&run.output);
    let up = timing(&t, "mesh_up_s");
    let failover = timing(&t, "new_leader_after_kill_s");
    // elections take about a second (DESIGN.md); `docker exec` polling adds a few hundred ms
    assert!(failover < 5.0, "a new leader {failover} s after the kill");
    assert!(up < 60.0, "mesh up after {up} s");
    assert_nothing_left(&project(&run.output));
    eprintln!(
        "compose test: mesh up in {up} s, new leader {failover} s after docker kill; whole run {:?}",
        run.elapsed
    );
}

#[test]
fn partitioned_node_fences_itself_and_its_personas_fail_over_once() {
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let run = run_container_script("container-partition-test.sh", Duration::from_secs(300));
    println!("{}", run.output);
    if run.output.lines().any(|l| l.starts_with("skipped: no Docker engine")) {
        assert!(run.success, "a skip exits 0");
        eprintln!("skipped: no Docker engine answers here");
        return;
    }
    assert!(run.success, "deploy/container-partition-test.sh failed after {:?}:\n{}", run.elapsed, run.output);
    assert!(run.output.contains("partition test passed"), "{}", run.output);
    let t = timings(&run.output);
    let fenced = timing(&t, "fenced_after_s");
    let failed_over = timing(&t, "failed_over_after_s");
    assert!(fenced <= 10.0 && failed_over <= 10.0, "fenced after {fenced} s, failed over after {failed_over} s");
    assert_nothing_left(&project(&run.output));
}

/// The flags `mindmesh node start` takes, from its help.
fn node_start_flags() -> BTreeSet<String> {
    let out = Command::new(MINDMESH).args(["node", "start", "--help"]).output().expect("mindmesh");
    assert!(out.status.success());
    flags_in(&String::from_utf8_lossy(&out.stdout))
}

fn flags_in(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',' || c == '[' || c == ']') {
        if let Some(rest) = word.strip_prefix("--") {
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
            if !name.is_empty() {
                flags.insert(name);
            }
        }
    }
    flags
}

fn assert_node_start_flags(what: &str, used: &BTreeSet<String>) {
    let known = node_start_flags();
    let unknown: Vec<&String> = used.difference(&known).collect();
    assert!(unknown.is_empty(), "{what} passes flags `mindmesh node start` does not take: {unknown:?}");
}

#[test]
fn systemd_unit_verifies_and_keeps_cgroups_writable() {
    let unit_path = repo().join("deploy/systemd/mindmesh.service");
    let unit = std::fs::read_to_string(&unit_path).expect("the unit");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |k: &str| settings.iter().filter(|(key, _)| *key == k).map(|(_, v)| *v).collect::<Vec<_>>();
    // what the unit is for: an unprivileged node with its own state, stopped cleanly, whose
    // personas it can put in cgroups of their own
    assert_eq!(get("User"), ["mindmesh"]);
    assert_eq!(get("StateDirectory"), ["mindmesh"]);
    assert_eq!(get("KillMode"), ["mixed"]);
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    assert_eq!(get("Delegate"), ["cpu memory"], "the node creates persona cgroups under its own");
    assert!(
        get("ProtectControlGroups").iter().all(|v| *v == "no"),
        "ProtectControlGroups= would make /sys/fs/cgroup read-only under Delegate="
    );
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(exec[0].starts_with("/usr/local/bin/mindmesh node start "), "{}", exec[0]);
    assert!(exec[0].contains("--data-dir /var/lib/mindmesh"), "the state directory is the data dir: {}", exec[0]);
    assert_node_start_flags("the unit's ExecStart", &flags_in(exec[0]));

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed (the unit's settings were checked, not verified)");
        return;
    };
    assert!(version.status.success());
    // verify checks that ExecStart's program exists: point it at the binary under test, the
    // rest of the unit as shipped
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("mindmesh.service");
    std::fs::write(&copy, unit.replace("ExecStart=/usr/local/bin/mindmesh ", &format!("ExecStart={MINDMESH} ")))
        .unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy).output().expect("verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // a setting it cannot parse is only a warning, exit code 0: any word about our unit fails
    let about_us: Vec<&str> = stderr.lines().filter(|l| l.contains("mindmesh")).collect();
    assert!(about_us.is_empty(), "systemd-analyze verify warns:\n{}", about_us.join("\n"));
    println!(
        "systemd-analyze verify: clean ({})",
        String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or_default()
    );
}

/// kubernetes-validate, as a program or a Python module; None if neither is installed.
fn kubernetes_validate() -> Option<Vec<String>> {
    let candidates =
        [vec!["kubernetes-validate".to_owned()], vec!["python3".into(), "-m".into(), "kubernetes_validate".into()]];
    candidates
        .into_iter()
        .find(|c| Command::new(&c[0]).args(&c[1..]).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Every document of a YAML file as JSON (PyYAML comes with kubernetes-validate).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).expect("JSON") {
        Value::Array(docs) => docs,
        other => panic!("not a list: {other}"),
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas_and_the_node() {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "manifests in {}: {files:?}", dir.display());

    let Some(validator) = kubernetes_validate() else {
        return missing("kubernetes-validate is not installed (pip install kubernetes-validate)");
    };
    // --strict: a misspelt or misplaced field is an error, not ignored
    let out = Command::new(&validator[0]).args(&validator[1..]).arg("--strict").args(&files).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
    let passed = text.lines().filter(|l| l.contains(" passed for resource ")).count();

    let docs: Vec<Value> = files.iter().flat_map(|f| yaml_documents(f)).collect();
    assert_eq!(passed, docs.len(), "every document validated: {text}");
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").expect("a StatefulSet");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 3);

    // the pods find each other through a headless Service that publishes them before they
    // are ready (pod 0 is dialled while it founds the mesh)
    let svc_name = spec["serviceName"].as_str().expect("serviceName");
    let svc = find("Service", svc_name);
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
    let ports: Vec<i64> =
        svc["spec"]["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()).collect();
    assert!(ports.contains(&7946) && ports.contains(&7070), "{ports:?}");
    let labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the pods");
    }

    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        mounts.iter().find(|m| m["name"] == name).and_then(|m| m["mountPath"].as_str()).unwrap_or_default().to_owned()
    };
    // the data dir on a PVC of its own per pod
    let claim = spec["volumeClaimTemplates"][0]["metadata"]["name"].as_str().expect("a PVC template");
    assert_eq!(mount(claim), "/data");
    assert!(container["readinessProbe"].is_object(), "a readiness probe");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);

    // the Secret holds the mesh key and the API token the pods use
    let env = container["env"].as_array().unwrap();
    let token =
        &env.iter().find(|e| e["name"] == "MINDMESH_API_TOKEN").expect("the token")["valueFrom"]["secretKeyRef"];
    let secret = find("Secret", token["name"].as_str().unwrap());
    assert!(secret["stringData"][token["key"].as_str().unwrap()].is_string(), "the token's key is in the Secret");
    let volumes = pod["volumes"].as_array().unwrap();
    let secret_vol = volumes.iter().find(|v| v["secret"].is_object()).expect("a secret volume");
    assert_eq!(secret_vol["secret"]["secretName"], secret["metadata"]["name"]);
    assert!(secret["stringData"]["mesh.key"].is_string());

    // each pod's command line, as Kubernetes expands it, and its config
    let config_vol = volumes.iter().find(|v| v["configMap"].is_object()).expect("a config volume");
    let config_map_name = config_vol["configMap"]["name"].as_str().unwrap();
    let config_dir = mount(config_vol["name"].as_str().unwrap());
    let data = &find("ConfigMap", config_map_name)["data"];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..2], ["node", "start"]);
    assert_node_start_flags("the StatefulSet", &flags_in(&args.join(" ")));
    let ns = "mesh-ns";
    let mut persona_names = BTreeSet::new();
    let mut bootstrappers = Vec::new();
    let sts_name = sts["metadata"]["name"].as_str().unwrap();
    for ordinal in 0..3 {
        let pod_name = format!("{sts_name}-{ordinal}");
        let expanded: Vec<String> =
            args.iter().map(|a| a.replace("$(POD_NAME)", &pod_name).replace("$(POD_NAMESPACE)", ns)).collect();
        let value = |flag: &str| -> Vec<String> {
            expanded.iter().filter_map(|a| a.strip_prefix(&format!("--{flag}="))).map(str::to_owned).collect()
        };
        assert_eq!(value("name"), std::slice::from_ref(&pod_name));
        // every pod joins through the headless Service's names of the pods
        let joins = value("join");
        let pod0 = format!("/dns4/{sts_name}-0.{svc_name}.{ns}.svc.cluster.local/tcp/7946");
        assert!(joins.contains(&pod0), "{pod_name} joins through pod 0: {joins:?}");
        assert_eq!(value("advertise"), [format!("/dns4/{pod_name}.{svc_name}.{ns}.svc.cluster.local/tcp/7946")]);
        assert_eq!(value("data-dir"), ["/data"]);
        let mesh_key = value("mesh-key");
        assert!(mesh_key[0].starts_with(&mount(secret_vol["name"].as_str().unwrap())), "{mesh_key:?}");
        let config = value("config");
        let file = config[0].strip_prefix(&format!("{config_dir}/")).expect("a file of the ConfigMap");
        let text = data[file].as_str().unwrap_or_else(|| panic!("{pod_name} reads {file}, which the ConfigMap lacks"));
        let cfg = NodeConfig::from_toml_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        if cfg.mesh.bootstrap {
            bootstrappers.push(pod_name.clone());
        }
        for p in &cfg.personas {
            assert!(persona_names.insert(p.name.clone()), "persona {} declared twice", p.name);
            assert_eq!(p.command, "${MINDMESH_EXE}", "the image has only the node's binary");
        }
    }
    assert_eq!(bootstrappers, [format!("{sts_name}-0")], "exactly pod 0 may found the mesh");
    assert!(!persona_names.is_empty());
}

#[test]
fn compose_node_configs_are_valid_and_name_each_persona_once() {
    let compose = std::fs::read_to_string(repo().join("deploy/compose.yaml")).unwrap();
    let commands: String = compose.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_node_start_flags("deploy/compose.yaml", &flags_in(&commands));
    let mut names = BTreeSet::new();
    for n in 1..=3 {
        let file = format!("deploy/compose/node{n}.toml");
        assert!(
            compose.contains(&format!("./compose/node{n}.toml:/etc/mindmesh/node{n}.toml")),
            "node{n} mounts {file}"
        );
        let cfg = NodeConfig::from_toml_str(&std::fs::read_to_string(repo().join(&file)).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(cfg.personas.len(), 2, "{file}");
        for p in &cfg.personas {
            assert!(names.insert(p.name.clone()), "persona {} declared twice", p.name);
            // the container tests tell personas apart by their command line
            assert!(
                p.args.windows(2).any(|w| w == ["--persona-id", "${MINDMESH_PERSONA_ID}"]),
                "{}: {:?}",
                p.name,
                p.args
            );
        }
    }
    assert_eq!(names.len(), 6);
}

#[test]
fn the_example_for_machines_is_a_valid_mesh_node_config() {
    let file = repo().join("deploy/examples/mesh-node.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut cfg: NodeConfig = mindmesh_core::spec::parse_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    // off loopback, so refused without the token the unit passes through MINDMESH_API_TOKEN
    assert!(!cfg.api.listen.ip().is_loopback());
    assert_eq!(cfg.validate().unwrap_err().field(), Some("api.token"));
    cfg.api.token = Some("0123456789abcdef".into());
    cfg.validate().unwrap();
    assert!(cfg.mesh.bootstrap && cfg.mesh.join.len() == 3 && cfg.mesh.advertise.len() == 1, "{:?}", cfg.mesh);
    assert!(cfg.api.advertise.is_some());
}
