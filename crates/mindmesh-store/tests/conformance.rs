//! One suite, run against both backends: whatever passes here behaves the same on the redb
//! file and in memory. File-only behaviour (reopen, schema, damage) is at the end.

use mindmesh_core::config::StoreConfig;
use mindmesh_core::event::{Event, EventKind, MAX_EVENT_DETAIL};
use mindmesh_core::metrics::{ErrorKind, HostSample, PersonaSample};
use mindmesh_core::{PersonaRecord, PersonaSpec, Phase, ProcessRecord};
use mindmesh_store::{CompactReport, MemStore, RedbStore, SCHEMA_VERSION, Store, StoreError};
use redb::ReadableDatabase;
use tempfile::TempDir;

/// A store and whatever must outlive it (the file's directory).
struct Fixture {
    store: Box<dyn Store>,
    _dir: Option<TempDir>,
}

type Make = fn(StoreConfig) -> Fixture;

fn redb(config: StoreConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("store.redb"), config).expect("open");
    Fixture { store: Box::new(store), _dir: Some(dir) }
}

fn mem(config: StoreConfig) -> Fixture {
    Fixture { store: Box::new(MemStore::new(config).expect("config")), _dir: None }
}

macro_rules! conformance {
    ($($check:ident),+ $(,)?) => {
        mod on_redb {
            $(#[test]
            fn $check() {
                super::$check(super::redb);
            })+
        }
        mod in_memory {
            $(#[test]
            fn $check() {
                super::$check(super::mem);
            })+
        }
    };
}

conformance!(
    personas_put_get_list_remove,
    persona_names_are_bounded,
    state_blobs_are_kept_and_bounded,
    events_are_numbered_without_gaps,
    event_reads_page_and_filter,
    event_retention_drops_a_prefix_and_numbering_goes_on,
    samples_are_stamped_and_read_back,
    a_bad_sample_refuses_the_whole_tick,
    retention_and_rollups_keep_the_right_ranges,
    compaction_is_idempotent_and_survives_a_clock_going_back,
    long_series_are_downsampled,
    late_and_repeated_samples_are_placed_right,
    a_persona_present_now_and_then_reads_back_exactly,
);

fn record(name: &str, now_ms: u64) -> PersonaRecord {
    let mut spec = PersonaSpec::new(name, "/bin/sleep");
    spec.args = vec!["1000".into()];
    spec.labels.insert("tier".into(), "gold".into());
    PersonaRecord::new(spec, now_ms)
}

fn personas_put_get_list_remove(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    assert_eq!(s.get_persona("b").unwrap(), None);
    assert!(s.list_personas().unwrap().is_empty());

    let mut b = record("b", 10);
    s.put_persona(&b).unwrap();
    s.put_persona(&record("a", 11)).unwrap();
    b.phase = Phase::Running;
    b.restarts = 2;
    b.generation = 7;
    b.reason = Some("adopted".into());
    b.process = Some(ProcessRecord { pid: 4242, start_ticks: 99, port: 9001, started_at_ms: 12, cgroup: None });
    s.put_persona(&b).unwrap();

    assert_eq!(s.get_persona("b").unwrap(), Some(b.clone()));
    let names: Vec<_> = s.list_personas().unwrap().into_iter().map(|r| r.spec.name).collect();
    assert_eq!(names, ["a", "b"]);

    s.put_state("b", b"saved").unwrap();
    assert!(s.remove_persona("b").unwrap());
    assert!(!s.remove_persona("b").unwrap());
    assert_eq!(s.get_persona("b").unwrap(), None);
    assert_eq!(s.get_state("b").unwrap(), None, "removing a persona drops its state");
    assert_eq!(s.list_personas().unwrap().len(), 1);
}

