//! The dispatcher's session map: which relay holds each call, by Call-ID, with the
//! dialog's tags. Kept in memory and, when a file is given, mirrored into SQLite on
//! every change, so a restarted dispatcher sends a running call's next command to the
//! relay that holds it.
//!
//! The mirror is written behind: a change is queued to a writer thread, which commits
//! whatever is queued in one transaction (prepared statements cached), so a command
//! never waits for SQLite. A change after a quiet spell is committed at once; under a
//! steady stream a commit starts at most every [`COMMIT_GAP`], so many changes share
//! one (a commit per change or two was a fifth of the dispatcher's CPU at 3,000 call
//! set-ups per second). A crash loses the changes queued but not yet committed (at
//! most that gap's worth of placements), as a crash in `synchronous = NORMAL` may lose
//! the last transactions anyway. Dropping the map, or [`SessionMap::flush`], commits
//! everything queued at once. A writer too far behind (more than
//! [`QUEUE`] changes queued) drops changes with an error log rather than slow the
//! calls.
//!
//! Calls are keyed by Call-ID alone, as MediaProxy's dispatcher and rtpengine do: the
//! forks of one INVITE (several to-tags) are one call on one relay. Relays are
//! remembered by name, not [`RelayId`](crate::pool::RelayId), since ids last one
//! process and names outlive it.
//!
//! A chained call (issue 15 item 8) holds two relays: `relay` faces the caller,
//! `second_relay` the callee. The file of a version without chains gets the
//! `second_relay` column added when opened (its calls have none); nothing else changes.
//!
//! What it does not: choose relays (`select`) or talk to them. A write that
//! fails (disk full) is logged and the map goes on in memory: losing persistence must
//! not lose calls now.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

/// Changes queued for the writer at most.
pub const QUEUE: usize = 100_000;
/// Changes committed in one transaction at most.
const MAX_BATCH: usize = 4096;
/// Shortest time from one commit's start to the next while changes keep coming.
pub const COMMIT_GAP: Duration = Duration::from_millis(5);

/// One change for the mirror.
enum Change {
    Put(String, Placed),
    ToTag(String, String),
    Remove(String),
    /// Answered once everything queued before it is committed.
    Flush(mpsc::Sender<()>),
}

/// The writer thread and its queue.
#[derive(Debug)]
struct Mirror {
    queue: Option<Sender<Change>>,
    /// Changes sent and not yet taken by the writer. The channel grows as needed (a
    /// bounded one would hold room for all [`QUEUE`] changes from the start, about
    /// 17 MB), so this count is the bound.
    queued: Arc<AtomicUsize>,
    /// Transactions committed so far (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicUsize>,
    writer: Option<JoinHandle<()>>,
}

impl Mirror {
    fn start(db: Connection, gap: Duration) -> std::io::Result<Self> {
        let (queue, changes) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let commits = Arc::new(AtomicUsize::new(0));
        let writer = {
            let queued = Arc::clone(&queued);
            let commits = Arc::clone(&commits);
            std::thread::Builder::new()
                .name("dispatcher-sessions".into())
                .spawn(move || write_behind(&db, &changes, &queued, &commits, gap))?
        };
        Ok(Self {
            queue: Some(queue),
            queued,
            commits,
            writer: Some(writer),
        })
    }

    fn send(&self, change: Change, call_id: &str) {
        let Some(queue) = &self.queue else { return };
        if self.queued.load(Ordering::Relaxed) >= QUEUE {
            tracing::error!(
                call = %call_id,
                "dispatcher: the session map's writer is {QUEUE} changes behind; the change for call {call_id} is not stored (the call goes on, but a restart will not remember it)"
            );
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if queue.send(change).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(
                call = %call_id,
                "dispatcher: the session map's writer stopped; the change for call {call_id} is not stored"
            );
        }
    }

    fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if let Some(queue) = &self.queue {
            if queue.send(Change::Flush(done)).is_ok() {
                if let Some(writer) = &self.writer {
                    writer.thread().unpark();
                }
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is left and end.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

/// `first` and the changes queued after it, up to [`MAX_BATCH`]: more keep being
/// taken until `due` (`None`: commit at once), unless a flush is among them or the
/// queue closed.
fn gather(changes: &Receiver<Change>, first: Change, due: Option<Instant>) -> Vec<Change> {
    let mut flush = matches!(first, Change::Flush(_));
    let mut batch = vec![first];
    // Sleeping until the commit is due instead of waiting on the queue: a send to a
    // receiver blocked on it wakes this thread, a futex call and two context switches
    // per change, which cost more than the commits. A flush or the map's drop unparks
    // it.
    loop {
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match changes.try_recv() {
                Ok(change) => {
                    flush |= matches!(change, Change::Flush(_));
                    batch.push(change);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                // Closed: commit what there is; the writer's next `recv` ends it.
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let wait = due.map(|due| due.saturating_duration_since(Instant::now()));
        match wait {
            Some(wait) if !flush && !closed && !wait.is_zero() && batch.len() < MAX_BATCH => {
                std::thread::park_timeout(wait);
            }
            _ => return batch,
        }
    }
}

/// The writer thread: commits whatever is queued in one transaction, at most every
/// `gap` while changes keep coming (at once for a flush), until the queue closes.
fn write_behind(
    db: &Connection,
    changes: &Receiver<Change>,
    queued: &AtomicUsize,
    commits: &AtomicUsize,
    gap: Duration,
) {
    let mut last_commit: Option<Instant> = None;
    while let Ok(first) = changes.recv() {
        let batch = gather(changes, first, last_commit.map(|at| at + gap));
        last_commit = Some(Instant::now());
        let taken = batch
            .iter()
            .filter(|c| !matches!(c, Change::Flush(_)))
            .count();
        queued.fetch_sub(taken, Ordering::Relaxed);
        let mut flushed = Vec::new();
        let committed = (|| -> rusqlite::Result<()> {
            let tx = db.unchecked_transaction()?;
            for change in batch {
                let (stored, call_id) = match change {
                    Change::Put(call_id, placed) => (
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO dispatcher_calls
                                 (call_id, relay, from_tag, to_tag, start_unix_ms, dialog_id, second_relay)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .and_then(|mut st| {
                            st.execute(params![
                                call_id,
                                placed.relay,
                                placed.from_tag,
                                placed.to_tag,
                                i64::try_from(placed.start_unix_ms).unwrap_or(i64::MAX),
                                placed.dialog_id,
                                placed.second_relay
                            ])
                        }),
                        call_id,
                    ),
                    Change::ToTag(call_id, to_tag) => (
                        tx.prepare_cached(
                            "UPDATE dispatcher_calls SET to_tag = ?2 WHERE call_id = ?1",
                        )
                        .and_then(|mut st| st.execute(params![call_id, to_tag])),
                        call_id,
                    ),
                    Change::Remove(call_id) => (
                        tx.prepare_cached("DELETE FROM dispatcher_calls WHERE call_id = ?1")
                            .and_then(|mut st| st.execute(params![call_id])),
                        call_id,
                    ),
                    Change::Flush(done) => {
                        flushed.push(done);
                        continue;
                    }
                };
                log_failure(stored, &call_id);
            }
            tx.commit()
        })();
        if let Err(e) = committed {
            tracing::error!(
                "dispatcher: cannot commit session map changes: {e}; the calls go on, but a restart will not remember the latest"
            );
        }
        commits.fetch_add(1, Ordering::Relaxed);
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// One placed call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// The relay's name; of a chained call, the relay facing the caller.
    pub relay: String,
    /// The tag of the side that made the first offer, if known.
    pub from_tag: Option<String>,
    /// The other side's tag, once answered.
    pub to_tag: Option<String>,
    /// When it was placed, Unix milliseconds.
    pub start_unix_ms: u64,
    /// MediaProxy's `dialog_id` (with `engage_media_proxy`), so an expired call's
    /// dialog can be ended on the proxy.
    pub dialog_id: Option<String>,
    /// A chained call's second relay, facing the callee; `None` for a call on one
    /// relay.
    pub second_relay: Option<String>,
}

impl Placed {
    /// Whether the relay called `relay` holds a part of this call.
    pub fn is_on(&self, relay: &str) -> bool {
        self.relay == relay || self.second_relay.as_deref() == Some(relay)
    }
}

/// Why the map file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the dispatcher's session map {path}: {source}")]
pub struct OpenError {
    path: String,
    /// SQLite's error, or the system's when the writer thread cannot start.
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// Call-ID to relay, optionally persisted.
#[derive(Debug, Default)]
pub struct SessionMap {
    calls: HashMap<String, Placed>,
    /// Calls held on each relay by name (both relays of a chained call count it), so
    /// the relay choice knows what it placed since a relay's last status report.
    held: HashMap<String, u64>,
    db: Option<Mirror>,
}

/// Adds (or takes away) `placed`'s calls to the counts of the relays holding it.
fn count(held: &mut HashMap<String, u64>, placed: &Placed, add: bool) {
    for relay in std::iter::once(placed.relay.as_str()).chain(placed.second_relay.as_deref()) {
        if add {
            // The relay's name is copied only the first time it is counted.
            match held.get_mut(relay) {
                Some(n) => *n += 1,
                None => {
                    held.insert(relay.to_owned(), 1);
                }
            }
        } else if let Some(n) = held.get_mut(relay) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(relay);
            }
        }
    }
}

impl SessionMap {
    /// An empty map kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The map stored in the SQLite file `path` (created if missing), with the calls a
    /// previous process left there.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with_gap(path, COMMIT_GAP)
    }

    /// [`SessionMap::open`] with another [`COMMIT_GAP`].
    fn open_with_gap(path: &Path, gap: Duration) -> Result<Self, OpenError> {
        let wrap = |source: rusqlite::Error| OpenError {
            path: path.display().to_string(),
            source: Box::new(source),
        };
        let db = Connection::open(path).map_err(wrap)?;
        // WAL with NORMAL sync: a crash loses at most the last few placements, never
        // corrupts the file, and each placement costs no fsync.
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS dispatcher_calls (
                 call_id TEXT PRIMARY KEY, relay TEXT NOT NULL,
                 from_tag TEXT, to_tag TEXT, start_unix_ms INTEGER NOT NULL, dialog_id TEXT)",
        )
        .map_err(wrap)?;
        add_second_relay_column(&db).map_err(wrap)?;
        let mut calls = HashMap::new();
        let mut held = HashMap::new();
        {
            let mut stmt = db
                .prepare(
                    "SELECT call_id, relay, from_tag, to_tag, start_unix_ms, dialog_id, second_relay FROM dispatcher_calls",
                )
                .map_err(wrap)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        Placed {
                            relay: row.get(1)?,
                            from_tag: row.get(2)?,
                            to_tag: row.get(3)?,
                            start_unix_ms: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                            dialog_id: row.get(5)?,
                            second_relay: row.get(6)?,
                        },
                    ))
                })
                .map_err(wrap)?;
            for row in rows {
                let (call_id, placed) = row.map_err(wrap)?;
                count(&mut held, &placed, true);
                calls.insert(call_id, placed);
            }
        }
        let mirror = Mirror::start(db, gap).map_err(|e| OpenError {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        Ok(Self {
            calls,
            held,
            db: Some(mirror),
        })
    }

    /// Waits until every change made so far is committed to the file (for tests and
    /// orderly stops; commands never wait for it).
    pub fn flush(&self) {
        if let Some(db) = &self.db {
            db.flush();
        }
    }

    /// Where `call_id` runs, if placed.
    pub fn get(&self, call_id: &str) -> Option<&Placed> {
        self.calls.get(call_id)
    }

    /// Calls placed now.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Calls held on the relay called `relay` now (either relay of a chained call).
    pub fn held_on(&self, relay: &str) -> u64 {
        self.held.get(relay).copied().unwrap_or(0)
    }

    /// Whether no call is placed.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Every call with its placement, sorted by Call-ID.
    pub fn all(&self) -> Vec<(String, Placed)> {
        let mut all: Vec<_> = self
            .calls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Places (or re-places) `call_id`.
    pub fn insert(&mut self, call_id: &str, placed: Placed) {
        if let Some(db) = &self.db {
            db.send(Change::Put(call_id.to_owned(), placed.clone()), call_id);
        }
        count(&mut self.held, &placed, true);
        if let Some(old) = self.calls.insert(call_id.to_owned(), placed) {
            count(&mut self.held, &old, false);
        }
    }

    /// Records the answering side's tag of a placed call.
    pub fn set_to_tag(&mut self, call_id: &str, to_tag: &str) {
        let Some(placed) = self.calls.get_mut(call_id) else {
            return;
        };
        if placed.to_tag.as_deref() == Some(to_tag) {
            return;
        }
        placed.to_tag = Some(to_tag.to_owned());
        if let Some(db) = &self.db {
            db.send(
                Change::ToTag(call_id.to_owned(), to_tag.to_owned()),
                call_id,
            );
        }
    }

    /// Forgets `call_id`; its placement if it was placed.
    pub fn remove(&mut self, call_id: &str) -> Option<Placed> {
        let placed = self.calls.remove(call_id)?;
        count(&mut self.held, &placed, false);
        if let Some(db) = &self.db {
            db.send(Change::Remove(call_id.to_owned()), call_id);
        }
        Some(placed)
    }

    /// The calls placed on `relay` (either relay of a chained call) missing from
    /// `holds` (the relay's own list after it reconnected), sorted by Call-ID; nothing
    /// is removed.
    pub fn missing(&self, relay: &str, holds: &[String]) -> Vec<String> {
        let holds: std::collections::HashSet<&str> = holds.iter().map(String::as_str).collect();
        let mut missing: Vec<String> = self
            .calls
            .iter()
            .filter(|(id, p)| p.is_on(relay) && !holds.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        missing.sort();
        missing
    }
}

/// The migration from the map file without chains: one nullable column, so a file
/// written by this version is still read by the older one (it ignores the column).
fn add_second_relay_column(db: &Connection) -> rusqlite::Result<()> {
    let has = db
        .prepare("SELECT 1 FROM pragma_table_info('dispatcher_calls') WHERE name = 'second_relay'")?
        .exists([])?;
    if !has {
        db.execute_batch("ALTER TABLE dispatcher_calls ADD COLUMN second_relay TEXT")?;
    }
    Ok(())
}

fn log_failure(result: rusqlite::Result<usize>, call_id: &str) {
    if let Err(e) = result {
        tracing::error!(
            call = %call_id,
            "dispatcher: cannot store the session map change for call {call_id}: {e}; the call goes on, but a restart will not remember it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(relay: &str) -> Placed {
        Placed {
            relay: relay.into(),
            from_tag: Some("f".into()),
            to_tag: None,
            start_unix_ms: 1_700_000_000_000,
            dialog_id: Some("42".into()),
            second_relay: None,
        }
    }

    #[test]
    fn changes_coming_steadily_share_commits_and_a_flush_does_not_wait() {
        let dir = mediagate_testkit::TempDir::new("dsessions-gap");
        let path = dir.0.join("sessions.sqlite");
        // A gap far longer than the 20 changes below take, however loaded the machine.
        let mut map = SessionMap::open_with_gap(&path, Duration::from_secs(2)).unwrap();
        let commits = |map: &SessionMap| map.db.as_ref().unwrap().commits.load(Ordering::Relaxed);
        let started = Instant::now();
        // After a quiet spell a change is committed at once, without a flush (a flush
        // here could land in the next batch and make a commit of its own).
        map.insert("first", placed("r1"));
        while commits(&map) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "the first change is committed without waiting for the gap"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(commits(&map), 1);
        for i in 0..20 {
            map.insert(&format!("c{i}"), placed("r1"));
            std::thread::sleep(Duration::from_millis(1));
        }
        map.flush();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a flush commits at once, without waiting for the gap"
        );
        // Without the gap each change, 1 ms apart, would have had a commit of its own.
        assert_eq!(commits(&map), 2, "the 20 changes in one commit");
        drop(map);
        assert_eq!(SessionMap::open(&path).unwrap().len(), 21);
    }

    #[test]
    fn survives_a_reopen() {
        let dir = mediagate_testkit::TempDir::new("dsessions");
        let path = dir.0.join("sessions.sqlite");
        {
            let mut map = SessionMap::open(&path).unwrap();
            map.insert("a", placed("r1"));
            map.insert("b", placed("r2"));
            map.insert("c", placed("r1"));
            map.set_to_tag("a", "t");
            assert_eq!(map.remove("b").unwrap().relay, "r2");
        }
        let map = SessionMap::open(&path).unwrap();
        // Written behind, committed when asked: another reader sees it all.
        let mut again = SessionMap::open(&path).unwrap();
        again.insert("d", placed("r3"));
        again.flush();
        assert_eq!(
            SessionMap::open(&path).unwrap().get("d"),
            Some(&placed("r3"))
        );
        drop(again);
        let mut want = placed("r1");
        want.to_tag = Some("t".into());
        assert_eq!(map.get("a"), Some(&want));
        assert_eq!(map.get("b"), None);
        assert_eq!(map.get("c"), Some(&placed("r1")));
        assert_eq!(map.len(), 2, "read before d was placed");
        assert_eq!(
            (map.held_on("r1"), map.held_on("r2")),
            (2, 0),
            "counted when read"
        );
    }

    #[test]
    fn held_counts_follow_placements_re_placements_and_removals() {
        let mut map = SessionMap::in_memory();
        map.insert("a", placed("r1"));
        map.insert("b", placed("r1"));
        let mut chained = placed("r1");
        chained.second_relay = Some("r2".into());
        map.insert("c", chained);
        assert_eq!((map.held_on("r1"), map.held_on("r2")), (3, 1));
        // Placed again elsewhere: it moves, it does not count twice.
        map.insert("b", placed("r2"));
        assert_eq!((map.held_on("r1"), map.held_on("r2")), (2, 2));
        map.remove("c");
        map.remove("a");
        map.remove("nope");
        assert_eq!((map.held_on("r1"), map.held_on("r2")), (0, 1));
    }

    #[test]
    fn a_map_file_without_chains_is_migrated_and_keeps_its_calls() {
        let dir = mediagate_testkit::TempDir::new("dsessions-migrate");
        let path = dir.0.join("sessions.sqlite");
        {
            // The schema as the version without chains created it.
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE dispatcher_calls (
                     call_id TEXT PRIMARY KEY, relay TEXT NOT NULL,
                     from_tag TEXT, to_tag TEXT, start_unix_ms INTEGER NOT NULL, dialog_id TEXT);
                 INSERT INTO dispatcher_calls VALUES ('old', 'r1', 'f', NULL, 1700000000000, '42');",
            )
            .unwrap();
        }
        {
            let mut map = SessionMap::open(&path).unwrap();
            assert_eq!(map.get("old"), Some(&placed("r1")));
            let mut chained = placed("pub1");
            chained.second_relay = Some("priv1".into());
            map.insert("new", chained);
        }
        let map = SessionMap::open(&path).unwrap();
        assert_eq!(map.get("old"), Some(&placed("r1")));
        let new = map.get("new").unwrap();
        assert_eq!(
            (new.relay.as_str(), new.second_relay.as_deref()),
            ("pub1", Some("priv1"))
        );
        assert!(new.is_on("pub1") && new.is_on("priv1") && !new.is_on("r1"));
        assert_eq!(map.missing("priv1", &[]), ["new".to_owned()]);
        assert_eq!(map.missing("pub1", &["new".into()]), Vec::<String>::new());
    }

    #[test]
    fn missing_names_only_that_relays_calls_absent_from_its_list_and_removes_nothing() {
        let mut map = SessionMap::in_memory();
        map.insert("a", placed("r1"));
        map.insert("b", placed("r1"));
        map.insert("c", placed("r2"));
        assert_eq!(map.missing("r1", &["b".into()]), ["a".to_owned()]);
        assert!(map.get("a").is_some());
        assert!(map.get("b").is_some());
        assert!(map.get("c").is_some());
    }
}
