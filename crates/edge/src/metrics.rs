//! The edge's metrics (`mediagate_edge_...`): viewers, sessions, live streams, what
//! each stream received from its origin and delivered to its viewers, viewer loss,
//! origin reconnects and failures, the time to first keyframe, and client connections
//! (open, refused by a cap, closed by a limit before they became viewers), requests
//! refused before a session (`DENIED`), accounting connections (open, refused by the
//! origin, ended by the origin), and the on-demand cache (bytes used and allowed,
//! objects, evictions, and what each on-demand viewer's request came to: hit, miss,
//! refresh or pass).
//!
//! What it does: keeps the counters that change per session or per origin event
//! ([`EdgeStats`], plain atomics touched a few times per session), and per stream a
//! [`StreamCounters`] that the hub actor adds to once per batch of upstream frames from
//! the totals its fan-out core keeps anyway, so the per-packet path gains no atomic.
//! [`EdgeCollector`] reads all of it when the registry is scraped.
//!
//! Cardinality: the `stream` label is the origin URL without credentials or query
//! (bounded by the routes, or in forward mode by the URLs viewers ask for). At most
//! [`MAX_STREAM_LABELS`] distinct streams get their own series; later ones are folded
//! into `stream="other"`. A stream's series stays once created, so its counters never
//! go backwards when its hub retires and a new one starts. Nothing is labelled by
//! viewer or session.
//!
//! What it does not: count on-demand passthrough sessions' media per stream (they
//! bypass the hub; their totals are in each ended session's record), or measure the
//! first keyframe of audio-only streams (there is none).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use mediagate_config::RtspUrl;
use mediagate_ops::metrics::{exponential_buckets, Collect, Histogram, Scrape};

use crate::cache_store::CacheStore;
use crate::hub_registry::WeakHubs;
use crate::limits::{ConnTable, Cut, Refusal};
use crate::session::{CacheResult, EndReason, ViewerTransport};

/// Streams with series of their own; the rest share `stream="other"`.
pub(crate) const MAX_STREAM_LABELS: usize = 1000;

/// The label of the streams beyond [`MAX_STREAM_LABELS`].
const OTHER: &str = "other";

const TRANSPORTS: [ViewerTransport; 3] = [
    ViewerTransport::Udp,
    ViewerTransport::Tcp,
    ViewerTransport::HttpTunnel,
];

/// Why sessions end (a `DENIED` record's `refused` is no session: it is counted in
/// `requests_denied`).
const REASONS: [EndReason; 6] = [
    EndReason::Teardown,
    EndReason::Timeout,
    EndReason::ConnectionClosed,
    EndReason::Drain,
    EndReason::Admin,
    EndReason::AccountingClosed,
];

/// The `status` labels of refused accounting requests: the ones origins give, the
/// edge's own for an unreachable or silent origin, and the rest as `other`.
const ACCOUNTING_STATUSES: [&str; 7] = ["401", "403", "404", "453", "502", "504", "other"];

fn accounting_status_index(status: u16) -> usize {
    let label = status.to_string();
    ACCOUNTING_STATUSES
        .iter()
        .position(|s| *s == label)
        .unwrap_or(ACCOUNTING_STATUSES.len() - 1)
}

/// Why the origin's side ended an accounting connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginClose {
    /// It closed the connection (or a keep-alive could not be written).
    Closed,
    /// It left keep-alives unanswered.
    Silent,
}

impl OriginClose {
    pub fn as_str(self) -> &'static str {
        match self {
            OriginClose::Closed => "closed",
            OriginClose::Silent => "silent",
        }
    }
}

fn transport_index(t: ViewerTransport) -> usize {
    match t {
        ViewerTransport::Udp => 0,
        ViewerTransport::Tcp => 1,
        ViewerTransport::HttpTunnel => 2,
    }
}

