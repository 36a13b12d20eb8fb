//! The accounting store for relay session records: one row per finished call, in
//! SQLite by default or in PostgreSQL when `[accounting] postgres_url` is set.
//!
//! What it does: defines the table `relay_sessions` once ([`COLUMNS`]) so both
//! back ends ([`sqlite`], [`postgres`]) create the same columns: the call's
//! identifiers, times, reason and per-direction totals for queries, and the whole
//! [`SessionRecord`] as JSON text in `info` (MediaProxy's `media_sessions` keeps one
//! JSON blob per call the same way). [`RecordStore`] is what the [`writer`] thread
//! needs from a back end; [`StoreTarget`] says which one the relay was configured with.
//! The writer queues records while a store fails, retries, and spills to the SQLite
//! file when PostgreSQL stays away.
//!
//! What it does not: rotation or retention, schema migrations (the table is created
//! when missing, never altered), TLS to PostgreSQL. It does blocking I/O: only the
//! writer thread calls it, never the forwarding path or a tokio task.

pub mod postgres;
pub mod sqlite;
pub mod writer;

use std::path::PathBuf;

use crate::record::{SessionRecord, StreamRecord};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// The table every back end writes.
pub const TABLE: &str = "relay_sessions";

/// How a column is typed: the SQL type differs per back end, the meaning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// UTF-8 text.
    Text,
    /// A signed 64-bit integer (counts and Unix milliseconds, saturated at `i64::MAX`).
    Int64,
}

/// The columns of `relay_sessions` after its `id` key, in table order.
pub const COLUMNS: [(&str, ColumnKind); 12] = [
    ("call_id", ColumnKind::Text),
    ("from_tag", ColumnKind::Text),
    ("to_tag", ColumnKind::Text),
    ("start_unix_ms", ColumnKind::Int64),
    ("end_unix_ms", ColumnKind::Int64),
    ("duration_ms", ColumnKind::Int64),
    ("reason", ColumnKind::Text),
    ("caller_packets", ColumnKind::Int64),
    ("caller_bytes", ColumnKind::Int64),
    ("callee_packets", ColumnKind::Int64),
    ("callee_bytes", ColumnKind::Int64),
    ("info", ColumnKind::Text),
];

/// `CREATE TABLE` and index statements for a back end: `id_column` declares the
/// key, `int64` names the 64-bit integer type.
pub(crate) fn schema_sql(id_column: &str, int64: &str) -> String {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, kind)| {
            let ty = match kind {
                ColumnKind::Text => "TEXT",
                ColumnKind::Int64 => int64,
            };
            format!("    {name} {ty} NOT NULL")
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (\n    {id_column},\n{}\n);\n\
         CREATE INDEX IF NOT EXISTS {TABLE}_call_id ON {TABLE} (call_id);\n\
         CREATE INDEX IF NOT EXISTS {TABLE}_end ON {TABLE} (end_unix_ms);",
        columns.join(",\n")
    )
}

/// The `INSERT` of one row, with placeholders `$1`..`$12` (PostgreSQL's form; SQLite
/// binds `$N` names by position of first use, which is the same order).
pub(crate) fn insert_sql() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    let params: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {TABLE} ({}) VALUES ({})",
        names.join(", "),
        params.join(", ")
    )
}

/// One record as the column values of [`COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) call_id: String,
    pub(crate) from_tag: String,
    pub(crate) to_tag: String,
    pub(crate) start_unix_ms: i64,
    pub(crate) end_unix_ms: i64,
    pub(crate) duration_ms: i64,
    pub(crate) reason: String,
    pub(crate) caller_packets: i64,
    pub(crate) caller_bytes: i64,
    pub(crate) callee_packets: i64,
    pub(crate) callee_bytes: i64,
    pub(crate) info: String,
}

/// Database integers are signed; a count past `i64::MAX` is stored as `i64::MAX`.
fn db_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Row {
    pub(crate) fn of(r: &SessionRecord) -> Self {
        let sum = |f: fn(&StreamRecord) -> u64| {
            db_int(r.streams.iter().map(f).fold(0u64, u64::saturating_add))
        };
        Self {
            call_id: r.call_id.clone(),
            from_tag: r.from_tag.clone(),
            to_tag: r.to_tag.clone(),
            start_unix_ms: db_int(r.start_unix_ms),
            end_unix_ms: db_int(r.end_unix_ms),
            duration_ms: db_int(r.duration_ms()),
            reason: r.reason.clone(),
            caller_packets: sum(|s| s.caller.packets),
            caller_bytes: sum(|s| s.caller.bytes),
            callee_packets: sum(|s| s.callee.packets),
            callee_bytes: sum(|s| s.callee.bytes),
            info: r.to_json().to_string(),
        }
    }
}

