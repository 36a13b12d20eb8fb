//! The dispatcher's decisions, shared by both front doors: which relay a command goes
//! to, what the session map learns from the reply, and what relays' events change.
//!
//! * A command for a placed call goes to the call's relay (by Call-ID), whatever the
//!   command. If that relay is gone or does not answer within `relay_timeout`, the
//!   proxy gets an error: the call's media is on that relay and nowhere else.
//! * An `offer` for a new call is tried on the relays `select` lists, each
//!   within `relay_timeout`; a relay that is halting, gone, silent or out of ports is
//!   skipped. The first other reply places the call (unless it is an error about the
//!   request itself, which is passed back as it is: another relay would say the same). None left: the
//!   proxy gets `ng`'s error, so it fails over or rejects the call.
//! * `ping` is answered here; `answer`, `query`, `delete` and the rest for a call not
//!   placed get `Unknown call-id`.
//! * `delete` forgets the call; an `answer` records the to-tag.
//! * A relay that (re)connects reports its calls: placed calls missing from its list
//!   that it confirms it does not hold (an `ng` `query` each, so a call placed on it
//!   after it sent the list is kept) are forgotten and handed to the [`EndedHook`]; so is a call a relay reports ended by
//!   itself (all streams timed out). A relay's report of a call already forgotten
//!   (the record of a deleted call, which comes after the `delete` reply) goes to
//!   [`EndedHook::late_record`].
//! * What the MediaProxy front door learns from SIP and relays never see (URIs,
//!   User-Agents) is kept in memory per call and handed to the hook with the call.
//!
//! What it does not: sockets (the front doors), or accounting and ending dialogs (the
//! hook's implementer).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use mediagate_ng::bencode::Value;
use mediagate_ng::reply;
use mediagate_ng::request::{Command, Request};
use tokio::sync::broadcast::error::RecvError;

use crate::mediaproxy;
use crate::pool::{RelayEvent, RelayId, RelayPool};
use crate::select;
use crate::session_stats::SipInfo;
use crate::sessions::{Placed, SessionMap};

/// The `ng` key (or `flags` item `media-relay=IP`) with which an `ng` client names the
/// relay it prefers for a new call, as MediaProxy's `media_relay` does.
pub const NG_MEDIA_RELAY: &str = "media-relay";

/// The error reply when no relay took a new call.
pub const NO_RELAY: &str = "No suitable relay found";

/// A call the dispatcher forgot because it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedCall {
    /// Its Call-ID.
    pub call_id: String,
    /// The relay it ran on (name).
    pub relay: String,
    /// Why: `deleted` (the proxy's `delete`/`remove`), `relay lost the call` (not in
    /// the relay's list after it reconnected), or the relay's own reason (such as
    /// `media timeout`).
    pub reason: String,
    /// Its placement: tags, start, MediaProxy's `dialog_id`.
    pub placed: Placed,
    /// The relay's statistics as JSON (the `delete` reply, or the relay's record);
    /// `null` when the relay gave none.
    pub stats: serde_json::Value,
    /// What the SIP proxy told about the call (MediaProxy front door only; empty for
    /// `ng` calls and after a dispatcher restart).
    pub sip: SipInfo,
}

/// Told about every call the dispatcher forgets: accounting and ending the dialog on
/// the SIP proxy hang here.
pub trait EndedHook: Send + Sync + 'static {
    /// One call ended. Runs on the dispatcher's tasks: hand slow work off.
    fn ended(&self, call: EndedCall);

    /// A relay reported a call the dispatcher had already forgotten: the record of a
    /// call ended by `delete` (relays send it once the call is really gone, after any
    /// delete delay), or a report that lost a race with the `delete`. `reason` and
    /// `stats` as in [`RelayEvent::Ended`]. Ignored unless the hook waits for it.
    fn late_record(&self, relay: &str, call_id: &str, reason: &str, stats: serde_json::Value) {
        let _ = (relay, call_id, reason, stats);
    }
}

/// The hook until accounting is wired: one log line per call.
#[derive(Debug, Default)]
pub struct LogEnded;

impl EndedHook for LogEnded {
    fn ended(&self, call: EndedCall) {
        tracing::info!(
            call = %call.call_id,
            "dispatcher: call {} on relay {} is over ({})",
            call.call_id,
            call.relay,
            call.reason
        );
    }
}

