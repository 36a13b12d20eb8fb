//! The relay engine (tokio): `ng` listeners, media sockets and forwarding tasks, the
//! timer that ends idle calls, finished-call records (to the process's records
//! writer) and teardown notifications, metrics, and graceful shutdown.
//!
//! What it does: [`Relay::start`] binds everything an [`EngineConfig`] names (failing
//! with the address when a bind fails) and returns a handle; [`Relay::shutdown`] drains
//! (new calls refused with the failover reply), waits for running calls to end within
//! a bound or until told to hurry, ends the rest with reason `shutdown`, and hands
//! their records to the records writer before returning (the binary closes the writer
//! after every role has stopped, which flushes them). [`Relay::publish_metrics`]
//! registers what the engine already counts, read when scraped. [`Relay::reload`] gives
//! new calls new options, ports from a new range and a new teardown notification
//! target; running calls keep theirs.
//!
//! [`PairRelay`] offers the same ports, forwarding threads and latching to other roles
//! as bare forwarded pairs, without calls or `ng` (the balancer's `relay` mode).
//!
//! What it does not: parse config files or handle signals (the binary does, and calls
//! [`Relay::shutdown`] on SIGTERM), or make protocol decisions (the sans-IO modules do).

mod control;
mod forward;
mod kernel;
mod metrics;
mod notify;
mod pairs;
mod sockets;

pub use crate::calls::RelayOptions;
pub use crate::latch::LatchPolicy;
pub use forward::{apply_scheduling, ForwardIo};
pub use pairs::{Expected, Pair, PairCounters, PairError, PairRelay, PairRelayConfig};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mediagate_config::HttpUrl;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::calls::{Ended, Now, Registry};
use crate::record::{EndReason, SessionRecord};
use mediagate_ng::cookie_cache::CookieCache;
use mediagate_ops::store::RecordSink;
use notify::NotifyTarget;
use sockets::SocketEnv;

/// Everything the engine needs, resolved from `[relay]` (see [`EngineConfig::from_config`]).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// UDP `ng` listeners.
    pub ng_udp: Vec<SocketAddr>,
    /// TCP `ng` listeners.
    pub ng_tcp: Vec<SocketAddr>,
    /// Media addresses: `(local, advertised)`.
    pub media: Vec<(IpAddr, IpAddr)>,
    /// Port range, inclusive.
    pub ports: (u16, u16),
    /// How long a released port pair waits before reuse.
    pub port_quarantine: Duration,
    /// Core behaviour: timeouts, latching, limits.
    pub options: RelayOptions,
    /// Where finished-call records go: the process's records writer, which the binary
    /// opens from `[accounting]`. `None` keeps records in memory only.
    pub records: Option<RecordSink>,
    /// `http://` URL told about calls ended for inactivity.
    pub notify_url: Option<HttpUrl>,
    /// How often idle calls and delete delays are checked.
    pub tick: Duration,
    /// Forwarding threads; 0 for one per two CPUs (at least 1, at most 8).
    pub forward_threads: usize,
    /// After a wake-up that found few ready sockets, a forwarding thread pauses this
    /// long so the next finds more: less CPU per packet, that much more latency.
    /// Zero (the default) forwards at once.
    pub forward_coalesce: Duration,
    /// How forwarding threads wait for packets: io_uring where the kernel allows it
    /// (the default), or always epoll.
    pub forward_io: forward::ForwardIo,
    /// The forwarding threads' scheduling policy; `normal` (the default) leaves them
    /// as the kernel starts them.
    pub forward_scheduling: mediagate_config::ThreadScheduling,
}

