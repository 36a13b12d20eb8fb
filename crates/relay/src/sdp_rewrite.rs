//! Reading a party's SDP for what the relay needs, and rewriting it so the other party
//! sends its media to the relay (RFC 8866 `c=`/`m=`/`o=`, RFC 3605 `a=rtcp`, RFC 5761
//! `a=rtcp-mux`, RFC 3264 §8.4 hold).
//!
//! What it does: [`inspect`] lists each `m=` section's type, proto, endpoint (effective
//! `c=` and port), RTCP endpoint (`a=rtcp` or port + 1), whether it offers rtcp-mux,
//! its effective direction and codec names. [`rewrite`] changes, byte-exact and
//! nothing else: the `m=` ports, `c=` at session and media level (inserting a media
//! `c=` where a stream's family differs from the session's), `a=rtcp` (plain or with
//! the address), `a=rtcp-mux`, the `o=` address when asked, and removes ICE
//! attributes (the relay is not an ICE agent: candidates pointing around it would let
//! phones bypass it). Closed streams (`m=... 0`) stay exactly as they were. A hold
//! written as `c=0.0.0.0` stays a hold: the relay writes the unspecified address of
//! the new family instead of its own.
//!
//! What it does not: negotiate codecs, change directions (they pass through as they
//! are, so hold and resume work end to end) or touch any other line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mediagate_sdp::{Direction, MediaDescription, RewriteError, Rtcp, SessionDescription};

use mediagate_ng::request::Family;

/// What the relay reads from one `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaInfo {
    /// `audio`, `video`, `image` ...
    pub media_type: String,
    /// `RTP/AVP`, `udptl` ...
    pub proto: String,
    /// The proto carries RTP.
    pub is_rtp: bool,
    /// Port 0: closed or rejected.
    pub closed: bool,
    /// The media endpoint (effective `c=` address and the `m=` port).
    pub endpoint: SocketAddr,
    /// The RTCP endpoint (`a=rtcp`, else port + 1).
    pub rtcp_endpoint: SocketAddr,
    /// `a=rtcp-mux` is present.
    pub rtcp_mux: bool,
    /// The effective direction.
    pub direction: Direction,
    /// Codec names in `m=` order (`PCMA`, `telephone-event`, `t38`).
    pub codecs: Vec<String>,
}

impl MediaInfo {
    /// On hold from this party: `sendonly`/`inactive`, or the RFC 2543 `0.0.0.0` form.
    pub(crate) fn on_hold(&self) -> bool {
        matches!(self.direction, Direction::SendOnly | Direction::Inactive)
            || self.endpoint.ip().is_unspecified()
    }

    /// The address family of the endpoint.
    pub(crate) fn family(&self) -> Family {
        Family::of(self.endpoint.ip())
    }
}

/// Static RTP payload type names (RFC 3551 §6).
fn static_payload_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        5 | 6 => "DVI4",
        7 => "LPC",
        8 => "PCMA",
        9 => "G722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "G728",
        16 | 17 => "DVI4",
        18 => "G729",
        25 => "CelB",
        26 => "JPEG",
        28 => "nv",
        31 => "H261",
        32 => "MPV",
        33 => "MP2T",
        34 => "H263",
        _ => return None,
    })
}

fn codecs(m: &MediaDescription) -> Vec<String> {
    if !m.is_rtp() {
        return m.formats().take(16).map(str::to_owned).collect();
    }
    m.payload_types()
        .take(16)
        .map(|pt| match m.rtpmap(pt) {
            Some(r) => r.encoding.to_owned(),
            None => static_payload_name(pt)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("Dynamic({pt})")),
        })
        .collect()
}