/// The dispatcher core.
pub struct Router {
    pool: Arc<dyn RelayPool>,
    map: Mutex<SessionMap>,
    /// Milliseconds; a reload may change it while commands run.
    relay_timeout_ms: std::sync::atomic::AtomicU64,
    hook: Arc<dyn EndedHook>,
    sip: Mutex<HashMap<String, SipInfo>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("calls", &self.map().len())
            .field("relay_timeout", &self.relay_timeout())
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Router {
    /// A router over `pool` with `map`, listening to the pool's events from now on
    /// (subscribed before this returns, so an announcement made after it is seen).
    pub fn start(
        pool: Arc<dyn RelayPool>,
        map: SessionMap,
        relay_timeout: Duration,
        hook: Arc<dyn EndedHook>,
    ) -> Arc<Self> {
        let events = pool.subscribe();
        let router = Arc::new(Self {
            pool,
            map: Mutex::new(map),
            relay_timeout_ms: std::sync::atomic::AtomicU64::new(millis(relay_timeout)),
            hook,
            sip: Mutex::new(HashMap::new()),
        });
        tokio::spawn(watch_events(Arc::downgrade(&router), events));
        router
    }

    fn map(&self) -> MutexGuard<'_, SessionMap> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sip(&self) -> MutexGuard<'_, HashMap<String, SipInfo>> {
        self.sip.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the SIP proxy told about `call_id`, if anything.
    pub fn sip_info(&self, call_id: &str) -> SipInfo {
        self.sip().get(call_id).cloned().unwrap_or_default()
    }

    fn take_sip(&self, call_id: &str) -> SipInfo {
        self.sip().remove(call_id).unwrap_or_default()
    }

    /// The relays of the pool now.
    pub fn relays(&self) -> Vec<crate::pool::RelayView> {
        self.pool.relays()
    }

    /// The relay pool, for monitoring's questions to relays.
    pub fn pool(&self) -> &Arc<dyn RelayPool> {
        &self.pool
    }

    /// How long a relay has to answer a command.
    pub fn relay_timeout(&self) -> Duration {
        Duration::from_millis(
            self.relay_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Applies a reloaded `relay_timeout` to commands from now on.
    pub fn set_relay_timeout(&self, timeout: Duration) {
        self.relay_timeout_ms
            .store(millis(timeout), std::sync::atomic::Ordering::Relaxed);
    }

    /// Every placed call, sorted by Call-ID.
    pub fn calls(&self) -> Vec<(String, Placed)> {
        self.map().all()
    }

    /// Calls placed now.
    pub fn call_count(&self) -> usize {
        self.map().len()
    }

    fn relay_id(&self, name: &str) -> Option<RelayId> {
        self.pool
            .relays()
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.id)
    }

    fn relay_name(&self, id: RelayId) -> Option<String> {
        self.pool
            .relays()
            .into_iter()
            .find(|r| r.id == id)
            .map(|r| r.name)
    }

    /// Runs one `ng` request dictionary from a proxy and returns the reply dictionary.
    pub async fn handle_ng(&self, request: Value) -> Value {
        let preferred = preferred_relay(&request);
        self.route(request, preferred, None).await
    }

    /// Runs one MediaProxy request and returns the reply line.
    pub async fn handle_mediaproxy(&self, request: &mediaproxy::Request) -> Vec<u8> {
        let preferred = request
            .media_relay
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok());
        let reply = self
            .route(
                mediaproxy::to_ng(request),
                preferred,
                request.dialog_id.clone(),
            )
            .await;
        if reply::result_of(&reply) != Some("ok") {
            let why = reply
                .get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("-");
            tracing::debug!(
                call = %request.call_id,
                "dispatcher: MediaProxy request for {} failed: {why}",
                request.call_id
            );
            return mediaproxy::ERROR.to_vec();
        }
        if request.command == mediaproxy::Command::Update
            && self.map().get(&request.call_id).is_some()
        {
            self.learn_sip(request);
        }
        match request.command {
            mediaproxy::Command::Remove => mediaproxy::REMOVED.to_vec(),
            mediaproxy::Command::Update => reply
                .get("sdp")
                .and_then(Value::as_bytes)
                .and_then(|sdp| mediaproxy::reply_from_sdp(sdp, request.media.len()))
                .unwrap_or_else(|| mediaproxy::ERROR.to_vec()),
        }
    }

    fn learn_sip(&self, request: &mediaproxy::Request) {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut all = self.sip();
        let info = all.entry(request.call_id.clone()).or_default();
        if let Some(uri) = header("from_uri") {
            info.from_uri = uri;
        }
        if let Some(uri) = header("to_uri") {
            info.to_uri = uri;
        }
        match request.update_type {
            Some(mediaproxy::UpdateType::Request) if info.caller_ua.is_none() => {
                info.caller_ua = header("user_agent");
            }
            Some(mediaproxy::UpdateType::Reply) if info.callee_ua.is_none() => {
                info.callee_ua = header("user_agent");
            }
            _ => {}
        }
        if info.dialog_id.is_none() {
            info.dialog_id = request.dialog_id.as_deref().and_then(parse_dialog_id);
        }
    }

    async fn route(
        &self,
        request: Value,
        preferred: Option<IpAddr>,
        dialog_id: Option<String>,
    ) -> Value {
        let parsed = match Request::from_value(&request) {
            Ok(r) => r,
            Err(e) => return reply::error(e.reason()),
        };
        if parsed.command == Command::Ping {
            return reply::pong();
        }
        let Some(call_id) = parsed.call_id.clone() else {
            return reply::error(reply::NO_CALL_ID);
        };
        let placed = self.map().get(&call_id).cloned();
        match placed {
            Some(placed) => self.to_placed(&call_id, placed, &parsed, request).await,
            None if parsed.command == Command::Offer => {
                self.place(&call_id, &parsed, request, preferred, dialog_id)
                    .await
            }
            None => reply::error(reply::UNKNOWN_CALL_ID),
        }
    }

    async fn to_placed(
        &self,
        call_id: &str,
        placed: Placed,
        parsed: &Request,
        request: Value,
    ) -> Value {
        let Some(id) = self.relay_id(&placed.relay) else {
            tracing::warn!(
                call = %call_id,
                "dispatcher: call {call_id} is on relay {}, which is not connected",
                placed.relay
            );
            return reply::error("Relay of this call is not connected");
        };
        let reply = match self.pool.command(id, request, self.relay_timeout()).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(
                    call = %call_id,
                    "dispatcher: {} for call {call_id} on relay {}: {e}",
                    parsed.command.name(),
                    placed.relay
                );
                return reply::error(&format!("Relay of this call failed: {e}"));
            }
        };
        match parsed.command {
            Command::Delete => {
                if let Some(placed) = self.map().remove(call_id) {
                    self.hook.ended(EndedCall {
                        call_id: call_id.to_owned(),
                        relay: placed.relay.clone(),
                        reason: "deleted".into(),
                        placed,
                        stats: to_json(&reply),
                        sip: self.take_sip(call_id),
                    });
                }
            }
            Command::Answer if reply::result_of(&reply) == Some("ok") => {
                if let Some(tag) = &parsed.to_tag {
                    self.map().set_to_tag(call_id, tag);
                }
            }
            _ => {}
        }
        reply
    }

