//! [`MemStore`]: the store's in-memory twin, for tests and the simulator. It keeps the same
//! rules as the file (names, sizes, numbering, rollups, retention) and passes the same
//! conformance suite; it only forgets everything when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use mindmesh_core::PersonaRecord;
use mindmesh_core::config::StoreConfig;
use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample};

use crate::codec;
use crate::error::{Result, StoreError};
use crate::series::{self, Fate, MAX_MOVED_PER_COMPACT, Plan, Sample, stamped};
use crate::store::{
    CompactReport, MAX_EVENTS_EXPIRED_PER_COMPACT, MAX_EVENTS_PER_APPEND, MAX_EVENTS_PER_READ, MAX_SAMPLES_PER_TICK,
    Store, check_count, check_event, check_name, check_state,
};

#[derive(Debug, Default)]
struct Tables {
    personas: BTreeMap<String, PersonaRecord>,
    states: BTreeMap<String, Vec<u8>>,
    events: BTreeMap<u64, Event>,
    last_event_seq: u64,
    persona_recent: BTreeMap<(u64, String), PersonaSample>,
    persona_raw: BTreeMap<(String, u64), PersonaSample>,
    persona_rollups: BTreeMap<(String, u64), PersonaSample>,
    host_raw: BTreeMap<u64, HostSample>,
    host_rollups: BTreeMap<u64, HostSample>,
    rolled_until_ms: u64,
}

/// The store in memory. The mutex stands in for redb's transactions: each method holds it
/// for its whole run, so each is atomic and isolated as in the file.
#[derive(Debug)]
pub struct MemStore {
    config: StoreConfig,
    tables: Mutex<Tables>,
}

