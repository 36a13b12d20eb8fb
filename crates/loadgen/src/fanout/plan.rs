//! The pure decisions of one simulated viewer's RTSP session, kept apart from I/O so
//! they can be tested on literal headers and SDP:
//!
//! * which tracks to SETUP and at what URLs, from a DESCRIBE response (RFC 2326 §10.2,
//!   §C.1.1 control URLs, via `mediagate_sdp`);
//! * the `Transport` to ask for and what to make of the answer (RFC 2326 §12.39): UDP
//!   unicast with `client_port`, or TCP `interleaved` channels;
//! * which `RTP-Info` entry (RFC 2326 §12.33) belongs to which track, so the first
//!   packet can be checked against the announced sequence number;
//! * how often to send keep-alives for the `Session` timeout (RFC 2326 §12.37).
//!
//! What it does not: send or receive anything, or resolve host names.

use std::time::Duration;

use mediagate_rtsp::headers::{
    ChannelRange, Delivery, LowerTransport, PortRange, RtpInfo, RtpProfile, Session, Transport,
    TransportProtocol, TransportSpec,
};
use mediagate_rtsp::TypedHeader;
use mediagate_sdp::{control_base, SessionDescription};

use crate::track_stats::Codec;

/// Tracks a viewer sets up at most (interleaved channels 0..=15 cover them).
pub(super) const MAX_TRACKS: usize = 8;

/// One media section to SETUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TrackPlan {
    /// Absolute URL for SETUP.
    pub control_url: String,
    /// `video`, `audio`, ...
    pub media: String,
    /// Encoding name and clock rate from `a=rtpmap`, e.g. `H264/90000`, or the payload
    /// type when there is no rtpmap.
    pub encoding: String,
    pub codec: Codec,
}

/// What a DESCRIBE answer tells a viewer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamPlan {
    /// URL for aggregate PLAY, keep-alives and TEARDOWN.
    pub aggregate_url: String,
    pub tracks: Vec<TrackPlan>,
}

impl StreamPlan {
    /// A one-line description of the tracks, e.g. `video H264/90000, audio PCMA/8000`.
    pub(super) fn describe_tracks(&self) -> String {
        self.tracks
            .iter()
            .map(|t| format!("{} {}", t.media, t.encoding))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Builds the plan from a DESCRIBE response: its `Content-Base` / `Content-Location`
/// headers, the URL the DESCRIBE went to, and the SDP body. Non-RTP sections are
/// skipped; no RTP section at all is an error. Port 0 does not disable a section here:
/// RTSP servers (gst-rtsp-server, live555, the edge) write `m=video 0` in DESCRIBE
/// because ports are only chosen in SETUP.
pub(super) fn plan_from_describe(
    request_url: &str,
    content_base: Option<&str>,
    content_location: Option<&str>,
    sdp: &[u8],
) -> Result<StreamPlan, String> {
    let sd = SessionDescription::parse(sdp).map_err(|e| format!("the SDP is invalid: {e}"))?;
    let base = control_base(content_base, content_location, request_url);
    let mut tracks = Vec::new();
    for (i, m) in sd.media().iter().enumerate() {
        if !m.is_rtp() {
            continue;
        }
        let control_url = sd
            .media_control_url(m, base)
            .ok_or_else(|| format!("media section {i} has no a=control and is not the only one"))?;
        let rtpmap = m.payload_types().next().and_then(|pt| m.rtpmap(pt));
        let (encoding, codec) = match rtpmap {
            Some(r) => (
                format!("{}/{}", r.encoding, r.clock_rate),
                Codec::from_encoding(r.encoding),
            ),
            None => (
                format!("PT {}", m.formats().next().unwrap_or("?")),
                Codec::Other,
            ),
        };
        if tracks.len() == MAX_TRACKS {
            return Err(format!("more than {MAX_TRACKS} media sections"));
        }
        tracks.push(TrackPlan {
            control_url,
            media: m.media_type().to_owned(),
            encoding,
            codec,
        });
    }
    if tracks.is_empty() {
        return Err("the SDP has no RTP media section".to_owned());
    }
    Ok(StreamPlan {
        aggregate_url: sd.aggregate_control_url(base),
        tracks,
    })
}

/// How media reaches the viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lower {
    Udp,
    Tcp,
}

impl Lower {
    pub(super) fn name(self) -> &'static str {
        match self {
            Lower::Udp => "udp",
            Lower::Tcp => "tcp",
        }
    }
}

