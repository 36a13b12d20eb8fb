//! The records writer: one thread per process that takes finished records of every
//! type from the roles and writes them in batches, surviving a store that goes away.
//!
//! What it does: [`spawn`] opens the configured store on the new thread (so a
//! PostgreSQL client never runs inside tokio), creates or migrates the given tables,
//! and reports whether that worked before returning; mediagate refuses to start when
//! it did not. Roles send records through [`RecordSink`]s (cheap clones of one
//! channel). With a healthy store a record after a quiet spell is written at once;
//! under a steady stream a write starts at most every
//! [`WriterOptions::min_write_gap`], and the records of that interval share it. While
//! the store fails, records wait in memory ([`Spool`]) and writing is
//! retried with a doubling delay (1 s up to 30 s by default); the queue is bounded
//! ([`WriterOptions::queue_limit`]): past it, the oldest half goes to the fallback
//! store (the SQLite file, for PostgreSQL) or, with no fallback or a failing one, is
//! logged as lost with its keys. [`Writer::close`] flushes: one last attempt at the
//! store, then the fallback. Every outage, recovery, spill and loss is logged, and
//! counted for the metrics ([`Writer::publish_metrics`]).
//!
//! What it does not: deduplicate. A commit whose acknowledgement was lost is written
//! again on retry (delivery is at least once); a record's key plus its end time
//! identify it. The channel from the roles is not bounded, but it only grows while the
//! thread is inside one store call, which the store's timeouts bound, or sleeps
//! through the write gap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{PendingRow, Record, RecordStore, StoreError, StoreTarget, Table};
use crate::metrics::{Collect, Metrics, Scrape};

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
    /// Shortest time from one write's start to the next (unless a full batch has been
    /// taken from the channel; records sent meanwhile are taken when it has passed):
    /// a record that comes after a quiet spell is written at once, but under a steady
    /// stream the records of this interval share one transaction and its `fsync`
    /// instead of paying one each (a quarter of a relay's CPU at 2,000 calls/s).
    pub min_write_gap: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch: 512,
            queue_limit: 10_000,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            min_write_gap: Duration::from_millis(20),
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
    /// Neither: lost (each loss was logged with its keys).
    pub lost: u64,
}

/// Where log lines go (stderr in mediagate; a buffer in tests).
pub type LogSink = Box<dyn FnMut(&str) + Send>;

/// Most keys quoted in one "lost" log line.
const LOST_IDS_SHOWN: usize = 5;

