//! Record types for the store's tests, and the tests of the parts without a database:
//! tables, migrations, rows.

use serde::{Deserialize, Serialize};

use super::*;

/// A call-like record whose row adds derived columns and keeps the whole record as
/// JSON, as the relay's does; its table went through two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) call_id: String,
    pub(crate) reason: String,
    pub(crate) start_unix_ms: u64,
    pub(crate) end_unix_ms: u64,
    pub(crate) packets: Vec<u64>,
}

#[derive(Serialize)]
pub(crate) struct CallRow<'a> {
    call_id: &'a str,
    reason: &'a str,
    packets: u64,
    info: &'a Call,
    duration_ms: u64,
}

pub(crate) const CALL_V1: &[Column] = &[
    Column::text("call_id"),
    Column::text("reason"),
    Column::int64("packets"),
    Column::json("info"),
];

pub(crate) const CALL_COLUMNS: &[Column] = &[
    Column::text("call_id"),
    Column::text("reason"),
    Column::int64("packets"),
    Column::json("info"),
    Column::int64("duration_ms"),
];

pub(crate) const CALL_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        steps: &[
            Step::CreateTable(CALL_V1),
            Step::CreateIndex {
                name: "test_calls_call_id",
                columns: &["call_id"],
            },
        ],
    },
    Migration {
        version: 2,
        steps: &[Step::AddColumn(Column::int64("duration_ms"))],
    },
];

impl Record for Call {
    const TABLE: Table = Table {
        name: "test_calls",
        columns: CALL_COLUMNS,
        migrations: CALL_MIGRATIONS,
        key: "call_id",
        keys_in_logs: "call-ids",
    };
    type Row<'a> = CallRow<'a>;

    fn row(&self) -> CallRow<'_> {
        CallRow {
            call_id: &self.call_id,
            reason: &self.reason,
            packets: self.packets.iter().fold(0u64, |a, b| a.saturating_add(*b)),
            info: self,
            duration_ms: self.end_unix_ms.saturating_sub(self.start_unix_ms),
        }
    }
}

pub(crate) fn call(id: &str) -> Call {
    Call {
        call_id: id.into(),
        ..Call::default()
    }
}

/// A second record type, shaped like a viewer session: its row is its own fields
/// plus itself as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Viewer {
    pub(crate) viewer: String,
    pub(crate) url: String,
    pub(crate) bytes: u64,
}

#[derive(Serialize)]
pub(crate) struct ViewerRow<'a> {
    #[serde(flatten)]
    fields: &'a Viewer,
    info: &'a Viewer,
}

impl Record for Viewer {
    const TABLE: Table = Table {
        name: "test_viewers",
        columns: &[
            Column::text("viewer"),
            Column::text("url"),
            Column::int64("bytes"),
            Column::json("info"),
        ],
        migrations: &[Migration {
            version: 1,
            steps: &[Step::CreateTable(&[
                Column::text("viewer"),
                Column::text("url"),
                Column::int64("bytes"),
                Column::json("info"),
            ])],
        }],
        key: "viewer",
        keys_in_logs: "viewers",
    };
    type Row<'a> = ViewerRow<'a>;

    fn row(&self) -> ViewerRow<'_> {
        ViewerRow {
            fields: self,
            info: self,
        }
    }
}

pub(crate) fn viewer(id: &str, bytes: u64) -> Viewer {
    Viewer {
        viewer: id.into(),
        url: "rtsp://origin/live".into(),
        bytes,
    }
}

#[test]
fn rows_come_from_serde_in_column_order_and_saturate() {
    let rec = Call {
        call_id: "c".into(),
        reason: "deleted".into(),
        start_unix_ms: 5,
        end_unix_ms: u64::MAX,
        packets: vec![3, u64::MAX],
    };
    let row = PendingRow::of(&rec).unwrap();
    assert_eq!(row.table(), "test_calls");
    assert_eq!(row.key(), "c");
    assert_eq!(row.values[0], SqlValue::Text("c".into()));
    assert_eq!(row.values[1], SqlValue::Text("deleted".into()));
    assert_eq!(row.values[2], SqlValue::Int(i64::MAX), "sums saturate");
    assert_eq!(
        row.values[4],
        SqlValue::Int(i64::MAX),
        "u64 past i64 saturates"
    );
    let SqlValue::Text(info) = &row.values[3] else {
        panic!("info is text: {row:?}");
    };
    assert_eq!(serde_json::from_str::<Call>(info).unwrap(), rec);

    let v = PendingRow::of(&viewer("v1", 7)).unwrap();
    assert_eq!(
        v.values[..3],
        [
            SqlValue::Text("v1".into()),
            SqlValue::Text("rtsp://origin/live".into()),
            SqlValue::Int(7)
        ]
    );
}

/// A record type whose row does not match its table, to see the errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wrong {
    a: serde_json::Value,
    b: serde_json::Value,
}

