//! The accounting writer: one thread that takes finished-call records from the
//! engine and writes them in batches, surviving a store that goes away.
//!
//! What it does: [`spawn`] opens the configured store on the new thread (so a
//! PostgreSQL client never runs inside tokio) and reports whether that worked before
//! returning; the relay refuses to start when it did not. Records then arrive over a
//! channel. While the store fails, records wait in memory ([`Spool`]) and writing is
//! retried with a doubling delay (1 s up to 30 s by default); the queue is bounded
//! ([`WriterOptions::queue_limit`]): past it, the oldest half goes to the fallback
//! store (the SQLite file, for PostgreSQL) or, with no fallback or a failing one, is
//! logged as lost with its call-ids. Closing the channel flushes: one last attempt at
//! the store, then the fallback. Every outage, recovery, spill and loss is logged.
//!
//! What it does not: deduplicate. A commit whose acknowledgement was lost is written
//! again on retry (delivery is at least once); `call_id` plus `end_unix_ms` identify a
//! call's record. The channel from the engine is not bounded, but it only grows while
//! the thread is inside one store call, which the store's timeouts bound.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{RecordStore, StoreError, StoreTarget};
use crate::record::SessionRecord;

/// Tuning of the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Most records per transaction.
    pub batch: usize,
    /// Most records kept in memory while the store fails; past it the oldest half goes
    /// to the fallback (or is lost, and logged, without one).
    pub queue_limit: usize,
    /// First wait before retrying a failed store.
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch: 512,
            queue_limit: 10_000,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// What became of the records a writer was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterReport {
    /// Written to the primary store.
    pub stored: u64,
    /// Written to the fallback store instead.
    pub to_fallback: u64,
    /// Neither: lost (each loss was logged with its call-ids).
    pub lost: u64,
}

/// Where log lines go (stderr in the relay; a buffer in tests).
pub type LogSink = Box<dyn FnMut(&str) + Send>;

/// Most call-ids quoted in one "lost" log line.
const LOST_IDS_SHOWN: usize = 5;

/// The writer's state without the thread: pending records and the retry policy. Time
/// is a parameter, so tests drive outages without sleeping.
pub struct Spool {
    primary: Box<dyn RecordStore>,
    fallback: Option<Box<dyn RecordStore>>,
    pending: VecDeque<SessionRecord>,
    options: WriterOptions,
    /// Set while the primary store fails: when the outage began and when to retry.
    outage: Option<Outage>,
    report: WriterReport,
    log: LogSink,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    retry_at: Instant,
    backoff: Duration,
}

impl Spool {
    /// A spool in front of `primary`, spilling to `fallback` when given.
    pub fn new(
        primary: Box<dyn RecordStore>,
        fallback: Option<Box<dyn RecordStore>>,
        options: WriterOptions,
        log: LogSink,
    ) -> Self {
        Self {
            primary,
            fallback,
            pending: VecDeque::new(),
            options,
            outage: None,
            report: WriterReport::default(),
            log,
        }
    }

    /// Queues a record; [`Spool::run`] writes it.
    pub fn push(&mut self, record: SessionRecord) {
        self.pending.push_back(record);
    }

    /// Records waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the primary store is failing.
    pub fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// The counts so far.
    pub fn report(&self) -> WriterReport {
        self.report
    }

    /// How long the writer may sleep waiting for records: `None` (until one arrives)
    /// when nothing is pending, else until the next retry.
    pub fn wake_in(&self, now: Instant) -> Option<Duration> {
        if self.pending.is_empty() {
            return None;
        }
        Some(match self.outage {
            Some(o) => o.retry_at.saturating_duration_since(now),
            None => Duration::ZERO,
        })
    }

    /// Writes what is pending if the store is healthy or a retry is due, then keeps
    /// the queue within its bound.
    pub fn run(&mut self, now: Instant) {
        if self.outage.is_none_or(|o| now >= o.retry_at) {
            self.flush(now);
        }
        if self.pending.len() > self.options.queue_limit {
            let keep = self.options.queue_limit / 2;
            let excess = self.pending.len().saturating_sub(keep);
            let oldest: Vec<SessionRecord> = self.pending.drain(..excess).collect();
            let why = format!(
                "more than {} records waited for {}",
                self.options.queue_limit,
                self.primary.describe()
            );
            self.spill(oldest, &why);
        }
    }

