//! The actor: async callers from many tasks, ordering, and a shutdown that drains.

use std::collections::BTreeSet;

use mindmesh_core::config::StoreConfig;
use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::{PersonaRecord, PersonaSpec};
use mindmesh_store::{MemStore, RedbStore, Store, StoreError, StoreHandle};

fn redb_at(path: &std::path::Path) -> Box<dyn Store> {
    Box::new(RedbStore::open(path, StoreConfig::default()).expect("open"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_get_unique_gap_free_seqs_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let backends: [Box<dyn Store>; 2] =
        [redb_at(&dir.path().join("s.redb")), Box::new(MemStore::new(StoreConfig::default()).unwrap())];
    for store in backends {
        // a queue shorter than the number of callers: senders wait their turn, none is lost
        let (handle, thread) = StoreHandle::spawn(store, 4).unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..10u64 {
                    let batch = vec![
                        Event::new(t * 100 + i, &format!("p{t}"), EventKind::Restart, "a"),
                        Event::new(t * 100 + i, &format!("p{t}"), EventKind::Spawn, "b"),
                    ];
                    let stored = h.append_events(batch).await.unwrap();
                    // one call is one transaction: its events are consecutive
                    assert_eq!(stored[1].seq, stored[0].seq + 1);
                    seqs.extend(stored.iter().map(|e| e.seq));
                }
                seqs
            }));
        }
        let mut all = BTreeSet::new();
        for t in tasks {
            for seq in t.await.unwrap() {
                assert!(all.insert(seq), "seq {seq} given twice");
            }
        }
        assert_eq!(all.into_iter().collect::<Vec<_>>(), (1..=320).collect::<Vec<_>>());
        assert_eq!(handle.last_event_seq().await.unwrap(), 320);
        assert_eq!(handle.events(0, 1000, Some("p3")).await.unwrap().len(), 20);
        drop(handle);
        thread.join().await;
    }
}

#[tokio::test]
async fn every_operation_goes_through() {
    let (h, thread) = StoreHandle::spawn(Box::new(MemStore::new(StoreConfig::default()).unwrap()), 8).unwrap();
    let rec = PersonaRecord::new(PersonaSpec::new("a", "/bin/true"), 5);
    h.put_persona(rec.clone()).await.unwrap();
    assert_eq!(h.get_persona("a").await.unwrap(), Some(rec.clone()));
    assert_eq!(h.list_personas().await.unwrap(), vec![rec]);
    h.put_state("a", b"s".to_vec()).await.unwrap();
    assert_eq!(h.get_state("a").await.unwrap(), Some(b"s".to_vec()));
    assert!(h.delete_state("a").await.unwrap());
    let sample = PersonaSample { rss_bytes: 7, ..Default::default() };
    let host = HostSample { cpu_cores: 2, ..Default::default() };
    h.append_samples(1000, vec![("a".into(), sample)], Some(host)).await.unwrap();
    assert_eq!(h.persona_series("a", 0, 2000, 10).await.unwrap()[0].rss_bytes, 7);
    assert_eq!(h.host_series(0, 2000, 10).await.unwrap()[0].cpu_cores, 2);
    assert_eq!(h.compact(120_000).await.unwrap().rollups_written, 1);
    assert!(h.remove_persona("a").await.unwrap());
    // errors come back as they are
    assert!(matches!(h.put_state("", Vec::new()).await, Err(StoreError::InvalidName { .. })));
    h.close().await;
    thread.join().await;
}

// one runtime thread: every task has queued its write before the close is sent
#[tokio::test(flavor = "current_thread")]
async fn close_finishes_queued_writes_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (handle, thread) = StoreHandle::spawn(redb_at(&path), 64).unwrap();
    // queue writes from tasks, then close: every write sent before the close is done
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            h.append_events(vec![Event::new(i, "p", EventKind::Start, "")]).await.map(|e| e[0].seq)
        }));
    }
    tokio::task::yield_now().await;
    handle.close().await;
    let mut done = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => done += 1,
            Err(StoreError::Closed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(done, 40, "every write queued before the close was done");
    assert!(matches!(handle.last_event_seq().await, Err(StoreError::Closed)));
    handle.close().await; // twice is fine
    thread.join().await;

    // the file is closed (it reopens in this process) and holds exactly the acknowledged writes
    let store = RedbStore::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(store.last_event_seq().unwrap(), done);
    assert_eq!(store.events(0, 100, None).unwrap().len() as u64, done);
}

#[tokio::test]
async fn dropping_every_handle_drains_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (handle, thread) = StoreHandle::spawn(redb_at(&path), 8).unwrap();
    let h2 = handle.clone();
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            h2.append_samples(i * 1000, vec![("p".into(), PersonaSample::default())], None).await.unwrap();
        }
    });
    drop(handle);
    writer.await.unwrap();
    thread.join().await;
    let store = RedbStore::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(store.persona_series("p", 0, 100_000, 100).unwrap().len(), 20);
}
