//! Relays linked to the dispatcher over mutual TLS ([`LinkPool`], the
//! [`RelayPool`](crate::pool::RelayPool) the front doors use in production).
//!
//! What it does: listens for relays (`--relays ADDR`, port 25060 by default), runs
//! each TLS handshake apart from the accept loop (bounded in time and number), checks
//! the relay's certificate against the CA, the CRL and the passport, exchanges hellos
//! (refusing another major version of the link protocol, docs/dispatcher-link.md),
//! then keeps the relay's [`RelayView`](crate::pool::RelayView) from its `status`
//! reports and pings, sends it `ng` commands with a per-link sequence number and a
//! deadline, and reports events. A relay's id is stable by its certificate's common
//! name for the life of the process, so a reconnecting relay keeps its calls.
//!
//! Relay states: a relay that reports draining, or answers a command with `ng`'s
//! overload reply, is `Halting` until its next `status` says otherwise; a command that
//! times out makes it `TimedOut` until it pings again, and if no ping comes within
//! the recover interval (60 s) the link is dropped; a relay silent (no ping) for three
//! ping intervals is dropped.
//!
//! Live statistics (link 1.1, [`RelayPool::live`]): a `stats-request` to a relay whose
//! hello announced 1.1 or later, its `stats` answer collected (bounded in calls and
//! bytes) until the deadline; a 1.0 relay is not asked and reads as unknown.
//!
//! What it does not: choose relays or keep the call map (the front doors do), or
//! retry a command on another relay.

mod outbox;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mediagate_config::Passport;
use mediagate_link::liveness::{Watchdog, MAX_MISSED_PINGS, PING_INTERVAL, RECOVER_INTERVAL};
use mediagate_link::tls::NodeTls;
use mediagate_link::wire::Message;
use mediagate_ng::bencode::Value;
use mediagate_relay::record::SessionRecord;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};

use self::outbox::Outbox;

use crate::pool::{
    CommandError, PoolFuture, RelayEvent, RelayId, RelayLive, RelayPool, RelayState, RelayView,
};

/// Default port relays connect to.
pub const DEFAULT_PORT: u16 = mediagate_config::DISPATCHER_LINK_PORT;

/// How the dispatcher's end of the link runs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Where relays connect (`--relays`).
    pub listen: SocketAddr,
    /// The dispatcher's TLS directory (`--tls-dir`), loaded.
    pub tls: Arc<NodeTls>,
    /// Subject fields a relay's certificate must have.
    pub passport: Option<Passport>,
    /// The dispatcher's name in its hello.
    pub name: String,
    /// A relay heard from (no ping) for this long is dropped: three ping intervals.
    pub silence_limit: Duration,
    /// A relay whose command timed out and that has not pinged since is dropped after
    /// this long.
    pub recover: Duration,
}

impl LinkConfig {
    /// The defaults: silence limit three 10 s ping intervals, recover interval 60 s.
    pub fn new(listen: SocketAddr, tls: Arc<NodeTls>) -> Self {
        Self {
            listen,
            tls,
            passport: None,
            name: "dispatcher".to_owned(),
            silence_limit: PING_INTERVAL * MAX_MISSED_PINGS,
            recover: RECOVER_INTERVAL,
        }
    }
}

/// Why the link could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkStartError {
    /// The listener could not be bound.
    #[error("cannot listen for relays on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings are unusable.
    #[error("dispatcher link TLS: {0}")]
    Tls(#[from] mediagate_link::tls::TlsError),
}

/// One connected relay.
struct Linked {
    view: RelayView,
    /// Which connection this is, so a replaced connection's end does not remove its
    /// successor.
    generation: u64,
    /// Where messages to the relay go; commands write from their own task.
    outbox: Arc<Outbox<session::Writer>>,
    pending: HashMap<u64, oneshot::Sender<Value>>,
    next_seq: u64,
    /// A `sessions` list arriving in several messages, so far.
    listing: Vec<String>,
    /// Reported draining in its last status.
    draining: bool,
    /// Answered a command with the overload reply since its last status.
    overloaded: bool,
    /// Its pings and command time-outs.
    watchdog: Watchdog,
    /// Its hello announced link 1.1 or later: it answers `stats-request`.
    answers_stats: bool,
    /// `stats` answers being collected, by request `seq`.
    stats_waiting: HashMap<u64, StatsWait>,
}

