//! Parsing what real servers, cameras and phones send, and getting the bytes back.

use std::time::Duration;

use super::*;
use crate::{
    control_base, Direction, MediaType, NetAddress, NptRange, NptTime, Origin, Rtcp, Rtpmap,
    SessionDescription,
};

fn parse(body: &[u8]) -> SessionDescription {
    SessionDescription::parse(body).unwrap()
}

#[test]
fn every_sample_round_trips_byte_exact() {
    for (name, body) in ALL {
        let sdp = parse(body);
        assert_eq!(sdp.to_vec(), body, "{name}");
        assert_eq!(sdp.encoded_len(), body.len(), "{name}");
        assert_eq!(&sdp.to_bytes()[..], body, "{name}");
    }
}

#[test]
fn ffmpeg_h264_aac() {
    let sdp = parse(FFMPEG);
    assert_eq!(
        sdp.origin(),
        Some(Origin {
            username: "-",
            session_id: "0",
            session_version: 0,
            nettype: "IN",
            addrtype: "IP4",
            address: "127.0.0.1",
        })
    );
    assert_eq!(sdp.session_name(), Some(&b"Big Buck Bunny"[..]));
    assert_eq!(sdp.connection().unwrap().address, "0.0.0.0");
    assert_eq!(sdp.attribute_value("tool"), Some("libavformat 61.7.100"));
    assert_eq!(sdp.control(), None);
    let [video, audio] = sdp.media() else {
        panic!("expected two media sections");
    };
    assert_eq!(video.kind(), MediaType::Video);
    assert_eq!(video.rtpmap(96).unwrap().encoding, "H264");
    let fmtp = video.fmtp("96").unwrap();
    assert_eq!(
        fmtp.param("sprop-parameter-sets"),
        Some("Z2QAH6zZQFAFuhAAAAMAEAAAAwPA8YMZYA==,aOvjyyLA")
    );
    assert_eq!(fmtp.param("profile-level-id"), Some("64001F"));
    assert_eq!(
        audio.rtpmap(97),
        Some(Rtpmap {
            payload_type: 97,
            encoding: "MPEG4-GENERIC",
            clock_rate: 48000,
            channels: Some(2),
        })
    );
    assert_eq!(
        audio.fmtp("97").unwrap().param("config"),
        Some("119056E500")
    );
    let base = "rtsp://example.com/bunny";
    assert_eq!(sdp.aggregate_control_url(base), "rtsp://example.com/bunny");
    assert_eq!(
        sdp.media_control_url(audio, base).as_deref(),
        Some("rtsp://example.com/bunny/streamid=1")
    );
    assert_eq!(sdp.effective_connection(video).unwrap().address, "0.0.0.0");
}

#[test]
fn gst_rtsp_server_h264_aac() {
    let sdp = parse(GST);
    assert_eq!(sdp.session_version(), Some(1));
    assert_eq!(sdp.control(), Some("*"));
    let range = sdp.range().unwrap();
    assert!(range.is_finite());
    assert_eq!(
        range.npt().unwrap().unwrap().duration(),
        Some(Duration::new(596, 458_333_333))
    );
    assert_eq!(sdp.media().len(), 2);
    let audio = &sdp.media()[1];
    assert_eq!(audio.rtpmap(97).unwrap().clock_rate, 44100);
    assert_eq!(audio.fmtp("97").unwrap().param("streamtype"), Some("5"));
    assert_eq!(audio.attribute_value("mediaclk"), Some("sender"));
    let base = control_base(
        Some("rtsp://127.0.0.1:8554/test/"),
        None,
        "rtsp://127.0.0.1:8554/test",
    );
    assert_eq!(
        sdp.aggregate_control_url(base),
        "rtsp://127.0.0.1:8554/test/"
    );
    assert_eq!(
        sdp.media_control_url(audio, base).as_deref(),
        Some("rtsp://127.0.0.1:8554/test/stream=1")
    );
}

