//! [`StoreHandle`]: the store as an actor. A dedicated thread owns the [`Store`] and runs one
//! command at a time from a bounded channel, so async code never blocks on disk and writes
//! happen in the order they were sent. Handles are cheap to clone.
//!
//! Shutdown drains: [`StoreHandle::close`], or dropping the last handle, lets every command
//! already queued finish before the store is dropped and its file closed. There is no
//! cancellation token on purpose: cancelling the store would lose the writes that shutdown
//! itself produces (the last events, the final records), so it closes after its writers.
//!
//! A store that fails (an I/O error, a damaged page, a panic in redb) is marked failed in its
//! [`StoreHealth`]; from then on every command is answered [`StoreError::Failed`] without
//! touching the store, so nothing is acknowledged that was not persisted, and the owner, who
//! watches the health, stops.

use std::thread;

use mindmesh_core::PersonaRecord;
use mindmesh_core::event::Event;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::health::{StoreHealth, panic_message};
use crate::store::{CompactReport, Store};

/// Commands waiting for the store thread at most; senders wait (asynchronously) beyond it.
pub const DEFAULT_QUEUE_LEN: usize = 256;

type Reply<T> = oneshot::Sender<Result<T>>;

enum Command {
    PutPersona(Box<PersonaRecord>, Reply<()>),
    GetPersona(String, Reply<Option<PersonaRecord>>),
    ListPersonas(Reply<Vec<PersonaRecord>>),
    RemovePersona(String, Reply<bool>),
    PutState(String, Vec<u8>, Reply<()>),
    GetState(String, Reply<Option<Vec<u8>>>),
    DeleteState(String, Reply<bool>),
    AppendEvents(Vec<Event>, Reply<Vec<Event>>),
    Events { after_seq: u64, limit: usize, persona: Option<String>, reply: Reply<Vec<Event>> },
    LastEventSeq(Reply<u64>),
    AppendSamples { ts_ms: u64, samples: Vec<(String, PersonaSample)>, host: Option<HostSample>, reply: Reply<()> },
    PersonaSeries { name: String, from_ms: u64, to_ms: u64, max_points: usize, reply: Reply<Vec<PersonaSample>> },
    HostSeries { from_ms: u64, to_ms: u64, max_points: usize, reply: Reply<Vec<HostSample>> },
    Compact(u64, Reply<CompactReport>),
    Close(oneshot::Sender<()>),
}

/// A cloneable async front to a store running on its own thread.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    health: StoreHealth,
}

/// The store thread (or task), to wait for after shutdown.
#[derive(Debug)]
pub struct StoreThread {
    runner: Runner,
    stopped: oneshot::Receiver<()>,
}

