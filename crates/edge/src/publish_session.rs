//! A publisher's RTSP session, sans-IO: an encoder pushing a stream to the edge with
//! `ANNOUNCE` (RFC 2326 §10.3: the SDP of what it will send), `SETUP` per track with
//! `mode=record` (§12.39; TCP interleaved or UDP `client_port`) and `RECORD` (§10.11),
//! then media until `TEARDOWN` or the connection closes.
//!
//! What it checks: the SDP's size ([`MAX_SDP_BYTES`]) and syntax (`mediagate_sdp`),
//! that it has RTP tracks, that each `SETUP` names an announced track, asks to record
//! and uses an interleaved channel pair no other track took, that `RECORD` comes after
//! at least one `SETUP`, the `Session` of every request after the first `SETUP`. Media
//! is relabelled to the hub's channels (`2i` RTP, `2i + 1` RTCP); frames on channels
//! never set up, RTP that is not version 2 or has an absurd size are dropped and
//! counted, never passed on.
//!
//! What it does not: decide who may publish (the `publish` shell asks the rules), do
//! I/O, or know about hubs.

use bytes::Bytes;
use mediagate_rtsp::headers::{ChannelRange, PortRange, Transport, TransportMode, TransportSpec};
use mediagate_rtsp::{InterleavedFrame, Request, Response, StatusCode, Version};
use mediagate_sdp::SessionDescription;

use crate::session::error;
use crate::upstream::{rtp_tracks, Described};

/// Largest `ANNOUNCE` body accepted. A real encoder's SDP is well under 4 KiB.
pub(crate) const MAX_SDP_BYTES: usize = 16 * 1024;

/// Smallest RTP packet (the fixed header, RFC 3550 §5.1) and largest accepted one:
/// encoders packetise for a path MTU; 32 KiB leaves room for jumbo frames and those
/// that send big packets over TCP, and keeps a hostile publisher from filling rings
/// with giant frames.
pub(crate) const MIN_RTP_BYTES: usize = 12;
pub(crate) const MAX_MEDIA_BYTES: usize = 32 * 1024;

/// How a track's media reaches the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PubTransport {
    /// On the RTSP connection, on these channels.
    Interleaved { rtp: u8, rtcp: u8 },
    /// UDP from the publisher's `client_port` pair, to a server pair of ours.
    Udp { client_rtp: u16, client_rtcp: u16 },
}

/// What a SETUP asks for, before the shell binds any socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetupAsk {
    pub track: usize,
    pub transport: PubTransport,
}

/// Drops counted on the way in, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Drops {
    /// Frames on an interleaved channel no SETUP declared.
    pub undeclared_channel: u64,
    /// Frames too small, too large, or RTP that is not version 2.
    pub malformed: u64,
    /// Media before `RECORD`.
    pub before_record: u64,
}

#[derive(Debug)]
pub(crate) struct PublishSession {
    /// The `ANNOUNCE` URL (aggregate control).
    url: Option<String>,
    described: Option<Described>,
    transports: Vec<Option<PubTransport>>,
    session: String,
    recording: bool,
    drops: Drops,
}

/// The path of an `rtsp://` URL (without query), for comparing URLs that may spell
/// the authority differently.
pub(crate) fn url_path(url: &str) -> &str {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
    rest.split(['?', '#']).next().unwrap_or("/")
}