fn persona_names_are_bounded(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    let long = "x".repeat(64);
    for bad in ["", long.as_str()] {
        assert!(matches!(s.put_persona(&record(bad, 0)), Err(StoreError::InvalidName { .. })));
        assert!(matches!(s.put_state(bad, b"x"), Err(StoreError::InvalidName { .. })));
    }
    assert!(s.list_personas().unwrap().is_empty());
    assert_eq!(s.get_persona(&long).unwrap(), None, "reads of impossible names are just misses");
}

fn state_blobs_are_kept_and_bounded(make: Make) {
    let f = make(StoreConfig { max_state_bytes: 1000, ..StoreConfig::default() });
    let s = &*f.store;
    assert_eq!(s.get_state("p").unwrap(), None);
    s.put_state("p", &[1; 1000]).unwrap();
    assert_eq!(s.get_state("p").unwrap(), Some(vec![1; 1000]));
    s.put_state("p", b"").unwrap();
    assert_eq!(s.get_state("p").unwrap(), Some(Vec::new()), "an empty blob is a blob");

    let err = s.put_state("p", &[2; 1001]).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { len_bytes: 1001, max_bytes: 1000, .. }), "{err}");
    assert!(err.to_string().contains("1000-byte limit"), "{err}");
    assert_eq!(s.get_state("p").unwrap(), Some(Vec::new()), "a refused blob changes nothing");

    assert!(s.delete_state("p").unwrap());
    assert!(!s.delete_state("p").unwrap());
    assert_eq!(s.get_state("p").unwrap(), None);
}

fn ev(ts_ms: u64, persona: &str, kind: EventKind) -> Event {
    Event::new(ts_ms, persona, kind, format!("{persona} {}", kind.as_str()))
}

fn events_are_numbered_without_gaps(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    assert_eq!(s.last_event_seq().unwrap(), 0);
    s.append_events(&mut []).unwrap();
    assert_eq!(s.last_event_seq().unwrap(), 0);

    let mut batch = vec![ev(1, "a", EventKind::Spawn), ev(2, "b", EventKind::Spawn), ev(3, "a", EventKind::Exit)];
    s.append_events(&mut batch).unwrap();
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let mut more = vec![ev(4, "", EventKind::Error)];
    s.append_events(&mut more).unwrap();
    assert_eq!(more[0].seq, 4);
    assert_eq!(s.last_event_seq().unwrap(), 4);

    // a refused batch stores nothing and leaves the caller's seqs alone
    let mut bad = vec![ev(5, "a", EventKind::Kill), ev(5, &"n".repeat(64), EventKind::Kill)];
    assert!(matches!(s.append_events(&mut bad), Err(StoreError::InvalidName { .. })));
    assert!(bad.iter().all(|e| e.seq == 0));
    assert_eq!(s.last_event_seq().unwrap(), 4);

    // details are bounded even when the caller built the event by hand
    let mut long =
        vec![Event { seq: 0, ts_ms: 6, persona: "a".into(), kind: EventKind::Kill, detail: "é".repeat(600) }];
    s.append_events(&mut long).unwrap();
    let stored = s.events(4, 10, None).unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].detail.len() <= MAX_EVENT_DETAIL && stored[0].detail.len() >= MAX_EVENT_DETAIL - 1);
    assert_eq!(stored[0], long[0]);

    let all = s.events(0, 100, None).unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(all[..3], batch[..]);
}

fn event_reads_page_and_filter(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    let mut events: Vec<Event> = (0..50).map(|i| ev(i, ["a", "b", "c"][i as usize % 3], EventKind::Restart)).collect();
    s.append_events(&mut events).unwrap();

    // paging by `after_seq` walks the whole log once
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = s.events(after, 7, None).unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        seen.extend(page);
    }
    assert_eq!(seen, events);

    let b: Vec<u64> = s.events(0, 100, Some("b")).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(b, (1..=50).filter(|seq| (seq - 1) % 3 == 1).collect::<Vec<_>>());
    let b_after: Vec<u64> = s.events(20, 3, Some("b")).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(b_after, [23, 26, 29]);
    assert!(s.events(0, 10, Some("nobody")).unwrap().is_empty());
    assert!(s.events(0, 0, None).unwrap().is_empty());
    assert!(s.events(50, 10, None).unwrap().is_empty());
    assert!(s.events(u64::MAX, 10, None).unwrap().is_empty());
}

