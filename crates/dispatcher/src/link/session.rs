//! One relay's connection on the dispatcher: handshake, hello, registration under a
//! stable id, then messages in and out until the link drops.
//!
//! Before a peer has shown a certificate it costs us a handshake slot for up to
//! [`HANDSHAKE_WAIT`]; one address may hold at most [`MAX_HANDSHAKES_PER_IP`] of the
//! [`MAX_HANDSHAKES`] slots, so a host that opens connections and stalls cannot keep
//! the relays of other hosts out. Its extra connections are closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mediagate_link::conn::{exchange_hello, send, LinkError, MessageReader};
use mediagate_link::liveness::{Verdict, Watchdog};
use mediagate_link::tls::{check_peer, explain_handshake_error};
use mediagate_link::wire::{Hello, Message, Side, MINOR_STATS};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::outbox::Outbox;
use super::{Linked, Shared};
use crate::pool::{RelayEvent, RelayId, RelayState, RelayView};

/// Longest a relay may take over its TLS handshake and its hello.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, at most.
const MAX_HANDSHAKES: usize = 64;
/// Handshakes in progress at once from one address, at most: a relay has one.
const MAX_HANDSHAKES_PER_IP: usize = 8;
/// Most Call-IDs one relay may list (`sessions`), a bound on what a relay can make
/// the dispatcher hold.
const MAX_LISTED_CALLS: usize = 1_000_000;
/// Most bytes of call records one `stats` answer may hold (about 1,000 bytes a
/// call, for as many calls as a relay may list).
const MAX_STATS_BYTES: usize = 1024 * 1024 * 1024;
/// How often a link's watchdog is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(500);

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shared: Arc<Shared>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let turns = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let per_ip: PerIp = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("dispatcher: cannot accept a relay connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(own_turn) = PeerTurn::take(&per_ip, peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Some((reader, writer, hello, name)) = handshake(acceptor, tcp, peer, &shared).await
            else {
                return;
            };
            drop(own_turn);
            drop(turn);
            serve(shared, reader, writer, hello, name, peer).await;
        });
    }
}

/// Handshakes in progress per peer address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One of a peer address's handshake slots, given back when dropped.
struct PeerTurn {
    per_ip: PerIp,
    ip: IpAddr,
}

impl PeerTurn {
    /// A slot for `ip`, or `None` (logged when `ip` first reaches the cap) when it
    /// holds [`MAX_HANDSHAKES_PER_IP`] already.
    fn take(per_ip: &PerIp, ip: IpAddr) -> Option<Self> {
        let mut counts = per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= MAX_HANDSHAKES_PER_IP {
            return None;
        }
        *count += 1;
        if *count == MAX_HANDSHAKES_PER_IP {
            tracing::warn!(
                peer = %ip,
                "dispatcher: {ip} has {MAX_HANDSHAKES_PER_IP} relay handshakes in progress; closing its further connections until one ends"
            );
        }
        Some(Self {
            per_ip: Arc::clone(per_ip),
            ip,
        })
    }
}

impl Drop for PeerTurn {
    fn drop(&mut self) {
        let mut counts = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

type Reader = MessageReader<tokio::io::ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>>;
pub(super) type Writer = tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>;

/// TLS, passport and hello; every refusal is logged with the peer's address.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(Reader, Writer, Hello, String)> {
    let tls = match tokio::time::timeout(HANDSHAKE_WAIT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer, "dispatcher: refused relay connection from {peer}: {}", explain_handshake_error(&e));
            return None;
        }
        Err(_) => {
            tracing::warn!(peer = %peer, "dispatcher: refused relay connection from {peer}: TLS handshake timed out");
            return None;
        }
    };
    let passport = shared
        .passport
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let checked = check_peer(tls.get_ref().1.peer_certificates(), passport.as_ref());
    let (read, mut writer) = tokio::io::split(tls);
    let mut reader = MessageReader::new(read);
    let peer_cert = match checked {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(peer = %peer, "dispatcher: refused relay connection from {peer}: {why}");
            let _ = send(&mut writer, &Message::Refuse { reason: why }).await;
            return None;
        }
    };
    if peer_cert.cn.is_empty() {
        let why = format!(
            "the certificate subject \"{}\" has no CN to name the relay by",
            peer_cert.subject
        );
        tracing::warn!(peer = %peer, "dispatcher: refused relay connection from {peer}: {why}");
        let _ = send(&mut writer, &Message::Refuse { reason: why }).await;
        return None;
    }
    let ours = Hello::ours(Side::Dispatcher, &shared.config.name);
    match exchange_hello(&mut reader, &mut writer, &ours, Side::Relay, HANDSHAKE_WAIT).await {
        Ok(hello) => Some((reader, writer, hello, peer_cert.cn)),
        Err(e) => {
            tracing::warn!(peer = %peer, relay = %peer_cert.cn, "dispatcher: refused relay {} from {peer}: {e}", peer_cert.cn);
            None
        }
    }
}