impl EngineConfig {
    /// The engine settings for `[relay]`, records kept in memory only until
    /// [`EngineConfig::with_records`] names a writer.
    pub fn from_config(relay: &mediagate_config::RelayConfig) -> Self {
        use crate::latch::LatchPolicy;
        use mediagate_config::EndpointLearning;
        use mediagate_ng::request::Learning;
        let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let latch = &relay.latch;
        let range = relay.ports.get().range();
        Self {
            ng_udp: relay.ng_listen_udp.iter().map(|a| a.get()).collect(),
            ng_tcp: relay.ng_listen_tcp.iter().map(|a| a.get()).collect(),
            media: relay
                .media_address
                .iter()
                .map(|m| (m.address.get().get(), m.sdp_address().get()))
                .collect(),
            ports: (range.low(), range.high()),
            port_quarantine: relay.port_quarantine.get(),
            options: RelayOptions {
                media_timeout: relay.media_timeout.get().get(),
                on_hold_timeout: relay.on_hold_timeout.get().get(),
                offer_timeout: relay.offer_timeout.get(),
                delete_delay: relay.delete_delay.get(),
                latch: LatchPolicy {
                    learn_window: latch.learn_window.get(),
                    learn_packets: latch.learn_packets.get(),
                    relatch_quiet: latch.relatch_quiet.get(),
                    // The config type caps the gap at 32767, so it always fits.
                    relatch_max_seq_gap: u16::try_from(latch.relatch_max_seq_gap.get())
                        .unwrap_or(u16::MAX),
                },
                learning: match relay.learning {
                    EndpointLearning::Heuristic => Learning::Heuristic,
                    EndpointLearning::Immediate => Learning::Immediate,
                    EndpointLearning::Off => Learning::Off,
                },
                max_sessions: count(relay.max_sessions.get()),
                max_media_per_call: count(relay.max_media_per_call.get()),
            },
            records: None,
            notify_url: relay.teardown_notify_url.clone(),
            tick: Duration::from_millis(250),
            forward_threads: count(relay.forward_threads.get()),
            forward_coalesce: relay.forward_coalesce.get(),
            forward_io: match relay.forward_io {
                mediagate_config::ForwardIo::Auto => forward::ForwardIo::Auto,
                mediagate_config::ForwardIo::Ebpf => forward::ForwardIo::Ebpf,
                mediagate_config::ForwardIo::IoUring => forward::ForwardIo::IoUring,
                mediagate_config::ForwardIo::Epoll => forward::ForwardIo::Epoll,
            },
            forward_scheduling: relay.forward_scheduling,
        }
    }