impl MemStore {
    pub fn new(config: StoreConfig) -> Result<Self> {
        config.validate().map_err(StoreError::Config)?;
        Ok(MemStore { config, tables: Mutex::new(Tables::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // a panic mid-method leaves at worst a half-applied call in a test; keep serving
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn put_persona(&self, record: &PersonaRecord) -> Result<()> {
        check_name(&record.spec.name)?;
        codec::encode(record)?;
        self.lock().personas.insert(record.spec.name.clone(), record.clone());
        Ok(())
    }

    fn get_persona(&self, name: &str) -> Result<Option<PersonaRecord>> {
        Ok(self.lock().personas.get(name).cloned())
    }

    fn list_personas(&self) -> Result<Vec<PersonaRecord>> {
        Ok(self.lock().personas.values().cloned().collect())
    }

    fn remove_persona(&self, name: &str) -> Result<bool> {
        let mut t = self.lock();
        t.states.remove(name);
        Ok(t.personas.remove(name).is_some())
    }

    fn put_state(&self, name: &str, state: &[u8]) -> Result<()> {
        check_name(name)?;
        check_state(&self.config, state)?;
        self.lock().states.insert(name.to_owned(), state.to_vec());
        Ok(())
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().states.get(name).cloned())
    }

    fn delete_state(&self, name: &str) -> Result<bool> {
        Ok(self.lock().states.remove(name).is_some())
    }

    fn append_events(&self, events: &mut [Event]) -> Result<()> {
        check_count("events", events.len(), MAX_EVENTS_PER_APPEND)?;
        for e in events.iter_mut() {
            check_event(e)?;
        }
        let mut t = self.lock();
        let last = t.last_event_seq;
        let mut stored = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let e = Event { seq: last + 1 + i as u64, ..e.clone() };
            codec::encode(&e)?;
            stored.push(e);
        }
        for e in stored {
            t.events.insert(e.seq, e);
        }
        t.last_event_seq = last + events.len() as u64;
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = last + 1 + i as u64;
        }
        Ok(())
    }

    fn events(&self, after_seq: u64, limit: usize, persona: Option<&str>) -> Result<Vec<Event>> {
        let Some(first) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
        let t = self.lock();
        Ok(t.events
            .range(first..)
            .map(|(_, e)| e)
            .filter(|e| persona.is_none_or(|p| e.persona == p))
            .take(limit.min(MAX_EVENTS_PER_READ))
            .cloned()
            .collect())
    }

    fn last_event_seq(&self) -> Result<u64> {
        Ok(self.lock().last_event_seq)
    }

    fn append_samples(&self, ts_ms: u64, samples: &[(String, PersonaSample)], host: Option<&HostSample>) -> Result<()> {
        check_count("persona samples", samples.len(), MAX_SAMPLES_PER_TICK)?;
        let mut rows = Vec::with_capacity(samples.len());
        for (name, s) in samples {
            check_name(name)?;
            let s = stamped(s, ts_ms).into_owned();
            codec::encode(&s)?;
            rows.push(((ts_ms, name.clone()), s));
        }
        let host = host.map(|h| stamped(h, ts_ms).into_owned());
        if let Some(h) = &host {
            codec::encode(h)?;
        }
        let mut t = self.lock();
        t.persona_recent.extend(rows);
        if let Some(h) = host {
            t.host_raw.insert(ts_ms, h);
        }
        Ok(())
    }

    fn persona_series(&self, name: &str, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<PersonaSample>> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let t = self.lock();
        let key = |ts: u64| (name.to_owned(), ts);
        let kept: Vec<PersonaSample> = t.persona_raw.range(key(from_ms)..=key(to_ms)).map(|(_, s)| s.clone()).collect();
        let recent: Vec<PersonaSample> = t
            .persona_recent
            .range((from_ms, String::new())..)
            .take_while(|((ts, _), _)| *ts <= to_ms)
            .filter(|((_, n), _)| n == name)
            .map(|(_, s)| s.clone())
            .collect();
        let raw = series::merge_by_ts(kept, recent);
        let rollups = t.persona_rollups.range(key(from_ms)..=key(to_ms)).map(|((_, k), s)| (*k, s));
        Ok(merge(&self.config, raw, rollups, from_ms, to_ms, max_points))
    }

    fn host_series(&self, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let t = self.lock();
        let raw: Vec<HostSample> = t.host_raw.range(from_ms..=to_ms).map(|(_, s)| s.clone()).collect();
        let rollups = t.host_rollups.range(from_ms..=to_ms).map(|(k, s)| (*k, s));
        Ok(merge(&self.config, raw, rollups, from_ms, to_ms, max_points))
    }

    fn compact(&self, now_ms: u64) -> Result<CompactReport> {
        let mut guard = self.lock();
        let t = &mut *guard;
        let plan = Plan::new(&self.config, now_ms, t.rolled_until_ms);
        let mut report = CompactReport { rolled_until_ms: plan.roll_to_ms, ..Default::default() };

        // move complete intervals out of the recent rows, as the file does
        let mut moving = t.persona_recent.split_off(&(plan.roll_to_ms, String::new()));
        std::mem::swap(&mut moving, &mut t.persona_recent);
        let mut moved: Vec<((u64, String), PersonaSample)> = moving.into_iter().collect();
        if moved.len() > MAX_MOVED_PER_COMPACT {
            t.persona_recent.extend(moved.split_off(MAX_MOVED_PER_COMPACT));
        }
        moved.sort_by(|a, b| (&a.0.1, a.0.0).cmp(&(&b.0.1, b.0.0)));
        let mut rest = moved.as_slice();
        while let Some(((first_ms, name), _)) = rest.first() {
            let start_ms = first_ms - first_ms % plan.interval_ms;
            let end_ms = start_ms + plan.interval_ms;
            let len = rest.iter().position(|((ts, n), _)| n != name || *ts >= end_ms).unwrap_or(rest.len());
            let (group, tail) = rest.split_at(len);
            rest = tail;
            let fate = plan.fate(start_ms);
            if fate != Fate::Keep {
                report.raw_deleted += group.len() as u64;
            }
            if fate == Fate::Drop {
                continue;
            }
            let key = |ts: u64| (name.clone(), ts);
            let kept: Vec<PersonaSample> =
                t.persona_raw.range(key(start_ms)..key(end_ms)).map(|(_, s)| s.clone()).collect();
            let fresh: Vec<PersonaSample> = group.iter().map(|(_, s)| s.clone()).collect();
            if fate == Fate::Keep {
                for ((ts, _), s) in group {
                    t.persona_raw.insert(key(*ts), s.clone());
                }
            }
            if let Some(rollup) = PersonaSample::rollup(&series::merge_by_ts(kept, fresh)) {
                t.persona_rollups.insert(key(start_ms), rollup);
                report.rollups_written += 1;
            }
        }
        for name in names_of(&t.persona_raw) {
            report.raw_deleted += drain(&mut t.persona_raw, (name.clone(), 0), (name, plan.raw_cut_ms));
        }
        for name in names_of(&t.persona_rollups) {
            report.rollups_deleted += drain(&mut t.persona_rollups, (name.clone(), 0), (name, plan.rollup_cut_ms));
        }

        if plan.roll_from_ms < plan.roll_to_ms {
            let samples: Vec<HostSample> =
                t.host_raw.range(plan.roll_from_ms..plan.roll_to_ms).map(|(_, s)| s.clone()).collect();
            for (start_ms, rollup) in series::rollup_by_interval(&samples, plan.interval_ms) {
                t.host_rollups.insert(start_ms, rollup);
                report.host_rollups_written += 1;
            }
        }
        report.host_raw_deleted = drain(&mut t.host_raw, 0, plan.raw_cut_ms);
        report.host_rollups_deleted = drain(&mut t.host_rollups, 0, plan.rollup_cut_ms);

        while let Some(entry) = t.events.first_entry() {
            if entry.get().ts_ms >= plan.event_cut_ms
                || report.events_deleted as usize >= MAX_EVENTS_EXPIRED_PER_COMPACT
            {
                break;
            }
            entry.remove();
            report.events_deleted += 1;
        }
        t.rolled_until_ms = plan.roll_to_ms;
        Ok(report)
    }
}

/// Rollups for what raw samples no longer cover, then the raw samples: the rule the file
/// follows (see [`crate::series`]).
fn merge<'a, T: Sample + 'a>(
    config: &StoreConfig,
    raw: Vec<T>,
    rollups: impl Iterator<Item = (u64, &'a T)>,
    from_ms: u64,
    to_ms: u64,
    max_points: usize,
) -> Vec<T> {
    let first_raw_ms = raw.first().map(|s| s.ts_ms());
    let upper_ms = series::rollup_upper_ms(first_raw_ms, to_ms, series::interval_ms(config));
    let mut points: Vec<T> =
        rollups.take_while(|(start, _)| upper_ms.is_some_and(|u| *start <= u)).map(|(_, s)| s.clone()).collect();
    points.extend(raw);
    series::downsample(points, from_ms, to_ms, max_points)
}

fn names_of<V>(map: &BTreeMap<(String, u64), V>) -> BTreeSet<String> {
    map.keys().map(|(n, _)| n.clone()).collect()
}

/// Remove the keys in `from..to`; returns how many went.
fn drain<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, from: K, to: K) -> u64 {
    if from >= to {
        return 0;
    }
    let mut tail = map.split_off(&from);
    let mut kept_after = tail.split_off(&to);
    let n = tail.len() as u64;
    map.append(&mut kept_after);
    n
}