/// Registers the relay under its stable id, replacing an older connection of the same
/// name; returns its id and this connection's generation.
fn register(
    shared: &Shared,
    hello: &Hello,
    name: &str,
    outbox: Arc<Outbox<Writer>>,
) -> (RelayId, u64, bool) {
    let mut registry = shared.lock();
    let next = RelayId(registry.ids.len() as u64 + 1);
    let id = *registry.ids.entry(name.to_owned()).or_insert(next);
    registry.next_generation += 1;
    let generation = registry.next_generation;
    let replaced = registry.linked.insert(
        id,
        Linked {
            view: RelayView {
                id,
                name: name.to_owned(),
                addresses: Vec::new(),
                state: RelayState::Active,
                sessions: 0,
                bps: 0,
                // Each connection starts its own range, so a reconnect is a new report.
                report: Some(generation << 32),
            },
            generation,
            outbox,
            pending: HashMap::new(),
            next_seq: 0,
            listing: Vec::new(),
            draining: false,
            overloaded: false,
            watchdog: Watchdog::new(
                Instant::now(),
                shared.config.silence_limit,
                shared.config.recover,
            ),
            answers_stats: hello.minor_at_least(MINOR_STATS),
            stats_waiting: HashMap::new(),
        },
    );
    // The old connection's pending commands fail as Gone when their senders drop here.
    (id, generation, replaced.is_some())
}

async fn serve(
    shared: Arc<Shared>,
    mut reader: Reader,
    writer: Writer,
    hello: Hello,
    name: String,
    peer: SocketAddr,
) {
    let outbox = Outbox::new(writer);
    let (id, generation, replaced) = register(&shared, &hello, &name, Arc::clone(&outbox));
    if replaced {
        shared.emit(RelayEvent::Disconnected { relay: id });
    }
    tracing::info!(
        relay = %name,
        "dispatcher: relay {name} linked from {peer} (id {}, link {}.{}, {})",
        id.0, hello.version.0, hello.version.1, hello.software
    );
    let failed = outbox.failed();
    tokio::pin!(failed);
    let mut watch = tokio::time::interval(WATCH_EVERY);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            message = reader.next() => match message {
                Ok(m) => {
                    if let Err(e) = handle(&shared, id, generation, &outbox, m) {
                        break e;
                    }
                }
                Err(e) => break e,
            },
            e = &mut failed => break e,
            _ = watch.tick() => {
                if let Some(e) = check_watchdog(&shared, id, generation) {
                    break e;
                }
            }
        }
    };
    outbox.close();
    let mine = {
        let mut registry = shared.lock();
        let mine = registry
            .linked
            .get(&id)
            .is_some_and(|l| l.generation == generation);
        if mine {
            registry.linked.remove(&id);
        }
        mine
    };
    if mine {
        tracing::warn!(relay = %name, "dispatcher: relay {name} ({peer}) disconnected: {why}");
        shared.emit(RelayEvent::Disconnected { relay: id });
    } else {
        tracing::info!(relay = %name, "dispatcher: an older link of relay {name} ({peer}) closed: {why}");
    }
}

