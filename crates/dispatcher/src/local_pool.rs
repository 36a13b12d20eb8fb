//! [`LocalPool`]: a [`RelayPool`] over relay engines running in this process, for
//! tests and for a dispatcher and its relays in one process (`[[dispatcher.local_relay]]`).
//!
//! What it does: runs each command with [`Relay::handle_ng`] (no network, so the
//! deadline never bites), reports a relay that refuses a new call for load or drain as
//! [`CommandError::Halting`], shows a draining relay as [`RelayState::Halting`] so it is
//! not even tried, and turns every finished call's record (timeouts, operator, and
//! `delete`s, whose record the accounting waits for) into [`RelayEvent::Ended`] by
//! watching the relay's finished-call records. It measures each relay's bit rate from
//! the engine's byte counters (RTP and RTCP, running and finished calls) over
//! [`MEASURE_EVERY`], as a linked relay does for its `status` reports, so the choice
//! weighs local and remote relays alike.
//!
//! What it does not: time out (an in-process relay answers or panics).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mediagate_ng::bencode::Value;
use mediagate_ng::reply;
use mediagate_relay::engine::Relay;
use tokio::sync::broadcast;

use crate::pool::{
    CommandError, PoolFuture, RelayEvent, RelayId, RelayLive, RelayPool, RelayState, RelayView,
};

impl Member {
    fn rate(&self) -> std::sync::MutexGuard<'_, RateMeter> {
        self.rate.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Member {
    id: RelayId,
    name: String,
    addresses: Vec<IpAddr>,
    relay: Arc<Relay>,
    /// The newest finished-call record already looked at: (Call-ID, start, reason).
    seen: Mutex<Option<(String, u64, String)>>,
    /// Its bit rate.
    rate: Mutex<RateMeter>,
}

/// How often a local relay's bit rate is measured: a linked relay's status interval.
pub const MEASURE_EVERY: Duration = Duration::from_secs(5);

/// Bits per second from a byte counter that only grows, sampled at most once per
/// interval (walking a relay's calls for its counters is not free). Time is passed in.
#[derive(Debug)]
pub(crate) struct RateMeter {
    every: Duration,
    last: Option<(Instant, u64)>,
    bps: u64,
}

impl RateMeter {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            bps: 0,
        }
    }

    /// Whether a sample taken at `now` would be a new one.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(at, _)| now.saturating_duration_since(at) >= self.every)
    }

    /// The counter read `bytes` at `now`: the rate is what it grew since the last
    /// sample. The first sample gives no rate yet; a counter that went back (a
    /// restarted engine) reads as 0 until the next.
    pub(crate) fn sample(&mut self, bytes: u64, now: Instant) {
        if let Some((at, before)) = self.last {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                // Bits per second fit f64 exactly below 2^53; above, a rounding is fine.
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                let bps = (bytes.saturating_sub(before) as f64 * 8.0 / secs) as u64;
                self.bps = bps;
            }
        }
        self.last = Some((now, bytes));
    }

    /// The rate over the last interval measured.
    pub(crate) fn bps(&self) -> u64 {
        self.bps
    }
}

/// Relays in this process.
pub struct LocalPool {
    members: Vec<Member>,
    events: broadcast::Sender<RelayEvent>,
}

impl std::fmt::Debug for LocalPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        f.debug_struct("LocalPool").field("relays", &names).finish()
    }
}