fn event_retention_drops_a_prefix_and_numbering_goes_on(make: Make) {
    let f = make(StoreConfig { event_retention_s: 100, ..StoreConfig::default() });
    let s = &*f.store;
    let mut events: Vec<Event> = (0..10).map(|i| ev(i * 20_000, "a", EventKind::Start)).collect();
    // stamped out of order: holds back what follows, so the log stays one gap-free run
    events[8].ts_ms = 1_000;
    s.append_events(&mut events).unwrap();

    // now 200 s: the cut is 100 s, events at 0..=80 s go, the one at 100 s stays
    let r = s.compact(200_000).unwrap();
    assert_eq!(r.events_deleted, 5);
    let left: Vec<u64> = s.events(0, 100, None).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, [6, 7, 8, 9, 10]);
    assert_eq!(s.events(0, 100, Some("a")).unwrap().len(), 5, "the persona index follows");

    let r = s.compact(10_000_000).unwrap();
    assert_eq!(r.events_deleted, 5);
    assert!(s.events(0, 100, None).unwrap().is_empty());
    assert_eq!(s.last_event_seq().unwrap(), 10, "numbering survives an empty log");
    let mut next = vec![ev(10_000_000, "a", EventKind::Wake)];
    s.append_events(&mut next).unwrap();
    assert_eq!(next[0].seq, 11);
}

fn sample(ts_ms: u64, rss_bytes: u64) -> PersonaSample {
    PersonaSample {
        ts_ms,
        rss_bytes,
        peak_rss_bytes: rss_bytes,
        cpu_percent: 12.5,
        requests: 1,
        errors_by_kind: vec![(ErrorKind::Timeout, 1)],
        errors: 1,
        latency_p95_ms: Some(40.0),
        ..Default::default()
    }
}

fn host(ts_ms: u64) -> HostSample {
    HostSample { ts_ms, cpu_percent: 50.0, memory_used_bytes: ts_ms / 1000, memory_total_bytes: 1 << 34, cpu_cores: 2 }
}

fn samples_are_stamped_and_read_back(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    for t in 1..=5u64 {
        let ts = t * 1000;
        // the sample claims another time: the tick's wins
        let tick = [("a".to_owned(), sample(0, t)), ("b".to_owned(), sample(ts, 10 * t))];
        s.append_samples(ts, &tick, Some(&host(0))).unwrap();
    }
    s.append_samples(6000, &[], None).unwrap();

    let a = s.persona_series("a", 0, 10_000, 100).unwrap();
    assert_eq!(
        a.iter().map(|x| (x.ts_ms, x.rss_bytes)).collect::<Vec<_>>(),
        [(1000, 1), (2000, 2), (3000, 3), (4000, 4), (5000, 5)]
    );
    assert_eq!(a[0], PersonaSample { ts_ms: 1000, ..sample(0, 1) });
    let b = s.persona_series("b", 2000, 4000, 100).unwrap();
    assert_eq!(b.iter().map(|x| x.rss_bytes).collect::<Vec<_>>(), [20, 30, 40]);
    let h = s.host_series(0, 10_000, 100).unwrap();
    assert_eq!(h.iter().map(|x| x.ts_ms).collect::<Vec<_>>(), [1000, 2000, 3000, 4000, 5000]);

    assert!(s.persona_series("nobody", 0, 10_000, 100).unwrap().is_empty());
    assert!(s.persona_series("a", 4000, 2000, 100).unwrap().is_empty(), "an empty range");
    assert!(s.host_series(6000, 10_000, 100).unwrap().is_empty());
    // a name that sorts right after "a" is another persona, not a continuation of its range
    s.append_samples(7000, &[("a0".to_owned(), sample(7000, 99))], None).unwrap();
    assert_eq!(s.persona_series("a", 0, u64::MAX, 100).unwrap().len(), 5);
}

