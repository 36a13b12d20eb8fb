//! The access log: one line per finished session (a viewer's, later a call's), as text
//! close to the Squid and Traffic Server styles or as JSON lines with the same fields,
//! appended to `[log] access_log`.
//!
//! Lines are written by a dedicated thread fed by a bounded channel. A sender never
//! waits: when the channel is full (a slow or full disk) the line is dropped and
//! counted (`mediagate_access_log_dropped_total`, with a warning at most once per
//! [`WARN_INTERVAL`]), so the access log can never hold up streaming. Lines that
//! reached the thread but could not be written (a write error) are counted the same
//! way. [`AccessLog::reopen`] (SIGHUP) makes the thread open the path again, so a
//! rename by logrotate followed by `kill -HUP` starts a new file; until then lines
//! still go to the renamed one.
//!
//! What it does not: rotate or compress files itself, fsync each line (a crash may
//! lose what the kernel had not written yet), or decide which fields a record has: the
//! role builds an [`AccessLine`] from its own "ended" event.
//!
//! Text format: the values in the record's field order, separated by one space. A
//! missing value is `-`; numbers and tokens are bare; free text (URLs, user agents,
//! user names) is always in double quotes with `"` and `\` escaped by a backslash and
//! control or non-ASCII bytes written as `\xNN`, so a line never breaks and always
//! splits the same way. Times are UTC, RFC 3339 with milliseconds.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mediagate_config::AccessLogFormat;

use crate::metrics::{Collect, Metrics, Scrape};

/// Lines waiting for the writer thread, at most; beyond that they are dropped. At
/// 2,000 sessions ending per second this is a few seconds of a stalled disk.
pub const QUEUE_LINES: usize = 8192;

/// Warnings about dropped lines come at most this often.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// One value of an access record.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessValue {
    /// Free text: quoted in text lines.
    Text(String),
    /// A word without spaces (an address, a method, a result code): bare in text lines
    /// (quoted anyway if it holds a space, a quote or a control character).
    Token(String),
    /// A count.
    Int(u64),
    /// A moment, milliseconds since the Unix epoch.
    Time(u64),
    /// Absent (`-` in text, `null` in JSON).
    Missing,
}

/// One record: named values in their line order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessLine {
    fields: Vec<(&'static str, AccessValue)>,
}

impl AccessLine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds free text; `None` or empty is missing.
    #[must_use]
    pub fn text(mut self, name: &'static str, value: Option<&str>) -> Self {
        let v = match value {
            Some(s) if !s.is_empty() => AccessValue::Text(s.to_owned()),
            _ => AccessValue::Missing,
        };
        self.fields.push((name, v));
        self
    }

    /// Adds a token; empty is missing.
    #[must_use]
    pub fn token(mut self, name: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        let v = if value.is_empty() {
            AccessValue::Missing
        } else {
            AccessValue::Token(value)
        };
        self.fields.push((name, v));
        self
    }

    #[must_use]
    pub fn int(mut self, name: &'static str, value: u64) -> Self {
        self.fields.push((name, AccessValue::Int(value)));
        self
    }

    #[must_use]
    pub fn time(mut self, name: &'static str, unix_ms: u64) -> Self {
        self.fields.push((name, AccessValue::Time(unix_ms)));
        self
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(&'static str, AccessValue)] {
        &self.fields
    }

    /// The record as one text line, without the newline.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(256);
        for (i, (_, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match v {
                AccessValue::Text(s) => quote(s, &mut out),
                AccessValue::Token(s) if is_bare(s) => out.push_str(s),
                AccessValue::Token(s) => quote(s, &mut out),
                AccessValue::Int(n) => out.push_str(&n.to_string()),
                AccessValue::Time(ms) => out.push_str(&rfc3339_ms(*ms)),
                AccessValue::Missing => out.push('-'),
            }
        }
        out
    }

    /// The record as one JSON object, without the newline.
    pub fn to_json(&self) -> String {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (name, v) in &self.fields {
            let value = match v {
                AccessValue::Text(s) | AccessValue::Token(s) => serde_json::Value::from(s.as_str()),
                AccessValue::Int(n) => serde_json::Value::from(*n),
                AccessValue::Time(ms) => serde_json::Value::from(rfc3339_ms(*ms)),
                AccessValue::Missing => serde_json::Value::Null,
            };
            map.insert((*name).to_owned(), value);
        }
        serde_json::Value::Object(map).to_string()
    }

    fn render(&self, format: AccessLogFormat) -> String {
        match format {
            AccessLogFormat::Text => self.to_text(),
            AccessLogFormat::Json => self.to_json(),
        }
    }
}

fn is_bare(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// `s` in double quotes, escaped so that the line stays one line of printable ASCII.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out.push('"');
}

/// `2026-12-06T01:22:33.123Z` for milliseconds since the Unix epoch (the calendar is
/// `mediagate_rtsp`'s, the project's one civil-date conversion).
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    match mediagate_rtsp::headers::Civil::from_unix_seconds(secs) {
        Some(c) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            unix_ms % 1000
        ),
        // Past year 9999: no calendar date; the raw count still says when.
        None => format!("@{unix_ms}ms"),
    }
}

enum Msg {
    Line(AccessLine),
    /// Nothing to write: look at the reopen flag.
    Wake,
    Close,
}

