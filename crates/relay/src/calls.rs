//! The relay's calls and the `ng` commands that drive them, sans-IO: offer, answer,
//! delete, query, list, statistics and ping in, reply dictionaries out; timeouts and
//! delete delays when [`Registry::poll`] is called with the time; finished calls as
//! [`SessionRecord`]s.
//!
//! A call has two parties in two slots: slot 0 is the first offerer (the caller), slot 1
//! the answerer. Each `m=` line becomes a [`MediaPair`] with one leg per slot; both
//! legs' port pairs are allocated at the offer, so port exhaustion shows at the offer
//! as `Ran out of ports` (Kamailio and OpenSIPS fail over on it) and an answer never
//! fails for want of ports. Tags follow rtpengine: `from-tag` is the offerer's, `to-tag`
//! the answerer's, so a re-INVITE from the callee is an offer whose `from-tag` is slot
//! 1's. Forking is reduced to the last answer: a new `to-tag` replaces slot 1's.
//!
//! What it does not: open sockets or forward packets. It asks a [`MediaEnv`] to open
//! and close port pairs and to start forwarding a pair, so the engine does the I/O and
//! tests use a fake. Media pairs are shared with the forwarding tasks behind a mutex.
//!
//! Options ([`RelayOptions`]) may change while calls run ([`Registry::set_options`], a
//! reload): a call keeps the options it was created with (its timeouts, latching,
//! delete delay, stream limit) to its end; only new calls and the call limit see the
//! new ones.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mediagate_sdp::{Limits as SdpLimits, SessionDescription};

use crate::latch::{Expectation, LatchPolicy};
use crate::media::{Counters, Leg, MediaPair};
use crate::record::{EndReason, LegRecord, SessionRecord, StreamRecord};
use crate::sdp_rewrite::{self, MediaInfo, MediaOut, RewriteOptions};
use mediagate_ng::bencode::{dict, Value};
use mediagate_ng::reply;
use mediagate_ng::request::{Command, Family, Learning, Options, Request};

/// A moment, on both clocks: monotonic for timers, Unix time for records and replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Now {
    /// The Unix time of an earlier monotonic instant.
    pub(crate) fn unix_ms_of(&self, then: Instant) -> u64 {
        let ago = self.at.saturating_duration_since(then).as_millis();
        self.unix_ms
            .saturating_sub(u64::try_from(ago).unwrap_or(u64::MAX))
    }

    /// This moment plus `d`.
    #[cfg(test)]
    pub(crate) fn plus(&self, d: Duration) -> Now {
        Now {
            at: self.at + d,
            unix_ms: self
                .unix_ms
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Behaviour of the relay core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// An answered call with no media for this long ends (`[relay] media_timeout`).
    pub media_timeout: Duration,
    /// The same when every stream is on hold (`[relay] on_hold_timeout`).
    pub on_hold_timeout: Duration,
    /// An offer never answered ends after this long (ringing can last; rtpengine
    /// uses an hour).
    pub offer_timeout: Duration,
    /// Default `delete delay` (`[relay] delete_delay`).
    pub delete_delay: Duration,
    /// Latching knobs.
    pub latch: LatchPolicy,
    /// Learning mode when the request does not say.
    pub learning: Learning,
    /// Most concurrent calls; 0 for no limit. Beyond it offers get `load limit`.
    pub max_sessions: usize,
    /// Most `m=` lines in one call.
    pub max_media_per_call: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            media_timeout: Duration::from_secs(60),
            on_hold_timeout: Duration::from_secs(3600),
            offer_timeout: Duration::from_secs(3600),
            delete_delay: Duration::from_secs(30),
            latch: LatchPolicy::default(),
            learning: Learning::Heuristic,
            max_sessions: 0,
            max_media_per_call: 32,
        }
    }
}

/// A media pair shared with the tasks that forward its packets.
pub(crate) type SharedMedia = Arc<Mutex<MediaPair>>;

/// Locks a media pair; a poisoned lock (a panicking forwarder) still yields the data,
/// which is plain counters and addresses.
pub(crate) fn lock(m: &SharedMedia) -> MutexGuard<'_, MediaPair> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An opened relay port pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenPair {
    /// The local RTP address (RTCP is the next port).
    pub local: SocketAddr,
    /// The address to write into SDP.
    pub advertised: IpAddr,
}

/// Why a pair could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Every pair of the family's addresses is in use or in quarantine.
    Exhausted,
    /// No media address of that family is configured.
    NoAddress(Family),
}

