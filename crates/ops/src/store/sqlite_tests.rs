use super::*;
use crate::store::tests::{call, viewer, Call, Viewer, CALL_MIGRATIONS, CALL_V1};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample() -> Call {
    Call {
        call_id: "c1@x".into(),
        reason: "deleted".into(),
        start_unix_ms: 10,
        end_unix_ms: 2010,
        packets: vec![100, 99],
    }
}

#[test]
fn writes_and_reads_back() {
    let dir = temp_dir("sqlite-store");
    let path = dir.join("accounting.sqlite");
    let mut store = SqliteStore::open(&path).unwrap();
    let rec = sample();
    store.insert(&[rec.clone(), rec]).unwrap();
    assert_eq!(store.count::<Call>().unwrap(), 2);
    let rows = store.find::<Call>("c1@x").unwrap();
    assert_eq!(rows[0]["reason"], "deleted");
    assert_eq!(rows[0]["packets"], 199);
    let info: serde_json::Value = serde_json::from_str(rows[0]["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["end_unix_ms"], 2010);
    let back = store.records::<Call>(10).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0], sample());
    drop(store);
    // Reopening keeps the rows and does not fail on the existing schema.
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.count::<Call>().unwrap(), 2);
    assert_eq!(store.describe(), format!("SQLite file {}", path.display()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn columns_hold_the_derived_values() {
    let dir = temp_dir("sqlite-columns");
    let path = dir.join("a.sqlite");
    let mut store = SqliteStore::open(&path).unwrap();
    store.insert(&[sample()]).unwrap();
    let (dur, packets, reason): (i64, i64, String) = store
        .conn
        .query_row(
            "SELECT duration_ms, packets, reason FROM test_calls",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((dur, packets, reason.as_str()), (2000, 199, "deleted"));
    let mut expected = vec!["id".to_owned()];
    expected.extend(Call::TABLE.columns.iter().map(|c| c.name.to_owned()));
    assert_eq!(store.column_names::<Call>().unwrap(), expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unwritable_path_names_the_file() {
    let err = SqliteStore::open(Path::new("/nonexistent-dir/x/accounting.sqlite")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("accounting store /nonexistent-dir/x/accounting.sqlite: "),
        "{err}"
    );
}

#[test]
fn lazy_store_creates_its_file_on_first_write() {
    let dir = temp_dir("sqlite-lazy");
    let path = dir.join("fallback.sqlite");
    let mut lazy = LazySqlite::new(path.clone());
    assert!(!path.exists());
    let row = PendingRow::of(&sample()).unwrap();
    lazy.insert_all(std::slice::from_ref(&row)).unwrap();
    lazy.insert_all(std::slice::from_ref(&row)).unwrap();
    assert_eq!(
        SqliteStore::open(&path).unwrap().count::<Call>().unwrap(),
        2
    );
    let mut broken = LazySqlite::new("/nonexistent-dir/y.sqlite".into());
    assert!(broken.insert_all(&[row]).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_record_types_share_one_transaction_and_file() {
    let dir = temp_dir("sqlite-two-types");
    let path = dir.join("a.sqlite");
    let mut store = SqliteStore::open(&path).unwrap();
    let rows = [
        PendingRow::of(&call("c1")).unwrap(),
        PendingRow::of(&viewer("v1", 10)).unwrap(),
        PendingRow::of(&call("c2")).unwrap(),
    ];
    store.insert_all(&rows).unwrap();
    assert_eq!(store.count::<Call>().unwrap(), 2);
    assert_eq!(store.records::<Viewer>(10).unwrap(), [viewer("v1", 10)]);
    assert_eq!(store.find::<Viewer>("v1").unwrap()[0]["bytes"], 10);
    assert_eq!(store.schema_version("test_calls").unwrap(), Some(2));
    assert_eq!(store.schema_version("test_viewers").unwrap(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_older_table_is_migrated_and_keeps_its_rows() {
    let dir = temp_dir("sqlite-migrate");
    let path = dir.join("a.sqlite");
    // A database written by a program that knew only version 1 of the table.
    let mut v1 = Call::TABLE;
    v1.columns = CALL_V1;
    v1.migrations = &CALL_MIGRATIONS[..1];
    let mut old = SqliteStore::open(&path).unwrap();
    old.prepare(&v1).unwrap();
    old.execute_batch(
        "INSERT INTO test_calls (call_id, reason, packets, info) VALUES ('old', 'deleted', 5, '{}')",
    )
    .unwrap();
    assert_eq!(old.schema_version("test_calls").unwrap(), Some(1));
    drop(old);

    let mut store = SqliteStore::open(&path).unwrap();
    store.insert(&[sample()]).unwrap();
    assert_eq!(store.schema_version("test_calls").unwrap(), Some(2));
    let old = store.find::<Call>("old").unwrap();
    assert_eq!(
        (old[0]["packets"].as_i64(), old[0]["duration_ms"].as_i64()),
        (Some(5), Some(0))
    );
    assert_eq!(store.find::<Call>("c1@x").unwrap()[0]["duration_ms"], 2000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_newer_table_is_refused_and_left_alone() {
    let dir = temp_dir("sqlite-newer");
    let path = dir.join("a.sqlite");
    let mut store = SqliteStore::open(&path).unwrap();
    store.prepare(&Call::TABLE).unwrap();
    store
        .execute_batch(
            "UPDATE mediagate_schema_versions SET version = 9 WHERE table_name = 'test_calls'",
        )
        .unwrap();
    drop(store);
    let mut store = SqliteStore::open(&path).unwrap();
    let err = store.insert(&[sample()]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("accounting table test_calls: the database is at schema version 9"),
        "{err}"
    );
    assert_eq!(store.schema_version("test_calls").unwrap(), Some(9));
    let _ = std::fs::remove_dir_all(&dir);
}
