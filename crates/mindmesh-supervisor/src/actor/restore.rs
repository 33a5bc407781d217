//! Taking over after a restart: adopt the processes a previous run left that are still
//! wanted, kill the rest, start what should run.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use mindmesh_core::event::EventKind;
use mindmesh_core::lifecycle::{ExitStatus, Input, Lifecycle};
use mindmesh_core::{PersonaRecord, Phase, ProcessRecord};

use super::{Internal, Supervisor, join_in_background};
use crate::handle::RestoreSummary;
use crate::host::Sig;
use crate::process;

impl Supervisor {
    pub(super) fn restore(&mut self, mut records: Vec<PersonaRecord>) -> RestoreSummary {
        // adapters first: a base started (or adopted) below must know all its adapters
        records.sort_by_key(|r| r.spec.adapter.is_none());
        let mut summary = RestoreSummary::default();
        let found = self.host.scan_instance(&self.settings.instance);
        let mut by_persona: HashMap<String, Vec<process::FoundProcess>> = HashMap::new();
        for f in found {
            by_persona.entry(f.persona.clone()).or_default().push(f);
        }
        let known: HashSet<String> = records.iter().map(|r| r.spec.name.clone()).collect();
        for (persona, procs) in &by_persona {
            if !known.contains(persona) {
                for p in procs {
                    tracing::warn!(persona, pid = p.pid, "killing a process of this node with no persona to own it");
                    self.host.signal_group(p.pid, Sig::Kill);
                    summary.strays_killed += 1;
                }
            }
        }
        for record in records {
            let name = record.spec.name.clone();
            if self.slots.contains_key(&name) {
                continue;
            }
            let mut candidates = by_persona.remove(&name).unwrap_or_default();
            // the recorded process first: it is the one we know to be the persona
            if let Some(rec) = &record.process {
                candidates.sort_by_key(|c| !(c.pid == rec.pid && c.start_ticks == rec.start_ticks));
            }
            let wants = record.wants_running() && record.spec.budget.allowed_to_run;
            let adoptable = wants && candidates.first().is_some_and(|c| c.port.is_some());
            let restarts = record.restarts;
            let phase = if wants { Phase::Pending } else { record.phase };
            let reason = if wants { None } else { record.reason.clone() };
            let life = Lifecycle::resume(record.spec.restart, phase, None, None, restarts, reason);
            self.insert_slot(PersonaRecord { process: None, ..record }, life);
            let mut keep = None;
            if adoptable {
                let c = candidates.remove(0);
                match self.host.watch_exit(c.pid) {
                    Some(fd) => keep = Some((c, fd)),
                    None => candidates.insert(0, c),
                }
            }
            let extra = !candidates.is_empty();
            for c in candidates {
                tracing::info!(persona = %name, pid = c.pid, "killing a leftover process");
                self.host.signal_group(c.pid, Sig::Cont);
                self.host.signal_group(c.pid, Sig::Kill);
            }
            match keep {
                Some((c, fd)) => {
                    self.adopt(&name, c, fd);
                    summary.adopted.push(name);
                }
                None if wants => {
                    if extra {
                        self.event(&name, EventKind::Replace, "left-over process killed; starting afresh".into());
                        summary.replaced.push(name.clone());
                    } else {
                        summary.started.push(name.clone());
                    }
                    self.drive(&name, Input::Start);
                }
                None => self.changed(&name),
            }
        }
        summary
    }

    pub(super) fn adopt(&mut self, name: &str, found: process::FoundProcess, exited: BoxFuture<'static, ()>) {
        let spawn_id = self.bump_spawn_id();
        let now = self.now();
        let Some(wants_memory) = self.slots.get(name).map(|s| s.record.spec.limits.memory_max_mb.is_some()) else {
            return;
        };
        let cgroup = if wants_memory { self.cgroups.as_ref().and_then(|c| c.create(name).ok()) } else { None };
        // a persona paused (or caught mid duty cycle) when the last run died is still frozen:
        // it is adopted as running, so it must run; the mesh pauses it again if it wants it so
        self.host.signal_group(found.pid, crate::host::Sig::Cont);
        let Some(slot) = self.slots.get_mut(name) else { return };
        let restarts = slot.record.restarts;
        slot.life =
            Lifecycle::resume(slot.record.spec.restart, Phase::Running, Some(found.pid), Some(now), restarts, None);
        slot.spawn_id = spawn_id;
        slot.port = found.port;
        slot.oom_kills_seen = cgroup.as_ref().map_or(0, |c| c.oom_kills());
        if let Some(cg) = &cgroup {
            // it joined at its spawn; joining again is harmless and covers a node that died
            // between the spawn and the move
            join_in_background(name, found.pid, cg.procs_files(true, false));
        }
        slot.cg_memory = cgroup.is_some();
        slot.cg_cpu = false;
        slot.cgroup = cgroup;
        slot.record.process = Some(ProcessRecord {
            pid: found.pid,
            start_ticks: found.start_ticks,
            port: found.port.unwrap_or(0),
            started_at_ms: now,
            cgroup: slot.cgroup.as_ref().map(|c| c.path().display().to_string()),
        });
        // a node that died mid duty-cycle may have left the group stopped
        self.host.signal_group(found.pid, Sig::Cont);
        let tx = self.internal_tx.clone();
        let persona = name.to_owned();
        tokio::spawn(async move {
            exited.await;
            let _ = tx.send(Internal::Exited { name: persona, spawn_id, status: ExitStatus::Unknown }).await;
        });
        if let Some(Err(e)) = self.logs.as_mut().map(|l| l.collect(name)) {
            tracing::warn!(persona = %name, error = %e, "cannot collect the output of an adopted persona");
        }
        // started by the last run with the adapters it had then: taken to be those it has now
        // (adapter specs changed while the node was down are loaded at the base's next start)
        let loaded = self.adapters_to_load(name);
        if let Some(slot) = self.slots.get_mut(name) {
            slot.loaded_adapters = loaded;
        }
        self.event(name, EventKind::Adopt, format!("pid {} on port {}", found.pid, found.port.unwrap_or(0)));
        self.apply_cpu_control(name);
        self.changed(name);
    }
}