/// Reads every `m=` section. Fails with rtpengine's `Incomplete SDP specification`
/// reason when an open stream has no usable `c=` address.
pub(crate) fn inspect(sdp: &SessionDescription) -> Result<Vec<MediaInfo>, &'static str> {
    sdp.media()
        .iter()
        .map(|m| {
            let closed = m.is_disabled();
            let ip = match sdp.effective_connection(m).and_then(|c| c.ip()) {
                Some(ip) => ip,
                None if closed => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                None => return Err(mediagate_ng::reply::INCOMPLETE_SDP),
            };
            let endpoint = SocketAddr::new(ip, m.port());
            let rtcp_endpoint = match m.rtcp() {
                Some(r) => {
                    let rip = r
                        .address
                        .as_ref()
                        .and_then(|a| a.address.parse::<IpAddr>().ok())
                        .unwrap_or(ip);
                    SocketAddr::new(rip, r.port)
                }
                None => SocketAddr::new(ip, m.port().wrapping_add(1)),
            };
            Ok(MediaInfo {
                media_type: m.media_type().to_owned(),
                proto: m.proto().to_owned(),
                is_rtp: m.is_rtp(),
                closed,
                endpoint,
                rtcp_endpoint,
                rtcp_mux: m.is_rtcp_mux(),
                direction: sdp.effective_direction(m),
                codecs: codecs(m),
            })
        })
        .collect()
}

/// How one open stream is presented to the receiving party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaOut {
    /// The relay's RTP port the receiving party should send to.
    pub port: u16,
    /// The relay address to advertise.
    pub address: IpAddr,
    /// Announce rtcp-mux.
    pub rtcp_mux: bool,
    /// Write the unspecified address (the sender put the stream on hold RFC 2543 style).
    pub hold_address: bool,
}

impl MediaOut {
    fn sdp_address(&self) -> (Family, String) {
        let family = Family::of(self.address);
        let shown = if self.hold_address {
            match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            }
        } else {
            self.address
        };
        (family, shown.to_string())
    }
}

/// Rewrite switches from the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RewriteOptions {
    /// Rewrite the `o=` address too.
    pub replace_origin: bool,
    /// Do not write `a=rtcp`.
    pub no_rtcp_attribute: bool,
    /// Write `a=rtcp` with the address.
    pub full_rtcp_attribute: bool,
}