/// Where one track's packets will arrive, as agreed in SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrackDelivery {
    /// On our UDP pair; the server's ports if it said.
    Udp { server_port: Option<PortRange> },
    /// On these interleaved channels of the RTSP connection.
    Interleaved { rtp: u8, rtcp: u8 },
}

/// The `Transport` value to SETUP track `index` with: UDP to `client_rtp_port` (and
/// the port after it), or TCP channels `2*index` and `2*index+1`.
pub(super) fn setup_transport(lower: Lower, index: usize, client_rtp_port: u16) -> String {
    let spec = match lower {
        Lower::Udp => TransportSpec::new(TransportProtocol::rtp_avp())
            .with_client_ports(PortRange::pair(client_rtp_port)),
        Lower::Tcp => {
            let ch = u8::try_from(index.min(MAX_TRACKS) * 2).unwrap_or(0);
            TransportSpec::new(TransportProtocol::rtp_avp_tcp())
                .with_interleaved(ChannelRange::pair(ch))
        }
    };
    let spec = TransportSpec {
        delivery: Some(Delivery::Unicast),
        ..spec
    };
    Transport(vec![spec]).to_value()
}

/// Checks the SETUP response's `Transport` against what we asked for.
pub(super) fn accept_setup_reply(
    lower: Lower,
    client_rtp_port: u16,
    reply: Option<&str>,
) -> Result<TrackDelivery, String> {
    let reply = reply.ok_or("the SETUP response has no Transport header")?;
    let t = Transport::parse_value(reply)
        .map_err(|e| format!("the SETUP response's Transport `{reply}` is invalid: {e}"))?;
    let spec = t.first().ok_or("the SETUP response's Transport is empty")?;
    if let TransportProtocol::Rtp { profile, .. } = &spec.protocol {
        if *profile != RtpProfile::Avp {
            return Err(format!(
                "the server chose an RTP profile we did not ask for: `{reply}`"
            ));
        }
    } else {
        return Err(format!("the server chose a non-RTP transport: `{reply}`"));
    }
    match lower {
        Lower::Tcp => {
            if !spec.is_interleaved() {
                return Err(format!(
                    "asked for TCP interleaved, the server answered `{reply}`"
                ));
            }
            let ch = spec
                .interleaved
                .ok_or_else(|| format!("no interleaved channels in `{reply}`"))?;
            let rtcp = ch.rtcp_channel().unwrap_or(ch.start.wrapping_add(1));
            Ok(TrackDelivery::Interleaved {
                rtp: ch.start,
                rtcp,
            })
        }
        Lower::Udp => {
            if spec.is_tcp()
                || matches!(
                    spec.protocol,
                    TransportProtocol::Rtp {
                        lower: Some(LowerTransport::Tcp),
                        ..
                    }
                )
            {
                return Err(format!("asked for UDP, the server answered `{reply}`"));
            }
            if spec.is_multicast() {
                return Err(format!("asked for unicast, the server answered `{reply}`"));
            }
            if let Some(cp) = spec.client_ports() {
                if cp.start != client_rtp_port {
                    return Err(format!(
                        "the server moved our client_port from {client_rtp_port} to {}",
                        cp.start
                    ));
                }
            }
            Ok(TrackDelivery::Udp {
                server_port: spec.server_ports(),
            })
        }
    }
}

/// The session id (without parameters) and keep-alive interval from a `Session`
/// header: half the advertised timeout (RFC default 60 s), between 1 and 30 seconds.
pub(super) fn session_and_keepalive(value: &str) -> Result<(String, Duration), String> {
    let s = Session::parse_value(value)
        .map_err(|e| format!("the Session header `{value}` is invalid: {e}"))?;
    let interval = mediagate_rtsp::client::keepalive_interval(
        s.effective_timeout_secs(),
        Duration::from_secs(1),
    );
    Ok((s.id, interval))
}

