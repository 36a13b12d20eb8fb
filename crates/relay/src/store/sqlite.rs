//! SQLite back end of the accounting store (the default, and PostgreSQL's fallback).
//!
//! What it does: opens (creating if needed) the database file and `relay_sessions`
//! ([`super::COLUMNS`]), writes batches in one transaction, and reads rows back for
//! tests and tools. The database runs in WAL mode with a busy timeout so a reader (an
//! operator's `sqlite3`) does not block the relay. [`LazySqlite`] opens its file only
//! when the first record arrives, so a relay accounting to PostgreSQL leaves no SQLite
//! file behind unless it needed one.
//!
//! What it does not: share a connection between threads (the writer thread owns it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection};

use super::{insert_sql, schema_sql, FoundRow, RecordStore, Row, StoreError};
use crate::record::SessionRecord;

/// The SQLite table and indexes.
pub fn schema() -> String {
    schema_sql("id INTEGER PRIMARY KEY", "INTEGER")
}

/// An open SQLite accounting store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and the table.
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
        conn.execute_batch(&schema()).map_err(wrap)?;
        Ok(Self { conn, path: shown })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes records in one transaction.
    pub fn insert_all(&mut self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let path = &self.path;
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx.prepare_cached(&insert_sql()).map_err(err)?;
            for r in records {
                let row = Row::of(r);
                stmt.execute(params![
                    row.call_id,
                    row.from_tag,
                    row.to_tag,
                    row.start_unix_ms,
                    row.end_unix_ms,
                    row.duration_ms,
                    row.reason,
                    row.caller_packets,
                    row.caller_bytes,
                    row.callee_packets,
                    row.callee_bytes,
                    row.info,
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Records stored for a call-id, as `(reason, caller_packets, callee_packets,
    /// info JSON)`, oldest first. For tests and tools.
    pub fn find(&self, call_id: &str) -> Result<Vec<FoundRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT reason, caller_packets, callee_packets, info FROM relay_sessions
                 WHERE call_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([call_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The stored records, oldest first, at most `limit`.
    pub fn records(&self, limit: usize) -> Result<Vec<SessionRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT info FROM relay_sessions ORDER BY id LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                row.get::<_, String>(0)
            })
            .map_err(|e| self.err(e))?;
        let texts = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(texts
            .iter()
            .filter_map(|t| SessionRecord::from_json(t))
            .collect())
    }

    /// The table's column names in order, as the database reports them.
    pub fn column_names(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('relay_sessions') ORDER BY cid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Number of stored records.
    pub fn count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM relay_sessions", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

impl RecordStore for SqliteStore {
    fn insert_all(&mut self, records: &[SessionRecord]) -> Result<(), StoreError> {
        SqliteStore::insert_all(self, records)
    }

    fn describe(&self) -> String {
        format!("SQLite file {}", self.path)
    }
}

/// A SQLite store opened on first use: PostgreSQL's fallback file.
#[derive(Debug)]
pub struct LazySqlite {
    path: PathBuf,
    store: Option<SqliteStore>,
}

impl LazySqlite {
    /// A store for `path`, not yet opened.
    pub fn new(path: PathBuf) -> Self {
        Self { path, store: None }
    }
}

impl RecordStore for LazySqlite {
    fn insert_all(&mut self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let store = match &mut self.store {
            Some(store) => store,
            None => self.store.insert(SqliteStore::open(&self.path)?),
        };
        store.insert_all(records)
    }

    fn describe(&self) -> String {
        format!("SQLite file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LegRecord, StreamRecord};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mg-relay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> SessionRecord {
        SessionRecord {
            call_id: "c1@x".into(),
            from_tag: "a".into(),
            to_tag: "b".into(),
            start_unix_ms: 10,
            end_unix_ms: 2010,
            reason: "deleted".into(),
            streams: vec![StreamRecord {
                caller: LegRecord {
                    packets: 100,
                    bytes: 17_200,
                    ..LegRecord::default()
                },
                callee: LegRecord {
                    packets: 99,
                    ..LegRecord::default()
                },
                ..StreamRecord::default()
            }],
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = temp_dir("sqlite-store");
        let path = dir.join("accounting.sqlite");
        let mut store = SqliteStore::open(&path).unwrap();
        let rec = sample();
        store.insert_all(&[rec.clone(), rec]).unwrap();
        assert_eq!(store.count().unwrap(), 2);
        let rows = store.find("c1@x").unwrap();
        assert_eq!(rows[0].0, "deleted");
        assert_eq!((rows[0].1, rows[0].2), (100, 99));
        let info: serde_json::Value = serde_json::from_str(&rows[0].3).unwrap();
        assert_eq!(info["duration_ms"], 2000);
        let back = store.records(10).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], sample());
        drop(store);
        // Reopening keeps the rows and does not fail on the existing schema.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.count().unwrap(), 2);
        assert_eq!(store.describe(), format!("SQLite file {}", path.display()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn columns_hold_the_sums() {
        let dir = temp_dir("sqlite-columns");
        let path = dir.join("a.sqlite");
        let mut store = SqliteStore::open(&path).unwrap();
        store.insert_all(&[sample()]).unwrap();
        let (dur, bytes, to_tag): (i64, i64, String) = store
            .conn
            .query_row(
                "SELECT duration_ms, caller_bytes, to_tag FROM relay_sessions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((dur, bytes, to_tag.as_str()), (2000, 17_200, "b"));
        let mut expected = vec!["id".to_owned()];
        expected.extend(super::super::COLUMNS.iter().map(|(n, _)| (*n).to_owned()));
        assert_eq!(store.column_names().unwrap(), expected);
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
        lazy.insert_all(&[sample()]).unwrap();
        lazy.insert_all(&[sample()]).unwrap();
        assert_eq!(SqliteStore::open(&path).unwrap().count().unwrap(), 2);
        let mut broken = LazySqlite::new("/nonexistent-dir/y.sqlite".into());
        assert!(broken.insert_all(&[sample()]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
