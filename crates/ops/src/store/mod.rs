//! The records store: finished calls, viewer sessions and whatever else a role
//! accounts for, one row per record, in SQLite by default or in PostgreSQL when
//! `[accounting] postgres_url` is set.
//!
//! What it does: a record type implements [`Record`], naming its [`Table`] (columns
//! and versioned migrations) and the row it becomes. Rows are made by `serde`: the
//! record's [`Record::Row`] is serialised into a map whose keys are the column names,
//! so no per-field code binds values. Both back ends ([`SqliteStore`],
//! [`PostgresStore`]) create the same columns and keep each table's schema version in
//! [`VERSIONS_TABLE`]. One [`writer`](spawn) thread per process takes records of any
//! type through a [`RecordSink`], queues them while a store fails, retries, and spills
//! to the SQLite file when PostgreSQL stays away. [`StoreTarget`] says where records
//! go, from the validated `[accounting]` config.
//!
//! What it does not: rotation or retention, TLS to PostgreSQL, or reading records for
//! anything but tests and tools. It does blocking I/O: only the writer thread (or a
//! test or tool thread) calls a back end, never a forwarding path or a tokio task.

mod postgres;
mod schema;
mod sqlite;
mod writer;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

pub use self::postgres::PostgresStore;
pub use self::schema::{
    insert_sql, Column, ColumnKind, Dialect, Migration, Step, Table, VERSIONS_TABLE,
};
pub use self::sqlite::SqliteStore;
pub use self::writer::{
    spawn, spawn_with_log, LogSink, RecordSink, Writer, WriterOptions, WriterReport,
};

/// A record type the store keeps: its table, and the row one record becomes.
///
/// The record itself serialises to JSON (a [`ColumnKind::Json`] column usually holds
/// it whole) and deserialises back, which is how [`SqliteStore::records`] and
/// [`PostgresStore::records`] read it.
pub trait Record: Serialize + DeserializeOwned + Send + 'static {
    /// The table: name, columns, migrations, key.
    const TABLE: Table;

    /// What one record looks like as a row: serialised, a map with exactly one key per
    /// column of [`Record::TABLE`] (text as strings, integers as numbers, anything for
    /// JSON columns). Often the record itself, or a view that adds derived columns.
    type Row<'a>: Serialize
    where
        Self: 'a;

    /// The row of this record.
    fn row(&self) -> Self::Row<'_>;
}

/// A value bound to a statement parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlValue {
    Text(String),
    Int(i64),
}

impl SqlValue {
    fn of(column: &Column, value: Json) -> Result<Self, String> {
        match (column.kind, value) {
            (ColumnKind::Json, v) => Ok(Self::Text(v.to_string())),
            (ColumnKind::Text, Json::String(s)) => Ok(Self::Text(s)),
            (ColumnKind::Int64, Json::Number(n)) => n
                .as_i64()
                // Database integers are signed; a count past `i64::MAX` is stored as
                // `i64::MAX`.
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                .map(Self::Int)
                .ok_or_else(|| format!("column {} wants an integer, got {n}", column.name)),
            (kind, v) => Err(format!(
                "column {} is {kind:?}, the row gives {v}",
                column.name
            )),
        }
    }

    fn as_text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Int(n) => n.to_string(),
        }
    }
}

/// A stored row as tests and tools read it back: column name to value (text as a
/// string, integers as numbers, JSON columns as their text).
pub type FoundRow = serde_json::Map<String, Json>;

/// The records in a query's `json` column; rows whose JSON does not read back as `R`
/// are skipped.
fn records_from<R: Record>(rows: &[FoundRow], json: &str) -> Vec<R> {
    rows.iter()
        .filter_map(|r| r.get(json)?.as_str())
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect()
}

/// The `name` column of a catalogue query's rows, in order.
fn names_from(rows: &[FoundRow]) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.get("name")?.as_str().map(str::to_owned))
        .collect()
}

/// One record made into a row of its table: what the writer queues and the back ends
/// insert, whatever the record's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRow {
    pub(crate) table: Table,
    /// The key column's value (the call-id), for log lines.
    pub(crate) key: String,
    pub(crate) values: Vec<SqlValue>,
}

impl PendingRow {
    /// The rows of `records`, or the first reason one does not fit its table.
    pub(crate) fn all<R: Record>(records: &[R]) -> Result<Vec<Self>, StoreError> {
        records.iter().map(Self::of).collect()
    }