/// The I/O side the registry drives.
pub(crate) trait MediaEnv {
    /// Reserves (and, in the engine, binds) an RTP/RTCP pair of `family`.
    fn open_pair(&mut self, family: Family, now: Instant) -> Result<OpenPair, OpenError>;
    /// Starts forwarding for a pair whose two legs are open.
    fn start(&mut self, media: &SharedMedia);
    /// Stops forwarding on and releases (into quarantine) the pair at `local`.
    fn close_pair(&mut self, local: SocketAddr, now: Instant);
}

#[derive(Debug)]
struct Call {
    /// The registry's options when the call was created; a reload does not change them.
    options: Arc<RelayOptions>,
    tags: [Option<String>; 2],
    created: Now,
    last_signal: Instant,
    answered: bool,
    /// When the first answer came, Unix ms (0 before).
    answered_unix_ms: u64,
    medias: Vec<Option<SharedMedia>>,
    deleting: Option<(Instant, Now)>,
}

impl Call {
    fn slot_of(&self, tag: &str) -> Option<usize> {
        self.tags.iter().position(|t| t.as_deref() == Some(tag))
    }

    fn last_activity(&self) -> Instant {
        self.medias
            .iter()
            .flatten()
            .filter_map(|m| lock(m).last_packet())
            .fold(self.last_signal, Instant::max)
    }
}

/// Relay-wide counters for `statistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Calls created.
    pub managed: u64,
    /// Offers refused (ports, limits, draining).
    pub rejected: u64,
    /// Calls ended by media timeout.
    pub timeouts: u64,
    /// Calls ended by `delete`.
    pub deleted: u64,
    /// Calls ended any other way.
    pub other_ended: u64,
    /// Packets forwarded by finished calls.
    pub packets: u64,
    /// Bytes forwarded by finished calls.
    pub bytes: u64,
    /// Errors of finished calls.
    pub errors: u64,
    /// Total duration of finished calls, ms.
    pub duration_ms: u64,
    /// Commands received, by kind.
    pub commands: [u64; 8],
}

fn command_index(c: &Command) -> usize {
    match c {
        Command::Ping => 0,
        Command::Offer => 1,
        Command::Answer => 2,
        Command::Delete => 3,
        Command::Query => 4,
        Command::List => 5,
        Command::Statistics => 6,
        Command::Other(_) => 7,
    }
}

/// A finished call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Its record.
    pub record: SessionRecord,
    /// Why it ended.
    pub reason: EndReason,
}

/// All calls; see the module docs.
#[derive(Debug)]
pub(crate) struct Registry {
    calls: HashMap<String, Call>,
    options: Arc<RelayOptions>,
    draining: bool,
    totals: Totals,
    started: Now,
    ended: Vec<Ended>,
    /// Offer-to-answer time of the last call answered, until the shell takes it.
    call_setup: Option<Duration>,
}

