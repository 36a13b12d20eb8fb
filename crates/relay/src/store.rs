//! The accounting store for relay session records: SQLite, one row per finished call.
//!
//! What it does: creates (if missing) the table `relay_sessions` with the call's
//! identifiers, times, reason and per-direction totals as columns for queries, and the
//! whole [`SessionRecord`] as JSON in `info` (MediaProxy's `media_sessions` keeps one
//! JSON blob per call the same way). Writes go in one transaction per batch; the
//! database runs in WAL mode with a busy timeout so a reader (an operator's `sqlite3`)
//! does not block the relay.
//!
//! What it does not: PostgreSQL (the config has no URL for it yet), rotation or
//! retention. It does blocking I/O: the engine calls it from its own thread, never
//! from the forwarding path.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::record::SessionRecord;

/// The table and index, created when missing.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS relay_sessions (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    from_tag TEXT NOT NULL,
    to_tag TEXT NOT NULL,
    start_unix_ms INTEGER NOT NULL,
    end_unix_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    caller_packets INTEGER NOT NULL,
    caller_bytes INTEGER NOT NULL,
    callee_packets INTEGER NOT NULL,
    callee_bytes INTEGER NOT NULL,
    info TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_sessions_call_id ON relay_sessions (call_id);
CREATE INDEX IF NOT EXISTS relay_sessions_end ON relay_sessions (end_unix_ms);";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("accounting store {path}: {source}")]
pub struct StoreError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// An open SQLite accounting store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: String,
}

fn db_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and the table.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let wrap = |source| StoreError {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        Ok(Self { conn, path: shown })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes records in one transaction.
    pub fn insert_all(&mut self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|e| StoreError {
            path: self.path.clone(),
            source: e,
        })?;
        for r in records {
            let sum = |f: &dyn Fn(&crate::record::StreamRecord) -> u64| -> i64 {
                db_int(r.streams.iter().map(f).sum())
            };
            tx.execute(
                "INSERT INTO relay_sessions (call_id, from_tag, to_tag, start_unix_ms, end_unix_ms,
                 duration_ms, reason, caller_packets, caller_bytes, callee_packets, callee_bytes, info)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.call_id,
                    r.from_tag,
                    r.to_tag,
                    db_int(r.start_unix_ms),
                    db_int(r.end_unix_ms),
                    db_int(r.duration_ms()),
                    r.reason,
                    sum(&|s| s.caller.packets),
                    sum(&|s| s.caller.bytes),
                    sum(&|s| s.callee.packets),
                    sum(&|s| s.callee.bytes),
                    r.to_json().to_string(),
                ],
            )
            .map_err(|e| StoreError {
                path: self.path.clone(),
                source: e,
            })?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records stored for a call-id, as `(reason, caller_packets, callee_packets,
    /// info JSON)`, oldest first. For tests and tools.
    pub fn find(&self, call_id: &str) -> Result<Vec<(String, i64, i64, String)>, StoreError> {
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

    /// Number of stored records.
    pub fn count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM relay_sessions", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LegRecord, StreamRecord};

    #[test]
    fn writes_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("mg-relay-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accounting.sqlite");
        let _ = std::fs::remove_file(&path);
        let mut store = SqliteStore::open(&path).unwrap();
        let rec = SessionRecord {
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
        };
        store.insert_all(&[rec.clone(), rec]).unwrap();
        assert_eq!(store.count().unwrap(), 2);
        let rows = store.find("c1@x").unwrap();
        assert_eq!(rows[0].0, "deleted");
        assert_eq!((rows[0].1, rows[0].2), (100, 99));
        let info: serde_json::Value = serde_json::from_str(&rows[0].3).unwrap();
        assert_eq!(info["duration_ms"], 2000);
        let back = store.records(10).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].streams[0].caller.bytes, 17_200);
        drop(store);
        // Reopening keeps the rows and does not fail on the existing schema.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.count().unwrap(), 2);
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
}
