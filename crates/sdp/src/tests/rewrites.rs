//! Each rewriter changes exactly the intended bytes: the whole output is compared.

use super::*;
use crate::{Direction, NetAddress, Rtcp, SessionDescription};

fn parse(body: &[u8]) -> SessionDescription {
    SessionDescription::parse(body).unwrap()
}

fn text(sdp: &SessionDescription) -> String {
    String::from_utf8(sdp.to_vec()).unwrap()
}

fn original(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

#[test]
fn bump_version_changes_only_the_version_digits() {
    let mut sdp = parse(GST);
    assert_eq!(sdp.bump_version(), Ok(2));
    assert_eq!(
        text(&sdp),
        original(GST).replace(
            "o=- 1188340656180883 1 IN IP4",
            "o=- 1188340656180883 2 IN IP4"
        )
    );
    let mut sdp = parse(LINPHONE);
    assert_eq!(sdp.bump_version(), Ok(2890844528));
    assert_eq!(
        text(&sdp),
        original(LINPHONE).replace("2890844526 2890844527", "2890844526 2890844528")
    );
}

#[test]
fn relay_rewrite_of_a_sip_offer() {
    let mut sdp = parse(LINPHONE);
    sdp.set_origin_address("IP4", "203.0.113.5").unwrap();
    sdp.set_connection_address("IP4", "203.0.113.5").unwrap();
    assert_eq!(sdp.remove_ice_attributes(), 7);
    let relay = [(30000, 30001), (30002, 30003), (30004, 30005)];
    for (m, (rtp, rtcp)) in sdp.media_mut().iter_mut().zip(relay) {
        m.set_port(rtp);
        if m.is_rtp() {
            m.set_rtcp(&Rtcp {
                port: rtcp,
                address: None,
            })
            .unwrap();
        } else {
            m.set_connection_address("IP4", "203.0.113.5").unwrap();
        }
    }
    sdp.bump_version().unwrap();
    let want = "v=0\r\n\
        o=alice 2890844526 2890844528 IN IP4 203.0.113.5\r\n\
        s=Talk\r\n\
        c=IN IP4 203.0.113.5\r\n\
        t=0 0\r\n\
        a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
        m=audio 30000 RTP/AVP 96 0 8 101\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 useinbandfec=1\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=rtcp:30001\r\n\
        a=sendrecv\r\n\
        m=video 30002 RTP/AVPF 96\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        a=rtcp-fb:96 nack pli\r\n\
        a=rtcp-fb:96 ccm fir\r\n\
        a=rtcp:30003\r\n\
        a=recvonly\r\n\
        m=image 30004 udptl t38\r\n\
        c=IN IP4 203.0.113.5\r\n\
        a=T38FaxVersion:0\r\n\
        a=T38MaxBitRate:14400\r\n\
        a=T38FaxRateManagement:transferredTCF\r\n\
        a=T38FaxMaxBuffer:262\r\n\
        a=T38FaxMaxDatagram:176\r\n\
        a=T38FaxUdpEC:t38UDPRedundancy\r\n";
    assert_eq!(text(&sdp), want);
    // The rewritten description is itself valid and stable.
    assert_eq!(parse(want.as_bytes()).to_vec(), want.as_bytes());
}

#[test]
fn rtcp_with_address_replaces_the_line_in_place() {
    let mut sdp = parse(LINPHONE);
    sdp.media_mut()[1]
        .set_rtcp(&Rtcp {
            port: 40001,
            address: Some(NetAddress {
                nettype: "IN",
                addrtype: "IP6",
                address: "2001:db8::7",
            }),
        })
        .unwrap();
    assert_eq!(
        text(&sdp),
        original(LINPHONE).replace(
            "a=rtcp:9079 IN IP4 192.168.1.50",
            "a=rtcp:40001 IN IP6 2001:db8::7"
        )
    );
}

#[test]
fn lf_body_without_final_newline_keeps_its_style() {
    let mut sdp = parse(POLYCOM_LF);
    sdp.media_mut()[0].set_port(40000);
    assert_eq!(
        text(&sdp),
        original(POLYCOM_LF).replace("m=audio 2222 ", "m=audio 40000 ")
    );
    sdp.media_mut()[0]
        .add_attribute("ptime", Some("20"))
        .unwrap();
    assert_eq!(
        text(&sdp),
        original(POLYCOM_LF).replace("m=audio 2222 ", "m=audio 40000 ") + "\na=ptime:20\n"
    );
}

#[test]
fn proxy_rewrites_absolute_control_urls() {
    let mut sdp = parse(AXIS);
    sdp.set_control("rtsp://edge.example/cam1").unwrap();
    sdp.media_mut()[0].set_control("stream=0").unwrap();
    sdp.media_mut()[1].set_control("stream=1").unwrap();
    assert_eq!(
        text(&sdp),
        original(AXIS)
            .replace(
                "a=control:rtsp://192.168.0.90/axis-media/media.amp?videocodec=h264",
                "a=control:rtsp://edge.example/cam1"
            )
            .replace(
                "a=control:rtsp://192.168.0.90/axis-media/media.amp/stream=0?videocodec=h264",
                "a=control:stream=0"
            )
            .replace(
                "a=control:rtsp://192.168.0.90/axis-media/media.amp/stream=1?videocodec=h264",
                "a=control:stream=1"
            )
    );
}

#[test]
fn direction_set_on_media_and_session() {
    let mut sdp = parse(LINPHONE);
    sdp.media_mut()[0].set_direction(Direction::SendOnly);
    sdp.media_mut()[2].set_direction(Direction::Inactive);
    assert_eq!(
        text(&sdp),
        original(LINPHONE).replace("a=sendrecv\r\n", "a=sendonly\r\n") + "a=inactive\r\n"
    );
    assert_eq!(
        sdp.effective_direction(&sdp.media()[2]),
        Direction::Inactive
    );
}

#[test]
fn session_attributes_add_remove_and_set() {
    let mut sdp = parse(FFMPEG);
    assert_eq!(sdp.remove_attributes("tool"), 1);
    sdp.add_attribute("control", Some("*")).unwrap();
    sdp.set_attribute("range", Some("npt=0-")).unwrap();
    assert_eq!(
        text(&sdp),
        original(FFMPEG).replace(
            "a=tool:libavformat 61.7.100\r\n",
            "a=control:*\r\na=range:npt=0-\r\n"
        )
    );
    assert_eq!(sdp.remove_attributes("no-such-attribute"), 0);
    assert!(sdp.add_attribute("x", Some("a\nb")).is_err());
}

#[test]
fn media_connection_inserted_after_m_and_i_lines() {
    let mut sdp = parse(FFMPEG);
    sdp.media_mut()[0]
        .set_connection_address("IP4", "198.51.100.1")
        .unwrap();
    assert_eq!(
        text(&sdp),
        original(FFMPEG).replace(
            "m=video 0 RTP/AVP 96\r\n",
            "m=video 0 RTP/AVP 96\r\nc=IN IP4 198.51.100.1\r\n"
        )
    );
}
