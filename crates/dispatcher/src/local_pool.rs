//! [`LocalPool`]: a [`RelayPool`] over relay engines running in this process, for
//! tests and for a dispatcher and its relays in one process (`[[dispatcher.local_relay]]`).
//!
//! What it does: runs each command with [`Relay::handle_ng`] (no network, so the
//! deadline never bites), reports a relay that refuses a new call for load or drain as
//! [`CommandError::Halting`], shows a draining relay as [`RelayState::Halting`] so it is
//! not even tried, and turns every finished call's record (timeouts, operator, and
//! `delete`s, whose record the accounting waits for) into [`RelayEvent::Ended`] by
//! watching the relay's finished-call records.
//!
//! What it does not: measure bit rates (`bps` is 0; the choice falls back to call
//! counts) or time out (an in-process relay answers or panics).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mediagate_ng::bencode::Value;
use mediagate_ng::reply;
use mediagate_relay::engine::Relay;
use tokio::sync::broadcast;

use crate::pool::{
    CommandError, PoolFuture, RelayEvent, RelayId, RelayLive, RelayPool, RelayState, RelayView,
};

struct Member {
    id: RelayId,
    name: String,
    addresses: Vec<IpAddr>,
    relay: Arc<Relay>,
    /// The newest finished-call record already looked at: (Call-ID, start, reason).
    seen: Mutex<Option<(String, u64, String)>>,
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

    /// Runs [`LocalPool::poll_ended`] every `every` until the pool is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.poll_ended();
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
                bps: 0,
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
                bps: 0,
                calls: m.relay.live_calls().into_iter().map(|(r, _)| r).collect(),
            })
        })
    }
}
