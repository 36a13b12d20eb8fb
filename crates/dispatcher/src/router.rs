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
//! * A new call an `offer` of which matches a chain rule ([`crate::chain`]) goes
//!   through two relays, A of the rule's `first` group (facing the caller) and B of
//!   its `second`: the caller's SDP to A, A's SDP to B, B's SDP to the proxy; an
//!   answer the other way (the callee's SDP to B, B's to A, A's to the proxy). A
//!   failure at B undoes A (`delete`) and the next pair is tried. The call sticks to
//!   both; other commands go to both (A's reply is the proxy's); a relay that lost
//!   or ended it ends it on the other too.
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

use crate::chain::ChainPolicy;
use crate::mediaproxy;
use crate::pool::{RelayEvent, RelayId, RelayPool, RelayView};
use crate::select;
use crate::session_stats::SipInfo;
use crate::sessions::{Placed, SessionMap};

/// The `ng` key (or `flags` item `media-relay=IP`) with which an `ng` client names the
/// relay it prefers for a new call, as MediaProxy's `media_relay` does.
pub const NG_MEDIA_RELAY: &str = "media-relay";

/// The error reply when no relay took a new call.
pub const NO_RELAY: &str = "No suitable relay found";

/// The `ng` keys of a request that describe where the proxy's party sends from; the
/// relay on the far side of a chain hears from the near relay instead, so they are
/// left out of what it gets.
const PARTY_KEYS: [&[u8]; 3] = [
    b"received-from",
    b"media-address",
    NG_MEDIA_RELAY.as_bytes(),
];

