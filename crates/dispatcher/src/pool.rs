//! The relays as the front doors see them: which are connected and how loaded, a way to
//! send one of them an `ng` command with a deadline, and the events relays report.
//!
//! The link (TLS connections from relays) implements [`RelayPool`]; the front doors
//! (`ng`, MediaProxy) and the relay choice use only this trait, so they can be tested
//! against relays running in the same process.
//!
//! What it does not: choose a relay (the front doors' selection does) or keep the
//! call-to-relay map.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use mediagate_ng::bencode::Value;
use mediagate_relay::record::SessionRecord;

/// One relay's identity for the life of the dispatcher process: a new connection from
/// the same relay name keeps its id, so calls stick to it across a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// Whether a relay takes new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Connected and taking new calls.
    Active,
    /// Shutting down gracefully: running calls only (MediaProxy's `halting`).
    Halting,
    /// A command to it timed out and no ping has arrived since; skipped for new calls.
    TimedOut,
}

/// A connected relay as the relay choice needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayView {
    /// Stable id (see [`RelayId`]).
    pub id: RelayId,
    /// The name the relay gave (its certificate's CN, or its configured name).
    pub name: String,
    /// The media addresses the relay advertises to endpoints; MediaProxy's
    /// `media_relay` preference matches against these.
    pub addresses: Vec<IpAddr>,
    /// Whether it takes new calls.
    pub state: RelayState,
    /// Calls it holds, as it last reported.
    pub sessions: u64,
    /// Bits per second it relays, as it last reported.
    pub bps: u64,
    /// Which status report `sessions` comes from: a new value with each report of a
    /// relay that reports now and then (a linked relay, every few seconds), so the
    /// relay choice can add the calls placed and ended since. `None` when `sessions`
    /// is always current (a relay in this process).
    pub report: Option<u64>,
}

/// A relay's live statistics, asked for when monitoring reads the cluster
/// (management `summary` and `sessions`).
#[derive(Debug, Clone, PartialEq)]
pub struct RelayLive {
    /// Its software version (bare, as `0.1.0`).
    pub version: String,
    /// Seconds since it started.
    pub uptime: u64,
    /// Bits per second it relays, as it last measured.
    pub bps: u64,
    /// Its running calls, as their records would read if they ended now.
    pub calls: Vec<SessionRecord>,
}

/// Why a command to a relay gave no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The relay is shutting down and refuses new calls.
    #[error("relay is halting")]
    Halting,
    /// No reply within the deadline.
    #[error("relay did not answer in time")]
    Timeout,
    /// The relay is not connected (never was, or the link dropped mid-command).
    #[error("relay is not connected")]
    Gone,
}

/// What relays report without being asked.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    /// A relay connected (first time or again). The front doors reconcile their call
    /// map with `calls`, the Call-IDs the relay holds now.
    Connected {
        /// Which relay.
        relay: RelayId,
        /// The Call-IDs it holds.
        calls: Vec<String>,
    },
    /// A relay's link dropped; its calls may come back if it reconnects.
    Disconnected {
        /// Which relay.
        relay: RelayId,
    },
    /// A call ended on the relay: every stream timed out, the relay's operator ended
    /// it (the dispatcher accounts it and may end the dialog), or a `delete` took
    /// effect (reason `deleted`; the router has already forgotten the call and hands
    /// the record to the accounting hook's `late_record`).
    Ended {
        /// Which relay.
        relay: RelayId,
        /// The call's Call-ID.
        call_id: String,
        /// Why: the relay record's end reason (for example `timeout`).
        reason: String,
        /// The call's statistics as the relay's record encodes them (JSON).
        stats: serde_json::Value,
    },
}

/// A future a [`RelayPool`] returns.
pub type PoolFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The relays the dispatcher can use.
pub trait RelayPool: Send + Sync + 'static {
    /// Every connected relay now.
    fn relays(&self) -> Vec<RelayView>;

    /// Sends `request` (an `ng` command dictionary) to `relay` and waits at most
    /// `deadline` for its reply dictionary. A relay that answers an offer while
    /// draining replies with `ng`'s error; the pool turns that into
    /// [`CommandError::Halting`].
    fn command(
        &self,
        relay: RelayId,
        request: Value,
        deadline: Duration,
    ) -> PoolFuture<'_, Result<Value, CommandError>>;

    /// Events from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RelayEvent>;

    /// Asks `relay` for its live statistics and waits at most `deadline`. `None` when
    /// it does not answer in time, is gone, or cannot tell (a relay of link protocol
    /// 1.0, or a pool without the means: the default).
    fn live(&self, relay: RelayId, deadline: Duration) -> PoolFuture<'_, Option<RelayLive>> {
        let _ = (relay, deadline);
        Box::pin(async { None })
    }
}