#[test]
fn live555_h264_open_ended_range() {
    let sdp = parse(LIVE555);
    let range = sdp.range().unwrap();
    assert_eq!(range.raw(), "npt=0-");
    assert!(!range.is_finite());
    assert!(!range.is_live());
    assert_eq!(
        range.npt().unwrap().unwrap(),
        NptRange {
            start: NptTime::At(Duration::ZERO),
            end: None,
        }
    );
    let video = &sdp.media()[0];
    assert!(video.is_disabled(), "RTSP servers announce port 0");
    assert_eq!(video.payload_types().collect::<Vec<_>>(), vec![96]);
    assert_eq!(
        video.fmtp("96").unwrap().param("packetization-mode"),
        Some("1")
    );
    assert_eq!(
        sdp.media_control_url(video, "rtsp://192.168.1.20:8554/test.264")
            .as_deref(),
        Some("rtsp://192.168.1.20:8554/test.264/track1")
    );
    assert_eq!(
        sdp.attribute_value("x-qt-text-nam"),
        Some("H.264 Video, streamed by the LIVE555 Media Server")
    );
}

#[test]
fn axis_camera_absolute_controls_and_live_range() {
    let sdp = parse(AXIS);
    assert!(sdp.range().unwrap().is_live());
    let base = "rtsp://192.168.0.90/axis-media/media.amp?videocodec=h264";
    assert_eq!(sdp.aggregate_control_url("rtsp://ignored/"), base);
    let [video, metadata] = sdp.media() else {
        panic!("expected two media sections");
    };
    assert_eq!(
        sdp.media_control_url(video, base).as_deref(),
        Some("rtsp://192.168.0.90/axis-media/media.amp/stream=0?videocodec=h264")
    );
    assert_eq!(metadata.kind(), MediaType::Application);
    assert_eq!(metadata.rtpmap(98).unwrap().encoding, "vnd.onvif.metadata");
    assert_eq!(
        sdp.session_lines()
            .iter()
            .find(|l| l.kind() == 'e')
            .unwrap()
            .value(),
        b"NONE"
    );
}

#[test]
fn linphone_offer_with_audio_video_and_t38() {
    let sdp = parse(LINPHONE);
    assert_eq!(sdp.origin().unwrap().username, "alice");
    assert_eq!(sdp.session_version(), Some(2890844527));
    assert_eq!(sdp.attribute_value("ice-ufrag"), Some("8hhY"));
    let [audio, video, image] = sdp.media() else {
        panic!("expected three media sections");
    };
    assert_eq!((audio.port(), audio.proto()), (7078, "RTP/AVP"));
    assert_eq!(
        audio.payload_types().collect::<Vec<_>>(),
        vec![96, 0, 8, 101]
    );
    assert_eq!(audio.rtpmap(96).unwrap().channels, Some(2));
    assert_eq!(audio.fmtp("101").unwrap().params, "0-15");
    assert_eq!(
        audio.rtcp(),
        Some(Rtcp {
            port: 7079,
            address: None,
        })
    );
    assert!(!audio.is_rtcp_mux());
    assert_eq!(sdp.effective_direction(audio), Direction::SendRecv);
    assert_eq!(video.proto(), "RTP/AVPF");
    assert_eq!(
        video.rtcp().unwrap().address,
        Some(NetAddress {
            nettype: "IN",
            addrtype: "IP4",
            address: "192.168.1.50",
        })
    );
    assert_eq!(sdp.effective_direction(video), Direction::RecvOnly);
    assert_eq!(image.kind(), MediaType::Image);
    assert_eq!((image.port(), image.proto()), (9080, "udptl"));
    assert_eq!(image.formats().collect::<Vec<_>>(), vec!["t38"]);
    assert!(!image.is_rtp());
    assert_eq!(image.payload_types().count(), 0);
    assert_eq!(image.attribute_value("t38faxmaxdatagram"), Some("176"));
    assert_eq!(
        sdp.effective_connection(image).unwrap().address,
        "192.168.1.51"
    );
    assert_eq!(
        sdp.effective_connection(audio).unwrap().address,
        "192.168.1.50"
    );
}

#[test]
fn polycom_lf_without_final_newline() {
    let sdp = parse(POLYCOM_LF);
    assert_eq!(sdp.direction(), Some(Direction::SendRecv));
    let audio = &sdp.media()[0];
    assert_eq!(
        audio.payload_types().collect::<Vec<_>>(),
        vec![9, 0, 8, 18, 127]
    );
    assert_eq!(audio.rtpmap(18).unwrap().encoding, "G729");
    assert_eq!(audio.fmtp("18").unwrap().param("annexb"), Some("no"));
    assert!(!POLYCOM_LF.ends_with(b"\n"));
    assert!(!POLYCOM_LF.contains(&b'\r'));
}