/// A call the dispatcher forgot because it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedCall {
    /// Its Call-ID.
    pub call_id: String,
    /// The relay it ran on (name): of a chained call, the relay facing the caller,
    /// or the one that ended the call by itself (its record has the reason).
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
    chains: ChainPolicy,
    /// Corrects linked relays' reported load with what was placed since (`select`).
    live: Mutex<select::LiveLoad>,
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
        Self::start_with_chains(pool, map, relay_timeout, hook, ChainPolicy::default())
    }

    /// As [`Router::start`], with the chain rules of `chains`.
    pub(crate) fn start_with_chains(
        pool: Arc<dyn RelayPool>,
        map: SessionMap,
        relay_timeout: Duration,
        hook: Arc<dyn EndedHook>,
        chains: ChainPolicy,
    ) -> Arc<Self> {
        let events = pool.subscribe();
        let router = Arc::new(Self {
            pool,
            map: Mutex::new(map),
            relay_timeout_ms: std::sync::atomic::AtomicU64::new(millis(relay_timeout)),
            hook,
            sip: Mutex::new(HashMap::new()),
            chains,
            live: Mutex::new(select::LiveLoad::default()),
        });
        tokio::spawn(watch_events(Arc::downgrade(&router), events));
        router
    }

    fn map(&self) -> MutexGuard<'_, SessionMap> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The relays with each one's load as of now, for choosing one for a new call.
    fn relays_to_choose(&self) -> Vec<RelayView> {
        let mut relays = self.pool.relays();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let map = self.map();
        live.correct(&mut relays, |name| map.held_on(name));
        relays
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
            Some(placed) if placed.second_relay.is_some() => {
                self.to_chained(&call_id, placed, &parsed, request).await
            }
            Some(placed) => self.to_placed(&call_id, placed, &parsed, request).await,
            None if parsed.command == Command::Offer => match self.chains.for_offer(&request) {
                Some(chain) => {
                    let (first, second) = (chain.first.to_owned(), chain.second.to_owned());
                    self.place_chained(
                        &call_id,
                        &parsed,
                        request,
                        preferred,
                        dialog_id,
                        (&first, &second),
                    )
                    .await
                }
                None => {
                    self.place(&call_id, &parsed, request, preferred, dialog_id)
                        .await
                }
            },
            None => reply::error(reply::UNKNOWN_CALL_ID),
        }
    }

    /// Sends a command of the placed call `call_id` to its relay `name`: the relay's
    /// reply, or the error reply for the proxy when the relay is not connected or
    /// gives none.
    async fn send_to(
        &self,
        call_id: &str,
        name: &str,
        command: &Command,
        request: Value,
    ) -> Result<Value, Value> {
        let Some(id) = self.relay_id(name) else {
            tracing::warn!(
                call = %call_id,
                "dispatcher: call {call_id} is on relay {name}, which is not connected"
            );
            return Err(reply::error("Relay of this call is not connected"));
        };
        self.pool
            .command(id, request, self.relay_timeout())
            .await
            .map_err(|e| {
                tracing::warn!(
                    call = %call_id,
                    "dispatcher: {} for call {call_id} on relay {name}: {e}",
                    command.name()
                );
                reply::error(&format!("Relay of this call failed: {e}"))
            })
    }

    /// A command for a chained call: offers A then B, answers B then A, the rest to A
    /// and then B (the proxy gets A's reply; B's failure is logged).
    async fn to_chained(
        &self,
        call_id: &str,
        placed: Placed,
        parsed: &Request,
        request: Value,
    ) -> Value {
        let first = placed.relay.as_str();
        let second = placed.second_relay.as_deref().unwrap_or_default();
        let command = &parsed.command;
        let (near, far) = match command {
            Command::Answer => (second, first),
            _ => (first, second),
        };
        let near_reply = match self.send_to(call_id, near, command, request.clone()).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        match command {
            Command::Offer | Command::Answer => {
                if reply::result_of(&near_reply) != Some("ok") {
                    return near_reply;
                }
                let Some(onward) = onward(&request, &near_reply) else {
                    return reply::error("Relay of this call gave no SDP");
                };
                let far_reply = match self.send_to(call_id, far, command, onward).await {
                    Ok(r) => r,
                    Err(e) => return e,
                };
                if *command == Command::Answer && reply::result_of(&far_reply) == Some("ok") {
                    if let Some(tag) = &parsed.to_tag {
                        self.map().set_to_tag(call_id, tag);
                    }
                }
                far_reply
            }
            _ => {
                if let Ok(r) = self.send_to(call_id, far, command, request).await {
                    if reply::result_of(&r) != Some("ok") {
                        let why = r
                            .get("error-reason")
                            .and_then(Value::as_str)
                            .unwrap_or("error");
                        tracing::info!(
                            call = %call_id,
                            "dispatcher: {} for chained call {call_id} on relay {far}: {why}",
                            command.name()
                        );
                    }
                }
                if *command == Command::Delete {
                    if let Some(placed) = self.map().remove(call_id) {
                        self.hook.ended(EndedCall {
                            call_id: call_id.to_owned(),
                            relay: placed.relay.clone(),
                            reason: "deleted".into(),
                            placed,
                            stats: to_json(&near_reply),
                            sip: self.take_sip(call_id),
                        });
                    }
                }
                near_reply
            }
        }
    }

    /// Places a new call on a relay of group `first` and then one of `second`, trying
    /// pairs in `select`'s order: a relay of `first` that fails is skipped; one of
    /// `second` that fails is skipped after its half on the `first` relay is deleted.
    async fn place_chained(
        &self,
        call_id: &str,
        parsed: &Request,
        request: Value,
        preferred: Option<IpAddr>,
        dialog_id: Option<String>,
        (first, second): (&str, &str),
    ) -> Value {
        let relays = self.relays_to_choose();
        let in_group = |group: &str, list: Vec<&RelayView>| -> Vec<(RelayId, String)> {
            list.into_iter()
                .filter(|r| self.chains.in_group(&r.name, group))
                .map(|r| (r.id, r.name.clone()))
                .collect()
        };
        let firsts = in_group(first, select::candidates(&relays, preferred));
        let mut seconds = in_group(second, select::candidates(&relays, None));
        for (a, a_name) in firsts {
            if seconds.is_empty() {
                break;
            }
            let a_reply = match self
                .pool
                .command(a, request.clone(), self.relay_timeout())
                .await
            {
                Ok(reply) if out_of_ports(&reply) => {
                    tracing::info!(call = %call_id, "dispatcher: relay {a_name} has no free ports for call {call_id}; trying the next");
                    continue;
                }
                Ok(reply) if reply::result_of(&reply) == Some("error") => return reply,
                Ok(reply) => reply,
                Err(e) => {
                    tracing::info!(call = %call_id, "dispatcher: relay {a_name} did not take call {call_id} ({e}); trying the next");
                    continue;
                }
            };
            let Some(onward) = onward(&request, &a_reply) else {
                self.undo(call_id, a, &a_name, parsed).await;
                return reply::error("Relay gave no SDP");
            };
            while let Some((b, b_name)) = seconds.first().cloned() {
                match self
                    .pool
                    .command(b, onward.clone(), self.relay_timeout())
                    .await
                {
                    Ok(reply) if out_of_ports(&reply) => tracing::info!(
                        call = %call_id,
                        "dispatcher: relay {b_name} has no free ports for call {call_id}; trying the next"
                    ),
                    Ok(reply) if reply::result_of(&reply) == Some("error") => {
                        self.undo(call_id, a, &a_name, parsed).await;
                        return reply;
                    }
                    Ok(reply) => {
                        tracing::debug!(call = %call_id, "dispatcher: call {call_id} placed on relays {a_name} and {b_name}");
                        self.map().insert(
                            call_id,
                            Placed {
                                relay: a_name,
                                from_tag: parsed.from_tag.clone(),
                                to_tag: parsed.to_tag.clone(),
                                start_unix_ms: unix_ms(),
                                dialog_id,
                                second_relay: Some(b_name),
                            },
                        );
                        return reply;
                    }
                    Err(e) => tracing::info!(
                        call = %call_id,
                        "dispatcher: relay {b_name} did not take call {call_id} after {a_name} ({e}); trying the next"
                    ),
                }
                seconds.remove(0);
            }
            self.undo(call_id, a, &a_name, parsed).await;
        }
        tracing::warn!(call = %call_id, "dispatcher: no pair of relays of groups {first} and {second} took call {call_id}");
        reply::error(NO_RELAY)
    }

    /// Deletes the half of a chained call that relay `id` took when its other half
    /// could not be placed, so its ports are not held until the media timeout.
    async fn undo(&self, call_id: &str, id: RelayId, name: &str, parsed: &Request) {
        let delete = delete_request(call_id, parsed.from_tag.as_deref());
        if let Err(e) = self.pool.command(id, delete, self.relay_timeout()).await {
            tracing::warn!(call = %call_id, "dispatcher: could not delete the half of call {call_id} on relay {name} ({e}); it ends by media timeout");
        }
    }

    /// Deletes what relay `name` holds of `call_id` in the background: the other half
    /// of a chained call that the relay's partner lost or ended.
    fn delete_other_half(&self, call_id: &str, name: &str, from_tag: Option<&str>) {
        let Some(id) = self.relay_id(name) else {
            tracing::info!(call = %call_id, "dispatcher: relay {name}, holding the other half of call {call_id}, is not connected; it ends by media timeout");
            return;
        };
        let pool = Arc::clone(&self.pool);
        let delete = delete_request(call_id, from_tag);
        let deadline = self.relay_timeout();
        let (call_id, name) = (call_id.to_owned(), name.to_owned());
        tokio::spawn(async move {
            if let Err(e) = pool.command(id, delete, deadline).await {
                tracing::info!(call = %call_id, "dispatcher: could not delete the other half of call {call_id} on relay {name} ({e}); it ends by media timeout");
            }
        });
    }

    async fn to_placed(
        &self,
        call_id: &str,
        placed: Placed,
        parsed: &Request,
        request: Value,
    ) -> Value {
        let reply = match self
            .send_to(call_id, &placed.relay, &parsed.command, request)
            .await
        {
            Ok(reply) => reply,
            Err(e) => return e,
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
        let relays = self.relays_to_choose();
        for RelayView { id, name, .. } in select::candidates(&relays, preferred) {
            let (id, name) = (*id, name.clone());
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
                                second_relay: None,
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
                        if map.get(&c).is_some_and(|p| p.is_on(&name)) {
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
                    self.end_other_half(&call_id, &placed, &name);
                    let sip = self.take_sip(&call_id);
                    self.hook.ended(EndedCall {
                        call_id,
                        relay: placed.relay.clone(),
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
                    .zip(name.as_deref())
                    .is_some_and(|(p, name)| p.is_on(name));
                let placed = if on_that_relay {
                    map.remove(&call_id)
                } else {
                    None
                };
                drop(map);
                if let (Some(placed), Some(name)) = (placed, &name) {
                    self.end_other_half(&call_id, &placed, name);
                    let sip = self.take_sip(&call_id);
                    self.hook.ended(EndedCall {
                        call_id,
                        relay: name.clone(),
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

impl Router {
    /// A chained call that relay `by` lost or ended: the other relay's half goes too.
    fn end_other_half(&self, call_id: &str, placed: &Placed, by: &str) {
        let Some(second) = &placed.second_relay else {
            return;
        };
        let other = if placed.relay == by {
            second
        } else {
            &placed.relay
        };
        self.delete_other_half(call_id, other, placed.from_tag.as_deref());
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

/// What the far relay of a chained call gets: `request` with the near relay's SDP
/// from `near_reply`, and none of the keys about the proxy's party (the far relay's
/// party is the near relay, found in that SDP). `None` when the reply has no SDP.
fn onward(request: &Value, near_reply: &Value) -> Option<Value> {
    let sdp = near_reply.get("sdp")?.clone();
    let Value::Dict(items) = request else {
        return None;
    };
    let items = items
        .iter()
        .filter(|(k, _)| !PARTY_KEYS.contains(&k.as_slice()))
        .map(|(k, v)| {
            let v = if k == b"sdp" { sdp.clone() } else { v.clone() };
            (k.clone(), v)
        })
        .collect();
    Some(Value::Dict(items))
}

/// An `ng` `delete` of the whole call (every to-tag) from `from_tag`'s dialog.
fn delete_request(call_id: &str, from_tag: Option<&str>) -> Value {
    // Sorted keys: a bencode dictionary's canonical form.
    let mut items = vec![
        (b"call-id".to_vec(), Value::str(call_id)),
        (b"command".to_vec(), Value::str("delete")),
    ];
    if let Some(tag) = from_tag {
        items.push((b"from-tag".to_vec(), Value::str(tag)));
    }
    Value::Dict(items)
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
