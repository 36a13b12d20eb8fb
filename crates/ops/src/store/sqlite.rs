//! SQLite back end of the records store (the default, and PostgreSQL's fallback).
//!
//! What it does: opens (creating if needed) the database file, creates or migrates
//! each record type's table the first time it is used ([`super::schema`]), writes
//! batches in one transaction, and reads rows back for tests and tools. The database
//! runs in WAL mode with a busy timeout so a reader (an operator's `sqlite3`) does not
//! block the writer. [`LazySqlite`] opens its file only when the first record
//! arrives, so a process accounting to PostgreSQL leaves no SQLite file behind unless
//! it needed one.
//!
//! What it does not: share a connection between threads (the writer thread owns it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql};
use serde_json::Value as Json;

use super::schema::{insert_sql, pending_migrations, Dialect, Table};
use super::{FoundRow, PendingRow, Record, RecordStore, SqlValue, StoreError};

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Self::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
        })
    }
}

/// An open SQLite records store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: String,
    /// Tables created or migrated through this connection.
    ready: HashSet<&'static str>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. Tables are created when first
    /// written or read, or by [`SqliteStore::prepare`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let wrap = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        Ok(Self {
            conn,
            path: shown,
            ready: HashSet::new(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates `table` when missing and runs the migrations its recorded version has
    /// not had, in one transaction.
    pub fn prepare(&mut self, table: &Table) -> Result<(), StoreError> {
        if self.ready.contains(table.name) {
            return Ok(());
        }
        table.check()?;
        let path = &self.path;
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let dialect = Dialect::Sqlite;
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute_batch(&dialect.versions_table_sql())
            .map_err(err)?;
        let version: Option<i64> = tx
            .query_row(&dialect.get_version_sql(), [table.name], |r| r.get(0))
            .optional()
            .map_err(err)?;
        let pending = pending_migrations(table, version.unwrap_or(0))?;
        if let Some(last) = pending.last() {
            for m in pending {
                tx.execute_batch(&dialect.migration_sql(table.name, m))
                    .map_err(err)?;
            }
            tx.execute(
                &dialect.set_version_sql(),
                rusqlite::params![table.name, i64::from(last.version)],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.ready.insert(table.name);
        Ok(())
    }

    /// Writes rows in one transaction.
    pub(crate) fn insert_all(&mut self, rows: &[PendingRow]) -> Result<(), StoreError> {
        for row in rows {
            self.prepare(&row.table)?;
        }
        let path = &self.path;
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for row in rows {
            let mut stmt = tx.prepare_cached(&insert_sql(&row.table)).map_err(err)?;
            stmt.execute(rusqlite::params_from_iter(row.values.iter()))
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Writes records in one transaction.
    pub fn insert<R: Record>(&mut self, records: &[R]) -> Result<(), StoreError> {
        self.insert_all(&PendingRow::all(records)?)
    }

    fn query(
        &mut self,
        table: &Table,
        sql: &str,
        param: Option<&dyn ToSql>,
    ) -> Result<Vec<FoundRow>, StoreError> {
        self.prepare(table)?;
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let names: Vec<String> = stmt
            .column_names()
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let params: Vec<&dyn ToSql> = param.into_iter().collect();
        let rows = stmt
            .query_map(params.as_slice(), |row| {
                let mut map = FoundRow::new();
                for (i, name) in names.iter().enumerate() {
                    let value = match row.get_ref(i)? {
                        ValueRef::Integer(n) => Json::from(n),
                        ValueRef::Text(t) => Json::from(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Real(f) => Json::from(f),
                        ValueRef::Null | ValueRef::Blob(_) => Json::Null,
                    };
                    map.insert(name.clone(), value);
                }
                Ok(map)
            })
            .map_err(|e| self.err(e))?;
        let found = rows.collect::<Result<Vec<_>, _>>();
        drop(stmt);
        found.map_err(|e| self.err(e))
    }

    /// A read-only query on `R`'s table for reports, with one integer parameter `?1`
    /// (`$1` on PostgreSQL); rows as maps from column name to value.
    pub fn select<R: Record>(
        &mut self,
        sql: &str,
        param: i64,
    ) -> Result<Vec<FoundRow>, StoreError> {
        self.query(&R::TABLE, sql, Some(&param))
    }

    /// Rows stored for a key (a call-id) as maps from column name to value (JSON
    /// columns as their text), oldest first. For tests and tools.
    pub fn find<R: Record>(&mut self, key: &str) -> Result<Vec<FoundRow>, StoreError> {
        let t = R::TABLE;
        let sql = format!("SELECT * FROM {} WHERE {} = ?1 ORDER BY id", t.name, t.key);
        self.query(&t, &sql, Some(&key))
    }

    /// The stored records, oldest first, at most `limit`; rows whose JSON does not
    /// read back as `R` are skipped.
    pub fn records<R: Record>(&mut self, limit: usize) -> Result<Vec<R>, StoreError> {
        let t = R::TABLE;
        let Some(json) = t.json_column() else {
            return Ok(Vec::new());
        };
        let sql = format!("SELECT {json} FROM {} ORDER BY id LIMIT ?1", t.name);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(&t, &sql, Some(&limit))?;
        Ok(super::records_from(&rows, json))
    }

    /// The table's column names in order, as the database reports them.
    pub fn column_names<R: Record>(&mut self) -> Result<Vec<String>, StoreError> {
        let t = R::TABLE;
        let sql = format!(
            "SELECT name FROM pragma_table_info('{}') ORDER BY cid",
            t.name
        );
        let rows = self.query(&t, &sql, None)?;
        Ok(super::names_from(&rows))
    }

    /// Number of stored records of type `R`.
    pub fn count<R: Record>(&mut self) -> Result<i64, StoreError> {
        let t = R::TABLE;
        self.prepare(&t)?;
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {}", t.name), [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// The schema version recorded for a table, `None` before its first migration.
    pub fn schema_version(&self, table: &str) -> Result<Option<i64>, StoreError> {
        let dialect = Dialect::Sqlite;
        let exists: bool = self
            .conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [super::VERSIONS_TABLE],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if !exists {
            return Ok(None);
        }
        self.conn
            .query_row(&dialect.get_version_sql(), [table], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Runs SQL text as is: for tests and tools that build a database by hand.
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }
}

impl RecordStore for SqliteStore {
    fn insert_all(&mut self, rows: &[PendingRow]) -> Result<(), StoreError> {
        SqliteStore::insert_all(self, rows)
    }

    fn describe(&self) -> String {
        format!("SQLite file {}", self.path)
    }
}

/// A SQLite store opened on first use: PostgreSQL's fallback file.
#[derive(Debug)]
pub(crate) struct LazySqlite {
    path: PathBuf,
    store: Option<SqliteStore>,
}

impl LazySqlite {
    /// A store for `path`, not yet opened.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, store: None }
    }
}

impl RecordStore for LazySqlite {
    fn insert_all(&mut self, rows: &[PendingRow]) -> Result<(), StoreError> {
        let store = match &mut self.store {
            Some(store) => store,
            None => self.store.insert(SqliteStore::open(&self.path)?),
        };
        store.insert_all(rows)
    }

    fn describe(&self) -> String {
        format!("SQLite file {}", self.path.display())
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