fn text_list(items: impl IntoIterator<Item = String>) -> Value {
    Value::List(
        items
            .into_iter()
            .map(|s| Value::Bytes(s.into_bytes()))
            .collect(),
    )
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new(options: RelayOptions, now: Now) -> Self {
        Self {
            calls: HashMap::new(),
            options: Arc::new(options),
            draining: false,
            totals: Totals::default(),
            started: now,
            ended: Vec::new(),
            call_setup: None,
        }
    }

    /// The options new calls get.
    #[cfg(test)]
    pub(crate) fn options(&self) -> &RelayOptions {
        &self.options
    }

    /// Options for calls created from now on (a reload); running calls keep theirs.
    /// The call limit applies to new offers at once.
    pub(crate) fn set_options(&mut self, options: RelayOptions) {
        self.options = Arc::new(options);
    }

    /// Calls held (including ones in their delete delay).
    #[cfg(test)]
    pub(crate) fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Calls not yet deleted.
    pub(crate) fn active_call_count(&self) -> usize {
        self.calls.values().filter(|c| c.deleting.is_none()).count()
    }

    /// The streams of call `call_id` (none for an unknown call).
    pub(crate) fn medias_of(&self, call_id: &str) -> Vec<SharedMedia> {
        self.calls
            .get(call_id)
            .map(|c| c.medias.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The Call-IDs of calls not yet deleted, sorted.
    pub(crate) fn active_call_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deleting.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Stop (or resume) accepting new calls: offers for unknown call-ids get the
    /// overload reply SIP proxies fail over on. Existing calls go on.
    pub(crate) fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Whether new calls are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining
    }

    /// Counters.
    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// Finished calls since the last call, oldest first.
    /// How long the call answered by the last request took from its first offer to
    /// this first answer (a re-INVITE's answer is not a setup); `None` otherwise.
    pub(crate) fn take_call_setup(&mut self) -> Option<Duration> {
        self.call_setup.take()
    }

    pub(crate) fn take_ended(&mut self) -> Vec<Ended> {
        std::mem::take(&mut self.ended)
    }

    /// Runs one request and returns the reply dictionary.
    pub(crate) fn handle<E: MediaEnv>(&mut self, req: &Request, now: Now, env: &mut E) -> Value {
        if let Some(n) = self.totals.commands.get_mut(command_index(&req.command)) {
            *n += 1;
        }
        match &req.command {
            Command::Ping => reply::pong(),
            Command::Offer => self.offer(req, now, env),
            Command::Answer => self.answer(req, now),
            Command::Delete => self.delete(req, now, env),
            Command::Query => self.query(req, now),
            Command::List => self.list(req),
            Command::Statistics => self.statistics(now),
            Command::Other(_) => reply::error(reply::UNRECOGNIZED_COMMAND),
        }
    }

    fn parse_sdp(
        req: &Request,
        max_media: usize,
    ) -> Result<(SessionDescription, Vec<MediaInfo>), Value> {
        let body = req
            .sdp
            .as_deref()
            .ok_or_else(|| reply::error(reply::NO_SDP))?;
        let limits = SdpLimits {
            max_media,
            ..SdpLimits::default()
        };
        let sdp = SessionDescription::parse_with_limits(body, &limits)
            .map_err(|_| reply::error(reply::SDP_PARSE_FAILED))?;
        let info = sdp_rewrite::inspect(&sdp).map_err(reply::error)?;
        Ok((sdp, info))
    }

    fn offer<E: MediaEnv>(&mut self, req: &Request, now: Now, env: &mut E) -> Value {
        if req.sdp.is_none() {
            return reply::error(reply::NO_SDP);
        }
        let Some(call_id) = req.call_id.as_deref() else {
            return reply::error(reply::NO_CALL_ID);
        };
        let Some(from_tag) = req.from_tag.as_deref() else {
            return reply::error(reply::NO_FROM_TAG);
        };
        // A re-offer is held to the limits its call was created with.
        let options = self
            .calls
            .get(call_id)
            .map_or_else(|| Arc::clone(&self.options), |c| Arc::clone(&c.options));
        let (mut sdp, infos) = match Self::parse_sdp(req, options.max_media_per_call) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let is_new = !self.calls.contains_key(call_id);
        if is_new {
            let full =
                self.options.max_sessions > 0 && self.calls.len() >= self.options.max_sessions;
            if self.draining || full {
                self.totals.rejected += 1;
                return reply::overload(req.supports_load_limit, reply::SESSION_LIMIT);
            }
        }
        let mut call = self.calls.remove(call_id).unwrap_or_else(|| Call {
            options: Arc::clone(&options),
            tags: [Some(from_tag.to_owned()), None],
            created: now,
            last_signal: now.at,
            answered: false,
            answered_unix_ms: 0,
            medias: Vec::new(),
            deleting: None,
        });
        let sender = match call.slot_of(from_tag) {
            Some(s) => s,
            None if call.tags[1].is_none() => {
                // A new offerer before any answer (a fresh INVITE reusing the
                // call-id): it takes the caller's slot.
                call.tags[0] = Some(from_tag.to_owned());
                0
            }
            None => {
                self.calls.insert(call_id.to_owned(), call);
                return reply::error(reply::INVALID_DIALOGUE);
            }
        };
        let receiver = 1 - sender;
        if let Some(to_tag) = &req.to_tag {
            if call.tags[receiver].is_none() {
                call.tags[receiver] = Some(to_tag.clone());
            }
        }
        // Open pairs for streams the call does not have yet.
        let mut opened: Vec<(usize, SharedMedia)> = Vec::new();
        let mut failure = None;
        for (i, info) in infos.iter().enumerate() {
            if call.medias.get(i).is_some_and(Option::is_some) || info.closed {
                continue;
            }
            let sender_family = info.family();
            let receiver_family = req.options.address_family.unwrap_or(sender_family);
            let mut families = [sender_family; 2];
            families[receiver] = receiver_family;
            let mut legs = Vec::with_capacity(2);
            for family in families {
                match env.open_pair(family, now.at) {
                    Ok(p) => legs.push(p),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if failure.is_some() || legs.len() != 2 {
                for p in legs {
                    env.close_pair(p.local, now.at);
                }
                break;
            }
            let policy = options.latch;
            let leg = |p: &OpenPair| Leg::new(p.local, p.advertised, policy, now.at);
            let pair = MediaPair {
                index: i,
                media_type: info.media_type.clone(),
                proto: info.proto.clone(),
                is_rtp: info.is_rtp,
                legs: [leg(&legs[0]), leg(&legs[1])],
            };
            opened.push((i, Arc::new(Mutex::new(pair))));
        }
        if let Some(e) = failure {
            for (_, m) in &opened {
                let m = lock(m);
                for leg in &m.legs {
                    env.close_pair(leg.local, now.at);
                }
            }
            if !is_new {
                self.calls.insert(call_id.to_owned(), call);
            }
            self.totals.rejected += 1;
            return reply::error(match e {
                OpenError::Exhausted => reply::RAN_OUT_OF_PORTS,
                OpenError::NoAddress(Family::V4) => "No IPv4 media address configured",
                OpenError::NoAddress(Family::V6) => "No IPv6 media address configured",
            });
        }
        for (i, m) in &opened {
            if call.medias.len() <= *i {
                call.medias.resize(*i + 1, None);
            }
            if let Some(slot) = call.medias.get_mut(*i) {
                *slot = Some(Arc::clone(m));
            }
        }
        let opts = &req.options;
        let mut outs = Vec::with_capacity(infos.len());
        for (i, info) in infos.iter().enumerate() {
            let Some(Some(shared)) = call.medias.get(i) else {
                outs.push(None);
                continue;
            };
            let mut m = lock(shared);
            signal_leg(&options, &mut m.legs[sender], info, opts, now.at);
            if info.closed {
                outs.push(None);
                continue;
            }
            let mux = &opts.rtcp_mux;
            let offer_mux =
                !mux.reject && ((info.rtcp_mux && !mux.demux) || mux.offer || mux.require);
            let target = &m.legs[receiver];
            outs.push(Some(MediaOut {
                port: target.local.port(),
                address: target.advertised,
                rtcp_mux: offer_mux && info.is_rtp,
                hold_address: info.endpoint.ip().is_unspecified(),
            }));
        }
        let rewrite = RewriteOptions {
            replace_origin: opts.replace_origin,
            no_rtcp_attribute: opts.no_rtcp_attribute,
            full_rtcp_attribute: opts.full_rtcp_attribute,
        };
        if sdp_rewrite::rewrite(&mut sdp, &outs, rewrite).is_err() {
            for (i, m) in &opened {
                {
                    let m = lock(m);
                    for leg in &m.legs {
                        env.close_pair(leg.local, now.at);
                    }
                }
                if let Some(slot) = call.medias.get_mut(*i) {
                    *slot = None;
                }
            }
            if !is_new {
                self.calls.insert(call_id.to_owned(), call);
            }
            return reply::error(reply::REWRITE_FAILED);
        }
        for (_, m) in &opened {
            env.start(m);
        }
        // A new offer revives a call whose delete delay is running (a re-INVITE
        // after a cancelled fork): it must not be purged under the new session.
        call.deleting = None;
        call.last_signal = now.at;
        if is_new {
            self.totals.managed += 1;
        }
        self.calls.insert(call_id.to_owned(), call);
        reply::ok(vec![(b"sdp".to_vec(), Value::Bytes(sdp.to_vec()))])
    }

    fn answer(&mut self, req: &Request, now: Now) -> Value {
        if req.sdp.is_none() {
            return reply::error(reply::NO_SDP);
        }
        let Some(call_id) = req.call_id.as_deref() else {
            return reply::error(reply::NO_CALL_ID);
        };
        let Some(from_tag) = req.from_tag.as_deref() else {
            return reply::error(reply::NO_FROM_TAG);
        };
        let Some(to_tag) = req.to_tag.as_deref() else {
            return reply::error(reply::NO_TO_TAG);
        };
        let options = self
            .calls
            .get(call_id)
            .map_or_else(|| Arc::clone(&self.options), |c| Arc::clone(&c.options));
        let (mut sdp, infos) = match Self::parse_sdp(req, options.max_media_per_call) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let Some(call) = self.calls.get_mut(call_id) else {
            return reply::error(reply::UNKNOWN_CALL_ID);
        };
        let Some(offerer) = call.slot_of(from_tag) else {
            return reply::error(reply::INVALID_DIALOGUE);
        };
        let answerer = 1 - offerer;
        call.tags[answerer] = Some(to_tag.to_owned());
        let opts = &req.options;
        let mut outs = Vec::with_capacity(infos.len());
        let mut unrelayed = Vec::new();
        let medias = call.medias.clone();
        for (i, info) in infos.iter().enumerate() {
            let Some(Some(shared)) = medias.get(i) else {
                if !info.closed {
                    // A stream the offer did not open: refuse it rather than let
                    // media bypass the relay.
                    unrelayed.push(i);
                }
                outs.push(None);
                continue;
            };
            let mut m = lock(shared);
            signal_leg(&options, &mut m.legs[answerer], info, opts, now.at);
            if info.closed {
                outs.push(None);
                continue;
            }
            let mux = &opts.rtcp_mux;
            let answerer_mux = info.rtcp_mux && !mux.reject;
            let offerer_mux =
                m.legs[offerer].sdp_rtcp_mux && !mux.reject && (answerer_mux || mux.accept);
            m.legs[answerer].rtcp_mux = answerer_mux && info.is_rtp;
            m.legs[offerer].rtcp_mux = offerer_mux && info.is_rtp;
            let target = &m.legs[offerer];
            outs.push(Some(MediaOut {
                port: target.local.port(),
                address: target.advertised,
                rtcp_mux: offerer_mux && info.is_rtp,
                hold_address: info.endpoint.ip().is_unspecified(),
            }));
        }
        for i in unrelayed {
            if let Some(m) = sdp.media_mut().get_mut(i) {
                m.set_port(0);
            }
        }
        let rewrite = RewriteOptions {
            replace_origin: opts.replace_origin,
            no_rtcp_attribute: opts.no_rtcp_attribute,
            full_rtcp_attribute: opts.full_rtcp_attribute,
        };
        if sdp_rewrite::rewrite(&mut sdp, &outs, rewrite).is_err() {
            return reply::error(reply::REWRITE_FAILED);
        }
        if !call.answered {
            self.call_setup = Some(now.at.saturating_duration_since(call.created.at));
            call.answered_unix_ms = now.unix_ms.max(call.created.unix_ms);
        }
        call.answered = true;
        call.deleting = None;
        call.last_signal = now.at;
        reply::ok(vec![(b"sdp".to_vec(), Value::Bytes(sdp.to_vec()))])
    }

    fn delete<E: MediaEnv>(&mut self, req: &Request, now: Now, env: &mut E) -> Value {
        let Some(call_id) = req.call_id.as_deref() else {
            return reply::error(reply::NO_CALL_ID);
        };
        let not_found = || {
            if req.options.fatal {
                reply::error(reply::CALL_NOT_FOUND)
            } else {
                reply::ok_with_warning(reply::CALL_NOT_FOUND)
            }
        };
        let Some(call) = self.calls.get(call_id) else {
            return not_found();
        };
        let mut given = [&req.from_tag, &req.to_tag]
            .into_iter()
            .flatten()
            .peekable();
        if given.peek().is_some() && !given.any(|t| call.slot_of(t).is_some()) {
            return not_found();
        }
        let reply = if req.options.fast {
            reply::ok(Vec::new())
        } else {
            self.call_details(call_id, call, now)
        };
        let delay = req
            .options
            .delete_delay
            .map_or(call.options.delete_delay, |s| {
                Duration::from_secs(u64::from(s))
            });
        if delay.is_zero() {
            let deleted_at = call.deleting.map_or(now, |(_, at)| at);
            self.end_call(call_id, deleted_at, EndReason::Deleted, now.at, env);
        } else if let Some(call) = self.calls.get_mut(call_id) {
            if call.deleting.is_none() {
                call.deleting = Some((now.at + delay, now));
            }
        }
        reply
    }

    fn query(&self, req: &Request, now: Now) -> Value {
        let Some(call_id) = req.call_id.as_deref() else {
            return reply::error(reply::NO_CALL_ID);
        };
        match self.calls.get(call_id) {
            Some(call) => self.call_details(call_id, call, now),
            None => reply::error(reply::UNKNOWN_CALL_ID),
        }
    }

    /// rtpengine's `query` reply shape: `created`, `last signal`, `tags` with
    /// `medias` and `streams`, and `totals` that Kamailio's `$rtpstat` reads.
    fn call_details(&self, call_id: &str, call: &Call, now: Now) -> Value {
        let mut totals_rtp = Counters::default();
        let mut totals_rtcp = Counters::default();
        let mut tags = Vec::new();
        for slot in 0..2 {
            let Some(tag) = call.tags[slot].clone() else {
                continue;
            };
            let mut medias = Vec::new();
            for m in call.medias.iter().flatten() {
                let m = lock(m);
                let Some(leg) = m.legs.get(slot) else {
                    continue;
                };
                totals_rtp.add(&leg.rtp);
                totals_rtcp.add(&leg.rtcp);
                let stream = |port: SocketAddr, c: &Counters, remote: Option<SocketAddr>| {
                    let mut entries = vec![
                        (b"local port".to_vec(), int(u64::from(port.port()))),
                        (
                            b"local address".to_vec(),
                            Value::str(&port.ip().to_string()),
                        ),
                        (
                            b"stats".to_vec(),
                            dict([
                                ("packets", int(c.packets)),
                                ("bytes", int(c.bytes)),
                                ("errors", int(c.errors)),
                                ("refused", int(c.refused)),
                            ]),
                        ),
                    ];
                    if let Some(r) = remote {
                        entries.push((
                            b"endpoint".to_vec(),
                            dict([
                                ("family", Value::str(Family::of(r.ip()).sdp_name())),
                                ("address", Value::str(&r.ip().to_string())),
                                ("port", int(u64::from(r.port()))),
                            ]),
                        ));
                    }
                    if let Some(t) = c.last_packet {
                        entries.push((b"last packet".to_vec(), int(now.unix_ms_of(t) / 1000)));
                    }
                    Value::Dict(entries)
                };
                medias.push(dict([
                    ("index", int(m.index as u64 + 1)),
                    ("type", Value::str(&m.media_type)),
                    ("protocol", Value::str(&m.proto)),
                    (
                        "streams",
                        Value::List(vec![
                            stream(leg.local, &leg.rtp, leg.rtp_latch.destination()),
                            stream(leg.local_rtcp(), &leg.rtcp, leg.rtcp_latch.destination()),
                        ]),
                    ),
                    (
                        "quality",
                        dict([
                            ("fraction lost", int(u64::from(leg.quality.fraction_lost))),
                            (
                                "cumulative lost",
                                Value::Int(i64::from(leg.quality.cumulative_lost)),
                            ),
                            ("jitter", int(u64::from(leg.quality.jitter))),
                        ]),
                    ),
                ]));
            }
            let mut entry = vec![
                (b"tag".to_vec(), Value::str(&tag)),
                (b"created".to_vec(), int(call.created.unix_ms / 1000)),
                (b"medias".to_vec(), Value::List(medias)),
            ];
            if let Some(other) = &call.tags[1 - slot] {
                entry.push((b"in dialogue with".to_vec(), Value::str(other)));
            }
            tags.push((tag.into_bytes(), Value::Dict(entry)));
        }
        let totals = |c: &Counters| {
            dict([
                ("packets", int(c.packets)),
                ("bytes", int(c.bytes)),
                ("errors", int(c.errors)),
            ])
        };
        reply::ok(vec![
            (b"call-id".to_vec(), Value::str(call_id)),
            (b"created".to_vec(), int(call.created.unix_ms / 1000)),
            (
                b"last signal".to_vec(),
                int(now.unix_ms_of(call.last_signal) / 1000),
            ),
            (b"tags".to_vec(), Value::Dict(tags)),
            (
                b"totals".to_vec(),
                dict([("RTP", totals(&totals_rtp)), ("RTCP", totals(&totals_rtcp))]),
            ),
        ])
    }

    fn list(&self, req: &Request) -> Value {
        let limit = req.limit.unwrap_or(32).clamp(0, 1000);
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut ids: Vec<&String> = self.calls.keys().collect();
        ids.sort_unstable();
        reply::ok(vec![(
            b"calls".to_vec(),
            text_list(ids.into_iter().take(limit).cloned()),
        )])
    }

    fn statistics(&self, now: Now) -> Value {
        let t = &self.totals;
        let mut live = Counters::default();
        let mut streams = [0u64; 3]; // zero-way, one-way, two-way
        for m in self.calls.values().flat_map(|c| c.medias.iter().flatten()) {
            let m = lock(m);
            let mut sending = 0;
            for leg in &m.legs {
                live.add(&leg.rtp);
                live.add(&leg.rtcp);
                sending += usize::from(leg.rtp.packets > 0);
            }
            if let Some(n) = streams.get_mut(sending) {
                *n += 1;
            }
        }
        let ended = t.deleted + t.timeouts + t.other_ended;
        let uptime = now.at.saturating_duration_since(self.started.at).as_secs();
        let cmd = |i: usize| int(t.commands.get(i).copied().unwrap_or(0));
        reply::ok(vec![(
            b"statistics".to_vec(),
            dict([
                (
                    "currentstatistics",
                    dict([
                        ("sessionsown", int(self.calls.len() as u64)),
                        ("sessionsforeign", Value::Int(0)),
                        ("sessionstotal", int(self.calls.len() as u64)),
                        ("transcodedmedia", Value::Int(0)),
                        ("draining", Value::Int(i64::from(self.draining))),
                    ]),
                ),
                (
                    "totalstatistics",
                    dict([
                        ("uptime", int(uptime)),
                        ("managedsessions", int(t.managed)),
                        ("rejectedsessions", int(t.rejected)),
                        ("timeoutsessions", int(t.timeouts)),
                        ("regularterminatedsessions", int(t.deleted)),
                        ("forcedterminatedsessions", int(t.other_ended)),
                        ("relayedpackets", int(t.packets + live.packets)),
                        ("relayedbytes", int(t.bytes + live.bytes)),
                        ("relayedpacketerrors", int(t.errors + live.errors)),
                        ("refusedpackets", int(live.refused)),
                        ("zerowaystreams", int(streams[0])),
                        ("onewaystreams", int(streams[1])),
                        (
                            "avgcallduration",
                            int(t.duration_ms.checked_div(ended).unwrap_or(0) / 1000),
                        ),
                    ]),
                ),
                (
                    "controlstatistics",
                    dict([
                        ("totalpingcount", cmd(0)),
                        ("totaloffercount", cmd(1)),
                        ("totalanswercount", cmd(2)),
                        ("totaldeletecount", cmd(3)),
                        ("totalquerycount", cmd(4)),
                        ("totallistcount", cmd(5)),
                        ("totalstatisticscount", cmd(6)),
                        ("totalunknowncount", cmd(7)),
                    ]),
                ),
            ]),
        )])
    }

    /// Ends calls whose delete delay is over or whose media timed out.
    pub(crate) fn poll<E: MediaEnv>(&mut self, now: Now, env: &mut E) {
        let mut due = Vec::new();
        for (id, call) in &self.calls {
            if let Some((remove_at, deleted_at)) = call.deleting {
                if now.at >= remove_at {
                    due.push((id.clone(), deleted_at, EndReason::Deleted));
                }
                continue;
            }
            let idle = now.at.saturating_duration_since(call.last_activity());
            let (limit, reason) = if !call.answered {
                (call.options.offer_timeout, EndReason::OfferTimeout)
            } else if self.all_on_hold(call) {
                (call.options.on_hold_timeout, EndReason::HoldTimeout)
            } else {
                (call.options.media_timeout, EndReason::Timeout)
            };
            if idle >= limit {
                due.push((id.clone(), now, reason));
            }
        }
        for (id, at, reason) in due {
            self.end_call(&id, at, reason, now.at, env);
        }
    }

    fn all_on_hold(&self, call: &Call) -> bool {
        let mut open = call
            .medias
            .iter()
            .flatten()
            .map(|m| {
                let m = lock(m);
                (
                    m.legs.iter().any(|l| l.on_hold),
                    m.legs.iter().all(|l| l.closed),
                )
            })
            .filter(|(_, closed)| !closed)
            .peekable();
        open.peek().is_some() && open.all(|(hold, _)| hold)
    }

    /// Every call now, as its record would read if it ended at `now` (reason empty),
    /// with whether it was answered: the admin API's live picture. Sorted by Call-ID.
    pub(crate) fn live_calls(&self, now: Now) -> Vec<(SessionRecord, bool)> {
        let mut calls: Vec<(SessionRecord, bool)> = self
            .calls
            .iter()
            .map(|(id, call)| {
                let record = SessionRecord {
                    call_id: id.clone(),
                    from_tag: call.tags[0].clone().unwrap_or_default(),
                    to_tag: call.tags[1].clone().unwrap_or_default(),
                    start_unix_ms: call.created.unix_ms,
                    answer_unix_ms: call.answered_unix_ms,
                    end_unix_ms: now.unix_ms.max(call.created.unix_ms),
                    reason: String::new(),
                    streams: stream_records(call),
                };
                (record, call.answered)
            })
            .collect();
        calls.sort_by(|a, b| a.0.call_id.cmp(&b.0.call_id));
        calls
    }

    /// Ends one call now for an operator (reason `admin`), whether or not it is in
    /// its delete delay. False when no such call exists.
    pub(crate) fn end_by_operator<E: MediaEnv>(
        &mut self,
        call_id: &str,
        now: Now,
        env: &mut E,
    ) -> bool {
        if !self.calls.contains_key(call_id) {
            return false;
        }
        self.end_call(call_id, now, EndReason::Admin, now.at, env);
        true
    }

    /// Ends every call (shutdown), recording `reason`.
    pub(crate) fn end_all<E: MediaEnv>(&mut self, now: Now, reason: EndReason, env: &mut E) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            let at = self
                .calls
                .get(&id)
                .and_then(|c| c.deleting)
                .map_or(now, |(_, at)| at);
            self.end_call(&id, at, reason, now.at, env);
        }
    }

    fn end_call<E: MediaEnv>(
        &mut self,
        call_id: &str,
        ended_at: Now,
        reason: EndReason,
        now: Instant,
        env: &mut E,
    ) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        for m in call.medias.iter().flatten() {
            // Not under the stream's lock: closing may merge the kernel fast path's
            // last counts into it.
            let locals = lock(m).legs.each_ref().map(|l| l.local);
            for local in locals {
                env.close_pair(local, now);
            }
        }
        let streams = stream_records(&call);
        let record = SessionRecord {
            call_id: call_id.to_owned(),
            from_tag: call.tags[0].clone().unwrap_or_default(),
            to_tag: call.tags[1].clone().unwrap_or_default(),
            start_unix_ms: call.created.unix_ms,
            answer_unix_ms: call.answered_unix_ms,
            end_unix_ms: ended_at.unix_ms.max(call.created.unix_ms),
            reason: reason.as_str().to_owned(),
            streams,
        };
        let t = &mut self.totals;
        match reason {
            EndReason::Deleted => t.deleted += 1,
            EndReason::Timeout | EndReason::HoldTimeout => t.timeouts += 1,
            EndReason::OfferTimeout | EndReason::Shutdown | EndReason::Admin => t.other_ended += 1,
        }
        for s in &record.streams {
            for l in [&s.caller, &s.callee] {
                t.packets += l.packets + l.rtcp_packets;
                t.bytes += l.bytes + l.rtcp_bytes;
                t.errors += l.errors;
            }
        }
        t.duration_ms += record.duration_ms();
        self.ended.push(Ended { record, reason });
    }
}