/// What the senders and the thread share.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    written: AtomicU64,
    dropped: AtomicU64,
    reopen: AtomicBool,
    /// When the last warning about dropped lines was logged.
    last_warning: Mutex<Option<Instant>>,
}

impl Shared {
    fn count_dropped(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL) {
            *last = Some(now);
            tracing::warn!(
                path = %self.path.display(),
                dropped = total,
                "access log: lines dropped ({why}); streaming goes on"
            );
        }
    }
}

/// A handle for sending lines, cheap to clone; never blocks.
#[derive(Clone, Debug)]
pub struct AccessSink {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Line(_) => "Line",
            Msg::Wake => "Wake",
            Msg::Close => "Close",
        })
    }
}

impl AccessSink {
    /// Queues `line`; false when it was dropped (the queue is full or the log closed).
    pub fn send(&self, line: AccessLine) -> bool {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.shared.count_dropped(1, "the disk is not keeping up");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.count_dropped(1, "the access log is closed");
                false
            }
        }
    }
}

/// The open access log and its writer thread.
#[derive(Debug)]
pub struct AccessLog {
    sink: AccessSink,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens (creating it if missing) `path` for appending and starts the writer.
    pub fn open(path: &Path, format: AccessLogFormat) -> io::Result<AccessLog> {
        Self::with_queue(path, format, QUEUE_LINES)
    }

    /// [`AccessLog::open`] with a queue of `lines` (tests use a short one).
    pub fn with_queue(path: &Path, format: AccessLogFormat, lines: usize) -> io::Result<AccessLog> {
        let file = open_append(path)?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            last_warning: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel(lines.max(1));
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&rx, file, format, &thread_shared))?;
        Ok(AccessLog {
            sink: AccessSink { tx, shared },
            thread: Some(thread),
        })
    }

    /// A handle for the roles.
    pub fn sink(&self) -> AccessSink {
        self.sink.clone()
    }

    /// Asks the writer to open the path again (after a rename by logrotate). The
    /// request is never lost to a full queue: it is a flag the thread checks before
    /// each write.
    pub fn reopen(&self) {
        self.sink.shared.reopen.store(true, Ordering::Relaxed);
        let _ = self.sink.tx.try_send(Msg::Wake);
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.sink.shared.written.load(Ordering::Relaxed)
    }

    /// Lines dropped so far (queue full, log closed, or a write error).
    pub fn dropped(&self) -> u64 {
        self.sink.shared.dropped.load(Ordering::Relaxed)
    }

    /// Publishes `mediagate_access_log_lines_total` and
    /// `mediagate_access_log_dropped_total`.
    pub fn publish_metrics(&self, metrics: &Metrics) {
        let shared = Arc::clone(&self.sink.shared);
        metrics.register("access_log", |m| m.collect(AccessLogMetrics(shared)));
    }

    /// Writes every queued line and stops the thread (waiting for a slow disk).
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.sink.tx.send(Msg::Close);
            let _ = thread.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.shut();
    }
}

struct AccessLogMetrics(Arc<Shared>);

impl Collect for AccessLogMetrics {
    fn collect(&self, s: &mut Scrape<'_>) -> std::fmt::Result {
        s.counter(
            "lines",
            "Access log lines written.",
            self.0.written.load(Ordering::Relaxed),
        )?;
        s.counter(
            "dropped",
            "Access log lines dropped because the disk did not keep up or a write failed.",
            self.0.dropped.load(Ordering::Relaxed),
        )
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Bytes gathered before a write, at most.
const CHUNK: usize = 64 * 1024;

fn write_loop(rx: &Receiver<Msg>, mut file: File, format: AccessLogFormat, shared: &Shared) {
    let mut chunk = Chunk::default();
    // Block for the first message, then take what is queued before writing, so a busy
    // log writes in large chunks and a quiet one writes each line at once.
    while let Ok(first) = rx.recv() {
        let mut close = false;
        for msg in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            if shared.reopen.swap(false, Ordering::Relaxed) {
                chunk.write(&mut file, shared);
                match open_append(&shared.path) {
                    Ok(f) => {
                        file = f;
                        tracing::info!(path = %shared.path.display(), "access log reopened");
                    }
                    Err(e) => tracing::warn!(
                        path = %shared.path.display(),
                        "access log: cannot reopen ({e}); still writing to the file open before"
                    ),
                }
            }
            match msg {
                Msg::Line(line) => {
                    chunk
                        .bytes
                        .extend_from_slice(line.render(format).as_bytes());
                    chunk.bytes.push(b'\n');
                    chunk.lines += 1;
                    if chunk.bytes.len() >= CHUNK {
                        chunk.write(&mut file, shared);
                    }
                }
                Msg::Wake => {}
                Msg::Close => {
                    close = true;
                    break;
                }
            }
        }
        chunk.write(&mut file, shared);
        if close {
            break;
        }
    }
}

/// Lines rendered and not yet written.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    lines: u64,
}

impl Chunk {
    /// Writes the lines; on an error (a full disk) they count as dropped.
    fn write(&mut self, file: &mut File, shared: &Shared) {
        if self.lines == 0 {
            return;
        }
        match file.write_all(&self.bytes) {
            Ok(()) => {
                shared.written.fetch_add(self.lines, Ordering::Relaxed);
            }
            Err(e) => shared.count_dropped(self.lines, &format!("a write failed: {e}")),
        }
        self.bytes.clear();
        self.lines = 0;
    }
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
