use super::*;
use crate::store::tests::{call, viewer, Call, Viewer};
use crate::store::SqliteStore;
use std::sync::{Arc, Mutex};

/// A store that fails while `down` is set and remembers what it stored.
#[derive(Clone, Default)]
struct Fake {
    name: &'static str,
    down: Arc<Mutex<bool>>,
    stored: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<usize>>,
}

impl Fake {
    fn named(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }
    fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }
    fn ids(&self) -> Vec<String> {
        self.stored.lock().unwrap().clone()
    }
    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

impl RecordStore for Fake {
    fn insert_all(&mut self, records: &[PendingRow]) -> Result<(), StoreError> {
        *self.calls.lock().unwrap() += 1;
        if *self.down.lock().unwrap() {
            return Err(StoreError::Postgres {
                url: self.name.into(),
                detail: "error connecting to server: Connection refused".into(),
            });
        }
        let mut stored = self.stored.lock().unwrap();
        stored.extend(records.iter().map(|r| r.key().to_owned()));
        Ok(())
    }
    fn describe(&self) -> String {
        self.name.into()
    }
}

fn rec(id: &str) -> Call {
    call(id)
}

type Lines = Arc<Mutex<Vec<String>>>;

fn spool(fallback: Option<&Fake>, options: WriterOptions) -> (Spool, Fake, Lines) {
    let primary = Fake::named("pg");
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    let s = Spool::new(
        Box::new(primary.clone()),
        fallback.map(|f| Box::new(f.clone()) as Box<dyn RecordStore>),
        options,
        Box::new(move |l| sink.lock().unwrap().push(l.to_owned())),
    );
    (s, primary, lines)
}

fn small() -> WriterOptions {
    WriterOptions {
        batch: 2,
        queue_limit: 6,
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(4),
        min_write_gap: Duration::ZERO,
    }
}