    /// Tries the primary store batch by batch until it is empty or a batch fails.
    fn flush(&mut self, now: Instant) {
        let batch = self.options.batch.max(1);
        while !self.pending.is_empty() {
            let n = self.pending.len().min(batch);
            let chunk: Vec<SessionRecord> = self.pending.iter().take(n).cloned().collect();
            match self.primary.insert_all(&chunk) {
                Ok(()) => {
                    self.pending.drain(..n);
                    self.report.stored = self.report.stored.saturating_add(n as u64);
                    if let Some(o) = self.outage.take() {
                        let secs = now.saturating_duration_since(o.since).as_secs();
                        let line = format!(
                            "accounting store {} works again after {secs} s; writing {} queued records",
                            self.primary.describe(),
                            self.pending.len() + n
                        );
                        (self.log)(&line);
                    }
                }
                Err(e) => {
                    self.fail(now, &e);
                    return;
                }
            }
        }
    }

    fn fail(&mut self, now: Instant, e: &StoreError) {
        let backoff = match self.outage {
            None => self.options.retry_min,
            Some(o) => o.backoff.saturating_mul(2).min(self.options.retry_max),
        };
        let first = self.outage.is_none();
        self.outage = Some(Outage {
            since: self.outage.map_or(now, |o| o.since),
            retry_at: now + backoff,
            backoff,
        });
        let line = format!(
            "{} {}; {} records wait in memory (at most {}, then the oldest go to {}), next try in {} ms",
            if first {
                "cannot write records:"
            } else {
                "still cannot write records:"
            },
            e,
            self.pending.len(),
            self.options.queue_limit,
            self.fallback
                .as_ref()
                .map_or_else(|| "nowhere: they are lost".to_owned(), |f| f.describe()),
            backoff.as_millis()
        );
        (self.log)(&line);
    }

    /// Writes records the primary store could not take to the fallback, or counts
    /// and logs them as lost.
    fn spill(&mut self, records: Vec<SessionRecord>, why: &str) {
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        let failure = match self.fallback.as_mut() {
            Some(fallback) => match fallback.insert_all(&records) {
                Ok(()) => {
                    self.report.to_fallback = self.report.to_fallback.saturating_add(n);
                    let line = format!(
                        "{n} records written to the fallback {} because {why}; copy them to the primary store later",
                        fallback.describe()
                    );
                    (self.log)(&line);
                    return;
                }
                Err(e) => format!("the fallback failed too: {e}"),
            },
            None => "there is no fallback store".to_owned(),
        };
        self.report.lost = self.report.lost.saturating_add(n);
        let ids: Vec<&str> = records
            .iter()
            .take(LOST_IDS_SHOWN)
            .map(|r| r.call_id.as_str())
            .collect();
        let more = if records.len() > LOST_IDS_SHOWN {
            ", ..."
        } else {
            ""
        };
        let line = format!(
            "{n} records LOST because {why} and {failure}; call-ids: {}{more}",
            ids.join(", ")
        );
        (self.log)(&line);
    }

    /// Final flush when the engine stops: one more attempt at the primary store
    /// whatever the retry schedule, then the fallback for the rest.
    pub fn close(mut self, now: Instant) -> WriterReport {
        if !self.pending.is_empty() {
            self.outage = self.outage.map(|o| Outage { retry_at: now, ..o });
            self.flush(now);
        }
        let rest: Vec<SessionRecord> = self.pending.drain(..).collect();
        let why = format!("{} was unavailable at shutdown", self.primary.describe());
        self.spill(rest, &why);
        self.report
    }
}