/// A call's streams as records: codecs, addresses and what flowed each way so far.
fn stream_records(call: &Call) -> Vec<StreamRecord> {
    let leg_record = |leg: &Leg| LegRecord {
        codec: leg.codecs.first().cloned().unwrap_or_default(),
        local: leg.local.to_string(),
        remote: leg
            .rtp_latch
            .destination()
            .map_or_else(|| "Unknown".to_owned(), |a| a.to_string()),
        packets: leg.rtp.packets,
        bytes: leg.rtp.bytes,
        rtcp_packets: leg.rtcp.packets,
        rtcp_bytes: leg.rtcp.bytes,
        errors: leg.rtp.errors + leg.rtcp.errors,
        refused: leg.rtp.refused + leg.rtcp.refused,
        cumulative_lost: i64::from(leg.quality.cumulative_lost),
        fraction_lost: leg.quality.fraction_lost,
        jitter: leg.quality.jitter,
    };
    call.medias
        .iter()
        .flatten()
        .map(|m| {
            let m = lock(m);
            StreamRecord {
                index: m.index,
                media_type: m.media_type.clone(),
                proto: m.proto.clone(),
                caller: leg_record(&m.legs[0]),
                callee: leg_record(&m.legs[1]),
                on_hold: m.legs.iter().any(|l| l.on_hold),
                closed: m.legs.iter().any(|l| l.closed),
            }
        })
        .collect()
}

