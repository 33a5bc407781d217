//! The recorder: takes the supervisor's reports, in order, and persists them in batches —
//! many reports, few transactions — then tells readers (events `--follow`, status) what moved.

use std::collections::BTreeMap;
use std::sync::Arc;

use mindmesh_core::PersonaRecord;
use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_store::StoreHandle;
use mindmesh_supervisor::Report;
use tokio::sync::{mpsc, watch};

use crate::gateway::Meters;
use crate::telemetry::Telemetry;

/// Most reports written per batch: bounds one round of work and the size of a transaction.
const MAX_BATCH: usize = 1024;

pub struct Recorder {
    store: StoreHandle,
    reports: mpsc::Receiver<Report>,
    last_event_seq: watch::Sender<u64>,
    host: watch::Sender<Option<HostSample>>,
    /// The gateway's measurements, merged into each tick's samples before they are stored.
    behaviour: Option<Meters>,
    latest: watch::Sender<Arc<Latest>>,
    telemetry: Option<Arc<Telemetry>>,
}

/// The last tick's full samples (OS and gateway figures) and each persona's last reported
/// error, for whoever describes this node to others (gossip).
#[derive(Debug, Clone, Default)]
pub struct Latest {
    pub ts_ms: u64,
    pub samples: BTreeMap<String, PersonaSample>,
    pub last_error: BTreeMap<String, String>,
}

impl Recorder {
    pub fn new(
        store: StoreHandle,
        reports: mpsc::Receiver<Report>,
        last_event_seq: watch::Sender<u64>,
        host: watch::Sender<Option<HostSample>>,
    ) -> Self {
        Recorder {
            store,
            reports,
            last_event_seq,
            host,
            behaviour: None,
            latest: watch::channel(Arc::default()).0,
            telemetry: None,
        }
    }

    /// Publish each tick's full samples here.
    pub fn with_latest(mut self, latest: watch::Sender<Arc<Latest>>) -> Self {
        self.latest = latest;
        self
    }

    /// Count events (restarts by reason, crash loops, kinds) for `/metrics`.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Fill the samples' behaviour fields (requests, errors, latency, queue) from the gateway.
    pub fn with_behaviour(mut self, meters: Meters) -> Self {
        self.behaviour = Some(meters);
        self
    }

    /// Runs until every sender of reports is gone, so nothing reported is left unwritten.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.reports.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.reports.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.write(&mut batch).await;
        }
        tracing::debug!("recorder finished");
    }

    async fn write(&mut self, batch: &mut Vec<Report>) {
        // the latest record per persona wins; a removal cancels earlier records of the batch
        let mut records: BTreeMap<String, PersonaRecord> = BTreeMap::new();
        let mut removed: Vec<String> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        for report in batch.drain(..) {
            match report {
                Report::Record(r) => {
                    records.insert(r.spec.name.clone(), *r);
                }
                Report::Removed(name) => {
                    records.remove(&name);
                    self.latest.send_modify(|l| {
                        Arc::make_mut(l).last_error.remove(&name);
                    });
                    removed.push(name);
                }
                Report::Event(e) => {
                    if let Some(t) = &self.telemetry {
                        t.event(&e);
                    }
                    // a refusal for want of memory travels too: the leader reads it from the
                    // gossip and may place the persona on another node
                    if matches!(
                        e.kind,
                        EventKind::Error
                            | EventKind::Exit
                            | EventKind::LimitHit
                            | EventKind::CrashLoop
                            | EventKind::NoRoom
                    ) || (e.kind == EventKind::HealthChange && e.detail.ends_with("unhealthy"))
                    {
                        let (persona, detail) = (e.persona.clone(), e.detail.clone());
                        self.latest.send_modify(|l| {
                            Arc::make_mut(l).last_error.insert(persona, detail);
                        });
                    }
                    events.push(e)
                }
                Report::State { persona, blob } => {
                    if let Err(e) = self.store.put_state(&persona, blob).await {
                        tracing::error!(persona, error = %e, "cannot store state blob");
                    }
                }
                Report::Samples { ts_ms, mut personas, host } => {
                    if let Some(m) = &self.behaviour {
                        m.fill(ts_ms, &mut personas);
                    }
                    self.host.send_replace(Some(host.clone()));
                    self.latest.send_modify(|l| {
                        let l = Arc::make_mut(l);
                        l.ts_ms = ts_ms;
                        l.samples = personas.iter().cloned().collect();
                    });
                    if let Err(e) = self.store.append_samples(ts_ms, personas, Some(host)).await {
                        tracing::error!(error = %e, "cannot store samples");
                    }
                }
            }
        }
        for name in removed {
            if let Err(e) = self.store.remove_persona(&name).await {
                tracing::error!(persona = name, error = %e, "cannot remove persona record");
            }
        }
        for record in records.into_values() {
            if let Err(e) = self.store.put_persona(record).await {
                tracing::error!(error = %e, "cannot store persona record");
            }
        }
        if !events.is_empty() {
            match self.store.append_events(events).await {
                Ok(stored) => {
                    if let Some(last) = stored.last() {
                        self.last_event_seq.send_replace(last.seq);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot store events"),
            }
        }
    }
}