fn a_bad_sample_refuses_the_whole_tick(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    let huge =
        PersonaSample { errors_by_kind: (0..12_000).map(|c| (ErrorKind::Upstream4xx(c), 1)).collect(), ..sample(0, 1) };
    let err = s.append_samples(1000, &[("a".into(), sample(0, 1)), ("b".into(), huge)], Some(&host(1000))).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { what: "persona sample", .. }), "{err}");
    let err = s.append_samples(1000, &[("a".into(), sample(0, 1)), (String::new(), sample(0, 1))], None).unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
    assert!(s.persona_series("a", 0, 10_000, 10).unwrap().is_empty());
    assert!(s.host_series(0, 10_000, 10).unwrap().is_empty());
}

const MIN_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// 26 hours with the default retention (raw 1 h, 1-minute rollups kept 24 h): a sample every
/// 5 minutes, then every 10 s over the last 70 minutes; compaction every simulated hour.
fn retention_and_rollups_keep_the_right_ranges(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    let now = 26 * HOUR_MS + 30_000;
    let dense_from = now - 70 * MIN_MS - 30_000; // 24:50:00
    let ticks: Vec<u64> =
        (0..dense_from).step_by(5 * MIN_MS as usize).chain((dense_from..=now).step_by(10_000)).collect();
    let mut next_compact = HOUR_MS;
    for &ts in &ticks {
        if ts >= next_compact {
            s.compact(next_compact).unwrap();
            next_compact += HOUR_MS;
        }
        s.append_samples(ts, &[("p".into(), sample(ts, ts / 1000))], Some(&host(ts))).unwrap();
    }
    let r = s.compact(now).unwrap();
    assert_eq!(r.rolled_until_ms, 26 * HOUR_MS, "every complete minute is rolled up");

    // raw: only from the minute an hour ago (25:00:00) on
    let raw_from = 25 * HOUR_MS;
    let dense_raw = (raw_from..=now).step_by(10_000).count();
    assert_eq!(dense_raw, 364);
    let recent = s.persona_series("p", raw_from, now, 10_000).unwrap();
    assert_eq!(recent.len(), dense_raw);
    assert!(recent.iter().all(|x| x.requests == 1), "raw samples, not rollups");
    assert!(s.persona_series("p", raw_from - 1, raw_from - 1, 10).unwrap().is_empty(), "no raw before the cut");

    // rollups: every minute with data since 02:00:30 - 24 h ago, floored to the minute - and
    // nothing older; then raw samples from where they start, with no overlap
    let all = s.persona_series("p", 0, now, 10_000).unwrap();
    let sparse_rollups = (2 * HOUR_MS..dense_from).step_by(5 * MIN_MS as usize).count();
    let dense_rollups = ((raw_from - dense_from) / MIN_MS) as usize;
    assert_eq!((sparse_rollups, dense_rollups), (274, 10));
    assert_eq!(all.len(), sparse_rollups + dense_rollups + dense_raw);
    assert!(all.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms), "ordered, no overlap");
    assert!(all[0].ts_ms >= 2 * HOUR_MS && all[0].ts_ms < 2 * HOUR_MS + 5 * MIN_MS, "oldest kept: {}", all[0].ts_ms);
    // a dense minute rolled into one point: 6 samples, gauges averaged, counters summed
    let minute = all.iter().find(|x| x.ts_ms == dense_from + 50_000).expect("rollup of 24:50");
    let secs: Vec<u64> = (0..6).map(|i| (dense_from + i * 10_000) / 1000).collect();
    assert_eq!(minute.rss_bytes, secs.iter().sum::<u64>() / 6);
    assert_eq!(minute.peak_rss_bytes, *secs.last().unwrap());
    assert_eq!((minute.requests, minute.errors), (6, 6));
    assert_eq!(minute.errors_by_kind, vec![(ErrorKind::Timeout, 6)]);
    assert_eq!(minute.latency_p95_ms, Some(40.0));

    // the host follows the same rules
    let host_all = s.host_series(0, now, 10_000).unwrap();
    assert_eq!(host_all.len(), all.len());
    assert!(host_all.iter().zip(&all).all(|(h, p)| h.ts_ms == p.ts_ms));

    // the whole history is gone a day after the last sample
    let r = s.compact(now + 25 * HOUR_MS).unwrap();
    assert_eq!(r.raw_deleted as usize, dense_raw);
    assert_eq!(r.host_raw_deleted as usize, dense_raw);
    assert!(s.persona_series("p", 0, u64::MAX, 10).unwrap().is_empty());
    assert!(s.host_series(0, u64::MAX, 10).unwrap().is_empty());
}