/// A `stats` answer arriving in several messages, so far.
struct StatsWait {
    calls: Vec<String>,
    bytes: usize,
    done: oneshot::Sender<mediagate_link::wire::Stats>,
}

impl Linked {
    fn refresh_state(&mut self) {
        self.view.state = if self.watchdog.is_timed_out() {
            RelayState::TimedOut
        } else if self.draining || self.overloaded {
            RelayState::Halting
        } else {
            RelayState::Active
        };
    }
}

#[derive(Default)]
struct Registry {
    ids: HashMap<String, RelayId>,
    linked: HashMap<RelayId, Linked>,
    next_generation: u64,
}

pub(crate) struct Shared {
    registry: Mutex<Registry>,
    /// The passport new links are checked against: `config.passport` until a reload
    /// replaces it.
    passport: Mutex<Option<Passport>>,
    events: broadcast::Sender<RelayEvent>,
    config: LinkConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: RelayEvent) {
        // No subscriber is fine: nobody is listening yet.
        let _ = self.events.send(event);
    }
}

/// The relays linked over TLS; see the module docs.
#[derive(Clone)]
pub struct LinkPool {
    shared: Arc<Shared>,
    local: SocketAddr,
}

impl std::fmt::Debug for LinkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkPool")
            .field("local", &self.local)
            .finish()
    }
}

impl LinkPool {
    /// Binds the listener and starts accepting relays (on the current runtime).
    pub async fn start(config: LinkConfig) -> Result<Self, LinkStartError> {
        let tls = config.tls.server_config()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| LinkStartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| LinkStartError::Listen {
                addr: config.listen,
                source,
            })?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            passport: Mutex::new(config.passport.clone()),
            events,
            config,
        });
        tokio::spawn(session::accept_loop(listener, tls, Arc::clone(&shared)));
        tracing::info!(
            "dispatcher: listening for relays on {local} (TLS, certificates from {})",
            shared.config.tls.dir().display()
        );
        Ok(Self { shared, local })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Checks relays that link from now on against `passport` (a reload); relays
    /// linked already stay linked.
    pub fn set_passport(&self, passport: Option<Passport>) {
        *self
            .shared
            .passport
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = passport;
    }

    /// Asks a relay for its Call-IDs again; the answer comes as
    /// [`RelayEvent::Connected`]. False when it is not connected.
    pub fn request_sessions(&self, relay: RelayId) -> bool {
        let registry = self.shared.lock();
        registry
            .linked
            .get(&relay)
            .is_some_and(|l| l.outbox.try_send(&Message::ListSessions).is_ok())
    }
}

/// Starts the link `[dispatcher]` asks for (`relay_listen`, `tls_dir`, `passport`), or
/// nothing when `relay_listen` is not set. `check-config` makes sure `tls_dir` comes
/// with it.
pub async fn start_from_config(
    d: &mediagate_config::DispatcherConfig,
) -> Result<Option<LinkPool>, crate::role::StartError> {
    let Some(listen) = &d.relay_listen else {
        return Ok(None);
    };
    let dir = d
        .tls_dir
        .as_ref()
        .ok_or(crate::role::StartError::LinkWithoutTlsDir)?;
    let tls = Arc::new(NodeTls::load(dir.get())?);
    let mut config = LinkConfig::new(listen.get().0, Arc::clone(&tls));
    config.name = tls.own_name();
    config.passport = d.passport.clone();
    Ok(Some(LinkPool::start(config).await?))
}

/// Whether an `ng` reply is the overload reply a draining or full relay gives a new
/// call (`load limit`, or an error with the session-limit reason for proxies that do
/// not announce load-limit support).
fn is_overload(reply: &Value) -> bool {
    match reply.get("result").and_then(Value::as_str) {
        Some("load limit") => true,
        Some("error") => {
            reply.get("error-reason").and_then(Value::as_str)
                == Some(mediagate_ng::reply::SESSION_LIMIT)
        }
        _ => false,
    }
}

impl RelayPool for LinkPool {
    fn relays(&self) -> Vec<RelayView> {
        let registry = self.shared.lock();
        let mut views: Vec<_> = registry.linked.values().map(|l| l.view.clone()).collect();
        views.sort_by_key(|v| v.id);
        views
    }