impl Default for LocalPool {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalPool {
    /// A pool without relays.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            members: Vec::new(),
            events,
        }
    }

    /// Adds a started relay under `name`, reachable for media at `addresses` (what a
    /// proxy's `media_relay` names). Ids are given in order from 1.
    pub fn add(&mut self, name: &str, addresses: Vec<IpAddr>, relay: Relay) -> RelayId {
        let id = RelayId(self.members.len() as u64 + 1);
        self.members.push(Member {
            id,
            name: name.to_owned(),
            addresses,
            relay: Arc::new(relay),
            seen: Mutex::new(None),
            rate: Mutex::new(RateMeter::new(MEASURE_EVERY)),
        });
        id
    }

    /// The relay engine called `name`.
    pub fn relay(&self, name: &str) -> Option<Arc<Relay>> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .map(|m| Arc::clone(&m.relay))
    }

    /// Every relay engine with its name.
    pub fn engines(&self) -> Vec<(String, Arc<Relay>)> {
        self.members
            .iter()
            .map(|m| (m.name.clone(), Arc::clone(&m.relay)))
            .collect()
    }

    /// Reports every relay as connected with the calls it holds, as a link does when a
    /// relay (re)connects; subscribers reconcile their maps with it.
    pub fn announce(&self) {
        for m in &self.members {
            let calls = m
                .relay
                .live_calls()
                .into_iter()
                .map(|(r, _)| r.call_id)
                .collect();
            let _ = self
                .events
                .send(RelayEvent::Connected { relay: m.id, calls });
        }
    }

    /// Looks at each relay's finished-call records once and reports each new one as
    /// [`RelayEvent::Ended`], `delete`d calls included (reason `deleted`).
    pub fn poll_ended(&self) {
        for m in &self.members {
            let records = m.relay.recent_records();
            let mut seen = m.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let start = seen
                .as_ref()
                .and_then(|(id, at, why)| {
                    records.iter().rposition(|r| {
                        &r.call_id == id && r.start_unix_ms == *at && &r.reason == why
                    })
                })
                .map_or(0, |i| i + 1);
            // Deleted calls' records are reported too: the router has forgotten those
            // calls and hands the record to the accounting hook, which waits for it.
            for r in records.get(start..).unwrap_or_default() {
                let _ = self.events.send(RelayEvent::Ended {
                    relay: m.id,
                    call_id: r.call_id.clone(),
                    reason: r.reason.clone(),
                    stats: r.to_json(),
                });
            }
            if let Some(last) = records.last() {
                *seen = Some((
                    last.call_id.clone(),
                    last.start_unix_ms,
                    last.reason.clone(),
                ));
            }
        }
    }

    /// Measures the bit rate of each relay whose last measure is [`MEASURE_EVERY`] old
    /// at `now`.
    pub fn measure(&self, now: Instant) {
        for m in &self.members {
            let mut rate = m.rate();
            if rate.due(now) {
                rate.sample(m.relay.relayed_bytes(), now);
            }
        }
    }

    /// Runs [`LocalPool::poll_ended`] and [`LocalPool::measure`] every `every` until
    /// the pool is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.poll_ended();
                pool.measure(Instant::now());
            }
        });
    }
}

/// Whether `reply` refuses a new call for load or drain (`ng`'s overload replies).
fn is_overload(reply: &Value) -> bool {
    match reply::result_of(reply) {
        Some("load limit") => true,
        Some("error") => {
            reply.get("error-reason").and_then(Value::as_str) == Some(reply::SESSION_LIMIT)
        }
        _ => false,
    }
}

impl RelayPool for LocalPool {
    fn relays(&self) -> Vec<RelayView> {
        self.members
            .iter()
            .map(|m| RelayView {
                id: m.id,
                name: m.name.clone(),
                addresses: m.addresses.clone(),
                state: if m.relay.is_draining() {
                    RelayState::Halting
                } else {
                    RelayState::Active
                },
                sessions: m.relay.active_calls() as u64,
                bps: m.rate().bps(),
                report: None,
            })
            .collect()
    }

    fn command(
        &self,
        relay: RelayId,
        request: Value,
        _deadline: Duration,
    ) -> PoolFuture<'_, Result<Value, CommandError>> {
        let member = self.members.iter().find(|m| m.id == relay);
        Box::pin(async move {
            let member = member.ok_or(CommandError::Gone)?;
            let reply = member.relay.handle_ng(request);
            if is_overload(&reply) {
                return Err(CommandError::Halting);
            }
            Ok(reply)
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.events.subscribe()
    }

    fn live(&self, relay: RelayId, _deadline: Duration) -> PoolFuture<'_, Option<RelayLive>> {
        let member = self.members.iter().find(|m| m.id == relay);
        Box::pin(async move {
            let m = member?;
            Some(RelayLive {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                uptime: m.relay.uptime().as_secs(),
                bps: m.rate().bps(),
                calls: m.relay.live_calls().into_iter().map(|(r, _)| r).collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_what_the_counter_grew_over_the_interval() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(5));
        assert!(m.due(t0));
        m.sample(1_000, t0);
        assert_eq!(m.bps(), 0, "one sample is no rate");
        assert!(!m.due(t0 + Duration::from_secs(4)));
        let t1 = t0 + Duration::from_secs(5);
        assert!(m.due(t1));
        // 80,000 bytes in 5 s: 128 kbit/s.
        m.sample(81_000, t1);
        assert_eq!(m.bps(), 128_000);
        // Nothing relayed since: 0, not the last rate.
        m.sample(81_000, t1 + Duration::from_secs(5));
        assert_eq!(m.bps(), 0);
        // A counter that went back does not wrap into a huge rate.
        m.sample(10, t1 + Duration::from_secs(10));
        assert_eq!(m.bps(), 0);
        // Two samples at one instant keep the rate as it was.
        m.sample(50_010, t1 + Duration::from_secs(15));
        m.sample(60_000, t1 + Duration::from_secs(15));
        assert_eq!(m.bps(), 80_000);
    }
}