/// The writer's state without the thread: pending rows and the retry policy. Time is a
/// parameter, so tests drive outages without sleeping.
pub(crate) struct Spool {
    primary: Box<dyn RecordStore>,
    fallback: Option<Box<dyn RecordStore>>,
    pending: VecDeque<PendingRow>,
    options: WriterOptions,
    /// Set while the primary store fails: when the outage began and when to retry.
    outage: Option<Outage>,
    /// When the last write to the primary store began.
    last_write: Option<Instant>,
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
    pub(super) fn new(
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
            last_write: None,
            report: WriterReport::default(),
            log,
        }
    }

    /// Queues a record; [`Spool::run`] writes it. A record that does not fit its
    /// table (a bug in its type) is logged and counted as lost.
    #[cfg(test)]
    pub(super) fn push<R: Record>(&mut self, record: &R) {
        self.push_row(PendingRow::of(record));
    }

    fn push_row(&mut self, row: Result<PendingRow, StoreError>) {
        match row {
            Ok(row) => self.pending.push_back(row),
            Err(e) => {
                self.report.lost = self.report.lost.saturating_add(1);
                let line = format!("1 record LOST: {e}");
                (self.log)(&line);
            }
        }
    }

    /// Records waiting to be written.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the primary store is failing.
    #[cfg(test)]
    pub(super) fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// The counts so far.
    pub(super) fn report(&self) -> WriterReport {
        self.report
    }

    /// How long the writer may sleep waiting for records: `None` (until one arrives)
    /// when nothing is pending, else until the next retry or, with a healthy store,
    /// until [`WriterOptions::min_write_gap`] has passed since the last write.
    pub(super) fn wake_in(&self, now: Instant) -> Option<Duration> {
        if self.pending.is_empty() {
            return None;
        }
        Some(match self.outage {
            Some(o) => o.retry_at.saturating_duration_since(now),
            None => self.write_due(now),
        })
    }

    /// Whether the writer only waits for [`WriterOptions::min_write_gap`] to pass:
    /// records pending and the store healthy.
    fn waits_for_gap(&self) -> bool {
        self.outage.is_none() && !self.pending.is_empty()
    }

    /// How long until the next write may start: zero once the gap since the last
    /// write has passed or a full batch waits.
    fn write_due(&self, now: Instant) -> Duration {
        match self.last_write {
            Some(last) if self.pending.len() < self.options.batch.max(1) => {
                (last + self.options.min_write_gap).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Writes what is pending if the store is healthy and a write is due (see
    /// [`Spool::wake_in`]) or a retry is due, then keeps the queue within its bound.
    pub(super) fn run(&mut self, now: Instant) {
        let due = match self.outage {
            Some(o) => now >= o.retry_at,
            None => self.write_due(now).is_zero(),
        };
        if due {
            self.flush(now);
        }
        if self.pending.len() > self.options.queue_limit {
            let keep = self.options.queue_limit / 2;
            let excess = self.pending.len().saturating_sub(keep);
            let oldest: Vec<PendingRow> = self.pending.drain(..excess).collect();
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
        self.last_write = Some(now);
        let batch = self.options.batch.max(1);
        while !self.pending.is_empty() {
            let n = self.pending.len().min(batch);
            let chunk = self.pending.make_contiguous().get(..n).unwrap_or(&[]);
            match self.primary.insert_all(chunk) {
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

    /// Hands records the primary store could not take to the fallback; without one,
    /// or when it fails too, they are counted and logged as lost.
    fn spill(&mut self, rows: Vec<PendingRow>, why: &str) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        let failure = match self.fallback.as_mut() {
            Some(fallback) => match fallback.insert_all(&rows) {
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
        let line = format!(
            "{n} records LOST because {why} and {failure}; {}",
            lost_keys(&rows)
        );
        (self.log)(&line);
    }

    /// Final flush when mediagate stops: one more attempt at the primary store
    /// whatever the retry schedule, then the fallback for the rest.
    pub(super) fn close(mut self, now: Instant) -> WriterReport {
        if !self.pending.is_empty() {
            self.outage = self.outage.map(|o| Outage { retry_at: now, ..o });
            self.flush(now);
        }
        let rest: Vec<PendingRow> = self.pending.drain(..).collect();
        let why = format!("{} was unavailable at shutdown", self.primary.describe());
        self.spill(rest, &why);
        self.report
    }
}

/// "call-ids: a, b, c, ..." for each record type among `rows`, in order of first
/// appearance, at most [`LOST_IDS_SHOWN`] keys each.
fn lost_keys(rows: &[PendingRow]) -> String {
    let mut groups: Vec<(&Table, Vec<&str>)> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|(t, _)| t.name == row.table.name) {
            Some((_, keys)) => keys.push(&row.key),
            None => groups.push((&row.table, vec![&row.key])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(table, keys)| {
            let shown: Vec<&str> = keys.iter().take(LOST_IDS_SHOWN).copied().collect();
            let more = if keys.len() > LOST_IDS_SHOWN {
                ", ..."
            } else {
                ""
            };
            format!("{}: {}{more}", table.keys_in_logs, shown.join(", "))
        })
        .collect();
    parts.join("; ")
}

/// A record of any type on its way to the writer thread, made into a row there so the
/// sending role only pays for a move.
trait AnyRecord: Send {
    fn row(&self) -> Result<PendingRow, StoreError>;
}

impl<R: Record> AnyRecord for R {
    fn row(&self) -> Result<PendingRow, StoreError> {
        PendingRow::of(self)
    }
}

enum Message {
    Record(Box<dyn AnyRecord>),
    Close,
}

/// Where a role sends its finished records: a handle on the process's one writer.
/// Cloning is cheap; sending never blocks.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for RecordSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSink")
    }
}

impl RecordSink {
    /// Queues a record for the writer; false when the writer has already closed
    /// (the record is then dropped: the caller may log it).
    pub fn send<R: Record>(&self, record: R) -> bool {
        self.tx.send(Message::Record(Box::new(record))).is_ok()
    }
}

/// What the writer thread has done so far, for the metrics: records taken from the
/// roles, and the [`WriterReport`] figures, copied after each round of writing.
#[derive(Debug, Default)]
struct Progress {
    taken: AtomicU64,
    stored: AtomicU64,
    to_fallback: AtomicU64,
    lost: AtomicU64,
}

impl Progress {
    fn note(&self, taken: u64, report: WriterReport) {
        self.taken.store(taken, Ordering::Relaxed);
        self.stored.store(report.stored, Ordering::Relaxed);
        self.to_fallback
            .store(report.to_fallback, Ordering::Relaxed);
        self.lost.store(report.lost, Ordering::Relaxed);
    }
}

impl Collect for Arc<Progress> {
    fn collect(&self, s: &mut Scrape<'_>) -> std::fmt::Result {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (taken, stored, to_fallback, lost) = (
            load(&self.taken),
            load(&self.stored),
            load(&self.to_fallback),
            load(&self.lost),
        );
        s.counter("stored", "Records written to the accounting store.", stored)?;
        s.counter(
            "fallback",
            "Records written to the fallback SQLite file because the store failed.",
            to_fallback,
        )?;
        s.counter(
            "lost",
            "Records neither stored nor kept in the fallback (each loss is logged).",
            lost,
        )?;
        let pending = taken.saturating_sub(stored + to_fallback + lost);
        s.gauge(
            "pending",
            "Records the writer holds in memory, waiting for the store.",
            i64::try_from(pending).unwrap_or(i64::MAX),
        )
    }
}

/// Feeds records from `rx` into the spool until closed.
fn run_loop(
    rx: &mpsc::Receiver<Message>,
    spool: Spool,
    batch: usize,
    progress: &Progress,
) -> WriterReport {
    let mut taken = 0u64;
    let report = run_spool(rx, spool, batch, &mut |n, report| {
        taken += n;
        progress.note(taken, report);
    });
    progress.note(taken, report);
    report
}

/// [`run_loop`] without the bookkeeping: `note` hears how many records were taken
/// since it was last called, and the spool's report, after each round.
fn run_spool(
    rx: &mpsc::Receiver<Message>,
    mut spool: Spool,
    batch: usize,
    note: &mut dyn FnMut(u64, WriterReport),
) -> WriterReport {
    loop {
        let received = match spool.wake_in(Instant::now()) {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            // Sleeping through the gap instead of waiting on the channel: a send to a
            // receiver blocked on it wakes that thread, a futex call and two context
            // switches per record, which at a few thousand records a second cost more
            // than the writes. What comes meanwhile is taken when the gap is over;
            // `Writer::stop` unparks the thread so closing does not wait.
            Some(wait) if spool.waits_for_gap() => {
                std::thread::park_timeout(wait);
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
                })
            }
            Some(wait) => rx.recv_timeout(wait),
        };
        match received {
            Ok(Message::Record(first)) => {
                spool.push_row(first.row());
                // Take what else is waiting, so a burst becomes one transaction.
                let mut taken = 1;
                while taken < batch {
                    match rx.try_recv() {
                        Ok(Message::Record(more)) => {
                            spool.push_row(more.row());
                            taken += 1;
                        }
                        Ok(Message::Close) => {
                            note(u64::try_from(taken).unwrap_or(u64::MAX), spool.report());
                            return spool.close(Instant::now());
                        }
                        Err(_) => break,
                    }
                }
                note(u64::try_from(taken).unwrap_or(u64::MAX), spool.report());
            }
            Ok(Message::Close) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                return spool.close(Instant::now())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        spool.run(Instant::now());
        note(0, spool.report());
    }
}

/// The process's running writer: hands out [`RecordSink`]s and flushes on
/// [`Writer::close`] (or when dropped).
pub struct Writer {
    tx: mpsc::Sender<Message>,
    thread: Option<JoinHandle<WriterReport>>,
    progress: Arc<Progress>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Writer {
    /// A sink for a role.
    pub fn sink(&self) -> RecordSink {
        RecordSink {
            tx: self.tx.clone(),
        }
    }

    /// Publishes `mediagate_records_stored_total`, `mediagate_records_fallback_total`,
    /// `mediagate_records_lost_total` and the gauge `mediagate_records_pending`.
    pub fn publish_metrics(&self, metrics: &Metrics) {
        let progress = Arc::clone(&self.progress);
        metrics.register("records", |m| m.collect(progress));
    }

    /// Writes what is pending (falling back or losing, logged, what the store will not
    /// take) and stops the thread. Records sent after this are refused. Call it after
    /// the roles have stopped, so their last records are in.
    pub fn close(mut self) -> WriterReport {
        self.stop()
    }

    fn stop(&mut self) -> WriterReport {
        let _ = self.tx.send(Message::Close);
        match self.thread.take() {
            Some(thread) => {
                thread.thread().unpark();
                thread.join().unwrap_or_default()
            }
            None => WriterReport::default(),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the writer thread for `target`, logging to stderr. Blocks until the store
/// is open and `tables` are created or migrated (for PostgreSQL: connected) and fails
/// if that could not be done; call it off the async runtime.
pub fn spawn(
    target: StoreTarget,
    tables: &[Table],
    options: WriterOptions,
) -> Result<Writer, StoreError> {
    spawn_with_log(
        target,
        tables,
        options,
        Box::new(|line| tracing::warn!("accounting: {line}")),
    )
}

/// [`spawn`] with log lines going to `log`.
pub fn spawn_with_log(
    target: StoreTarget,
    tables: &[Table],
    options: WriterOptions,
    log: LogSink,
) -> Result<Writer, StoreError> {
    let (tx, rx) = mpsc::channel::<Message>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StoreError>>();
    let tables = tables.to_vec();
    let progress = Arc::new(Progress::default());
    let thread_progress = Arc::clone(&progress);
    let handle = std::thread::Builder::new()
        .name("accounting-writer".into())
        .spawn(move || {
            let (primary, fallback) = match target.open(&tables) {
                Ok(stores) => stores,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return WriterReport::default();
                }
            };
            let _ = ready_tx.send(Ok(()));
            let batch = options.batch.max(1);
            let spool = Spool::new(primary, fallback, options, log);
            run_loop(&rx, spool, batch, &thread_progress)
        })
        .map_err(|e| StoreError::Thread(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Writer {
            tx,
            thread: Some(handle),
            progress,
        }),
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
#[path = "writer_tests.rs"]
mod tests;