fn compaction_is_idempotent_and_survives_a_clock_going_back(make: Make) {
    let f =
        make(StoreConfig { raw_retention_s: 60, rollup_interval_s: 10, rollup_retention_s: 600, ..Default::default() });
    let s = &*f.store;
    for ts in (0..=300_000).step_by(1000) {
        let tick: Vec<(String, PersonaSample)> =
            ["a", "b", "c"].iter().map(|n| ((*n).to_owned(), sample(ts, ts))).collect();
        s.append_samples(ts, &tick, Some(&host(ts))).unwrap();
    }
    let first = s.compact(300_500).unwrap();
    assert_eq!(first.rolled_until_ms, 300_000);
    assert_eq!(first.rollups_written, 3 * 30);
    assert_eq!(first.host_rollups_written, 30);
    assert_eq!(first.raw_deleted, 3 * 240, "raw before 240 s (= 300.5 s - 60 s, floored to 10 s) goes");
    let again = s.compact(300_500).unwrap();
    assert_eq!(again, CompactReport { rolled_until_ms: 300_000, ..Default::default() });
    // a clock that went back neither rolls up again nor moves the watermark back
    let back = s.compact(100_000).unwrap();
    assert_eq!((back.rollups_written, back.raw_deleted, back.rolled_until_ms), (0, 0, 300_000));

    let a = s.persona_series("a", 0, 400_000, 10_000).unwrap();
    assert_eq!(a.len(), 24 + 61, "24 rollups (0..240 s), then raw 240..=300 s");
    assert_eq!(a[0].ts_ms, 9_000);
    assert_eq!(a[0].rss_bytes, (0..10).map(|i| i * 1000).sum::<u64>() / 10);
    assert_eq!(a[24].ts_ms, 240_000);
}

