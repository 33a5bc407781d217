//! Crash safety, proven with real SIGKILLs. This test owns `main` (`harness = false`): run
//! plainly it is the parent; with `MINDMESH_STORE_CRASH_CHILD` set it is the child, a writer
//! that loops over records, events, state blobs, samples and compactions, printing each
//! commit after it returns. The parent kills it with SIGKILL at seeded random moments, then
//! reopens the file and checks that it opens, the event log is gap-free and ordered, every
//! record, blob and sample decodes, nothing the child saw committed is missing, and writing
//! goes on. Replay a failure with `MINDMESH_CRASH_SEED=<seed>`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use mindmesh_core::config::StoreConfig;
use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::{PersonaRecord, PersonaSpec, Phase};
use mindmesh_store::{RedbOptions, RedbStore, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "MINDMESH_STORE_CRASH_CHILD";
const QUICK_REPAIR_ENV: &str = "MINDMESH_STORE_CRASH_QUICK_REPAIR";
const SEED_ENV: &str = "MINDMESH_CRASH_SEED";
const ROUNDS: usize = 12;
/// `Child::kill` sends it; its number is the same on every Unix.
const SIGKILL: i32 = 9;
const PERSONAS: u64 = 5;
/// The child stops by itself after this many iterations if nobody kills it.
const MAX_CHILD_ITERATIONS: u64 = 1_000_000;

/// Short retention, so compactions in the child really roll up and delete; events are kept
/// so the whole log can be checked from seq 1.
fn config() -> StoreConfig {
    StoreConfig {
        raw_retention_s: 2,
        rollup_interval_s: 1,
        rollup_retention_s: 6,
        event_retention_s: 365 * 24 * 3600,
        max_state_bytes: 1 << 20,
    }
}

fn main() {
    let result = match std::env::var_os(CHILD_ENV) {
        Some(path) => child(Path::new(&path)),
        None => parent(),
    };
    if let Err(e) = result {
        eprintln!("crash test failed: {e:#}");
        std::process::exit(1);
    }
}

fn name(k: u64) -> String {
    format!("p{}", k % PERSONAS)
}

/// A blob that says which iteration wrote it and whether it is whole: the iteration, then
/// filler whose length and value both follow from it.
fn state_blob(k: u64) -> Vec<u8> {
    let mut b = k.to_le_bytes().to_vec();
    b.resize(8 + (k % 7) as usize * 1000, (k % 251) as u8);
    b
}

fn check_blob(b: &[u8]) -> anyhow::Result<u64> {
    ensure!(b.len() >= 8, "blob of {} bytes", b.len());
    let k = u64::from_le_bytes(b[..8].try_into()?);
    ensure!(b == state_blob(k), "blob of iteration {k} is torn");
    Ok(k)
}

fn child(path: &Path) -> anyhow::Result<()> {
    let options =
        RedbOptions { quick_repair: std::env::var(QUICK_REPAIR_ENV).as_deref() != Ok("0"), ..Default::default() };
    let store = RedbStore::open_with(path, config(), options)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "open")?;
    out.flush()?;
    // iterations continue across rounds, so times and generations only grow
    let first = store.last_event_seq()?;
    for k in first..first + MAX_CHILD_ITERATIONS {
        let ts_ms = k * 250;
        let p = name(k);
        let mut rec = PersonaRecord::new(PersonaSpec::new(&p, "/bin/sleep"), ts_ms);
        rec.phase = Phase::Running;
        rec.generation = k;
        store.put_persona(&rec)?;
        writeln!(out, "gen {p} {k}")?;

        store.put_state(&p, &state_blob(k))?;
        writeln!(out, "state {p} {k}")?;

        let mut events = vec![
            Event::new(ts_ms, &p, EventKind::Exit, format!("iteration {k}")),
            Event::new(ts_ms, &p, EventKind::Restart, format!("iteration {k}")),
        ];
        store.append_events(&mut events)?;
        writeln!(out, "seq {}", events[1].seq)?;

        let tick: Vec<(String, PersonaSample)> = (0..PERSONAS)
            .map(|i| (format!("p{i}"), PersonaSample { rss_bytes: k, requests: 1, ..Default::default() }))
            .collect();
        let host = HostSample { memory_used_bytes: k, ..Default::default() };
        store.append_samples(ts_ms, &tick, Some(&host))?;
        writeln!(out, "tick {ts_ms}")?;

        if k % 10 == 0 {
            store.compact(ts_ms)?;
        }
        out.flush()?;
    }
    Ok(())
}

/// What the child printed: commits it saw return.
#[derive(Default, Debug)]
struct Acked {
    seq: u64,
    generation: BTreeMap<String, u64>,
    state: BTreeMap<String, u64>,
    tick_ms: u64,
}