fn reason_index(r: EndReason) -> Option<usize> {
    Some(match r {
        EndReason::Teardown => 0,
        EndReason::Timeout => 1,
        EndReason::ConnectionClosed => 2,
        EndReason::Drain => 3,
        EndReason::Admin => 4,
        EndReason::AccountingClosed => 5,
        EndReason::Refused => return None,
    })
}

/// The results `cache_results_total{result}` counts here; hits and misses are counted
/// by the store itself ([`CacheStore`]'s counts), so each has one source.
const COUNTED_RESULTS: [CacheResult; 2] = [CacheResult::Refresh, CacheResult::Pass];

/// The cache's figures: the store's own (read when scraped) and the counts the edge
/// keeps as it uses it.
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    /// The running edge's cache, once opened (none when `[edge.cache]` is off).
    store: OnceLock<Weak<CacheStore>>,
    results: [AtomicU64; COUNTED_RESULTS.len()],
}

impl CacheStats {
    /// Reads `store`'s size, objects, hits and misses at every scrape from now on.
    pub fn attach(&self, store: &Arc<CacheStore>) {
        let _ = self.store.set(Arc::downgrade(store));
    }

    /// Counts an on-demand request that was revalidated (`Refresh`) or not cacheable
    /// (`Pass`). Hits and misses are the store's own counts; live (`Split`) and
    /// refused (`Denied`) requests are no cache results: those are ignored here.
    pub fn count_result(&self, result: CacheResult) {
        if let Some(i) = COUNTED_RESULTS.iter().position(|r| *r == result) {
            self.results[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the attached store says now; zeros without one.
    fn store_figures(&self) -> StoreFigures {
        let Some(store) = self.store.get().and_then(Weak::upgrade) else {
            return StoreFigures::default();
        };
        let counts = store.counts();
        let cache = store.lock();
        StoreFigures {
            used: cache.used_bytes(),
            limit: cache.limit_bytes(),
            objects: cache.len() as u64,
            evictions: cache.evictions(),
            hits: counts.hits,
            misses: counts.misses,
            fills_abandoned: counts.fills_abandoned,
            shared: store.shared_reads(),
            groups: store.groups().counts(),
        }
    }
}

#[derive(Debug, Default)]
struct StoreFigures {
    used: u64,
    limit: u64,
    objects: u64,
    evictions: u64,
    hits: u64,
    misses: u64,
    fills_abandoned: u64,
    shared: crate::SharedReadCounts,
    groups: crate::cache_play::GroupCounts,
}

/// What one stream (one `stream` label) received and delivered, summed over every
/// hub that served it.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    pub received_packets: AtomicU64,
    pub received_bytes: AtomicU64,
    pub delivered_packets: AtomicU64,
    pub delivered_bytes: AtomicU64,
    /// Packets viewers did not get because they fell behind.
    pub skipped_packets: AtomicU64,
    /// Origin sessions reopened after a loss.
    pub origin_reconnects: AtomicU64,
    /// Origin sessions that failed to open or broke.
    pub upstream_failures: AtomicU64,
}

impl StreamCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The edge's counters, shared by its connections and hubs.
#[derive(Debug)]
pub(crate) struct EdgeStats {
    viewers: [AtomicI64; 3],
    sessions_started: AtomicU64,
    sessions_ended: [AtomicU64; 6],
    streams: Mutex<BTreeMap<String, Arc<StreamCounters>>>,
    first_keyframe: Histogram,
    /// Client connections open now, by address (the caps' table; read for the gauge).
    pub connections: ConnTable,
    /// Connections closed as they arrived: [total cap, per-client cap].
    connections_refused: [AtomicU64; 2],
    /// Connections closed by a limit: [slow request, idle without a session].
    connections_cut: [AtomicU64; 2],
    /// Requests refused before a session existed (`DENIED`), recorded or not.
    requests_denied: AtomicU64,
    /// Of those, the ones past the record budget (answered, not recorded).
    denied_unrecorded: AtomicU64,
    /// Accounting connections open now (from the origin's accepting DESCRIBE to close).
    accounting_open: AtomicI64,
    /// Accounting requests the origin refused (or could not be reached for), by status.
    accounting_refused: [AtomicU64; ACCOUNTING_STATUSES.len()],
    /// Accounting connections ended by the origin: [closed, silent].
    accounting_origin_closed: [AtomicU64; 2],
    /// The on-demand cache.
    pub cache: CacheStats,
}

impl Default for EdgeStats {
    fn default() -> Self {
        Self {
            viewers: Default::default(),
            sessions_started: AtomicU64::new(0),
            sessions_ended: Default::default(),
            streams: Mutex::default(),
            // 5 ms to ~10 s: a keyframe already in the ring is a few ms; a GOP-long
            // wait is seconds.
            first_keyframe: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            connections: ConnTable::default(),
            connections_refused: Default::default(),
            connections_cut: Default::default(),
            requests_denied: AtomicU64::new(0),
            denied_unrecorded: AtomicU64::new(0),
            accounting_open: AtomicI64::new(0),
            accounting_refused: Default::default(),
            accounting_origin_closed: Default::default(),
            cache: CacheStats::default(),
        }
    }
}

/// The label of a stream: its URL without credentials (the URL handed to hubs has
/// none; this is belt and braces) and without its query, which may carry per-viewer
/// tokens.
fn stream_label(url: &RtspUrl) -> String {
    let text = url.without_credentials().to_string();
    match text.split_once('?') {
        Some((before, _)) => before.to_owned(),
        None => text,
    }
}

impl EdgeStats {
    pub fn session_started(&self) {
        self.sessions_started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_ended(&self, reason: EndReason) {
        if let Some(i) = reason_index(reason) {
            self.sessions_ended[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request refused before a session existed; `recorded` false when it was past
    /// the record budget.
    pub fn request_denied(&self, recorded: bool) {
        self.requests_denied.fetch_add(1, Ordering::Relaxed);
        if !recorded {
            self.denied_unrecorded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The origin refused an accounting request (DESCRIBE, or a `session`'s SETUP or
    /// PLAY) with `status` (the edge's 502/504 when it could not be reached).
    pub fn accounting_refused(&self, status: u16) {
        self.accounting_refused[accounting_status_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// The origin ended an accounting connection.
    pub fn accounting_origin_closed(&self, why: OriginClose) {
        let i = match why {
            OriginClose::Closed => 0,
            OriginClose::Silent => 1,
        };
        self.accounting_origin_closed[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self, why: Refusal) {
        let i = match why {
            Refusal::Total => 0,
            Refusal::PerClient => 1,
        };
        self.connections_refused[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_cut(&self, why: Cut) {
        let i = match why {
            Cut::SlowRequest => 0,
            Cut::Idle => 1,
        };
        self.connections_cut[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram of PLAY-to-first-keyframe times.
    pub fn first_keyframe(&self) -> &Histogram {
        &self.first_keyframe
    }

    /// The counters of the stream at `url` (or of `other`, past the label cap).
    pub fn stream(&self, url: &RtspUrl) -> Arc<StreamCounters> {
        self.stream_by_label(stream_label(url))
    }

    fn stream_by_label(&self, label: String) -> Arc<StreamCounters> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = streams.get(&label) {
            return c.clone();
        }
        let label = if streams.len() < MAX_STREAM_LABELS {
            label
        } else {
            OTHER.to_owned()
        };
        streams.entry(label).or_default().clone()
    }
}

/// One viewer session in the `viewers` gauge under its transport, for as long as this
/// lives (the session's source holds it; a SETUP that changes the transport swaps it).
#[derive(Debug)]
pub(crate) struct ViewerGauge {
    stats: Arc<EdgeStats>,
    transport: ViewerTransport,
}

impl ViewerGauge {
    pub fn new(stats: Arc<EdgeStats>, transport: ViewerTransport) -> Self {
        stats.viewers[transport_index(transport)].fetch_add(1, Ordering::Relaxed);
        Self { stats, transport }
    }

    pub fn transport(&self) -> ViewerTransport {
        self.transport
    }
}

impl Drop for ViewerGauge {
    fn drop(&mut self) {
        self.stats.viewers[transport_index(self.transport)].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open accounting connection in the `accounting_connections` gauge, for as long
/// as this lives (the connection's handle or task holds it).
#[derive(Debug)]
pub(crate) struct AccountingGauge {
    stats: Arc<EdgeStats>,
}

impl AccountingGauge {
    pub fn new(stats: Arc<EdgeStats>) -> Self {
        stats.accounting_open.fetch_add(1, Ordering::Relaxed);
        Self { stats }
    }
}

impl Drop for AccountingGauge {
    fn drop(&mut self) {
        self.stats.accounting_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a running edge's counters when scraped; reports nothing once it is gone.
pub(crate) struct EdgeCollector {
    hubs: WeakHubs,
}

impl EdgeCollector {
    pub fn new(hubs: WeakHubs) -> Self {
        Self { hubs }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Collect for EdgeCollector {
    fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let Some(hubs) = self.hubs.upgrade() else {
            return Ok(());
        };
        let stats = hubs.edge_stats();
        let viewers: Vec<(&str, i64)> = TRANSPORTS
            .iter()
            .map(|&t| {
                let n = stats.viewers[transport_index(t)].load(Ordering::Relaxed);
                (t.as_str(), n.max(0))
            })
            .collect();
        s.gauge_by(
            "viewers",
            "Viewer sessions with media set up, by transport.",
            "transport",
            &viewers,
        )?;
        s.counter(
            "sessions_started",
            "Viewer sessions started (first SETUP).",
            load(&stats.sessions_started),
        )?;
        let ended: Vec<(&str, u64)> = REASONS
            .iter()
            .filter_map(|&r| Some((r.as_str(), load(&stats.sessions_ended[reason_index(r)?]))))
            .collect();
        s.counter_by(
            "sessions_ended",
            "Viewer sessions ended, by why.",
            "reason",
            &ended,
        )?;
        s.gauge(
            "connections",
            "Client connections open (an HTTP tunnel counts two).",
            i64::try_from(stats.connections.open()).unwrap_or(i64::MAX),
        )?;
        let refused: Vec<(&str, u64)> = [Refusal::Total, Refusal::PerClient]
            .iter()
            .zip(&stats.connections_refused)
            .map(|(r, n)| (r.as_str(), load(n)))
            .collect();
        s.counter_by(
            "connections_refused",
            "Client connections closed on arrival by max_connections (total) or max_connections_per_client (per_client).",
            "limit",
            &refused,
        )?;
        let cut: Vec<(&str, u64)> = [Cut::SlowRequest, Cut::Idle]
            .iter()
            .zip(&stats.connections_cut)
            .map(|(c, n)| (c.as_str(), load(n)))
            .collect();
        s.counter_by(
            "connections_closed_by_limit",
            "Connections without a session closed by request_timeout (slow_request) or idle_timeout (idle).",
            "limit",
            &cut,
        )?;
        s.counter(
            "requests_denied",
            "Requests refused before a viewer session existed (DENIED: logins, access lists, reach, loops, accounting refusals, the viewer limit).",
            load(&stats.requests_denied),
        )?;
        s.counter(
            "requests_denied_unrecorded",
            "DENIED requests past the record budget (1,000/s): answered and counted, but not written to the access log or the records store.",
            load(&stats.denied_unrecorded),
        )?;
        s.gauge(
            "accounting_connections",
            "Accounting connections to the origin open now (one per viewer on accounting routes).",
            stats.accounting_open.load(Ordering::Relaxed).max(0),
        )?;
        let refused: Vec<(&str, u64)> = ACCOUNTING_STATUSES
            .iter()
            .zip(&stats.accounting_refused)
            .map(|(s, n)| (*s, load(n)))
            .collect();
        s.counter_by(
            "accounting_refused",
            "Accounting requests refused by the origin (or 502/504: it could not be reached), by the status the viewer got.",
            "status",
            &refused,
        )?;
        let closed: Vec<(&str, u64)> = [OriginClose::Closed, OriginClose::Silent]
            .iter()
            .zip(&stats.accounting_origin_closed)
            .map(|(c, n)| (c.as_str(), load(n)))
            .collect();
        s.counter_by(
            "accounting_closed_by_origin",
            "Held accounting connections the origin ended: it closed them (closed) or left keep-alives unanswered (silent); each ends its viewer's session.",
            "why",
            &closed,
        )?;
        s.gauge(
            "live_streams",
            "Streams with a running hub (one origin session each).",
            i64::try_from(hubs.len()).unwrap_or(i64::MAX),
        )?;
        s.histogram(
            "first_keyframe_seconds",
            "Time from a viewer's PLAY reaching its stream to the first keyframe packet queued for it.",
            stats.first_keyframe(),
        )?;
        let cache = &stats.cache;
        let figures = cache.store_figures();
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        s.gauge(
            "cache_bytes",
            "Bytes the on-demand cache's objects take on disk.",
            gauge(figures.used),
        )?;
        s.gauge(
            "cache_limit_bytes",
            "The on-demand cache's size limit ([edge.cache] size; 0 when the cache is off).",
            gauge(figures.limit),
        )?;
        s.gauge(
            "cache_objects",
            "Objects in the on-demand cache (one per URL and track selection), complete or partial.",
            gauge(figures.objects),
        )?;
        s.counter(
            "cache_evictions",
            "Cache objects evicted to stay under the size limit.",
            figures.evictions,
        )?;
        s.counter(
            "cache_fills_abandoned",
            "Cache fills given up (the writer fell behind or failed); their viewers went on from the origin.",
            figures.fills_abandoned,
        )?;
        let results = [
            ("hit", figures.hits),
            ("miss", figures.misses),
            ("refresh", load(&cache.results[0])),
            ("pass", load(&cache.results[1])),
        ];
        s.counter_by(
            "cache_results",
            "On-demand requests by what they came to: hit (served from the cache), miss (fetched and recorded), refresh (revalidated, then served from the cache), pass (not cacheable: served from the origin only).",
            "result",
            &results,
        )?;
        let sh = figures.shared;
        s.counter_by(
            "cache_shared_reads",
            "Blocks (about a second of media each) handed to cache-hit viewers, by where they came from: disk (read once, then kept) or memory (another viewer read it).",
            "from",
            &[("disk", sh.disk_blocks), ("memory", sh.memory_blocks)],
        )?;
        s.counter_by(
            "cache_shared_read_bytes",
            "RTP bytes of the blocks handed to cache-hit viewers, by where they came from (disk or memory).",
            "from",
            &[("disk", sh.disk_bytes), ("memory", sh.memory_bytes)],
        )?;
        let g = figures.groups;
        s.counter_by(
            "cache_hit_plays",
            "PLAYs of cache-hit viewers (first PLAYs and resumes after PAUSE or a seek) by how they are paced and sent: in a playout group they opened, in one they joined (viewers at the same place share one timer and one numbering pass), or alone.",
            "how",
            &[
                ("opened_group", g.opened),
                ("joined_group", g.joined),
                ("alone", g.alone),
            ],
        )?;
        s.gauge(
            "cache_memory_bytes",
            "Bytes of shared blocks the edge keeps in memory for cache-hit viewers.",
            gauge(sh.held_bytes),
        )?;
        // Copied out so the lock is not held while encoding.
        let streams: Vec<(String, Arc<StreamCounters>)> = stats
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        type Field = fn(&StreamCounters) -> &AtomicU64;
        let per_stream: [(&str, &str, Field); 7] = [
            (
                "stream_received_packets",
                "RTP and RTCP packets received from the origin, by stream.",
                |c| &c.received_packets,
            ),
            (
                "stream_received_bytes",
                "Bytes of RTP and RTCP received from the origin, by stream.",
                |c| &c.received_bytes,
            ),
            (
                "stream_delivered_packets",
                "Packets handed to viewers, by stream.",
                |c| &c.delivered_packets,
            ),
            (
                "stream_delivered_bytes",
                "Bytes handed to viewers, by stream.",
                |c| &c.delivered_bytes,
            ),
            (
                "stream_viewer_skipped_packets",
                "Packets viewers missed because they fell behind (skipped to a keyframe), by stream.",
                |c| &c.skipped_packets,
            ),
            (
                "stream_origin_reconnects",
                "Origin sessions reopened after a loss, by stream.",
                |c| &c.origin_reconnects,
            ),
            (
                "stream_upstream_failures",
                "Origin sessions that failed to open or broke, by stream.",
                |c| &c.upstream_failures,
            ),
        ];
        for (name, help, field) in per_stream {
            let values: Vec<(&str, u64)> = streams
                .iter()
                .map(|(label, c)| (label.as_str(), load(field(c))))
                .collect();
            s.counter_by(name, help, "stream", &values)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RtspUrl {
        s.parse().expect("a URL")
    }

    #[test]
    fn a_stream_label_has_no_credentials_or_query() {
        assert_eq!(
            stream_label(&url("rtsp://user:secret@cam.example:8554/live/1?token=abc")),
            "rtsp://cam.example:8554/live/1"
        );
    }

    #[test]
    fn streams_past_the_cap_share_other_and_labels_stay() {
        let stats = EdgeStats::default();
        let first = stats.stream_by_label("s0".into());
        for i in 1..MAX_STREAM_LABELS {
            stats.stream_by_label(format!("s{i}"));
        }
        let late = stats.stream_by_label("late".into());
        let later = stats.stream_by_label("later".into());
        assert!(Arc::ptr_eq(&late, &later), "both folded into other");
        assert!(Arc::ptr_eq(&first, &stats.stream_by_label("s0".into())));
        let labels = stats.streams.lock().unwrap();
        assert_eq!(labels.len(), MAX_STREAM_LABELS + 1);
        assert!(labels.contains_key(OTHER) && !labels.contains_key("late"));
    }

    #[test]
    fn accounting_statuses_fold_into_bounded_labels() {
        let stats = EdgeStats::default();
        for status in [401, 401, 404, 418, 500, 504] {
            stats.accounting_refused(status);
        }
        let n = |label: &str| {
            let i = ACCOUNTING_STATUSES
                .iter()
                .position(|s| *s == label)
                .unwrap();
            load(&stats.accounting_refused[i])
        };
        assert_eq!((n("401"), n("404"), n("504"), n("other")), (2, 1, 1, 2));
        let g = AccountingGauge::new(Arc::new(EdgeStats::default()));
        assert_eq!(g.stats.accounting_open.load(Ordering::Relaxed), 1);
        let stats = g.stats.clone();
        drop(g);
        assert_eq!(stats.accounting_open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_viewer_gauge_follows_its_holder() {
        let stats = Arc::new(EdgeStats::default());
        let a = ViewerGauge::new(stats.clone(), ViewerTransport::Udp);
        let b = ViewerGauge::new(stats.clone(), ViewerTransport::Tcp);
        let n = |t| stats.viewers[transport_index(t)].load(Ordering::Relaxed);
        assert_eq!((n(ViewerTransport::Udp), n(ViewerTransport::Tcp)), (1, 1));
        drop(a);
        assert_eq!(n(ViewerTransport::Udp), 0);
        drop(b);
        assert_eq!(n(ViewerTransport::Tcp), 0);
    }
}