/// For each track, the `seq` the PLAY response's `RTP-Info` announces for it: matched
/// by exact URL, then by the control URL's last path segment (`.../trackID=1`), then,
/// when the counts agree and nothing matched by name, by position.
pub(super) fn expected_first_seqs(
    rtp_info: Option<&str>,
    tracks: &[TrackPlan],
) -> Vec<Option<u16>> {
    let none = vec![None; tracks.len()];
    let Some(info) = rtp_info.and_then(|v| RtpInfo::parse_value(v).ok()) else {
        return none;
    };
    let by_name: Vec<Option<u16>> = tracks
        .iter()
        .map(|t| {
            let exact = info.0.iter().find(|e| e.url == t.control_url);
            let segment = t.control_url.rsplit('/').next().unwrap_or_default();
            let suffix = format!("/{segment}");
            let by_suffix = || {
                info.0
                    .iter()
                    .find(|e| !segment.is_empty() && (e.url.ends_with(&suffix) || e.url == segment))
            };
            exact.or_else(by_suffix).and_then(|e| e.seq)
        })
        .collect();
    if by_name.iter().all(Option::is_none) && info.0.len() == tracks.len() {
        return info.0.iter().map(|e| e.seq).collect();
    }
    by_name
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=live\r\nc=IN IP4 0.0.0.0\r\n\
        t=0 0\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=control:trackID=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
        a=control:trackID=1\r\n";

    #[test]
    fn describe_gives_absolute_setup_urls_and_codecs() {
        // Port 0, as RTSP servers write it, must not hide the sections.
        let p = plan_from_describe(
            "rtsp://127.0.0.1:8554/cam",
            Some("rtsp://127.0.0.1:8554/cam/"),
            None,
            EDGE_SDP.as_bytes(),
        )
        .unwrap();
        assert_eq!(p.aggregate_url, "rtsp://127.0.0.1:8554/cam/");
        assert_eq!(
            p.tracks,
            vec![
                TrackPlan {
                    control_url: "rtsp://127.0.0.1:8554/cam/trackID=0".into(),
                    media: "video".into(),
                    encoding: "H264/90000".into(),
                    codec: Codec::H264,
                },
                TrackPlan {
                    control_url: "rtsp://127.0.0.1:8554/cam/trackID=1".into(),
                    media: "audio".into(),
                    encoding: "MPEG4-GENERIC/48000".into(),
                    codec: Codec::Other,
                },
            ]
        );
        assert_eq!(
            p.describe_tracks(),
            "video H264/90000, audio MPEG4-GENERIC/48000"
        );
    }

    #[test]
    fn describe_without_base_uses_the_request_url() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n\
            a=rtpmap:96 H265/90000\r\n";
        let p = plan_from_describe("rtsp://h/only", None, None, sdp.as_bytes()).unwrap();
        assert_eq!(p.aggregate_url, "rtsp://h/only");
        assert_eq!(p.tracks[0].control_url, "rtsp://h/only");
        assert_eq!(p.tracks[0].codec, Codec::H265);
    }

    #[test]
    fn describe_errors_are_readable() {
        let no_media = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n";
        assert_eq!(
            plan_from_describe("rtsp://h/", None, None, no_media.as_bytes()).unwrap_err(),
            "the SDP has no RTP media section"
        );
        let two_without_control = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
            m=video 1 RTP/AVP 96\r\nm=audio 1 RTP/AVP 0\r\n";
        assert_eq!(
            plan_from_describe("rtsp://h/", None, None, two_without_control.as_bytes())
                .unwrap_err(),
            "media section 0 has no a=control and is not the only one"
        );
        assert!(plan_from_describe("rtsp://h/", None, None, b"garbage")
            .unwrap_err()
            .starts_with("the SDP is invalid"));
    }

    #[test]
    fn setup_transport_values() {
        assert_eq!(
            setup_transport(Lower::Udp, 0, 40000),
            "RTP/AVP;unicast;client_port=40000-40001"
        );
        assert_eq!(
            setup_transport(Lower::Tcp, 1, 0),
            "RTP/AVP/TCP;unicast;interleaved=2-3"
        );
    }

    #[test]
    fn setup_replies_are_checked() {
        assert_eq!(
            accept_setup_reply(
                Lower::Udp,
                40000,
                Some("RTP/AVP;unicast;client_port=40000-40001;server_port=6000-6001;ssrc=1234ABCD")
            ),
            Ok(TrackDelivery::Udp {
                server_port: PortRange::pair(6000)
            })
        );
        assert_eq!(
            accept_setup_reply(Lower::Tcp, 0, Some("RTP/AVP/TCP;unicast;interleaved=4-5")),
            Ok(TrackDelivery::Interleaved { rtp: 4, rtcp: 5 })
        );
        assert_eq!(
            accept_setup_reply(Lower::Tcp, 0, Some("RTP/AVP/TCP;interleaved=6")),
            Ok(TrackDelivery::Interleaved { rtp: 6, rtcp: 7 })
        );
        assert_eq!(
            accept_setup_reply(
                Lower::Udp,
                40000,
                Some("RTP/AVP/TCP;unicast;interleaved=0-1")
            ),
            Err("asked for UDP, the server answered `RTP/AVP/TCP;unicast;interleaved=0-1`".into())
        );
        assert_eq!(
            accept_setup_reply(Lower::Tcp, 0, Some("RTP/AVP;unicast;client_port=1-2")),
            Err(
                "asked for TCP interleaved, the server answered `RTP/AVP;unicast;client_port=1-2`"
                    .into()
            )
        );
        assert_eq!(
            accept_setup_reply(
                Lower::Udp,
                40000,
                Some("RTP/AVP;unicast;client_port=50000-50001")
            ),
            Err("the server moved our client_port from 40000 to 50000".into())
        );
        assert_eq!(
            accept_setup_reply(Lower::Udp, 1, None),
            Err("the SETUP response has no Transport header".into())
        );
        assert!(
            accept_setup_reply(Lower::Udp, 1, Some("RTP/SAVP;unicast;client_port=1-2")).is_err()
        );
        assert!(accept_setup_reply(Lower::Udp, 1, Some(";;;")).is_err());
    }

    #[test]
    fn session_timeout_sets_the_keepalive_interval() {
        assert_eq!(
            session_and_keepalive("12345678;timeout=60"),
            Ok(("12345678".to_owned(), Duration::from_secs(30)))
        );
        assert_eq!(
            session_and_keepalive("abc;timeout=10").map(|s| s.1),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            session_and_keepalive("abc;timeout=1").map(|s| s.1),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            session_and_keepalive("abc").map(|s| s.1),
            Ok(Duration::from_secs(30))
        );
        assert!(session_and_keepalive("").is_err());
    }

    fn tracks(urls: &[&str]) -> Vec<TrackPlan> {
        urls.iter()
            .map(|u| TrackPlan {
                control_url: (*u).to_owned(),
                media: "video".into(),
                encoding: "H264/90000".into(),
                codec: Codec::H264,
            })
            .collect()
    }

    #[test]
    fn rtp_info_entries_are_matched_to_tracks() {
        let t = tracks(&["rtsp://h/cam/trackID=0", "rtsp://h/cam/trackID=1"]);
        // Exact URLs, in the other order.
        assert_eq!(
            expected_first_seqs(
                Some(
                    "url=rtsp://h/cam/trackID=1;seq=7;rtptime=1,url=rtsp://h/cam/trackID=0;seq=100"
                ),
                &t
            ),
            vec![Some(100), Some(7)]
        );
        // A different host (the server's own name): matched by the last segment.
        assert_eq!(
            expected_first_seqs(Some("url=rtsp://other/x/trackID=0;seq=5"), &t),
            vec![Some(5), None]
        );
        // Relative URLs.
        assert_eq!(
            expected_first_seqs(Some("url=trackID=1;seq=9"), &t),
            vec![None, Some(9)]
        );
        // Names that match nothing, same count: by position.
        assert_eq!(
            expected_first_seqs(Some("url=rtsp://h/a;seq=1,url=rtsp://h/b;seq=2"), &t),
            vec![Some(1), Some(2)]
        );
        // trackID=1 must not match trackID=10's entry.
        let t10 = tracks(&["rtsp://h/trackID=1"]);
        assert_eq!(
            expected_first_seqs(
                Some("url=rtsp://h/trackID=10;seq=3,url=rtsp://h/z;seq=4"),
                &t10
            ),
            vec![None]
        );
        assert_eq!(expected_first_seqs(None, &t), vec![None, None]);
        assert_eq!(expected_first_seqs(Some("garbage"), &t), vec![None, None]);
    }
}
