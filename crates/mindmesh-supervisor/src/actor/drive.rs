//! Feeding a persona's lifecycle and carrying out its effects: spawn, signal, timers.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use mindmesh_core::lifecycle::{Effect, Input};
use mindmesh_core::persona_env;
use mindmesh_core::{Health, ProcessRecord};
use rand::Rng;

use super::{Internal, STARTUP_PROBE_INTERVAL, Supervisor, join_in_background};
use crate::error::{Result, SupervisorError};
use crate::host::Sig;
use crate::process::{self, SpawnPlan};

impl Supervisor {
    /// Feed one input to a persona's lifecycle and carry out everything it asks for.
    pub(super) fn drive(&mut self, name: &str, input: Input) {
        if self.is_adapter(name) {
            // no process: the input only sets its phase
            self.drive_adapter(name, input);
            return;
        }
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let now = self.now();
            let jitter: f64 = self.rng.random();
            let cfg = self.restart_cfg.clone();
            let Some(slot) = self.slots.get_mut(name) else { return };
            let effects = slot.life.handle(input, now, jitter, &cfg);
            for effect in effects {
                match effect {
                    Effect::Spawn if self.settings.spawn_gate.as_ref().is_some_and(|g| !g.open_at(now)) => {
                        if let Some(slot) = self.slots.get_mut(name) {
                            slot.record.epoch = 0; // started anew by the mesh once the lease is back
                        }
                        queue.push_back(Input::Refused { reason: "fenced: this node has no lease".into() });
                    }
                    Effect::Spawn => match self.spawn_process(name) {
                        Ok(pid) => queue.push_back(Input::Spawned { pid }),
                        Err(e) => queue.push_back(Input::SpawnFailed { error: e.to_string() }),
                    },
                    Effect::Terminate => {
                        if let Some(pid) = self.slots.get(name).and_then(|s| s.life.pid()) {
                            self.host.signal_group(pid, Sig::Term);
                            // a stopped (throttled) process cannot act on SIGTERM
                            self.host.signal_group(pid, Sig::Cont);
                        }
                    }
                    Effect::KillGroup => {
                        if let Some(slot) = self.slots.get(name) {
                            if let Some(pid) = slot.life.pid() {
                                self.host.signal_group(pid, Sig::Kill);
                            }
                            if let Some(cg) = &slot.cgroup {
                                cg.kill_all();
                            }
                        }
                    }
                    Effect::ArmTimer { token, at_ms } => {
                        let delay = Duration::from_millis(at_ms.saturating_sub(now));
                        let tx = self.internal_tx.clone();
                        let persona = name.to_owned();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(Internal::Timer { name: persona, token }).await;
                        });
                    }
                    Effect::Record { kind, detail } => self.event(name, kind, detail),
                }
            }
        }
        self.changed(name);
    }

    pub(super) fn spawn_process(&mut self, name: &str) -> Result<u32> {
        let spawn_id = self.bump_spawn_id();
        let in_use: HashSet<u16> = self.slots.values().filter_map(|s| s.port).collect();
        let port = self.host.free_port(&in_use)?;
        let state_file = self.state_file(name);
        let now = self.now();
        let slot = self.slots.get(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let memory_limit = slot.record.spec.limits.memory_max_mb.map(mindmesh_core::bounds::mb_to_bytes);
        let cgroup = match (&self.cgroups, memory_limit) {
            (Some(c), Some(limit)) => {
                let cg = c.create(name).map_err(|e| SupervisorError::io("create cgroup", e))?;
                cg.set_memory_max(Some(limit)).map_err(|e| SupervisorError::io("set memory limit", e))?;
                Some(cg)
            }
            _ => None,
        };
        // the collector reads before the process writes (and across its restarts)
        let log_dir = match self.logs.as_mut().map(|l| l.collect(name).map(|()| l.dir(name))) {
            Some(Ok(dir)) => Some(dir),
            Some(Err(e)) => return Err(SupervisorError::io(format!("open the logs of {name}"), e)),
            None => None,
        };
        let adapters = self.adapters_to_load(name);
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let spec = &slot.record.spec;
        let mut contract = vec![
            (process::ENV_PORT, port.to_string()),
            (process::ENV_PERSONA_ID, spec.name.clone()),
            (process::ENV_NODE_INSTANCE, self.settings.instance.clone()),
            (process::ENV_EXE, self.node_exe.clone()),
        ];
        if state_file.exists() {
            contract.push((process::ENV_STATE_FILE, state_file.display().to_string()));
        }
        if !adapters.is_empty() {
            // serialising plain strings and numbers cannot fail
            let list = serde_json::to_string(&adapters).unwrap_or_default();
            contract.push((mindmesh_core::persona_env::ENV_LORA_ADAPTERS, list));
        }
        let env = persona_env::compose(&self.inherited_env, &spec.env, contract);
        let plan = SpawnPlan {
            persona: spec.name.clone(),
            program: process::resolve_program(&spec.command),
            args: spec.expanded_args(port),
            env,
            working_dir: spec.working_dir.clone(),
            log_dir,
        };
        let spawned = self.host.spawn(&plan)?;
        let pid = spawned.pid;
        if let Some(cg) = &cgroup {
            join_in_background(name, pid, cg.procs_files(true, false));
        }
        slot.spawn_id = spawn_id;
        slot.port = Some(port);
        slot.loaded_adapters = adapters;
        slot.health = Health::Unknown;
        slot.peak_rss_bytes = 0;
        slot.oom_kills_seen = cgroup.as_ref().map_or(0, |c| c.oom_kills());
        slot.cg_memory = cgroup.is_some();
        slot.cg_cpu = false;
        slot.record.process = Some(ProcessRecord {
            pid,
            start_ticks: spawned.start_ticks,
            port,
            started_at_ms: now,
            cgroup: cgroup.as_ref().map(|c| c.path().display().to_string()),
        });
        slot.cgroup = cgroup;
        let probe_path = slot.record.spec.health_path.clone();
        let tx = self.internal_tx.clone();
        let persona = name.to_owned();
        tokio::spawn(async move {
            let status = spawned.exited.await;
            let _ = tx.send(Internal::Exited { name: persona, spawn_id, status }).await;
        });
        if let Some(path) = probe_path {
            self.startup_probe(name, spawn_id, port, path);
        }
        self.apply_cpu_control_to(name, pid);
        Ok(pid)
    }

    /// Probe a starting persona often until it answers (bounded by the start timeout), so a
    /// wake or restart is seen healthy within tens of milliseconds.
    pub(super) fn startup_probe(&self, name: &str, spawn_id: u64, port: u16, path: String) {
        let host = self.host.clone();
        let tx = self.internal_tx.clone();
        let persona = name.to_owned();
        let attempts = (self.settings.config.start_timeout_ms / STARTUP_PROBE_INTERVAL.as_millis() as u64).max(1);
        tokio::spawn(async move {
            for _ in 0..attempts {
                tokio::time::sleep(STARTUP_PROBE_INTERVAL).await;
                if host.probe(port, &path).await {
                    let _ = tx.send(Internal::Health { name: persona, spawn_id, ok: true }).await;
                    return;
                }
                if tx.is_closed() {
                    return;
                }
            }
            let _ = tx.send(Internal::Health { name: persona, spawn_id, ok: false }).await;
        });
    }
}