/// Applies a party's SDP for one stream to its leg: where its media should come from
/// (the SDP endpoint, or `media address`, or with `SIP source address` the
/// `received-from` IP with the SDP port), the learning mode and flags, codecs, hold.
fn signal_leg(
    options: &RelayOptions,
    leg: &mut Leg,
    info: &MediaInfo,
    opts: &Options,
    now: Instant,
) {
    let override_ip = opts.media_address.or(match opts.trust_address {
        Some(false) => opts.received_from,
        _ => None,
    });
    let endpoint = |a: SocketAddr| {
        let a = SocketAddr::new(override_ip.unwrap_or(a.ip()), a.port());
        (!a.ip().is_unspecified() && a.port() != 0).then_some(a)
    };
    let mode = opts.learning.unwrap_or(options.learning);
    let rtp = Expectation {
        endpoint: endpoint(info.endpoint),
        source_ip: opts.received_from,
    };
    let rtcp = Expectation {
        endpoint: endpoint(info.rtcp_endpoint),
        source_ip: opts.received_from,
    };
    leg.rtp_latch.signal(mode, rtp, now);
    leg.rtcp_latch.signal(mode, rtcp, now);
    leg.rtp_latch
        .set_flags(opts.asymmetric, opts.media_handover);
    leg.rtcp_latch
        .set_flags(opts.asymmetric, opts.media_handover);
    leg.codecs.clone_from(&info.codecs);
    leg.on_hold = info.on_hold();
    leg.closed = info.closed;
    leg.sdp_rtcp_mux = info.rtcp_mux;
}

#[cfg(test)]
#[path = "calls_tests.rs"]
mod tests;
