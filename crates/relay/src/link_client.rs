//! The relay's end of the dispatcher link: one task per configured dispatcher that
//! connects over mutual TLS, says hello, reports the relay's status, Call-IDs and
//! every call that ended (with its record and reason, `deleted` included), pings, and
//! runs the `ng` commands it receives with [`Relay::handle_ng`] (protocol:
//! docs/dispatcher-link.md).
//!
//! What it does: resolves the dispatcher's name again on each attempt (every address
//! it resolves to is tried in turn), verifies the dispatcher's certificate against the
//! CA, the CRL and the passport (not against the host name: see
//! `mediagate_link::tls`), reconnects after a loss with back-off (1 s after the first
//! loss, doubling up to 10 s), pings every 10 s and drops the link after three pings
//! without a pong. A status goes out every few seconds and at once when the relay
//! starts draining (SIGTERM), so the dispatcher stops sending it new calls. Asked
//! for live statistics (link 1.1 `stats-request`), it answers with every running
//! call's record, its version, uptime and last measured bit rate.
//!
//! What it does not: queue `ended` reports while no link is up (the relay's own
//! records store keeps every call), or retry a command (the dispatcher does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_config::{DispatcherAddr, Passport};
use mediagate_link::conn::{exchange_hello, send, send_encoded, LinkError, MessageReader};
use mediagate_link::liveness::{Backoff, PingStep, Pinger, MAX_MISSED_PINGS, PING_INTERVAL};
use mediagate_link::tls::{check_peer, explain_handshake_error, server_name};
use mediagate_link::wire::{sessions_messages, stats_messages, Hello, Message, Side, Status};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio_rustls::TlsConnector;

use crate::engine::Relay;

/// How the relay links to dispatchers.
#[derive(Debug, Clone)]
pub struct LinkClientConfig {
    /// TLS client settings from the relay's `--tls-dir`.
    pub tls: Arc<ClientConfig>,
    /// Subject fields the dispatcher's certificate must have.
    pub passport: Option<Passport>,
    /// The relay's name in its hello (its certificate's CN).
    pub name: String,
    /// How often to ping.
    pub ping_interval: Duration,
    /// How often to report status when nothing changes.
    pub status_interval: Duration,
    /// First reconnection delay.
    pub backoff_first: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
}

