//! The PostgreSQL accounting store against a real server (Debian's `postgresql`):
//! records written through the relay's store come back unchanged, the table has the
//! same columns as SQLite's, an outage queues records and a restart gets them all,
//! records still pending at shutdown go to the SQLite fallback, and a relay whose
//! server is unreachable refuses to start.

#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mediagate_relay::calls::RelayOptions;
use mediagate_relay::engine::{EngineConfig, Relay, StartError};
use mediagate_relay::record::{LegRecord, SessionRecord, StreamRecord};
use mediagate_relay::store::writer::{spawn_with_log, WriterOptions, WriterReport};
use mediagate_relay::store::{PostgresStore, SqliteStore, StoreError, StoreTarget, COLUMNS};
use postgres_server::PostgresServer;

fn record(call_id: &str, caller_packets: u64, callee_packets: u64) -> SessionRecord {
    SessionRecord {
        call_id: call_id.into(),
        from_tag: "ft".into(),
        to_tag: "tt".into(),
        start_unix_ms: 1_700_000_000_000,
        end_unix_ms: 1_700_000_061_500,
        reason: "deleted".into(),
        streams: vec![StreamRecord {
            index: 0,
            media_type: "audio".into(),
            proto: "RTP/AVP".into(),
            caller: LegRecord {
                codec: "PCMA".into(),
                local: "127.0.0.1:30000".into(),
                remote: "192.0.2.1:4000".into(),
                packets: caller_packets,
                bytes: caller_packets * 172,
                cumulative_lost: -1,
                fraction_lost: 3,
                jitter: 80,
                ..LegRecord::default()
            },
            callee: LegRecord {
                codec: "PCMA".into(),
                packets: callee_packets,
                bytes: callee_packets * 172,
                ..LegRecord::default()
            },
        }],
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-pgstore-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn records_round_trip_through_a_real_server_with_the_sqlite_columns() {
    let server = PostgresServer::start();
    let mut store = PostgresStore::connect(&server.url()).unwrap();
    let a = record("pg-1@host", 3000, 2999);
    let b = record("pg-2@host", 5, 0);
    store.insert_all(&[a.clone(), b.clone()]).unwrap();
    store.insert_all(std::slice::from_ref(&a)).unwrap();

    assert_eq!(store.count().unwrap(), 3);
    assert_eq!(store.records(10).unwrap(), vec![a.clone(), b, a.clone()]);
    assert_eq!(store.records(1).unwrap().len(), 1);
    let rows = store.find("pg-1@host").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, rows[0].2),
        ("deleted", 3000, 2999)
    );
    let info: serde_json::Value = serde_json::from_str(&rows[0].3).unwrap();
    assert_eq!(info["duration_ms"], 61_500);
    assert_eq!(info["streams"][0]["caller"]["jitter"], 80);
    assert!(store.find("nobody").unwrap().is_empty());

    // The same columns, in the same order, as the SQLite table.
    let mut expected = vec!["id".to_owned()];
    expected.extend(COLUMNS.iter().map(|(n, _)| (*n).to_owned()));
    assert_eq!(store.column_names().unwrap(), expected);
    let dir = temp_dir("columns");
    let sqlite = SqliteStore::open(&dir.join("a.sqlite")).unwrap();
    assert_eq!(sqlite.column_names().unwrap(), expected);
    let _ = std::fs::remove_dir_all(&dir);

    // A second relay connecting to an existing table neither fails nor loses rows.
    let mut again = PostgresStore::connect(&server.url()).unwrap();
    assert_eq!(again.count().unwrap(), 3);
}

#[test]
fn outage_queues_records_then_restart_stores_them_and_shutdown_falls_back() {
    let mut server = PostgresServer::start();
    let dir = temp_dir("outage");
    let fallback = dir.join("accounting.sqlite");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&lines);
    let (tx, writer) = spawn_with_log(
        StoreTarget::Postgres {
            url: server.url(),
            fallback: Some(fallback.clone()),
        },
        WriterOptions {
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            ..WriterOptions::default()
        },
        Box::new(move |l| sink.lock().unwrap().push(l.to_owned())),
    )
    .unwrap();
    let mut reader = PostgresStore::connect(&server.url()).unwrap();
    let count = |reader: &mut PostgresStore| reader.count().unwrap_or(-1);

    for i in 0..3 {
        tx.send(record(&format!("before-{i}"), 1, 1)).unwrap();
    }
    wait_for("3 rows", Duration::from_secs(10), || {
        count(&mut reader) == 3
    });

    server.stop();
    for i in 0..2 {
        tx.send(record(&format!("during-{i}"), 1, 1)).unwrap();
    }
    wait_for("the outage to be logged", Duration::from_secs(20), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("cannot write records: PostgreSQL accounting store "))
    });
    assert!(
        !fallback.exists(),
        "a short outage does not spill to SQLite"
    );

    server.start_again();
    wait_for("5 rows after the restart", Duration::from_secs(20), || {
        count(&mut reader) == 5
    });
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("works again after") && l.ends_with("writing 2 queued records")),
        "{:?}",
        lines.lock().unwrap()
    );
    let ids: Vec<String> = reader
        .records(10)
        .unwrap()
        .into_iter()
        .map(|r| r.call_id)
        .collect();
    assert_eq!(
        ids,
        ["before-0", "before-1", "before-2", "during-0", "during-1"]
    );

    // Down at shutdown: the writer tries once more, then writes to the SQLite file.
    server.stop();
    tx.send(record("at-shutdown", 7, 7)).unwrap();
    drop(tx);
    let report = writer.join().unwrap();
    assert_eq!(
        report,
        WriterReport {
            stored: 5,
            to_fallback: 1,
            lost: 0
        }
    );
    let sqlite = SqliteStore::open(&fallback).unwrap();
    let rows = sqlite.find("at-shutdown").unwrap();
    assert_eq!(
        (rows.len(), rows[0].0.as_str(), rows[0].1),
        (1, "deleted", 7)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_refuses_to_start_when_postgres_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("refuse");
    let config = EngineConfig {
        ng_udp: vec!["127.0.0.1:0".parse().unwrap()],
        ng_tcp: Vec::new(),
        media: vec![("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap())],
        ports: (43000, 43099),
        port_quarantine: Duration::from_secs(10),
        options: RelayOptions::default(),
        store: Some(dir.join("accounting.sqlite")),
        postgres_url: Some(format!("postgresql://relay:pw@127.0.0.1:{port}/acct")),
        notify_url: None,
        tick: Duration::from_millis(50),
        forward_threads: 1,
        forward_coalesce: Duration::ZERO,
        forward_io: Default::default(),
        forward_scheduling: Default::default(),
    };
    let err = Relay::start(config).await.unwrap_err();
    assert!(
        matches!(err, StartError::Store(StoreError::PostgresStart { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot use the PostgreSQL accounting store postgresql://relay:***@127.0.0.1:{port}/acct: error connecting to server: "
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