    fn command(
        &self,
        relay: RelayId,
        request: Value,
        deadline: Duration,
    ) -> PoolFuture<'_, Result<Value, CommandError>> {
        Box::pin(async move {
            let (seq, outbox, generation, reply) = {
                let mut registry = self.shared.lock();
                let linked = registry.linked.get_mut(&relay).ok_or(CommandError::Gone)?;
                linked.next_seq += 1;
                let seq = linked.next_seq;
                let (tx, rx) = oneshot::channel();
                linked.pending.insert(seq, tx);
                (seq, Arc::clone(&linked.outbox), linked.generation, rx)
            };
            // One deadline for queueing and answering both: a relay that stops reading
            // must not make a command take twice as long as the proxy was promised.
            let until = tokio::time::Instant::now() + deadline;
            let message = Message::Request { seq, body: request };
            let sent = tokio::time::timeout_at(until, outbox.send(&message)).await;
            let outcome = match sent {
                Ok(Ok(())) => match tokio::time::timeout_at(until, reply).await {
                    Ok(Ok(body)) => Ok(body),
                    Ok(Err(_)) => Err(CommandError::Gone),
                    Err(_) => Err(CommandError::Timeout),
                },
                Ok(Err(_)) => Err(CommandError::Gone),
                Err(_) => Err(CommandError::Timeout),
            };
            let halting = matches!(&outcome, Ok(body) if is_overload(body));
            let mut registry = self.shared.lock();
            if let Some(linked) = registry
                .linked
                .get_mut(&relay)
                .filter(|l| l.generation == generation)
            {
                note_outcome(linked, seq, &outcome, halting, deadline);
            }
            match outcome {
                Ok(_) if halting => Err(CommandError::Halting),
                other => other,
            }
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.shared.events.subscribe()
    }

    fn live(&self, relay: RelayId, deadline: Duration) -> PoolFuture<'_, Option<RelayLive>> {
        Box::pin(async move {
            let (seq, outbox, generation, answer) = {
                let mut registry = self.shared.lock();
                let linked = registry.linked.get_mut(&relay)?;
                if !linked.answers_stats {
                    return None;
                }
                linked.next_seq += 1;
                let seq = linked.next_seq;
                let (done, answer) = oneshot::channel();
                linked.stats_waiting.insert(
                    seq,
                    StatsWait {
                        calls: Vec::new(),
                        bytes: 0,
                        done,
                    },
                );
                (seq, Arc::clone(&linked.outbox), linked.generation, answer)
            };
            let asked = async {
                outbox.send(&Message::StatsRequest { seq }).await.ok()?;
                answer.await.ok()
            };
            let Ok(Some(stats)) = tokio::time::timeout(deadline, asked).await else {
                let mut registry = self.shared.lock();
                if let Some(linked) = registry
                    .linked
                    .get_mut(&relay)
                    .filter(|l| l.generation == generation)
                {
                    linked.stats_waiting.remove(&seq);
                }
                return None;
            };
            // Parsed here, outside the registry's lock: a relay's calls can be many.
            let calls = stats
                .calls
                .iter()
                .filter_map(|text| serde_json::from_str(text).ok())
                .filter_map(|json| SessionRecord::from_json_value(&json))
                .collect();
            Some(RelayLive {
                version: stats.version,
                uptime: stats.uptime,
                bps: stats.bps,
                calls,
            })
        })
    }
}

/// Updates a relay's state after a command: a time-out makes it `TimedOut`, an
/// overload reply `Halting`.
fn note_outcome(
    linked: &mut Linked,
    seq: u64,
    outcome: &Result<Value, CommandError>,
    halting: bool,
    deadline: Duration,
) {
    match outcome {
        Err(CommandError::Timeout) => {
            linked.pending.remove(&seq);
            if !linked.watchdog.is_timed_out() {
                tracing::warn!(
                    relay = %linked.view.name,
                    "dispatcher: relay {} did not answer within {} ms; no new calls until it pings again",
                    linked.view.name,
                    deadline.as_millis()
                );
            }
            linked
                .watchdog
                .on_command_timeout(std::time::Instant::now());
        }
        _ if halting => linked.overloaded = true,
        _ => {}
    }
    linked.refresh_state();
}

#[cfg(test)]
mod tests;