fn long_series_are_downsampled(make: Make) {
    let f = make(StoreConfig::default());
    let s = &*f.store;
    for ts in (0..600_000).step_by(1000) {
        s.append_samples(ts, &[("p".into(), sample(ts, 100))], None).unwrap();
    }
    let d = s.persona_series("p", 0, 599_999, 60).unwrap();
    assert_eq!(d.len(), 60);
    assert!(d.iter().all(|x| x.requests == 10 && x.rss_bytes == 100), "each point is 10 samples merged");
    assert!(d.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
    assert_eq!(s.persona_series("p", 0, 599_999, 0).unwrap().len(), 1, "0 points means 1");
    assert_eq!(s.persona_series("p", 0, 599_999, usize::MAX).unwrap().len(), 600);
}

fn late_and_repeated_samples_are_placed_right(make: Make) {
    let f =
        make(StoreConfig { raw_retention_s: 60, rollup_interval_s: 10, rollup_retention_s: 600, ..Default::default() });
    let s = &*f.store;
    let tick = |ts: u64, rss: u64| s.append_samples(ts, &[("a".into(), sample(ts, rss))], None).unwrap();
    for ts in (0..=100_000).step_by(1000) {
        tick(ts, 1);
    }
    let r = s.compact(100_500).unwrap();
    assert_eq!((r.rollups_written, r.raw_deleted), (10, 40), "0..40 s rolled up only, 40..100 s kept raw");

    // a tick again, already moved to raw: the newer one wins, before and after compaction
    tick(99_000, 17);
    let at_99 = |s: &dyn Store| s.persona_series("a", 99_000, 99_000, 10).unwrap();
    assert_eq!(at_99(s).iter().map(|x| x.rss_bytes).collect::<Vec<_>>(), [17]);
    // late, within raw retention: kept, and its interval rolled up again with it
    tick(55_500, 1);
    // late, past raw retention and rolled up already: dropped
    tick(15_500, 1);
    let r = s.compact(100_500).unwrap();
    assert_eq!((r.rollups_written, r.raw_deleted), (2, 1), "50 s and 90 s re-rolled, the 15.5 s sample dropped");
    assert_eq!(at_99(s).iter().map(|x| x.rss_bytes).collect::<Vec<_>>(), [17]);
    assert_eq!(s.persona_series("a", 50_000, 59_999, 100).unwrap().len(), 11);

    // once raw is gone, the rollups show what each interval got
    s.compact(200_500).unwrap();
    let rollups = s.persona_series("a", 0, 99_999, 100).unwrap();
    let requests: Vec<u32> = rollups.iter().map(|x| x.requests).collect();
    assert_eq!(requests, [10, 10, 10, 10, 10, 11, 10, 10, 10, 10]);
    // nine samples of 1 and the repeated one of 17, averaged
    let mean_rss: u64 = [1, 1, 1, 1, 1, 1, 1, 1, 1, 17].iter().sum::<u64>() / 10;
    assert_eq!(rollups[9].rss_bytes, mean_rss, "the repeated tick counted once, with its newer value");
}

fn a_persona_present_now_and_then_reads_back_exactly(make: Make) {
    let f =
        make(StoreConfig { raw_retention_s: 60, rollup_interval_s: 10, rollup_retention_s: 600, ..Default::default() });
    let s = &*f.store;
    // "m" reports at irregular ticks among personas that sort before and after it
    let m_at = |ts: u64| ts.is_multiple_of(3000) || (40_000..47_000).contains(&ts);
    for ts in (0..120_000).step_by(1000) {
        let mut tick: Vec<(String, PersonaSample)> =
            ["a", "l", "mm", "z"].iter().map(|n| ((*n).to_owned(), sample(ts, 1))).collect();
        if m_at(ts) {
            tick.push(("m".to_owned(), sample(ts, ts)));
        }
        s.append_samples(ts, &tick, None).unwrap();
    }
    let expected: Vec<u64> = (0..120_000).step_by(1000).filter(|ts| m_at(*ts)).collect();
    let m_times = |s: &dyn Store| -> Vec<u64> {
        s.persona_series("m", 0, 119_999, 10_000).unwrap().iter().map(|x| x.ts_ms).collect()
    };
    assert_eq!(m_times(s), expected, "from recent ticks");
    s.compact(110_500).unwrap();
    // raw from 50 s on; rollups before (10-second intervals, each stamped by its last sample)
    let rolled: Vec<u64> = (0..50_000u64)
        .step_by(10_000)
        .filter_map(|start| expected.iter().rev().find(|ts| (start..start + 10_000).contains(*ts)).copied())
        .collect();
    let kept: Vec<u64> = expected.iter().copied().filter(|ts| *ts >= 50_000).collect();
    assert_eq!(m_times(s), [rolled, kept].concat(), "from rollups, raw chunks and recent ticks");
    let window: Vec<u64> = s.persona_series("m", 42_000, 45_000, 100).unwrap().iter().map(|x| x.ts_ms).collect();
    assert_eq!(window, Vec::<u64>::new(), "42..45 s were rolled up into the 40 s interval");
    let window: Vec<u64> = s.persona_series("m", 51_000, 60_000, 100).unwrap().iter().map(|x| x.ts_ms).collect();
    assert_eq!(window, [51_000, 54_000, 57_000, 60_000]);
}

// ---- the file only

fn open(dir: &TempDir) -> Result<RedbStore, StoreError> {
    RedbStore::open(dir.path().join("store.redb"), StoreConfig::default())
}

#[test]
fn a_reopened_file_has_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = vec![ev(1, "a", EventKind::Spawn), ev(2, "a", EventKind::Exit)];
    {
        let s = open(&dir).unwrap();
        s.put_persona(&record("a", 1)).unwrap();
        s.put_state("a", b"state").unwrap();
        s.append_events(&mut events).unwrap();
        s.append_samples(1000, &[("a".into(), sample(1000, 5))], Some(&host(1000))).unwrap();
        s.compact(120_000).unwrap();
    }
    let s = open(&dir).unwrap();
    assert_eq!(s.get_persona("a").unwrap(), Some(record("a", 1)));
    assert_eq!(s.get_state("a").unwrap().as_deref(), Some(&b"state"[..]));
    assert_eq!(s.events(0, 10, None).unwrap(), events);
    assert_eq!(s.persona_series("a", 0, 200_000, 10).unwrap().len(), 1);
    // the watermark was kept: the same compaction does nothing again
    assert_eq!(s.compact(120_000).unwrap().rollups_written, 0);
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir).unwrap();
        let db = s.database();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("store/meta"))
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = open(&dir).unwrap_err();
    assert!(matches!(err.cause(), StoreError::UnknownSchema { found: 99, supported: SCHEMA_VERSION }), "{err}");
    assert!(err.to_string().contains("store.redb"), "an open error names the file: {err}");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn other_modules_share_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).unwrap();
    let db = s.database();
    let raft_log = redb::TableDefinition::<u64, &[u8]>::new("raft/log");
    let txn = db.begin_write().unwrap();
    txn.open_table(raft_log).unwrap().insert(1, &b"entry"[..]).unwrap();
    txn.commit().unwrap();

    // a second view over the same database, as a module opened with it would have
    let twin = RedbStore::with_database(db.clone(), StoreConfig::default(), Default::default()).unwrap();
    s.put_persona(&record("a", 1)).unwrap();
    assert!(twin.get_persona("a").unwrap().is_some());
    let read = db.begin_read().unwrap();
    assert_eq!(read.open_table(raft_log).unwrap().get(1).unwrap().unwrap().value(), b"entry");
}