/// Feeds records from `rx` into the spool until the channel closes.
fn run_loop(rx: &mpsc::Receiver<SessionRecord>, mut spool: Spool, batch: usize) -> WriterReport {
    loop {
        let received = match spool.wake_in(Instant::now()) {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        match received {
            Ok(first) => {
                spool.push(first);
                // Take what else is waiting, so a burst becomes one transaction.
                let mut taken = 1;
                while taken < batch {
                    match rx.try_recv() {
                        Ok(more) => {
                            spool.push(more);
                            taken += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return spool.close(Instant::now()),
        }
        spool.run(Instant::now());
    }
}

/// A running writer: the channel the engine sends records into and the thread.
pub type Writer = (mpsc::Sender<SessionRecord>, JoinHandle<WriterReport>);

/// Starts the writer thread for `target`, logging to stderr. Blocks until the store
/// is open (for PostgreSQL: connected, table created) and fails if it could not be;
/// call it off the async runtime (`spawn_blocking`). Dropping every sender makes the
/// thread flush and exit; joining it yields the [`WriterReport`].
pub fn spawn(target: StoreTarget, options: WriterOptions) -> Result<Writer, StoreError> {
    spawn_with_log(
        target,
        options,
        Box::new(|line| eprintln!("mediagate relay: {line}")),
    )
}

/// [`spawn`] with log lines going to `log`.
pub fn spawn_with_log(
    target: StoreTarget,
    options: WriterOptions,
    log: LogSink,
) -> Result<Writer, StoreError> {
    let (tx, rx) = mpsc::channel::<SessionRecord>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StoreError>>();
    let handle = std::thread::Builder::new()
        .name("accounting-writer".into())
        .spawn(move || {
            let (primary, fallback) = match target.open() {
                Ok(stores) => stores,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return WriterReport::default();
                }
            };
            let _ = ready_tx.send(Ok(()));
            let batch = options.batch.max(1);
            run_loop(&rx, Spool::new(primary, fallback, options, log), batch)
        })
        .map_err(|e| StoreError::Thread(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((tx, handle)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(StoreError::Thread(
                "the writer thread ended before opening the store".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        fn insert_all(&mut self, records: &[SessionRecord]) -> Result<(), StoreError> {
            *self.calls.lock().unwrap() += 1;
            if *self.down.lock().unwrap() {
                return Err(StoreError::Postgres {
                    url: self.name.into(),
                    detail: "error connecting to server: Connection refused".into(),
                });
            }
            let mut stored = self.stored.lock().unwrap();
            stored.extend(records.iter().map(|r| r.call_id.clone()));
            Ok(())
        }
        fn describe(&self) -> String {
            self.name.into()
        }
    }

    fn rec(id: &str) -> SessionRecord {
        SessionRecord {
            call_id: id.into(),
            ..SessionRecord::default()
        }
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
        }
    }

    #[test]
    fn healthy_store_gets_everything_in_batches() {
        let (mut s, pg, lines) = spool(None, small());
        let t0 = Instant::now();
        for i in 0..5 {
            s.push(rec(&format!("c{i}")));
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
    fn outage_queues_retries_with_backoff_and_recovers_in_order() {
        let (mut s, pg, lines) = spool(None, small());
        let t0 = Instant::now();
        pg.set_down(true);
        s.push(rec("a"));
        s.run(t0);
        assert!(s.in_outage());
        assert_eq!(s.wake_in(t0), Some(Duration::from_secs(1)));
        assert_eq!(
            lines.lock().unwrap()[0],
            "cannot write records: PostgreSQL accounting store pg: error connecting to server: Connection refused; 1 records wait in memory (at most 6, then the oldest go to nowhere: they are lost), next try in 1000 ms"
        );
        // A record arriving before the retry is due does not hammer the store.
        s.push(rec("b"));
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
        s.push(rec("c"));
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
            s.push(rec(&format!("c{i}")));
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
            s.push(rec(&format!("c{i}")));
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
        s.push(rec("x"));
        s.run(t0);
        s.push(rec("y"));
        let report = s.close(t0 + Duration::from_millis(10));
        assert_eq!(
            pg.calls(),
            2,
            "one last attempt, not waiting for the schedule"
        );
        assert_eq!(sqlite.ids(), ["x", "y"]);
        assert_eq!(report.to_fallback, 2);

        let (mut s, pg, _lines) = spool(None, small());
        s.push(rec("z"));
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
            s.push(rec(&format!("id{i}")));
        }
        let report = s.close(Instant::now());
        assert_eq!(report.lost, 7);
        let last = lines.lock().unwrap().last().unwrap().clone();
        assert!(
            last.starts_with("7 records LOST because pg was unavailable at shutdown and the fallback failed too: "),
            "{last}"
        );
        assert!(
            last.ends_with("call-ids: id0, id1, id2, id3, id4, ..."),
            "{last}"
        );
    }

    #[test]
    fn spawned_writer_stores_and_reports_on_close() {
        let dir = std::env::temp_dir().join(format!("mg-relay-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sqlite");
        let (tx, handle) =
            spawn(StoreTarget::Sqlite(path.clone()), WriterOptions::default()).unwrap();
        for i in 0..1000 {
            tx.send(rec(&format!("w{i}"))).unwrap();
        }
        drop(tx);
        let report = handle.join().unwrap();
        assert_eq!(report.stored, 1000);
        let store = super::super::SqliteStore::open(&path).unwrap();
        assert_eq!(store.count().unwrap(), 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn spawn_fails_when_the_store_cannot_open() {
        let err = spawn(
            StoreTarget::Sqlite("/nonexistent-dir/z/a.sqlite".into()),
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
        let err = spawn(
            StoreTarget::Postgres {
                url: format!("postgresql://u@127.0.0.1:{port}/db"),
                fallback: None,
            },
            WriterOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::PostgresStart { .. }), "{err}");
    }
}