    /// Sends finished-call records to `sink`.
    pub fn with_records(mut self, sink: RecordSink) -> Self {
        self.records = Some(sink);
        self
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen for ng commands on {proto} {addr}: {source}")]
    Listen {
        /// `UDP` or `TCP`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// Nothing to relay on.
    #[error("the relay needs at least one media address")]
    NoMediaAddress,
    /// The forwarding threads could not be set up.
    #[error("cannot start the media forwarding threads: {0}")]
    Forwarding(#[source] std::io::Error),
    /// `forward_io = "ebpf"` and the fast path cannot load.
    #[error("forward_io = \"ebpf\": {0}")]
    Ebpf(#[source] mediagate_ebpf::LoadError),
}

pub(crate) struct Control {
    registry: Registry,
    env: SocketEnv,
    cookies: CookieCache,
}

/// Most finished-call records kept in memory for [`Relay::recent_records`].
const RECENT_RECORDS: usize = 1000;

pub(crate) struct State {
    control: Mutex<Control>,
    records: Mutex<Option<RecordSink>>,
    recent: Mutex<VecDeque<SessionRecord>>,
    /// Where teardown notifications go; a reload may change it.
    notify: Mutex<Option<NotifyTarget>>,
    shutdown: watch::Sender<bool>,
    forward_stats: Arc<forward::ForwardStats>,
    /// Offer-to-first-answer times, seconds.
    call_setup: mediagate_ops::metrics::Histogram,
    /// Every finished call's record, for listeners such as the dispatcher link.
    ended: tokio::sync::broadcast::Sender<Arc<SessionRecord>>,
    /// RTP and RTCP bytes of finished calls, so live plus finished is monotonic.
    ended_bytes: std::sync::atomic::AtomicU64,
}

fn lock_any<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    fn now(&self) -> Now {
        control::read_clock()
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        lock_any(&self.control)
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Logs, stores and (for timeouts) notifies about finished calls.
    fn finish(&self, ended: Vec<Ended>) {
        for e in ended {
            let r = &e.record;
            tracing::info!(
                call = %r.call_id,
                "relay: call {} ended ({}), {} ms, {} packets relayed",
                r.call_id,
                r.reason,
                r.duration_ms(),
                r.total_packets()
            );
            if e.reason.needs_notification() {
                if let Some(target) = lock_any(&self.notify).clone() {
                    let body = notify::terminate_body(&r.call_id, &r.from_tag, &r.to_tag);
                    let call_id = r.call_id.clone();
                    tokio::spawn(async move {
                        match notify::send(&target, &body).await {
                            Ok(200..=299) => {}
                            Ok(code) => tracing::warn!(
                                call = %call_id,
                                "relay: teardown notification for {call_id} got HTTP {code}"
                            ),
                            Err(err) => tracing::warn!(
                                call = %call_id,
                                "relay: teardown notification for {call_id} failed: {err}"
                            ),
                        }
                    });
                }
            }
            self.ended_bytes
                .fetch_add(record_bytes(&e.record), Ordering::Relaxed);
            // Nobody listening is fine.
            let _ = self.ended.send(Arc::new(e.record.clone()));
            {
                let mut recent = lock_any(&self.recent);
                if recent.len() >= RECENT_RECORDS {
                    recent.pop_front();
                }
                recent.push_back(e.record.clone());
            }
            if let Some(sink) = lock_any(&self.records).as_ref() {
                let call_id = e.record.call_id.clone();
                if !sink.send(e.record) {
                    tracing::error!(
                        call = %call_id,
                        "relay: the records writer has closed; the record of call {call_id} is not stored"
                    );
                }
            }
        }
    }
}

fn record_bytes(r: &SessionRecord) -> u64 {
    r.streams
        .iter()
        .flat_map(|s| [&s.caller, &s.callee])
        .map(|l| l.bytes + l.rtcp_bytes)
        .sum()
}

/// A running relay.
pub struct Relay {
    state: Arc<State>,
    ng_udp: Vec<SocketAddr>,
    ng_tcp: Vec<SocketAddr>,
    /// Media addresses as advertised in SDP.
    advertised: Vec<IpAddr>,
    /// When it started, for the uptime monitoring reports.
    started: std::time::Instant,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("ng_udp", &self.ng_udp)
            .field("ng_tcp", &self.ng_tcp)
            .finish()
    }
}

impl Relay {
    /// Binds the listeners and media pools and starts serving. Must run inside a tokio
    /// runtime.
    pub async fn start(config: EngineConfig) -> Result<Self, StartError> {
        if config.media.is_empty() {
            return Err(StartError::NoMediaAddress);
        }
        // Four sockets per stream: the default soft limit of 1,024 would cap the relay
        // at about 250 streams.
        if let Err(e) = mediagate_udp::raise_nofile_limit() {
            tracing::warn!("relay: cannot raise the open-file limit: {e}");
        }
        let notify = config.notify_url.as_ref().map(NotifyTarget::from);
        let mut udp = Vec::new();
        for &addr in &config.ng_udp {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| StartError::Listen {
                    proto: "UDP",
                    addr,
                    source,
                })?;
            // Before anything can arrive: a datagram queued without the option carries
            // no local address, and its reply could leave from another one.
            let pktinfo = crate::ng_listener::wildcard_pktinfo(&socket, "relay");
            udp.push((socket, pktinfo));
        }
        let mut tcp = Vec::new();
        for &addr in &config.ng_tcp {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen {
                    proto: "TCP",
                    addr,
                    source,
                })?;
            tcp.push(listener);
        }
        let now = control::read_clock();
        let threads = match config.forward_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8)),
            n => n,
        };
        // Port choice must be unguessable from outside, so the pool's generator is seeded
        // by the OS; a failing getrandom(2) stops the start rather than degrade to a
        // guessable seed.
        let seed = getrandom::u64().map_err(|e| StartError::Forwarding(e.into()))?;
        let kernel = load_kernel_path(config.forward_io)?;
        let env = SocketEnv::new(
            &config.media,
            config.ports,
            config.port_quarantine,
            seed,
            sockets::ForwardOptions {
                threads,
                coalesce: config.forward_coalesce,
                io: config.forward_io,
                scheduling: config.forward_scheduling,
                socket_buffer: 0,
            },
            kernel,
        )
        .map_err(StartError::Forwarding)?;
        let forward_stats = env.stats();
        let (shutdown, _) = watch::channel(false);
        let state = Arc::new(State {
            control: Mutex::new(Control {
                registry: Registry::new(config.options.clone(), now),
                env,
                cookies: CookieCache::new(now.at, 100_000),
            }),
            records: Mutex::new(config.records),
            recent: Mutex::new(VecDeque::new()),
            notify: Mutex::new(notify),
            shutdown,
            forward_stats,
            // 1 ms to ~65 s: a SIP call's answer waits for a person to pick up.
            call_setup: mediagate_ops::metrics::Histogram::new(
                mediagate_ops::metrics::exponential_buckets(0.001, 2.0, 17),
            ),
            ended: tokio::sync::broadcast::channel(4096).0,
            ended_bytes: std::sync::atomic::AtomicU64::new(0),
        });
        let ng_udp = udp
            .iter()
            .filter_map(|(s, _)| s.local_addr().ok())
            .collect();
        let ng_tcp = tcp.iter().filter_map(|s| s.local_addr().ok()).collect();
        for (socket, pktinfo) in udp {
            tokio::spawn(crate::ng_listener::serve_udp(
                Arc::clone(&state),
                socket,
                pktinfo,
                state.shutdown_signal(),
            ));
        }
        for listener in tcp {
            tokio::spawn(crate::ng_listener::serve_tcp(
                Arc::clone(&state),
                listener,
                state.shutdown_signal(),
            ));
        }
        tokio::spawn(tick(Arc::clone(&state), config.tick));
        let mut advertised: Vec<IpAddr> = config.media.iter().map(|(_, a)| *a).collect();
        advertised.dedup();
        Ok(Self {
            state,
            ng_udp,
            ng_tcp,
            advertised,
            started: std::time::Instant::now(),
        })
    }

    /// The media addresses written into SDP (the advertised ones).
    pub fn media_addresses(&self) -> &[IpAddr] {
        &self.advertised
    }

    /// Time since the relay started (MediaProxy's `uptime` in `summary`).
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The Call-IDs of calls not yet deleted, sorted.
    pub fn call_ids(&self) -> Vec<String> {
        self.state.lock().registry.active_call_ids()
    }

    /// Every call's record as it ends (with its end reason), from now on. A listener
    /// that falls more than 4,096 records behind misses the oldest (and is told so by
    /// the channel).
    pub fn subscribe_ended(&self) -> tokio::sync::broadcast::Receiver<Arc<SessionRecord>> {
        self.state.ended.subscribe()
    }

    /// RTP and RTCP bytes relayed since start, finished and running calls. Walks
    /// every running call: for periodic reports, not per packet.
    pub fn relayed_bytes(&self) -> u64 {
        let now = self.state.now();
        let live: u64 = self
            .state
            .lock()
            .registry
            .live_calls(now)
            .iter()
            .map(|(r, _)| record_bytes(r))
            .sum();
        live + self.state.ended_bytes.load(Ordering::Relaxed)
    }

    /// Resolves when the relay has stopped (after [`Relay::shutdown`]).
    pub async fn stopped(&self) {
        let mut signal = self.state.shutdown_signal();
        while !*signal.borrow_and_update() {
            if signal.changed().await.is_err() {
                return;
            }
        }
    }

    /// The bound UDP `ng` addresses (with the real port when 0 was asked).
    pub fn ng_udp_addrs(&self) -> &[SocketAddr] {
        &self.ng_udp
    }

    /// The bound TCP `ng` addresses.
    pub fn ng_tcp_addrs(&self) -> &[SocketAddr] {
        &self.ng_tcp
    }

    /// Runs one `ng` command dictionary as the listeners would (same registry, same
    /// records and metrics) and returns the reply dictionary. For transports the
    /// engine does not own, such as the dispatcher link; those number their own
    /// requests, so retransmissions are theirs to answer (no cookie cache here).
    pub fn handle_ng(&self, body: mediagate_ng::bencode::Value) -> mediagate_ng::bencode::Value {
        control::run(&self.state, Ok(body))
    }

    /// Whether new calls are refused (after [`Relay::drain`] or during shutdown).
    pub fn is_draining(&self) -> bool {
        self.state.lock().registry.is_draining()
    }

    /// Refuse new calls from now on (SIP proxies fail over); running calls go on.
    pub fn drain(&self) {
        self.state.lock().registry.set_draining(true);
    }

    /// Calls not yet deleted.
    pub fn active_calls(&self) -> usize {
        self.state.lock().registry.active_call_count()
    }

    /// Applies a reloaded config to what starts from now on: new calls get
    /// `config.options` and ports from `config.ports`, and calls ending from now on are
    /// notified to `config.notify_url`. Running calls keep their options and ports.
    /// Listeners, media addresses, the quarantine, forwarding threads and the records
    /// sink are not looked at (they need a restart). When the new range is larger than
    /// the forwarding threads were sized for, the range stays as it was (the rest is
    /// applied) and the error says so.
    pub fn reload(&self, config: &EngineConfig) -> Result<(), sockets::RangeTooLarge> {
        *lock_any(&self.state.notify) = config.notify_url.as_ref().map(NotifyTarget::from);
        let mut control = self.state.lock();
        control.registry.set_options(config.options.clone());
        let (low, high) = config.ports;
        control.env.set_port_range(low, high)
    }

    /// Datagrams forwarded since start, relay-wide.
    pub fn forwarded_packets(&self) -> u64 {
        self.state.forward_stats.forwarded.load(Ordering::Relaxed)
    }

    /// Forwarding threads, and how many of them run the io_uring loop (the rest wait
    /// with epoll because the kernel refused io_uring, or as configured).
    pub fn forwarding_threads(&self) -> (usize, usize) {
        let control = self.state.lock();
        (control.env.threads(), control.env.io_uring_threads())
    }

    /// Why the forwarding threads run without their configured scheduling policy, if
    /// they do.
    pub fn forwarding_scheduling_refused(&self) -> Option<String> {
        self.state
            .lock()
            .env
            .scheduling_refused()
            .map(str::to_owned)
    }

    /// The interfaces the eBPF fast path is attached to, or `None` when media is
    /// forwarded in user space only.
    pub fn kernel_forwarding(&self) -> Option<Vec<String>> {
        self.state.lock().env.kernel().map(|k| k.interfaces())
    }

    /// Datagrams the eBPF fast path forwarded since start, as read so far (the
    /// engine reads the kernel's counters every tick and when a stream ends).
    pub fn kernel_forwarded_packets(&self) -> u64 {
        self.state
            .lock()
            .env
            .kernel()
            .map_or(0, |k| k.forwarded.load(Ordering::Relaxed))
    }

    /// Streams with running forwarders.
    pub fn running_streams(&self) -> usize {
        self.state.lock().env.running_streams()
    }

    /// Publishes the relay's counters into `metrics` as `mediagate_relay_...`: read
    /// from the engine's own counters at each scrape, so forwarding does no extra work.
    /// After the relay stops they are no longer reported.
    pub fn publish_metrics(&self, metrics: &mediagate_ops::metrics::Metrics) {
        let collector = metrics::RelayMetrics::new(Arc::downgrade(&self.state));
        metrics.register("relay", |r| r.collect(collector));
    }

    /// Every call now, as its record would read if it ended now (reason empty), with
    /// whether it was answered; sorted by Call-ID. For the admin API.
    pub fn live_calls(&self) -> Vec<(SessionRecord, bool)> {
        let now = self.state.now();
        self.state.lock().registry.live_calls(now)
    }

    /// Ends the call `call_id` now with reason `admin` and hands its record to the
    /// writer. False when no such call exists.
    pub fn end_call(&self, call_id: &str) -> bool {
        let now = self.state.now();
        let (found, ended) = {
            let mut control = self.state.lock();
            let control = &mut *control;
            let found = control
                .registry
                .end_by_operator(call_id, now, &mut control.env);
            (found, control.registry.take_ended())
        };
        self.state.finish(ended);
        found
    }

    /// The latest finished-call records (at most 1,000), oldest first.
    pub fn recent_records(&self) -> Vec<SessionRecord> {
        lock_any(&self.state.recent).iter().cloned().collect()
    }

    /// Graceful shutdown: drain, wait until no call is active or `max_wait` passes or
    /// `hurry` completes (a second SIGTERM), end the remaining calls with reason
    /// `shutdown`, stop every task and hand the records to the writer. Returns how many calls had to
    /// be cut.
    pub async fn shutdown(
        &self,
        max_wait: Duration,
        hurry: impl std::future::Future<Output = ()>,
    ) -> usize {
        self.drain();
        let deadline = tokio::time::Instant::now() + max_wait;
        tokio::pin!(hurry);
        while self.active_calls() > 0 {
            tokio::select! {
                _ = &mut hurry => break,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        self.stop_now()
    }

    /// Ends every call now (reason `shutdown`), stops the tasks and hands the records to
    /// the writer.
    /// Returns how many calls were cut (calls in their delete delay are not counted).
    pub(crate) fn stop_now(&self) -> usize {
        let now = control::read_clock();
        let (cut, ended) = {
            let mut control = self.state.lock();
            let cut = control.registry.active_call_count();
            let control = &mut *control;
            control
                .registry
                .end_all(now, EndReason::Shutdown, &mut control.env);
            (cut, control.registry.take_ended())
        };
        self.state.finish(ended);
        let _ = self.state.shutdown.send(true);
        // The relay's handle on the writer goes; the binary closes the writer itself
        // once every role has stopped.
        lock_any(&self.state.records).take();
        cut
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !*self.state.shutdown.borrow() {
            self.stop_now();
        }
    }
}

/// The eBPF fast path as `forward_io` asks: loaded for `auto` and `ebpf`, a failure
/// fatal for `ebpf` and one log line for `auto`.
fn load_kernel_path(io: forward::ForwardIo) -> Result<Option<Arc<kernel::KernelPath>>, StartError> {
    use forward::ForwardIo;
    if !matches!(io, ForwardIo::Auto | ForwardIo::Ebpf) {
        return Ok(None);
    }
    match mediagate_ebpf::FastPath::load() {
        Ok(fast) => Ok(Some(Arc::new(kernel::KernelPath::new(fast)))),
        Err(e) if io == ForwardIo::Ebpf => Err(StartError::Ebpf(e)),
        Err(e) => {
            tracing::info!("relay: no eBPF fast path ({e}); media is forwarded in user space");
            Ok(None)
        }
    }
}

async fn tick(state: Arc<State>, every: Duration) {
    let mut shutdown = state.shutdown_signal();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        let now = state.now();
        let ended = {
            let mut control = state.lock();
            let control = &mut *control;
            // The media timeout must see what the kernel forwarded.
            control.env.sync_kernel();
            control.registry.poll(now, &mut control.env);
            control.registry.take_ended()
        };
        state.finish(ended);
    }
}