    /// The row of `record`, or why its [`Record::Row`] does not fit its table.
    pub(crate) fn of<R: Record>(record: &R) -> Result<Self, StoreError> {
        let table = R::TABLE;
        let bad = |detail: String| StoreError::Row {
            table: table.name.to_owned(),
            detail,
        };
        let map = match serde_json::to_value(record.row()) {
            Ok(Json::Object(map)) => map,
            Ok(other) => return Err(bad(format!("the row is not a map: {other}"))),
            Err(e) => return Err(bad(format!("the row does not serialise: {e}"))),
        };
        let mut map = map;
        let mut values = Vec::with_capacity(table.columns.len());
        let mut key = None;
        for column in table.columns {
            let value = map
                .remove(column.name)
                .ok_or_else(|| bad(format!("the row has no {}", column.name)))?;
            let value = SqlValue::of(column, value).map_err(bad)?;
            if column.name == table.key {
                key = Some(value.as_text());
            }
            values.push(value);
        }
        if let Some(extra) = map.keys().next() {
            return Err(bad(format!("the row's {extra} has no column")));
        }
        Ok(Self {
            table,
            key: key.unwrap_or_default(),
            values,
        })
    }

    /// The table the row goes to.
    #[cfg(test)]
    pub(crate) fn table(&self) -> &'static str {
        self.table.name
    }

    /// The key column's value (the call-id).
    #[cfg(test)]
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

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
    /// The configured PostgreSQL server could not be used at start: mediagate refuses
    /// to start rather than account somewhere else than configured.
    #[error("cannot use the PostgreSQL accounting store {url}: {detail}. mediagate does not start without the store it is configured with: check that the server runs and accepts this user and database, or remove [accounting] postgres_url to use SQLite")]
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
    /// A table's schema cannot be used: the database is newer than this program, or a
    /// record type's migrations do not match its columns.
    #[error("accounting table {table}: {detail}")]
    Schema {
        /// The table.
        table: String,
        /// What is wrong.
        detail: String,
    },
    /// A record does not fit its table (a programming error in the record type).
    #[error("a record for {table} does not fit the table: {detail}")]
    Row {
        /// The table.
        table: String,
        /// What does not fit.
        detail: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the accounting writer thread: {0}")]
    Thread(String),
}

/// What the writer needs from a back end.
pub(crate) trait RecordStore: Send {
    /// Writes the rows (of any tables) in one transaction: all or none. Tables are
    /// created or migrated first when this store has not seen them yet.
    fn insert_all(&mut self, rows: &[PendingRow]) -> Result<(), StoreError>;

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
        /// The validated connection URL.
        url: mediagate_config::PostgresUrl,
        /// SQLite file for records PostgreSQL could not take.
        fallback: Option<PathBuf>,
    },
}

/// A primary store and, for PostgreSQL, the SQLite fallback.
pub(crate) type OpenedStores = (Box<dyn RecordStore>, Option<Box<dyn RecordStore>>);

/// The SQLite file under `state_dir`: the default store and PostgreSQL's fallback.
pub(crate) const SQLITE_FILE: &str = "accounting.sqlite";

impl StoreTarget {
    /// Where `[accounting]` sends records: PostgreSQL when a URL is set (the SQLite file
    /// under `state_dir` then only takes what PostgreSQL could not), else that file.
    pub fn from_config(accounting: &mediagate_config::AccountingConfig, state_dir: &Path) -> Self {
        let file = state_dir.join(SQLITE_FILE);
        match &accounting.postgres_url {
            Some(url) => Self::Postgres {
                url: url.clone(),
                fallback: Some(file),
            },
            None => Self::Sqlite(file),
        }
    }

    /// Opens the primary store (connecting, creating or migrating `tables`; an
    /// unreachable PostgreSQL server is an error) and prepares the fallback, which is
    /// only opened when first needed. Blocking; never call it on a tokio worker.
    pub(crate) fn open(&self, tables: &[Table]) -> Result<OpenedStores, StoreError> {
        for table in tables {
            table.check()?;
        }
        match self {
            Self::Sqlite(path) => {
                let mut store = SqliteStore::open(path)?;
                for table in tables {
                    store.prepare(table)?;
                }
                Ok((Box::new(store), None))
            }
            Self::Postgres { url, fallback } => {
                let mut primary = PostgresStore::connect(url)?;
                for table in tables {
                    primary.prepare(table).map_err(|e| match e {
                        StoreError::Postgres { url, detail } => {
                            StoreError::PostgresStart { url, detail }
                        }
                        other => other,
                    })?;
                }
                let fallback = fallback
                    .clone()
                    .map(|path| Box::new(sqlite::LazySqlite::new(path)) as Box<dyn RecordStore>);
                Ok((Box::new(primary), fallback))
            }
        }
    }
}

#[cfg(test)]
mod tests;