impl PublishSession {
    pub fn new(session: String) -> Self {
        Self {
            url: None,
            described: None,
            transports: Vec::new(),
            session,
            recording: false,
            drops: Drops::default(),
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session
    }

    pub fn drops(&self) -> Drops {
        self.drops
    }

    #[cfg(test)]
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    pub fn described(&self) -> Option<&Described> {
        self.described.as_ref()
    }

    /// `ANNOUNCE`: the path it publishes to, or the error to answer. Only once per
    /// connection (a second one would change the stream under its viewers).
    pub fn announce(&mut self, req: &Request) -> Result<String, Response> {
        if self.described.is_some() {
            return Err(error(
                StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                "this connection has announced its stream already",
            ));
        }
        let content_type = req.headers.get("Content-Type").unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/sdp") {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "ANNOUNCE needs an application/sdp body",
            ));
        }
        if req.body.len() > MAX_SDP_BYTES {
            return Err(error(
                StatusCode::REQUEST_ENTITY_TOO_LARGE,
                &format!("the SDP is over {MAX_SDP_BYTES} bytes"),
            ));
        }
        let sdp = SessionDescription::parse(&req.body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("the announced SDP is invalid: {e}"),
            )
        })?;
        let url = req.uri.clone();
        let tracks = rtp_tracks(&sdp, &url);
        if tracks.is_empty() {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the announced SDP has no RTP track with a control URL",
            ));
        }
        self.transports = vec![None; tracks.len()];
        self.described = Some(Described {
            sdp,
            tracks,
            // Whatever its `a=range` says, a publisher's stream is live: it is split,
            // never cached.
            live: true,
            session_timeout: 60,
            aggregate_url: url.clone(),
            caching: Default::default(),
            needed_auth: false,
        });
        self.url = Some(url.clone());
        Ok(url_path(&url).to_owned())
    }

    /// `SETUP` of one announced track: which, and how its media will come.
    pub fn setup(&mut self, req: &Request) -> Result<SetupAsk, Response> {
        self.check_session(req, false)?;
        if self.recording {
            return Err(error(
                StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                "SETUP after RECORD",
            ));
        }
        let Some(d) = &self.described else {
            return Err(error(
                StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                "SETUP before ANNOUNCE",
            ));
        };
        let wanted = url_path(&req.uri);
        let Some(track) = d
            .tracks
            .iter()
            .position(|t| t.control_url == req.uri || url_path(&t.control_url) == wanted)
        else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "no announced track has this control URL",
            ));
        };
        let transport = match req.headers.typed::<Transport>() {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("bad Transport: {e}"),
                ))
            }
            None => return Err(error(StatusCode::BAD_REQUEST, "SETUP without Transport")),
        };
        let taken: Vec<u8> = self
            .transports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != track)
            .filter_map(|(_, t)| match t {
                Some(PubTransport::Interleaved { rtp, rtcp }) => Some([*rtp, *rtcp]),
                _ => None,
            })
            .flatten()
            .collect();
        let pick = |s: &TransportSpec| -> Option<PubTransport> {
            let records = s.mode.contains(&TransportMode::Record);
            if !records || !s.protocol.is_rtp() || s.is_multicast() {
                return None;
            }
            if s.is_tcp() {
                let ch = s.interleaved.as_ref()?;
                let rtp = ch.start;
                let rtcp = ch.rtcp_channel().unwrap_or(rtp.wrapping_add(1));
                (!taken.contains(&rtp) && !taken.contains(&rtcp) && rtp != rtcp)
                    .then_some(PubTransport::Interleaved { rtp, rtcp })
            } else {
                let p = s.client_port.as_ref()?;
                let client_rtp = p.start;
                let client_rtcp = p.rtcp_port().unwrap_or(client_rtp.wrapping_add(1));
                (client_rtp != 0).then_some(PubTransport::Udp {
                    client_rtp,
                    client_rtcp,
                })
            }
        };
        let Some(chosen) = transport.0.iter().find_map(pick) else {
            return Err(error(
                StatusCode::UNSUPPORTED_TRANSPORT,
                "publishing needs RTP/AVP;unicast;client_port=a-b;mode=record or RTP/AVP/TCP;interleaved=a-b;mode=record on free channels",
            ));
        };
        Ok(SetupAsk {
            track,
            transport: chosen,
        })
    }

    /// The shell set up `ask` (for UDP with `server_ports`); the answer to the SETUP.
    pub fn setup_done(&mut self, ask: &SetupAsk, server_ports: Option<(u16, u16)>) -> Response {
        self.transports[ask.track] = Some(ask.transport);
        let spec = match ask.transport {
            PubTransport::Interleaved { rtp, rtcp } => {
                TransportSpec::new(mediagate_rtsp::headers::TransportProtocol::rtp_avp_tcp())
                    .with_interleaved(Some(ChannelRange {
                        start: rtp,
                        end: Some(rtcp),
                    }))
            }
            PubTransport::Udp {
                client_rtp,
                client_rtcp,
            } => {
                let (srtp, srtcp) = server_ports.unwrap_or((0, 0));
                TransportSpec::new(mediagate_rtsp::headers::TransportProtocol::rtp_avp())
                    .with_client_ports(Some(PortRange {
                        start: client_rtp,
                        end: Some(client_rtcp),
                    }))
                    .with_server_ports(Some(PortRange {
                        start: srtp,
                        end: Some(srtcp),
                    }))
            }
        };
        let mut spec = spec;
        spec.delivery = Some(mediagate_rtsp::headers::Delivery::Unicast);
        spec.mode = vec![TransportMode::Record];
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers.set_typed(&Transport(vec![spec]));
        r.headers
            .set("Session", format!("{};timeout=60", self.session));
        r
    }

    /// `RECORD`: the description viewers will get, once at least one track is set up.
    pub fn record(&mut self, req: &Request) -> Result<Described, Response> {
        self.check_session(req, true)?;
        let Some(d) = &self.described else {
            return Err(error(
                StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                "RECORD before ANNOUNCE",
            ));
        };
        if self.transports.iter().all(Option::is_none) {
            return Err(error(
                StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                "RECORD before SETUP",
            ));
        }
        self.recording = true;
        Ok(d.clone())
    }

    /// Checks the `Session` of a request that needs one (`required`), or that names
    /// one (a SETUP after the first).
    pub fn check_session(&self, req: &Request, required: bool) -> Result<(), Response> {
        let any_setup = self.transports.iter().any(Option::is_some);
        let given = req
            .headers
            .get("Session")
            .map(|s| s.split(';').next().unwrap_or("").trim());
        match given {
            Some(id) if id != self.session => {
                Err(error(StatusCode::SESSION_NOT_FOUND, "no such session"))
            }
            None if required || any_setup => Err(error(
                StatusCode::SESSION_NOT_FOUND,
                "this request needs the Session of the SETUP",
            )),
            _ => Ok(()),
        }
    }

    /// An interleaved frame from the publisher, relabelled for the hub; `None` (and
    /// counted) when it must not go on.
    pub fn on_interleaved(&mut self, channel: u8, payload: Bytes) -> Option<InterleavedFrame> {
        let found = self
            .transports
            .iter()
            .enumerate()
            .find_map(|(i, t)| match t {
                Some(PubTransport::Interleaved { rtp, .. }) if *rtp == channel => Some((i, false)),
                Some(PubTransport::Interleaved { rtcp, .. }) if *rtcp == channel => Some((i, true)),
                _ => None,
            });
        let Some((track, rtcp)) = found else {
            self.drops.undeclared_channel += 1;
            return None;
        };
        self.media(track, rtcp, payload)
    }

    /// A datagram that arrived on track `track`'s UDP pair (`rtcp`: on its RTCP
    /// port), relabelled for the hub; `None` (and counted) when it must not go on.
    pub fn on_datagram(
        &mut self,
        track: usize,
        rtcp: bool,
        payload: Bytes,
    ) -> Option<InterleavedFrame> {
        if !matches!(
            self.transports.get(track),
            Some(Some(PubTransport::Udp { .. }))
        ) {
            self.drops.undeclared_channel += 1;
            return None;
        }
        self.media(track, rtcp, payload)
    }

    fn media(&mut self, track: usize, rtcp: bool, payload: Bytes) -> Option<InterleavedFrame> {
        if !self.recording {
            self.drops.before_record += 1;
            return None;
        }
        let version_ok = payload.first().is_some_and(|b| b >> 6 == 2);
        let min = if rtcp { 8 } else { MIN_RTP_BYTES };
        if !version_ok || payload.len() < min || payload.len() > MAX_MEDIA_BYTES {
            self.drops.malformed += 1;
            return None;
        }
        let hub_channel = u8::try_from(track * 2 + usize::from(rtcp)).ok()?;
        InterleavedFrame::new(hub_channel, payload).ok()
    }
}

#[cfg(test)]
#[path = "publish_session_tests.rs"]
mod tests;