    async fn place(
        &self,
        call_id: &str,
        parsed: &Request,
        request: Value,
        preferred: Option<IpAddr>,
        dialog_id: Option<String>,
    ) -> Value {
        let relays = self.pool.relays();
        for id in select::candidates(&relays, preferred) {
            let name = relays
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            match self
                .pool
                .command(id, request.clone(), self.relay_timeout())
                .await
            {
                Ok(reply) if out_of_ports(&reply) => tracing::info!(
                    call = %call_id,
                    "dispatcher: relay {name} has no free ports for call {call_id}; trying the next"
                ),
                Ok(reply) => {
                    if reply::result_of(&reply) != Some("error") {
                        tracing::debug!(call = %call_id, "dispatcher: call {call_id} placed on relay {name}");
                        self.map().insert(
                            call_id,
                            Placed {
                                relay: name,
                                from_tag: parsed.from_tag.clone(),
                                to_tag: parsed.to_tag.clone(),
                                start_unix_ms: unix_ms(),
                                dialog_id,
                            },
                        );
                    }
                    return reply;
                }
                Err(e) => tracing::info!(
                    call = %call_id,
                    "dispatcher: relay {name} did not take call {call_id} ({e}); trying the next"
                ),
            }
        }
        tracing::warn!(call = %call_id, "dispatcher: no relay took call {call_id}");
        reply::error(NO_RELAY)
    }

    /// The placed calls of `relay` (called `name`) missing from its list that the
    /// relay confirms it does not hold: its `query` for each answers with an error.
    /// A call placed on the relay after it sent the list (the pool offers a relay as
    /// soon as it connects, while this runs on the router's own task) is in no list
    /// but the relay knows it, so it stays. A call whose query gets no reply stays
    /// too; the next connect looks again.
    async fn confirmed_lost(&self, relay: RelayId, name: &str, holds: &[String]) -> Vec<String> {
        let missing = self.map().missing(name, holds);
        let queries: Vec<_> = missing
            .into_iter()
            .map(|call_id| {
                let pool = Arc::clone(&self.pool);
                let deadline = self.relay_timeout();
                let query = mediagate_ng::bencode::dict([
                    ("command", Value::str("query")),
                    ("call-id", Value::str(&call_id)),
                ]);
                let asked = tokio::spawn(async move { pool.command(relay, query, deadline).await });
                (call_id, asked)
            })
            .collect();
        let mut lost = Vec::new();
        for (call_id, asked) in queries {
            match asked.await {
                Ok(Ok(reply)) if reply::result_of(&reply) != Some("ok") => lost.push(call_id),
                Ok(Ok(_)) => tracing::debug!(
                    call = %call_id,
                    "dispatcher: relay {name} holds call {call_id}, placed after its list"
                ),
                Ok(Err(e)) => tracing::info!(
                    call = %call_id,
                    "dispatcher: relay {name} did not say whether it holds call {call_id} ({e}); keeping it"
                ),
                Err(_) => {}
            }
        }
        lost
    }