impl LinkClientConfig {
    /// The defaults: ping every 10 s, status every 5 s, back-off 1 s to 10 s.
    pub fn new(tls: Arc<ClientConfig>, name: String) -> Self {
        Self {
            tls,
            passport: None,
            name,
            ping_interval: PING_INTERVAL,
            status_interval: Duration::from_secs(5),
            backoff_first: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Longest wait for TCP connect, TLS handshake and hello.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How often draining is looked at, so a SIGTERM reaches dispatchers quickly.
const DRAIN_CHECK: Duration = Duration::from_millis(250);

/// Starts one link task per dispatcher; they end when the relay stops.
pub fn spawn(relay: Arc<Relay>, dispatchers: &[DispatcherAddr], config: LinkClientConfig) {
    let config = Arc::new(config);
    for dispatcher in dispatchers {
        tokio::spawn(run(
            Arc::clone(&relay),
            dispatcher.clone(),
            Arc::clone(&config),
        ));
    }
}

async fn run(relay: Arc<Relay>, dispatcher: DispatcherAddr, config: Arc<LinkClientConfig>) {
    let mut backoff = Backoff::new(config.backoff_first, config.backoff_max);
    loop {
        let outcome = tokio::select! {
            _ = relay.stopped() => return,
            outcome = link_once(&relay, &dispatcher, &config, &mut backoff) => outcome,
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            dispatcher = %dispatcher,
            "relay: link to dispatcher {dispatcher}: {outcome}; retrying in {} s",
            delay.as_secs()
        );
        tokio::select! {
            _ = relay.stopped() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(dispatcher: &DispatcherAddr, config: &LinkClientConfig) -> Result<Tls, String> {
    // Resolved on every attempt: a dispatcher that moved is found again.
    let addrs: Vec<_> = tokio::net::lookup_host((dispatcher.host.as_str(), dispatcher.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", dispatcher.host))?
        .collect();
    let mut last = format!("{} resolves to no address", dispatcher.host);
    for addr in addrs {
        let tcp = match tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                last = format!("cannot connect to {addr}: {e}");
                continue;
            }
            Err(_) => {
                last = format!("connecting to {addr} timed out");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(Arc::clone(&config.tls));
        return match tokio::time::timeout(
            CONNECT_WAIT,
            connector.connect(server_name(&dispatcher.host), tcp),
        )
        .await
        {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(format!("{addr}: {}", explain_handshake_error(&e))),
            Err(_) => Err(format!("{addr}: TLS handshake timed out")),
        };
    }
    Err(last)
}

fn status(relay: &Relay, bps: u64) -> Message {
    Message::Status(Status {
        addresses: relay
            .media_addresses()
            .iter()
            .map(ToString::to_string)
            .collect(),
        draining: relay.is_draining(),
        sessions: relay.active_calls() as u64,
        bps,
    })
}

/// Runs one command from the dispatcher and appends its reply's frame to `out`. A
/// reply too large for a frame (a huge `list`) becomes an error reply: the command
/// fails, the link stays.
fn run_request(relay: &Relay, seq: u64, body: mediagate_ng::bencode::Value, out: &mut Vec<u8>) {
    let reply = Message::Reply {
        seq,
        body: relay.handle_ng(body),
    };
    if let Err(e) = reply.encode_into(out) {
        let body = mediagate_ng::reply::error(&format!(
            "the reply does not fit the dispatcher link: {}",
            e.reason
        ));
        // An error reply is small; should it fail all the same, the dispatcher's
        // timeout answers for it.
        let _ = Message::Reply { seq, body }.encode_into(out);
    }
}

/// One link's life: connect, hello, then serve until it breaks. Returns why it ended.
async fn link_once(
    relay: &Relay,
    dispatcher: &DispatcherAddr,
    config: &LinkClientConfig,
    backoff: &mut Backoff,
) -> String {
    // Subscribed before the Call-ID list is taken, so no call ends unseen between them.
    let mut ended = relay.subscribe_ended();
    let tls = match connect(dispatcher, config).await {
        Ok(tls) => tls,
        Err(e) => return e,
    };
    let peer = match check_peer(
        tls.get_ref().1.peer_certificates(),
        config.passport.as_ref(),
    ) {
        Ok(p) => p,
        Err(why) => return format!("refused the dispatcher: {why}"),
    };
    let (read, mut writer) = tokio::io::split(tls);
    let mut reader = MessageReader::new(read);
    let ours = Hello::ours(Side::Relay, &config.name);
    let hello = match exchange_hello(
        &mut reader,
        &mut writer,
        &ours,
        Side::Dispatcher,
        CONNECT_WAIT,
    )
    .await
    {
        Ok(h) => h,
        // With TLS 1.3 the dispatcher's verdict on our certificate arrives here.
        Err(LinkError::Io(e)) => return explain_handshake_error(&e),
        Err(e) => return e.to_string(),
    };
    let mut bytes_before = relay.relayed_bytes();
    // The rate measured over the last status interval, for `stats` answers too.
    let mut bps = 0;
    let mut measured_at = Instant::now();
    let mut first = vec![status(relay, 0)];
    first.extend(sessions_messages(relay.call_ids()));
    for m in &first {
        if let Err(e) = send(&mut writer, m).await {
            return e.to_string();
        }
    }
    tracing::info!(
        dispatcher = %dispatcher,
        "relay: linked to dispatcher {dispatcher} ({}, link {}.{}, {})",
        peer.cn, hello.version.0, hello.version.1, hello.software
    );
    backoff.reset();
    let mut pinger = Pinger::new(Instant::now(), config.ping_interval, MAX_MISSED_PINGS);
    let mut status_timer = tokio::time::interval(config.status_interval);
    status_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_timer.reset();
    let mut drain_check = tokio::time::interval(DRAIN_CHECK);
    let mut draining = relay.is_draining();
    let mut replies = Vec::with_capacity(16 * 1024);
    let result: Result<(), LinkError> = async {
        loop {
            let ping_at = tokio::time::Instant::from_std(pinger.next_at());
            tokio::select! {
                message = reader.next() => {
                    match message? {
                        Message::Request { seq, body } => {
                            // The commands read with this one run now too, and their
                            // replies leave in one write: under load the dispatcher
                            // sends commands in bursts, and a TLS record and system
                            // call per reply were a sixth of the relay's CPU.
                            replies.clear();
                            run_request(relay, seq, body, &mut replies);
                            let is_request = |m: &Message| matches!(m, Message::Request { .. });
                            let burst = loop {
                                match reader.next_buffered_if(is_request) {
                                    Ok(Some(Message::Request { seq, body })) => {
                                        run_request(relay, seq, body, &mut replies);
                                    }
                                    Ok(_) => break Ok(()),
                                    Err(e) => break Err(e),
                                }
                            };
                            // Replies to what ran go out before a broken stream ends
                            // the link.
                            send_encoded(&mut writer, &replies).await?;
                            burst?;
                        }
                        Message::Pong { seq } => pinger.on_pong(seq),
                        // Link 1.1: only a dispatcher that read our 1.1 hello asks.
                        Message::StatsRequest { seq } => {
                            let calls = relay
                                .live_calls()
                                .into_iter()
                                .map(|(record, _)| record.to_json().to_string())
                                .collect();
                            let (messages, left_out) = stats_messages(
                                seq,
                                env!("CARGO_PKG_VERSION"),
                                relay.uptime().as_secs(),
                                bps,
                                calls,
                            );
                            if left_out > 0 {
                                tracing::warn!(dispatcher = %dispatcher, "relay: {left_out} call record(s) too large for the link left out of the statistics for dispatcher {dispatcher}");
                            }
                            for m in &messages {
                                send(&mut writer, m).await?;
                            }
                        }
                        Message::ListSessions => {
                            for m in sessions_messages(relay.call_ids()) {
                                send(&mut writer, &m).await?;
                            }
                        }
                        Message::Refuse { reason } => {
                            return Err(LinkError::Protocol(format!("the dispatcher closed the link: {reason}")));
                        }
                        other => {
                            return Err(LinkError::Protocol(format!("the dispatcher sent {}, which only a relay sends or only once", other.kind())));
                        }
                    }
                }
                _ = tokio::time::sleep_until(ping_at) => {
                    match pinger.poll(Instant::now()) {
                        PingStep::Wait => {}
                        PingStep::Ping(seq) => send(&mut writer, &Message::Ping { seq }).await?,
                        PingStep::Dead => {
                            return Err(LinkError::Protocol(format!("{MAX_MISSED_PINGS} pings without a pong")));
                        }
                    }
                }
                _ = status_timer.tick() => {
                    let bytes = relay.relayed_bytes();
                    let secs = measured_at.elapsed().as_secs_f64().max(0.001);
                    bps = (bytes.saturating_sub(bytes_before) as f64 * 8.0 / secs) as u64;
                    bytes_before = bytes;
                    measured_at = Instant::now();
                    send(&mut writer, &status(relay, bps)).await?;
                }
                _ = drain_check.tick() => {
                    if relay.is_draining() != draining {
                        draining = !draining;
                        send(&mut writer, &status(relay, 0)).await?;
                    }
                }
                record = ended.recv() => match record {
                    // Every call, deleted ones too: the dispatcher accounts the
                    // cluster's calls from these records (a `delete` reply is no record).
                    Ok(record) => {
                        let m = Message::Ended {
                            call_id: record.call_id.clone(),
                            reason: record.reason.clone(),
                            record: record.to_json().to_string(),
                        };
                        send(&mut writer, &m).await?;
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(dispatcher = %dispatcher, "relay: {n} ended calls were not reported to dispatcher {dispatcher} (too many at once); their records are stored here");
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
    .await;
    match result {
        Ok(()) => "the relay stopped".to_owned(),
        Err(e) => format!("link lost: {e}"),
    }
}