fn check_watchdog(shared: &Shared, id: RelayId, generation: u64) -> Option<LinkError> {
    let registry = shared.lock();
    let Some(linked) = registry
        .linked
        .get(&id)
        .filter(|l| l.generation == generation)
    else {
        return Some(LinkError::Protocol(
            "replaced by a newer link of the same relay".into(),
        ));
    };
    match linked.watchdog.poll(Instant::now()) {
        Verdict::Alive(_) => None,
        Verdict::Silent(d) => Some(LinkError::Protocol(format!(
            "no ping for {} s",
            d.as_secs()
        ))),
        Verdict::NotRecovered(d) => Some(LinkError::Protocol(format!(
            "a command timed out and no ping came in the {} s since",
            d.as_secs()
        ))),
    }
}

fn handle(
    shared: &Shared,
    id: RelayId,
    generation: u64,
    outbox: &Arc<Outbox<Writer>>,
    message: Message,
) -> Result<(), LinkError> {
    let mut registry = shared.lock();
    let Some(linked) = registry
        .linked
        .get_mut(&id)
        .filter(|l| l.generation == generation)
    else {
        return Err(LinkError::Protocol(
            "replaced by a newer link of the same relay".into(),
        ));
    };
    match message {
        Message::Ping { seq } => {
            linked.watchdog.on_ping(Instant::now());
            linked.refresh_state();
            if outbox.try_send(&Message::Pong { seq }).is_err() {
                return Err(LinkError::Protocol(
                    "the relay does not read what we send".into(),
                ));
            }
        }
        Message::Status(status) => {
            linked.view.addresses = status
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            linked.view.sessions = status.sessions;
            linked.view.report = linked.view.report.map(|n| n.wrapping_add(1));
            linked.view.bps = status.bps;
            if status.draining && !linked.draining {
                tracing::info!(relay = %linked.view.name, "dispatcher: relay {} is halting: no new calls for it", linked.view.name);
            }
            linked.draining = status.draining;
            linked.overloaded = false;
            linked.refresh_state();
        }
        Message::Reply { seq, body } => {
            // A reply after its command gave up (or a made-up seq) has no taker.
            if let Some(waiter) = linked.pending.remove(&seq) {
                let _ = waiter.send(body);
            }
        }
        Message::Sessions { calls, more } => {
            if linked.listing.len() + calls.len() > MAX_LISTED_CALLS {
                return Err(LinkError::Protocol(format!(
                    "the relay lists more than {MAX_LISTED_CALLS} calls"
                )));
            }
            linked.listing.extend(calls);
            if !more {
                let calls = std::mem::take(&mut linked.listing);
                drop(registry);
                shared.emit(RelayEvent::Connected { relay: id, calls });
            }
        }
        Message::Ended {
            call_id,
            reason,
            record,
        } => {
            drop(registry);
            let stats = serde_json::from_str(&record).unwrap_or(serde_json::Value::String(record));
            shared.emit(RelayEvent::Ended {
                relay: id,
                call_id,
                reason,
                stats,
            });
        }
        Message::Stats(mut stats) => {
            // An answer nobody waits for any more (given up, or a made-up seq) is
            // dropped, as a late reply is.
            let Some(wait) = linked.stats_waiting.get_mut(&stats.seq) else {
                return Ok(());
            };
            wait.bytes += stats.calls.iter().map(String::len).sum::<usize>();
            if wait.calls.len() + stats.calls.len() > MAX_LISTED_CALLS
                || wait.bytes > MAX_STATS_BYTES
            {
                return Err(LinkError::Protocol(format!(
                    "the relay's statistics hold more than {MAX_LISTED_CALLS} calls or {MAX_STATS_BYTES} bytes"
                )));
            }
            wait.calls.append(&mut stats.calls);
            if !stats.more {
                if let Some(wait) = linked.stats_waiting.remove(&stats.seq) {
                    stats.calls = wait.calls;
                    let _ = wait.done.send(stats);
                }
            }
        }
        Message::Refuse { reason } => {
            return Err(LinkError::Protocol(format!(
                "the relay closed the link: {reason}"
            )));
        }
        other @ (Message::Hello(_)
        | Message::Pong { .. }
        | Message::Request { .. }
        | Message::ListSessions
        | Message::StatsRequest { .. }) => {
            return Err(LinkError::Protocol(format!(
                "the relay sent {}, which only a dispatcher sends or only once",
                other.kind()
            )));
        }
    }
    Ok(())
}