/// Rewrites `sdp` for the receiving party; `outs[i]` is the presentation of `m=` line
/// `i`, `None` to leave it as it is (closed streams).
pub(crate) fn rewrite(
    sdp: &mut SessionDescription,
    outs: &[Option<MediaOut>],
    opts: RewriteOptions,
) -> Result<(), RewriteError> {
    let first = outs.iter().flatten().next().copied();
    let session_c = sdp.connection().map(|c| c.address.to_owned());
    if let (Some(first), Some(_)) = (first, &session_c) {
        let (family, shown) = first.sdp_address();
        sdp.set_connection_address(family.sdp_name(), &shown)?;
    }
    let session_shown = first.map(|f| f.sdp_address().1);
    if opts.replace_origin {
        if let Some(first) = first {
            let family = Family::of(first.address);
            sdp.set_origin_address(family.sdp_name(), &first.address.to_string())?;
        }
    }
    sdp.remove_ice_attributes();
    for (m, out) in sdp.media_mut().iter_mut().zip(outs) {
        let Some(out) = out else {
            continue;
        };
        let (family, shown) = out.sdp_address();
        m.set_port(out.port);
        let needs_own_c = m.connection().is_some()
            || session_c.is_none()
            || session_shown.as_deref() != Some(shown.as_str());
        if needs_own_c {
            m.set_connection_address(family.sdp_name(), &shown)?;
        }
        if m.is_rtp() {
            let rtcp_port = if out.rtcp_mux {
                out.port
            } else {
                out.port.wrapping_add(1)
            };
            if opts.no_rtcp_attribute {
                m.remove_attributes("rtcp");
            } else {
                let address = opts.full_rtcp_attribute.then(|| mediagate_sdp::NetAddress {
                    nettype: "IN",
                    addrtype: family.sdp_name(),
                    address: &shown,
                });
                m.set_rtcp(&Rtcp {
                    port: rtcp_port,
                    address,
                })?;
            }
            if out.rtcp_mux {
                if !m.is_rtcp_mux() {
                    m.add_attribute("rtcp-mux", None)?;
                }
            } else {
                m.remove_attributes("rtcp-mux");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 10.10.0.2\r\n\
s=-\r\n\
c=IN IP4 10.10.0.2\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ice-ufrag:abcd\r\n\
a=candidate:1 1 UDP 2130706431 10.10.0.2 6000 typ host\r\n";

    fn parse(s: &str) -> SessionDescription {
        SessionDescription::parse(s.as_bytes()).unwrap()
    }

    fn out(port: u16, ip: &str) -> Option<MediaOut> {
        Some(MediaOut {
            port,
            address: ip.parse().unwrap(),
            rtcp_mux: false,
            hold_address: false,
        })
    }

    #[test]
    fn inspects_a_sipp_offer() {
        let info = inspect(&parse(SIPP_OFFER)).unwrap();
        assert_eq!(
            info,
            vec![MediaInfo {
                media_type: "audio".into(),
                proto: "RTP/AVP".into(),
                is_rtp: true,
                closed: false,
                endpoint: "10.10.0.2:6000".parse().unwrap(),
                rtcp_endpoint: "10.10.0.2:6001".parse().unwrap(),
                rtcp_mux: false,
                direction: Direction::SendRecv,
                codecs: vec!["PCMA".into(), "telephone-event".into()],
            }]
        );
        assert!(!info[0].on_hold());
    }

    #[test]
    fn rewrites_exactly_the_relay_lines() {
        let mut sdp = parse(SIPP_OFFER);
        rewrite(
            &mut sdp,
            &[out(30000, "192.0.2.1")],
            RewriteOptions {
                replace_origin: true,
                ..RewriteOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(sdp.to_vec()).unwrap(),
            "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp:30001\r\n"
        );
    }

    #[test]
    fn audio_video_t38_closed_and_bridging() {
        let offer = "v=0\r\n\
o=- 1 1 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n\
a=rtcp:4005 IN IP4 10.0.0.9\r\n\
a=rtcp-mux\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
m=image 4010 udptl t38\r\n\
c=IN IP4 10.0.0.3\r\n\
a=sendonly\r\n";
        let info = inspect(&parse(offer)).unwrap();
        assert_eq!(info[0].rtcp_endpoint, "10.0.0.9:4005".parse().unwrap());
        assert!(info[0].rtcp_mux);
        assert!(info[1].closed);
        assert_eq!(info[1].codecs, vec!["H264".to_owned()]);
        assert!(!info[2].is_rtp);
        assert_eq!(info[2].codecs, vec!["t38".to_owned()]);
        assert_eq!(info[2].endpoint, "10.0.0.3:4010".parse().unwrap());
        assert!(info[2].on_hold());
        let mut sdp = parse(offer);
        let mut audio = out(30000, "2001:db8::1").unwrap();
        audio.rtcp_mux = true;
        rewrite(
            &mut sdp,
            &[Some(audio), None, out(30002, "2001:db8::1")],
            RewriteOptions {
                full_rtcp_attribute: true,
                ..RewriteOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(sdp.to_vec()).unwrap(),
            "v=0\r\n\
o=- 1 1 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP6 2001:db8::1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\n\
a=rtcp:30000 IN IP6 2001:db8::1\r\n\
a=rtcp-mux\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
m=image 30002 udptl t38\r\n\
c=IN IP6 2001:db8::1\r\n\
a=sendonly\r\n"
        );
    }

    #[test]
    fn hold_with_zero_address_stays_a_hold_and_mux_can_be_removed() {
        let offer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\n";
        let info = inspect(&parse(offer)).unwrap();
        assert!(info[0].on_hold());
        let mut sdp = parse(offer);
        let mut o = out(30000, "192.0.2.1").unwrap();
        o.hold_address = true;
        rewrite(
            &mut sdp,
            &[Some(o)],
            RewriteOptions {
                no_rtcp_attribute: true,
                ..RewriteOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(sdp.to_vec()).unwrap(),
            "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n"
        );
    }

    #[test]
    fn missing_address_is_incomplete() {
        let sdp = parse("v=0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(inspect(&sdp), Err("Incomplete SDP specification"));
        let closed = parse("v=0\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n");
        assert!(inspect(&closed).unwrap()[0].closed);
    }

    #[test]
    fn static_and_dynamic_codec_names() {
        let sdp = parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0 18 99 200\r\n");
        assert_eq!(
            inspect(&sdp).unwrap()[0].codecs,
            vec![
                "PCMU".to_owned(),
                "G729".to_owned(),
                "Dynamic(99)".to_owned()
            ]
        );
    }
}