#[cfg(test)]
mod from_config_tests {
    use super::*;
    use crate::latch::LatchPolicy;
    use mediagate_ng::request::Learning;

    fn engine_for(text: &str) -> EngineConfig {
        let config = mediagate_config::parse_config(text).expect("valid config");
        EngineConfig::from_config(&config.relay)
    }

    #[test]
    fn carries_every_relay_key_through() {
        let e = engine_for(
            r#"
[relay]
ng_listen_udp = ["127.0.0.1:2300"]
ng_listen_tcp = ["127.0.0.1:2301"]
ports = "40000-40099"
media_timeout = "45s"
on_hold_timeout = "2h"
delete_delay = "7s"
teardown_notify_url = "http://127.0.0.1:5060/RPC"
port_quarantine = "1m"
offer_timeout = "90s"
max_sessions = 500
max_media_per_call = 6
learning = "immediate"
forward_threads = 3
forward_coalesce = "250us"
forward_io = "epoll"
forward_scheduling = "rr:20"
media_address = [{ address = "192.0.2.1", advertised = "203.0.113.1" }]

[relay.latch]
learn_window = "2s"
learn_packets = 7
relatch_quiet = "300ms"
relatch_max_seq_gap = 1000
"#,
        );
        assert_eq!(e.ng_udp, ["127.0.0.1:2300".parse().unwrap()]);
        assert_eq!(e.ng_tcp, ["127.0.0.1:2301".parse().unwrap()]);
        assert_eq!(
            e.media,
            [("192.0.2.1".parse().unwrap(), "203.0.113.1".parse().unwrap())]
        );
        assert_eq!(e.ports, (40000, 40099));
        assert_eq!(e.port_quarantine, Duration::from_secs(60));
        assert_eq!(
            e.notify_url.as_ref().map(HttpUrl::as_str),
            Some("http://127.0.0.1:5060/RPC")
        );
        // Where records go is the binary's choice (mediagate_ops::store::StoreTarget).
        assert!(e.records.is_none());
        assert_eq!(e.forward_threads, 3);
        assert_eq!(
            e.forward_scheduling,
            mediagate_config::ThreadScheduling::RoundRobin { priority: 20 }
        );
        assert_eq!(e.forward_coalesce, Duration::from_micros(250));
        assert_eq!(e.forward_io, forward::ForwardIo::Epoll);
        let o = &e.options;
        assert_eq!(o.media_timeout, Duration::from_secs(45));
        assert_eq!(o.on_hold_timeout, Duration::from_secs(7200));
        assert_eq!(o.delete_delay, Duration::from_secs(7));
        assert_eq!(o.offer_timeout, Duration::from_secs(90));
        assert_eq!(o.max_sessions, 500);
        assert_eq!(o.max_media_per_call, 6);
        assert_eq!(o.learning, Learning::Immediate);
        assert_eq!(
            o.latch,
            LatchPolicy {
                learn_window: Duration::from_secs(2),
                learn_packets: 7,
                relatch_quiet: Duration::from_millis(300),
                relatch_max_seq_gap: 1000,
            }
        );
    }