#[test]
fn healthy_store_gets_everything_in_batches() {
    let (mut s, pg, lines) = spool(None, small());
    let t0 = Instant::now();
    for i in 0..5 {
        s.push(&rec(&format!("c{i}")));
    }
    assert_eq!(s.wake_in(t0), Some(Duration::ZERO));
    s.run(t0);
    assert_eq!(pg.ids(), ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(pg.calls(), 3, "batches of 2");
    assert_eq!(s.wake_in(t0), None);
    assert_eq!(
        s.report(),
        WriterReport {
            stored: 5,
            ..WriterReport::default()
        }
    );
    assert!(lines.lock().unwrap().is_empty());
}

#[test]
fn records_of_a_steady_stream_share_a_write_and_one_after_a_quiet_spell_goes_at_once() {
    let gap = Duration::from_millis(20);
    let options = WriterOptions {
        batch: 3,
        min_write_gap: gap,
        ..small()
    };
    let (mut s, pg, _lines) = spool(None, options);
    let t0 = Instant::now();
    s.push(&rec("a"));
    assert_eq!(
        s.wake_in(t0),
        Some(Duration::ZERO),
        "the first write is due"
    );
    s.run(t0);
    assert_eq!(pg.ids(), ["a"]);
    // Within the gap: held, and the writer is told when to come back.
    let t1 = t0 + Duration::from_millis(5);
    s.push(&rec("b"));
    assert_eq!(s.wake_in(t1), Some(Duration::from_millis(15)));
    s.run(t1);
    s.push(&rec("c"));
    s.run(t1 + Duration::from_millis(10));
    assert_eq!(pg.ids(), ["a"], "held until the gap has passed");
    s.run(t0 + gap);
    assert_eq!(pg.ids(), ["a", "b", "c"]);
    assert_eq!(pg.calls(), 2, "b and c in one write");
    // A full batch does not wait for the gap.
    let t2 = t0 + gap + Duration::from_millis(1);
    for id in ["d", "e", "f"] {
        s.push(&rec(id));
    }
    assert_eq!(s.wake_in(t2), Some(Duration::ZERO));
    s.run(t2);
    assert_eq!(pg.calls(), 3);
    // After a quiet spell, a record is written at once.
    let t3 = t2 + Duration::from_secs(5);
    s.push(&rec("g"));
    assert_eq!(s.wake_in(t3), Some(Duration::ZERO));
    s.run(t3);
    assert_eq!(pg.ids(), ["a", "b", "c", "d", "e", "f", "g"]);
    // Closing writes what waits, gap or not.
    s.push(&rec("h"));
    s.run(t3 + Duration::from_millis(1));
    assert_eq!(pg.calls(), 4);
    assert_eq!(s.close(t3 + Duration::from_millis(2)).stored, 8);
    assert_eq!(pg.calls(), 5);
}

#[test]
fn outage_queues_retries_with_backoff_and_recovers_in_order() {
    let (mut s, pg, lines) = spool(None, small());
    let t0 = Instant::now();
    pg.set_down(true);
    s.push(&rec("a"));
    s.run(t0);
    assert!(s.in_outage());
    assert_eq!(s.wake_in(t0), Some(Duration::from_secs(1)));
    assert_eq!(
        lines.lock().unwrap()[0],
        "cannot write records: PostgreSQL accounting store pg: error connecting to server: Connection refused; 1 records wait in memory (at most 6, then the oldest go to nowhere: they are lost), next try in 1000 ms"
    );
    // A record arriving before the retry is due does not hammer the store.
    s.push(&rec("b"));
    s.run(t0 + Duration::from_millis(500));
    assert_eq!(pg.calls(), 1);
    // Retries back off: 1 s, 2 s, 4 s, 4 s (capped).
    s.run(t0 + Duration::from_secs(1));
    assert_eq!(
        s.wake_in(t0 + Duration::from_secs(1)),
        Some(Duration::from_secs(2))
    );
    s.run(t0 + Duration::from_secs(3));
    assert_eq!(
        s.wake_in(t0 + Duration::from_secs(3)),
        Some(Duration::from_secs(4))
    );
    s.run(t0 + Duration::from_secs(7));
    assert_eq!(
        s.wake_in(t0 + Duration::from_secs(7)),
        Some(Duration::from_secs(4))
    );
    assert_eq!(pg.calls(), 4);
    assert!(lines.lock().unwrap()[1].starts_with("still cannot write records: "));
    pg.set_down(false);
    s.push(&rec("c"));
    s.run(t0 + Duration::from_secs(11));
    assert!(!s.in_outage());
    assert_eq!(pg.ids(), ["a", "b", "c"]);
    assert_eq!(
        lines.lock().unwrap().last().unwrap(),
        "accounting store pg works again after 11 s; writing 3 queued records"
    );
    assert_eq!(s.report().stored, 3);
    assert_eq!(s.report().lost, 0);
}

#[test]
fn overflow_spills_the_oldest_half_to_the_fallback() {
    let sqlite = Fake::named("SQLite file /var/acct.sqlite");
    let (mut s, pg, lines) = spool(Some(&sqlite), small());
    pg.set_down(true);
    let t0 = Instant::now();
    for i in 0..7 {
        s.push(&rec(&format!("c{i}")));
        s.run(t0);
    }
    // 7 > 6: keep the newest 3, the oldest 4 go to the file.
    assert_eq!(sqlite.ids(), ["c0", "c1", "c2", "c3"]);
    assert_eq!(s.pending(), 3);
    assert_eq!(s.report().to_fallback, 4);
    assert!(
        lines.lock().unwrap().iter().any(|l| l
            == "4 records written to the fallback SQLite file /var/acct.sqlite because more than 6 records waited for pg; copy them to the primary store later"),
        "{lines:?}"
    );
    pg.set_down(false);
    s.run(t0 + Duration::from_secs(2));
    assert_eq!(pg.ids(), ["c4", "c5", "c6"]);
    assert_eq!(
        s.report(),
        WriterReport {
            stored: 3,
            to_fallback: 4,
            lost: 0
        }
    );
}

#[test]
fn overflow_without_fallback_is_logged_as_lost() {
    let (mut s, pg, lines) = spool(None, small());
    pg.set_down(true);
    let t0 = Instant::now();
    for i in 0..7 {
        s.push(&rec(&format!("c{i}")));
    }
    s.run(t0);
    assert_eq!(s.report().lost, 4);
    assert_eq!(
        lines.lock().unwrap().last().unwrap(),
        "4 records LOST because more than 6 records waited for pg and there is no fallback store; call-ids: c0, c1, c2, c3"
    );
}

#[test]
fn close_tries_once_more_then_falls_back() {
    let sqlite = Fake::named("sqlite");
    let (mut s, pg, _lines) = spool(Some(&sqlite), small());
    pg.set_down(true);
    let t0 = Instant::now();
    s.push(&rec("x"));
    s.run(t0);
    s.push(&rec("y"));
    let report = s.close(t0 + Duration::from_millis(10));
    assert_eq!(
        pg.calls(),
        2,
        "one last attempt, not waiting for the schedule"
    );
    assert_eq!(sqlite.ids(), ["x", "y"]);
    assert_eq!(report.to_fallback, 2);

    let (mut s, pg, _lines) = spool(None, small());
    s.push(&rec("z"));
    // The store came back just before shutdown: the record is stored.
    pg.set_down(false);
    assert_eq!(s.close(t0).stored, 1);
    assert_eq!(pg.ids(), ["z"]);
}

#[test]
fn failing_fallback_counts_losses_and_names_calls() {
    let sqlite = Fake::named("sqlite");
    sqlite.set_down(true);
    let (mut s, pg, lines) = spool(Some(&sqlite), small());
    pg.set_down(true);
    for i in 0..7 {
        s.push(&rec(&format!("id{i}")));
    }
    let report = s.close(Instant::now());
    assert_eq!(report.lost, 7);
    let last = lines.lock().unwrap().last().unwrap().clone();
    assert!(
        last.starts_with(
            "7 records LOST because pg was unavailable at shutdown and the fallback failed too: "
        ),
        "{last}"
    );
    assert!(
        last.ends_with("call-ids: id0, id1, id2, id3, id4, ..."),
        "{last}"
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn spawned_writer_stores_and_reports_on_close() {
    let dir = temp_dir("writer");
    let path = dir.join("a.sqlite");
    let writer = spawn(
        StoreTarget::Sqlite(path.clone()),
        &[Call::TABLE],
        WriterOptions::default(),
    )
    .unwrap();
    let tx = writer.sink();
    for i in 0..1000 {
        assert!(tx.send(rec(&format!("w{i}"))));
    }
    let report = writer.close();
    assert_eq!(report.stored, 1000);
    assert!(!tx.send(rec("late")), "a closed writer refuses records");
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.count::<Call>().unwrap(), 1000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_metrics_count_stored_and_pending_records() {
    let dir = temp_dir("writer-metrics");
    let writer = spawn(
        StoreTarget::Sqlite(dir.join("a.sqlite")),
        &[Call::TABLE],
        WriterOptions::default(),
    )
    .unwrap();
    let metrics = Metrics::new();
    writer.publish_metrics(&metrics);
    let tx = writer.sink();
    for i in 0..300 {
        assert!(tx.send(rec(&format!("m{i}"))));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics.encode();
        if text.contains("mediagate_records_stored_total 300\n") {
            assert!(text.contains("mediagate_records_pending 0\n"), "{text}");
            assert!(text.contains("mediagate_records_lost_total 0\n"), "{text}");
            assert!(
                text.contains("mediagate_records_fallback_total 0\n"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never all stored: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_writer_takes_several_record_types_from_several_roles() {
    let dir = temp_dir("writer-types");
    let path = dir.join("a.sqlite");
    let writer = spawn(
        StoreTarget::Sqlite(path.clone()),
        &[Call::TABLE, Viewer::TABLE],
        WriterOptions::default(),
    )
    .unwrap();
    let relay = writer.sink();
    let edge = writer.sink();
    let relay_thread = std::thread::spawn(move || {
        for i in 0..50 {
            relay.send(call(&format!("c{i}")));
        }
    });
    for i in 0..30 {
        edge.send(viewer(&format!("v{i}"), i));
    }
    relay_thread.join().unwrap();
    drop(edge);
    assert_eq!(
        writer.close(),
        WriterReport {
            stored: 80,
            ..WriterReport::default()
        }
    );
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.count::<Call>().unwrap(), 50);
    let viewers = store.records::<Viewer>(100).unwrap();
    assert_eq!(viewers.len(), 30);
    assert_eq!(viewers[29], viewer("v29", 29));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tables_are_created_at_start() {
    let dir = temp_dir("writer-start");
    let path = dir.join("a.sqlite");
    drop(
        spawn(
            StoreTarget::Sqlite(path.clone()),
            &[Viewer::TABLE],
            WriterOptions::default(),
        )
        .unwrap(),
    );
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version("test_viewers").unwrap(), Some(1));
    assert_eq!(store.schema_version("test_calls").unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lost_lines_name_each_record_type_keys() {
    let (mut s, pg, lines) = spool(None, small());
    pg.set_down(true);
    s.push(&rec("c0"));
    s.push(&viewer("v0", 1));
    s.push(&rec("c1"));
    let report = s.close(Instant::now());
    assert_eq!(report.lost, 3);
    assert!(
        lines
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .ends_with("; call-ids: c0, c1; viewers: v0"),
        "{lines:?}"
    );
}

#[test]
fn spawn_fails_when_the_store_cannot_open() {
    let err = spawn(
        StoreTarget::Sqlite("/nonexistent-dir/z/a.sqlite".into()),
        &[Call::TABLE],
        WriterOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("accounting store /nonexistent-dir/z/a.sqlite: "),
        "{err}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("writer-refuse");
    let err = spawn(
        StoreTarget::Postgres {
            url: format!("postgresql://u:pw@127.0.0.1:{port}/db")
                .parse()
                .unwrap(),
            fallback: Some(dir.join("accounting.sqlite")),
        },
        &[Call::TABLE],
        WriterOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::PostgresStart { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot use the PostgreSQL accounting store postgresql://u:***@127.0.0.1:{port}/db: error connecting to server: "
        )),
        "{text}"
    );
    assert!(!text.contains(":pw@"), "{text}");
    assert!(
        !dir.join("accounting.sqlite").exists(),
        "no silent fallback to SQLite"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