#[derive(Debug)]
enum Runner {
    Thread(thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl StoreThread {
    /// Leave the store without waiting for it (a crash): a task is stopped where it is, a
    /// thread finishes what is queued on its own.
    pub fn abandon(self) {
        if let Runner::Task(t) = self.runner {
            t.abort();
        }
    }

    /// Wait until the thread has run every queued command and dropped the store.
    pub async fn join(self) {
        // an Err means the thread ended without saying so (it panicked): it is over either way
        let _ = self.stopped.await;
        let panicked = match self.runner {
            Runner::Thread(t) => t.join().is_err(),
            Runner::Task(t) => t.await.is_err(),
        };
        if panicked {
            tracing::error!("store thread panicked");
        }
    }
}

impl StoreHandle {
    /// Start a thread that owns `store`, with room for `queue_len` waiting commands.
    pub fn spawn(store: Box<dyn Store>, queue_len: usize) -> Result<(StoreHandle, StoreThread)> {
        Self::spawn_watched(store, queue_len, StoreHealth::new())
    }

    /// [`StoreHandle::spawn`] reporting to `health`, which the store's file reports to as well
    /// (see [`crate::RedbStore::health`]).
    pub fn spawn_watched(
        store: Box<dyn Store>,
        queue_len: usize,
        health: StoreHealth,
    ) -> Result<(StoreHandle, StoreThread)> {
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        let (stopped_tx, stopped) = oneshot::channel();
        let thread_health = health.clone();
        let thread = thread::Builder::new()
            .name("mindmesh-store".into())
            .spawn(move || {
                run(store, rx, &thread_health);
                let _ = stopped_tx.send(());
            })
            .map_err(StoreError::Spawn)?;
        Ok((StoreHandle { tx, health }, StoreThread { runner: Runner::Thread(thread), stopped }))
    }

    /// Whether the store still works, and the first failure once it does not.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Run `store` as a task of the caller's runtime instead of a thread: for an in-memory
    /// store in the simulator, where a call must not leave the runtime idle (paused time would
    /// jump ahead while a thread worked) and the order of calls must follow the seed. Never for
    /// a store on disk: its calls block.
    pub fn spawn_in_task(store: Box<dyn Store>, queue_len: usize) -> (StoreHandle, StoreThread) {
        let (tx, mut rx) = mpsc::channel(queue_len.max(1));
        let (stopped_tx, stopped) = oneshot::channel();
        let health = StoreHealth::new();
        let task_health = health.clone();
        let task = tokio::spawn(async move {
            let mut closed_by = None;
            while let Some(cmd) = rx.recv().await {
                if let Some(done) = execute(store.as_ref(), cmd, &task_health) {
                    closed_by = Some(done);
                    break;
                }
            }
            drop(rx);
            drop(store);
            if let Some(done) = closed_by {
                let _ = done.send(());
            }
            let _ = stopped_tx.send(());
        });
        (StoreHandle { tx, health }, StoreThread { runner: Runner::Task(task), stopped })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn put_persona(&self, record: PersonaRecord) -> Result<()> {
        self.call(|r| Command::PutPersona(Box::new(record), r)).await
    }

    pub async fn get_persona(&self, name: &str) -> Result<Option<PersonaRecord>> {
        self.call(|r| Command::GetPersona(name.to_owned(), r)).await
    }

    pub async fn list_personas(&self) -> Result<Vec<PersonaRecord>> {
        self.call(Command::ListPersonas).await
    }

    pub async fn remove_persona(&self, name: &str) -> Result<bool> {
        self.call(|r| Command::RemovePersona(name.to_owned(), r)).await
    }

    pub async fn put_state(&self, name: &str, state: Vec<u8>) -> Result<()> {
        self.call(|r| Command::PutState(name.to_owned(), state, r)).await
    }

    pub async fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.call(|r| Command::GetState(name.to_owned(), r)).await
    }

    pub async fn delete_state(&self, name: &str) -> Result<bool> {
        self.call(|r| Command::DeleteState(name.to_owned(), r)).await
    }

    /// Append `events` in one transaction; returns them with their `seq`.
    pub async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Event>> {
        self.call(|r| Command::AppendEvents(events, r)).await
    }

    pub async fn events(&self, after_seq: u64, limit: usize, persona: Option<&str>) -> Result<Vec<Event>> {
        let persona = persona.map(str::to_owned);
        self.call(|reply| Command::Events { after_seq, limit, persona, reply }).await
    }

    pub async fn last_event_seq(&self) -> Result<u64> {
        self.call(Command::LastEventSeq).await
    }

    /// Record one metrics tick in one transaction.
    pub async fn append_samples(
        &self,
        ts_ms: u64,
        samples: Vec<(String, PersonaSample)>,
        host: Option<HostSample>,
    ) -> Result<()> {
        self.call(|reply| Command::AppendSamples { ts_ms, samples, host, reply }).await
    }

    pub async fn persona_series(
        &self,
        name: &str,
        from_ms: u64,
        to_ms: u64,
        max_points: usize,
    ) -> Result<Vec<PersonaSample>> {
        let name = name.to_owned();
        self.call(|reply| Command::PersonaSeries { name, from_ms, to_ms, max_points, reply }).await
    }

    pub async fn host_series(&self, from_ms: u64, to_ms: u64, max_points: usize) -> Result<Vec<HostSample>> {
        self.call(|reply| Command::HostSeries { from_ms, to_ms, max_points, reply }).await
    }

    pub async fn compact(&self, now_ms: u64) -> Result<CompactReport> {
        self.call(|r| Command::Compact(now_ms, r)).await
    }

    /// Finish every command sent before this one, then close the store. Later calls, from
    /// this handle or its clones, fail with [`StoreError::Closed`]. Closing twice is fine.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Close(done)).await.is_ok() {
            // Err: the thread is already gone, which is what was asked
            let _ = rx.await;
        }
    }
}