/// A stored call as [`SqliteStore::find`] and [`PostgresStore::find`] return it:
/// `(reason, caller_packets, callee_packets, info JSON)`.
pub type FoundRow = (String, i64, i64, String);

/// Why the store failed. Messages name the file or the URL (password hidden).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A SQLite call failed.
    #[error("accounting store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The configured PostgreSQL server could not be used at start: the relay refuses
    /// to start rather than account somewhere else than configured.
    #[error("cannot use the PostgreSQL accounting store {url}: {detail}. The relay does not start without the store it is configured with: check that the server runs and accepts this user and database, or remove [accounting] postgres_url to use SQLite")]
    PostgresStart {
        /// The URL, password hidden.
        url: String,
        /// What went wrong, with the server's or the system's words.
        detail: String,
    },
    /// A PostgreSQL call failed after start (server gone, query refused).
    #[error("PostgreSQL accounting store {url}: {detail}")]
    Postgres {
        /// The URL, password hidden.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the accounting writer thread: {0}")]
    Thread(String),
}

/// What the [`writer`] needs from a back end.
pub trait RecordStore: Send {
    /// Writes the records in one transaction: all or none.
    fn insert_all(&mut self, records: &[SessionRecord]) -> Result<(), StoreError>;

    /// Names the store for log lines (a file path, or a URL without its password).
    fn describe(&self) -> String;
}

/// Where records go, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A SQLite file (the default: `state_dir/accounting.sqlite`).
    Sqlite(PathBuf),
    /// A PostgreSQL server; records that cannot reach it in time go to `fallback`
    /// (the SQLite file) when one is given.
    Postgres {
        /// Connection URL (`postgresql://user@host:port/db`).
        url: String,
        /// SQLite file for records PostgreSQL could not take.
        fallback: Option<PathBuf>,
    },
}

/// A primary store and, for PostgreSQL, the SQLite fallback.
pub type OpenedStores = (Box<dyn RecordStore>, Option<Box<dyn RecordStore>>);

impl StoreTarget {
    /// Opens the primary store (connecting and creating the table; an unreachable
    /// PostgreSQL server is an error) and prepares the fallback, which is only opened
    /// when first needed. Blocking; never call it on a tokio worker.
    pub fn open(&self) -> Result<OpenedStores, StoreError> {
        match self {
            Self::Sqlite(path) => Ok((Box::new(SqliteStore::open(path)?), None)),
            Self::Postgres { url, fallback } => {
                let primary = PostgresStore::connect(url)?;
                let fallback = fallback
                    .clone()
                    .map(|path| Box::new(sqlite::LazySqlite::new(path)) as Box<dyn RecordStore>);
                Ok((Box::new(primary), fallback))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LegRecord;

    #[test]
    fn both_back_ends_declare_the_same_columns() {
        let sqlite = schema_sql("id INTEGER PRIMARY KEY", "INTEGER");
        let pg = schema_sql(
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "BIGINT",
        );
        let names = |sql: &str| -> Vec<String> {
            sql.lines()
                .filter(|l| l.ends_with("NOT NULL,") || l.ends_with("NOT NULL"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        };
        assert_eq!(names(&sqlite), names(&pg));
        assert_eq!(names(&sqlite).len(), 12);
        assert!(
            sqlite.contains("    caller_bytes INTEGER NOT NULL,"),
            "{sqlite}"
        );
        assert!(pg.contains("    caller_bytes BIGINT NOT NULL,"), "{pg}");
        assert!(pg.contains("    info TEXT NOT NULL\n);"), "{pg}");
        assert_eq!(
            insert_sql(),
            "INSERT INTO relay_sessions (call_id, from_tag, to_tag, start_unix_ms, end_unix_ms, \
             duration_ms, reason, caller_packets, caller_bytes, callee_packets, callee_bytes, info) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
    }

    #[test]
    fn rows_sum_streams_and_saturate() {
        let leg = |packets, bytes| LegRecord {
            packets,
            bytes,
            ..LegRecord::default()
        };
        let rec = SessionRecord {
            call_id: "c".into(),
            start_unix_ms: 5,
            end_unix_ms: u64::MAX,
            streams: vec![
                StreamRecord {
                    caller: leg(3, 300),
                    callee: leg(u64::MAX, 1),
                    ..StreamRecord::default()
                },
                StreamRecord {
                    caller: leg(4, 400),
                    callee: leg(1, 1),
                    ..StreamRecord::default()
                },
            ],
            ..SessionRecord::default()
        };
        let row = Row::of(&rec);
        assert_eq!((row.caller_packets, row.caller_bytes), (7, 700));
        assert_eq!((row.callee_packets, row.callee_bytes), (i64::MAX, 2));
        assert_eq!(row.end_unix_ms, i64::MAX);
        assert_eq!(row.duration_ms, i64::MAX);
        assert_eq!(SessionRecord::from_json(&row.info), Some(rec));
    }
}