    #[test]
    fn the_config_defaults_are_the_engine_defaults() {
        let e = engine_for("");
        let o = &e.options;
        let d = RelayOptions::default();
        assert_eq!(o.media_timeout, d.media_timeout);
        assert_eq!(o.on_hold_timeout, d.on_hold_timeout);
        assert_eq!(o.offer_timeout, d.offer_timeout);
        assert_eq!(o.delete_delay, d.delete_delay);
        assert_eq!(o.latch, LatchPolicy::default());
        assert_eq!(o.learning, d.learning);
        assert_eq!(o.max_sessions, d.max_sessions);
        assert_eq!(o.max_media_per_call, d.max_media_per_call);
        assert_eq!(e.port_quarantine, Duration::from_secs(10));
        assert_eq!(e.forward_threads, 0);
        assert_eq!(e.forward_coalesce, Duration::from_micros(300));
        assert_eq!(e.forward_io, forward::ForwardIo::Auto);
    }

    #[test]
    fn every_learning_mode_maps() {
        for (text, mode) in [
            ("heuristic", Learning::Heuristic),
            ("delayed", Learning::Heuristic),
            ("immediate", Learning::Immediate),
            ("off", Learning::Off),
        ] {
            let e = engine_for(&format!("[relay]\nlearning = \"{text}\"\n"));
            assert_eq!(e.options.learning, mode, "{text}");
        }
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    fn engine(ports: &str) -> EngineConfig {
        let text = format!(
            "[relay]\nenabled = true\nng_listen_udp = [\"127.0.0.1:0\"]\nmedia_address = [{{ address = \"127.0.0.1\" }}]\nports = \"{ports}\"\nforward_threads = 1\nforward_io = \"epoll\"\n"
        );
        let config = mediagate_config::parse_config(&text).expect("valid config");
        EngineConfig::from_config(&config.relay)
    }

    #[tokio::test]
    async fn a_range_no_larger_than_at_start_is_taken_and_a_larger_one_refused() {
        let relay = Relay::start(engine("41000-41019")).await.unwrap();
        relay.reload(&engine("43000-43009")).unwrap();
        let mut bigger = engine("43000-43099");
        bigger.options.max_sessions = 7;
        let err = relay.reload(&bigger).unwrap_err();
        assert_eq!(err.ports, 100);
        assert_eq!(err.sized, 20);
        assert!(err.to_string().contains("needs a restart"), "{err}");
        // The rest of that reload still applies.
        assert_eq!(relay.state.lock().registry.options().max_sessions, 7);
    }
}