#[test]
fn damaged_values_are_errors_that_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).unwrap();
    s.put_persona(&record("ok", 1)).unwrap();
    let db = s.database();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("persona/record"))
        .unwrap()
        .insert("bad", &[1u8, 0xff, 0xff][..])
        .unwrap();
    txn.commit().unwrap();
    let err = s.get_persona("bad").unwrap_err();
    assert!(matches!(err, StoreError::Decode { what: "persona record", .. }), "{err}");
    assert!(err.to_string().contains("bad"), "{err}");
    assert!(s.list_personas().is_err());
    assert!(s.get_persona("ok").unwrap().is_some(), "the rest is still readable");
}

#[test]
fn bad_files_and_configs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-store");
    std::fs::write(&path, b"this is not a redb file, just some text that is long enough").unwrap();
    let err = RedbStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(matches!(err.cause(), StoreError::Database(_)), "{err}");
    assert!(err.to_string().contains("not-a-store"), "{err}");

    let bad = StoreConfig { raw_retention_s: 7200, rollup_retention_s: 3600, ..Default::default() };
    let err = RedbStore::open(dir.path().join("x.redb"), bad.clone()).unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(err.to_string().contains("rollup_retention_s"), "{err}");
    assert!(matches!(MemStore::new(bad), Err(StoreError::Config(_))));

    // the file is locked while open: a second writer is refused, not let in
    let p = dir.path().join("locked.redb");
    let _first = RedbStore::open(&p, StoreConfig::default()).unwrap();
    let err = RedbStore::open(&p, StoreConfig::default()).unwrap_err();
    assert!(matches!(err.cause(), StoreError::Database(redb::Error::DatabaseAlreadyOpen)), "{err}");
}