impl Record for Wrong {
    const TABLE: Table = Table {
        name: "wrong",
        columns: &[Column::text("a"), Column::int64("b")],
        migrations: &[Migration {
            version: 1,
            steps: &[Step::CreateTable(&[Column::text("a"), Column::int64("b")])],
        }],
        key: "a",
        keys_in_logs: "a",
    };
    type Row<'a> = &'a Self;

    fn row(&self) -> &Self {
        self
    }
}

#[test]
fn rows_that_do_not_fit_their_table_are_errors() {
    let wrong = |a: serde_json::Value, b: serde_json::Value| {
        PendingRow::of(&Wrong { a, b }).unwrap_err().to_string()
    };
    assert_eq!(
        wrong(1.into(), 2.into()),
        "a record for wrong does not fit the table: column a is Text, the row gives 1"
    );
    assert_eq!(
        wrong("x".into(), 1.5.into()),
        "a record for wrong does not fit the table: column b wants an integer, got 1.5"
    );
    assert_eq!(
        wrong("x".into(), serde_json::Value::Null),
        "a record for wrong does not fit the table: column b is Int64, the row gives null"
    );
    assert!(PendingRow::of(&Wrong {
        a: "x".into(),
        b: (-3).into()
    })
    .is_ok());
}

#[test]
fn tables_are_checked_against_their_migrations() {
    Call::TABLE.check().unwrap();
    Viewer::TABLE.check().unwrap();
    assert_eq!(Call::TABLE.version(), 2);
    let mut t = Call::TABLE;
    t.columns = CALL_V1;
    assert!(t
        .check()
        .unwrap_err()
        .to_string()
        .starts_with("accounting table test_calls: the migrations create the columns [\"call_id\", \"reason\", \"packets\", \"info\", \"duration_ms\"], the record declares"));
    let mut t = Call::TABLE;
    t.migrations = &CALL_MIGRATIONS[1..];
    assert_eq!(
        t.check().unwrap_err().to_string(),
        "accounting table test_calls: migration 1 is numbered 2 (migrations count 1, 2, 3 ...)"
    );
    let mut t = Call::TABLE;
    t.key = "nope";
    assert!(t.check().is_err());
}

#[test]
fn both_dialects_declare_the_same_columns() {
    let sqlite = Dialect::Sqlite.schema_sql(&Call::TABLE);
    let pg = Dialect::Postgres.schema_sql(&Call::TABLE);
    assert_eq!(
        sqlite,
        "CREATE TABLE IF NOT EXISTS test_calls (\n    id INTEGER PRIMARY KEY,\n    call_id TEXT NOT NULL,\n    reason TEXT NOT NULL,\n    packets INTEGER NOT NULL,\n    info TEXT NOT NULL\n);\n\
         CREATE INDEX IF NOT EXISTS test_calls_call_id ON test_calls (call_id);\n\
         ALTER TABLE test_calls ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;"
    );
    assert_eq!(
        pg,
        "CREATE TABLE IF NOT EXISTS test_calls (\n    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n    call_id TEXT NOT NULL,\n    reason TEXT NOT NULL,\n    packets BIGINT NOT NULL,\n    info TEXT NOT NULL\n);\n\
         CREATE INDEX IF NOT EXISTS test_calls_call_id ON test_calls (call_id);\n\
         ALTER TABLE test_calls ADD COLUMN duration_ms BIGINT NOT NULL DEFAULT 0;"
    );
    assert_eq!(
        insert_sql(&Call::TABLE),
        "INSERT INTO test_calls (call_id, reason, packets, info, duration_ms) VALUES ($1, $2, $3, $4, $5)"
    );
}

#[test]
fn a_database_newer_than_the_program_is_refused() {
    assert_eq!(
        schema::pending_migrations(&Call::TABLE, 0).unwrap().len(),
        2
    );
    assert_eq!(
        schema::pending_migrations(&Call::TABLE, 1).unwrap()[0].version,
        2
    );
    assert!(schema::pending_migrations(&Call::TABLE, 2)
        .unwrap()
        .is_empty());
    assert_eq!(
        schema::pending_migrations(&Call::TABLE, 3).unwrap_err().to_string(),
        "accounting table test_calls: the database is at schema version 3, newer than this mediagate knows (2); run a mediagate at least as new as the one that wrote it"
    );
}

#[test]
fn the_target_follows_the_accounting_config() {
    let state = Path::new("/var/mg");
    let config = mediagate_config::parse_config("").unwrap();
    assert_eq!(
        StoreTarget::from_config(&config.accounting, state),
        StoreTarget::Sqlite(PathBuf::from("/var/mg/accounting.sqlite"))
    );
    let config = mediagate_config::parse_config(
        "[accounting]\npostgres_url = \"postgresql://u:pw@127.0.0.1/acct\"\n",
    )
    .unwrap();
    let target = StoreTarget::from_config(&config.accounting, state);
    let StoreTarget::Postgres { url, fallback } = target else {
        panic!("{target:?}");
    };
    assert_eq!(url.redacted(), "postgresql://u:***@127.0.0.1/acct");
    assert_eq!(fallback, Some(PathBuf::from("/var/mg/accounting.sqlite")));
}