    async fn on_event(&self, event: RelayEvent) {
        match event {
            RelayEvent::Connected { relay, calls } => {
                let Some(name) = self.relay_name(relay) else {
                    return;
                };
                let lost = self.confirmed_lost(relay, &name, &calls).await;
                let gone: Vec<(String, Placed)> = {
                    let mut map = self.map();
                    let mut gone = Vec::new();
                    for c in lost {
                        // Still placed on that relay (a delete may have come meanwhile).
                        if map.get(&c).is_some_and(|p| p.relay == name) {
                            if let Some(p) = map.remove(&c) {
                                gone.push((c, p));
                            }
                        }
                    }
                    gone
                };
                if !gone.is_empty() {
                    tracing::info!(
                        "dispatcher: relay {name} reconnected without {} call(s) it had; forgetting them",
                        gone.len()
                    );
                }
                for (call_id, placed) in gone {
                    let sip = self.take_sip(&call_id);
                    self.hook.ended(EndedCall {
                        call_id,
                        relay: name.clone(),
                        reason: "relay lost the call".into(),
                        placed,
                        stats: serde_json::Value::Null,
                        sip,
                    });
                }
            }
            RelayEvent::Disconnected { relay } => {
                let name = self.relay_name(relay).unwrap_or_default();
                tracing::warn!("dispatcher: relay {name} ({}) disconnected; its calls wait for it to come back", relay.0);
            }
            RelayEvent::Ended {
                relay,
                call_id,
                reason,
                stats,
            } => {
                let name = self.relay_name(relay);
                let mut map = self.map();
                let on_that_relay = map
                    .get(&call_id)
                    .is_some_and(|p| Some(&p.relay) == name.as_ref());
                let placed = if on_that_relay {
                    map.remove(&call_id)
                } else {
                    None
                };
                drop(map);
                if let Some(placed) = placed {
                    let sip = self.take_sip(&call_id);
                    self.hook.ended(EndedCall {
                        call_id,
                        relay: placed.relay.clone(),
                        reason,
                        placed,
                        stats,
                        sip,
                    });
                } else if let Some(name) = name {
                    self.hook.late_record(&name, &call_id, &reason, stats);
                }
            }
        }
    }
}

async fn watch_events(
    router: Weak<Router>,
    mut events: tokio::sync::broadcast::Receiver<RelayEvent>,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("dispatcher: missed {n} relay events (too many at once)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(router) = router.upgrade() else {
            return;
        };
        router.on_event(event).await;
    }
}

/// The relay an `ng` request prefers: `"media-relay": "IP"`, or `"media-relay=IP"` in
/// its `flags` (how Kamailio's `rtpengine` module passes a flag it does not know).
fn preferred_relay(request: &Value) -> Option<IpAddr> {
    if let Some(ip) = request
        .get(NG_MEDIA_RELAY)
        .and_then(Value::as_str)
        .and_then(|s| s.trim().parse().ok())
    {
        return Some(ip);
    }
    request
        .get("flags")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|f| f.strip_prefix(NG_MEDIA_RELAY)?.strip_prefix('='))
        .find_map(|ip| ip.trim().parse().ok())
}

/// MediaProxy's `dialog_id` as a number, `h_entry << 32 | h_id`: Kamailio's
/// `mediaproxy` module writes `h_entry:h_id`; a bare number is taken as it is.
pub fn parse_dialog_id(text: &str) -> Option<u64> {
    match text.trim().split_once(':') {
        Some((entry, id)) => {
            let entry: u32 = entry.trim().parse().ok()?;
            let id: u32 = id.trim().parse().ok()?;
            Some(u64::from(entry) << 32 | u64::from(id))
        }
        None => text.trim().parse().ok(),
    }
}

/// Whether a relay refused a new call for want of ports: another relay may have some.
fn out_of_ports(reply: &Value) -> bool {
    reply::result_of(reply) == Some("error")
        && reply.get("error-reason").and_then(Value::as_str) == Some(reply::RAN_OUT_OF_PORTS)
}

fn to_json(reply: &Value) -> serde_json::Value {
    serde_json::from_slice(&mediagate_ng::json::encode(reply)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