/// Answer one call, noting a failure of the store itself in `health`.
fn answer<T>(health: &StoreHealth, reply: Reply<T>, result: Result<T>) {
    if let Err(e) = &result
        && e.is_fatal()
    {
        health.fail(e.to_string());
    }
    // A send fails only when the caller stopped waiting (its future dropped); what was
    // asked is done all the same, so the failure is nothing to report.
    let _ = reply.send(result);
}

/// Carry out one command; a close hands back whom to tell once the store is dropped. Once
/// the store has failed, every command is answered with the failure and not carried out.
fn execute(store: &dyn Store, cmd: Command, health: &StoreHealth) -> Option<oneshot::Sender<()>> {
    let h = health;
    if let Some(failure) = health.failure() {
        fn failed<T>(failure: &std::sync::Arc<str>) -> Result<T> {
            Err(StoreError::Failed(failure.clone()))
        }
        match cmd {
            Command::PutPersona(_, r) | Command::PutState(_, _, r) | Command::AppendSamples { reply: r, .. } => {
                let _ = r.send(failed(&failure));
            }
            Command::GetPersona(_, r) => drop(r.send(failed(&failure))),
            Command::ListPersonas(r) => drop(r.send(failed(&failure))),
            Command::RemovePersona(_, r) | Command::DeleteState(_, r) => drop(r.send(failed(&failure))),
            Command::GetState(_, r) => drop(r.send(failed(&failure))),
            Command::AppendEvents(_, r) | Command::Events { reply: r, .. } => drop(r.send(failed(&failure))),
            Command::LastEventSeq(r) => drop(r.send(failed(&failure))),
            Command::PersonaSeries { reply, .. } => drop(reply.send(failed(&failure))),
            Command::HostSeries { reply, .. } => drop(reply.send(failed(&failure))),
            Command::Compact(_, r) => drop(r.send(failed(&failure))),
            Command::Close(done) => return Some(done),
        }
        return None;
    }
    match cmd {
        Command::PutPersona(rec, r) => answer(h, r, store.put_persona(&rec)),
        Command::GetPersona(name, r) => answer(h, r, store.get_persona(&name)),
        Command::ListPersonas(r) => answer(h, r, store.list_personas()),
        Command::RemovePersona(name, r) => answer(h, r, store.remove_persona(&name)),
        Command::PutState(name, state, r) => answer(h, r, store.put_state(&name, &state)),
        Command::GetState(name, r) => answer(h, r, store.get_state(&name)),
        Command::DeleteState(name, r) => answer(h, r, store.delete_state(&name)),
        Command::AppendEvents(mut events, r) => {
            let result = store.append_events(&mut events).map(|()| events);
            answer(h, r, result);
        }
        Command::Events { after_seq, limit, persona, reply } => {
            answer(h, reply, store.events(after_seq, limit, persona.as_deref()));
        }
        Command::LastEventSeq(r) => answer(h, r, store.last_event_seq()),
        Command::AppendSamples { ts_ms, samples, host, reply } => {
            answer(h, reply, store.append_samples(ts_ms, &samples, host.as_ref()));
        }
        Command::PersonaSeries { name, from_ms, to_ms, max_points, reply } => {
            answer(h, reply, store.persona_series(&name, from_ms, to_ms, max_points));
        }
        Command::HostSeries { from_ms, to_ms, max_points, reply } => {
            answer(h, reply, store.host_series(from_ms, to_ms, max_points));
        }
        Command::Compact(now_ms, r) => answer(h, r, store.compact(now_ms)),
        Command::Close(done) => return Some(done),
    }
    None
}

/// The store thread's loop: one command at a time, in arrival order. A panic in a command
/// (redb panics on some damaged pages) fails the store instead of ending the thread: its
/// caller sees `Closed`, every later caller `Failed`, and the owner learns of it.
fn run(store: Box<dyn Store>, mut rx: mpsc::Receiver<Command>, health: &StoreHealth) {
    tracing::debug!("store thread started");
    let mut closed_by = None;
    while let Some(cmd) = rx.blocking_recv() {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(store.as_ref(), cmd, health)));
        match step {
            Ok(Some(done)) => {
                closed_by = Some(done);
                break;
            }
            Ok(None) => {}
            Err(p) => health.fail(format!("the store panicked: {}", panic_message(p.as_ref()))),
        }
    }
    // Commands queued behind a close are dropped with the channel: their callers see Closed.
    drop(rx);
    drop(store);
    tracing::debug!("store thread stopped");
    if let Some(done) = closed_by {
        let _ = done.send(());
    }
}