impl Acked {
    fn absorb(&mut self, line: &str) -> anyhow::Result<()> {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[..] {
            ["seq", n] => self.seq = n.parse()?,
            ["gen", p, k] => drop(self.generation.insert(p.to_owned(), k.parse()?)),
            ["state", p, k] => drop(self.state.insert(p.to_owned(), k.parse()?)),
            ["tick", t] => self.tick_ms = t.parse()?,
            // the kill can cut the last line short: it was not a whole acknowledgement
            _ => {}
        }
        Ok(())
    }
}

fn parent() -> anyhow::Result<()> {
    let seed: u64 = match std::env::var(SEED_ENV) {
        Ok(s) => s.parse().context("MINDMESH_CRASH_SEED")?,
        Err(_) => 0x6d69_6e64,
    };
    println!("crash test: seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.redb");
    let exe = std::env::current_exe()?;
    let mut acked = Acked::default();
    let mut rounds_with_progress = 0;

    for round in 0..ROUNDS {
        let quick_repair = rng.random_bool(0.5);
        // a quarter of the kills are timed from the spawn, so some land while the child opens
        // (and repairs) the file; the rest from its first line, so that a loaded machine's
        // slow start does not turn them all into kills before any write
        let during_open = rng.random_bool(0.25);
        let kill_after =
            Duration::from_millis(if during_open { rng.random_range(0..150) } else { rng.random_range(5..300) });
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .env(QUICK_REPAIR_ENV, if quick_repair { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        if !during_open {
            // the child's first line comes once the file is open
            match lines_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => lines.push(line),
                Err(_) => bail!("round {round}: the child wrote nothing for 60 s"),
            }
        }
        std::thread::sleep(kill_after);
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        lines.extend(lines_rx.try_iter());
        if status.signal() != Some(SIGKILL) {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().context("child stderr")?, &mut err)?;
            bail!("round {round}: the child ended by itself ({status}) before the kill: {err}");
        }
        let before = acked.seq;
        for line in &lines {
            acked.absorb(line)?;
        }
        if acked.seq > before {
            rounds_with_progress += 1;
        }
        let opened_in = verify(&path, &acked).with_context(|| format!("round {round} (seed {seed})"))?;
        println!(
            "round {round:2}: killed {:3} ms after {} (quick_repair {quick_repair:5}), {:4} commits acknowledged, \
             reopened in {:.1} ms, log at seq {}",
            kill_after.as_millis(),
            if during_open { "spawn" } else { "open " },
            lines.iter().filter(|l| *l != "open").count(),
            opened_in.as_secs_f64() * 1e3,
            acked.seq
        );
    }
    ensure!(rounds_with_progress >= ROUNDS / 3, "the child made progress in only {rounds_with_progress} rounds");
    println!("crash test: ok, {ROUNDS} kills, {} events", acked.seq);
    Ok(())
}

/// Reopen after a kill and check everything; then write, as the next run would.
fn verify(path: &Path, acked: &Acked) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let store = RedbStore::open(path, config()).context("reopen after SIGKILL")?;
    let opened_in = started.elapsed();

    // the event log: gap-free from 1, ordered, nothing acknowledged missing
    let last = store.last_event_seq()?;
    ensure!(last >= acked.seq, "last seq {last} but the child saw seq {} committed", acked.seq);
    let mut expected = 1;
    loop {
        let page = store.events(expected - 1, 1000, None)?;
        if page.is_empty() {
            break;
        }
        for e in page {
            ensure!(e.seq == expected, "seq {} where {expected} was due", e.seq);
            expected += 1;
        }
    }
    ensure!(expected - 1 == last, "log ends at {} but last seq is {last}", expected - 1);

    // records and blobs: all decode, none older than what was acknowledged, none torn
    let records = store.list_personas()?;
    for (p, &k) in &acked.generation {
        let rec = records.iter().find(|r| &r.spec.name == p).with_context(|| format!("record {p} lost"))?;
        ensure!(rec.generation >= k, "record {p} at generation {} but {k} was committed", rec.generation);
    }
    for (p, &k) in &acked.state {
        let blob = store.get_state(p)?.with_context(|| format!("state of {p} lost"))?;
        let found = check_blob(&blob)?;
        ensure!(found >= k, "state of {p} from iteration {found} but {k} was committed");
    }

    // series: every stored sample and rollup decodes; the last acknowledged tick is there
    for i in 0..PERSONAS {
        let series = store.persona_series(&format!("p{i}"), 0, u64::MAX, 100_000)?;
        ensure!(series.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms), "p{i}'s series is out of order");
        if acked.tick_ms > 0 {
            ensure!(series.last().is_some_and(|s| s.ts_ms >= acked.tick_ms), "p{i} lost its last tick");
        }
    }
    store.host_series(0, u64::MAX, 100_000)?;

    // and writing resumes where it stopped
    let mut e = vec![Event::new(0, "", EventKind::Start, "verify")];
    store.append_events(&mut e)?;
    ensure!(e[0].seq == last + 1, "resumed at seq {} after {last}", e[0].seq);
    Ok(opened_in)
}
