use super::*;
use mediagate_rtsp::Method;

/// What `ffmpeg -re -i clip.mp4 -c copy -f rtsp rtsp://127.0.0.1:8554/live/cam`
/// announces (ffmpeg 5/6 shape: H.264 then AAC, `streamid=N` controls).
const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:200\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkBQBbsBEAAAAMAQAAADwPFi6g=,aMuDyyA=; profile-level-id=42C01E\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\na=control:streamid=1\r\n";

const URL: &str = "rtsp://127.0.0.1:8554/live/cam";

fn req(method: Method, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let mut r = Request::new(method, uri, Version::Rtsp1_0);
    for (k, v) in headers {
        r.headers.append(*k, *v);
    }
    r.body = Bytes::copy_from_slice(body);
    r
}

fn announce(s: &mut PublishSession) -> String {
    s.announce(&req(
        Method::Announce,
        URL,
        &[("Content-Type", "application/sdp")],
        FFMPEG_SDP.as_bytes(),
    ))
    .expect("ffmpeg's ANNOUNCE is accepted")
}

fn setup_tcp(
    s: &mut PublishSession,
    track: usize,
    channels: &str,
    session: Option<&str>,
) -> Result<SetupAsk, Response> {
    let transport = format!("RTP/AVP/TCP;unicast;interleaved={channels};mode=record");
    let mut h = vec![("Transport", transport.as_str())];
    if let Some(id) = session {
        h.push(("Session", id));
    }
    s.setup(&req(
        Method::Setup,
        &format!("{URL}/streamid={track}"),
        &h,
        b"",
    ))
}

fn rtp(seq: u16, len: usize) -> Bytes {
    let mut p = vec![0u8; len];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    Bytes::from(p)
}

#[test]
fn ffmpeg_announce_setup_record_over_tcp_relabels_media_for_the_hub() {
    let mut s = PublishSession::new("abc".into());
    assert_eq!(announce(&mut s), "/live/cam");
    let d = s.described().unwrap();
    assert_eq!(d.tracks.len(), 2);
    assert!(d.live && d.tracks[0].is_video);
    let a0 = setup_tcp(&mut s, 0, "0-1", None).unwrap();
    assert_eq!(a0.track, 0);
    let r0 = s.setup_done(&a0, None);
    assert_eq!(r0.status, StatusCode::OK);
    assert!(r0
        .headers
        .get("Transport")
        .unwrap()
        .contains("interleaved=0-1"));
    assert!(r0.headers.get("Session").unwrap().starts_with("abc"));
    // The second SETUP must carry the session.
    assert_eq!(
        setup_tcp(&mut s, 1, "2-3", None).unwrap_err().status,
        StatusCode::SESSION_NOT_FOUND
    );
    let a1 = setup_tcp(&mut s, 1, "2-3", Some("abc")).unwrap();
    s.setup_done(&a1, None);
    // Media before RECORD is not passed on.
    assert!(s.on_interleaved(0, rtp(1, 100)).is_none());
    let d = s
        .record(&req(Method::Record, URL, &[("Session", "abc")], b""))
        .unwrap();
    assert_eq!(d.tracks.len(), 2);
    assert!(s.is_recording());
    let f = s.on_interleaved(2, rtp(2, 100)).expect("audio RTP passes");
    assert_eq!(f.channel(), 2);
    let f = s
        .on_interleaved(3, Bytes::from_static(&[0x80, 201, 0, 1, 0, 0, 0, 1]))
        .unwrap();
    assert_eq!(f.channel(), 3, "audio RTCP");
    assert_eq!(s.drops().before_record, 1);
}

#[test]
fn publisher_channels_are_mapped_to_the_hubs_whatever_it_picked() {
    let mut s = PublishSession::new("s".into());
    announce(&mut s);
    let a = setup_tcp(&mut s, 0, "6-7", None).unwrap();
    s.setup_done(&a, None);
    s.record(&req(Method::Record, URL, &[("Session", "s")], b""))
        .unwrap();
    assert_eq!(s.on_interleaved(6, rtp(1, 50)).unwrap().channel(), 0);
    assert_eq!(s.on_interleaved(7, rtp(1, 50)).unwrap().channel(), 1);
}

#[test]
fn bad_announces_get_clean_errors() {
    let mut s = PublishSession::new("s".into());
    let no_type = req(Method::Announce, URL, &[], FFMPEG_SDP.as_bytes());
    assert_eq!(
        s.announce(&no_type).unwrap_err().status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let garbage = req(
        Method::Announce,
        URL,
        &[("Content-Type", "application/sdp")],
        b"\x00\x01 not an sdp",
    );
    assert_eq!(
        s.announce(&garbage).unwrap_err().status,
        StatusCode::BAD_REQUEST
    );
    let huge = format!("{FFMPEG_SDP}{}", "a=x-pad:0123456789\r\n".repeat(1000));
    let huge = req(
        Method::Announce,
        URL,
        &[("Content-Type", "application/sdp")],
        huge.as_bytes(),
    );
    assert_eq!(
        s.announce(&huge).unwrap_err().status,
        StatusCode::REQUEST_ENTITY_TOO_LARGE
    );
    let no_rtp = req(
        Method::Announce,
        URL,
        &[("Content-Type", "application/sdp")],
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n",
    );
    assert_eq!(
        s.announce(&no_rtp).unwrap_err().status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // None of these left the session announced.
    assert!(s.described().is_none());
    announce(&mut s);
    let again = req(
        Method::Announce,
        URL,
        &[("Content-Type", "application/sdp")],
        FFMPEG_SDP.as_bytes(),
    );
    assert_eq!(
        s.announce(&again).unwrap_err().status,
        StatusCode::METHOD_NOT_VALID_IN_THIS_STATE
    );
}

#[test]
fn out_of_order_and_bad_setups_are_refused() {
    let mut s = PublishSession::new("s".into());
    assert_eq!(
        setup_tcp(&mut s, 0, "0-1", None).unwrap_err().status,
        StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
        "SETUP before ANNOUNCE"
    );
    assert_eq!(
        s.record(&req(Method::Record, URL, &[("Session", "s")], b""))
            .unwrap_err()
            .status,
        StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
        "RECORD before ANNOUNCE"
    );
    announce(&mut s);
    assert_eq!(
        s.record(&req(Method::Record, URL, &[("Session", "s")], b""))
            .unwrap_err()
            .status,
        StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
        "RECORD without SETUP"
    );
    let play_mode = req(
        Method::Setup,
        &format!("{URL}/streamid=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        b"",
    );
    assert_eq!(
        s.setup(&play_mode).unwrap_err().status,
        StatusCode::UNSUPPORTED_TRANSPORT
    );
    let unknown = req(
        Method::Setup,
        &format!("{URL}/streamid=9"),
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        )],
        b"",
    );
    assert_eq!(s.setup(&unknown).unwrap_err().status, StatusCode::NOT_FOUND);
    let a = setup_tcp(&mut s, 0, "0-1", None).unwrap();
    s.setup_done(&a, None);
    assert_eq!(
        setup_tcp(&mut s, 1, "1-2", Some("s")).unwrap_err().status,
        StatusCode::UNSUPPORTED_TRANSPORT,
        "a channel another track uses"
    );
    assert_eq!(
        s.record(&req(Method::Record, URL, &[("Session", "other")], b""))
            .unwrap_err()
            .status,
        StatusCode::SESSION_NOT_FOUND
    );
}

#[test]
fn undeclared_channels_and_absurd_packets_are_dropped_and_counted() {
    let mut s = PublishSession::new("s".into());
    announce(&mut s);
    let a = setup_tcp(&mut s, 0, "0-1", None).unwrap();
    s.setup_done(&a, None);
    s.record(&req(Method::Record, URL, &[("Session", "s")], b""))
        .unwrap();
    assert!(s.on_interleaved(4, rtp(1, 100)).is_none());
    assert!(
        s.on_interleaved(0, rtp(1, 4)).is_none(),
        "shorter than an RTP header"
    );
    assert!(s.on_interleaved(0, rtp(1, MAX_MEDIA_BYTES + 1)).is_none());
    assert!(
        s.on_interleaved(0, Bytes::from(vec![0u8; 100])).is_none(),
        "RTP version 0"
    );
    assert!(
        s.on_datagram(1, false, rtp(1, 100)).is_none(),
        "track 1 is not UDP"
    );
    assert_eq!(
        s.drops(),
        Drops {
            undeclared_channel: 2,
            malformed: 3,
            before_record: 0
        }
    );
    assert!(s.on_interleaved(0, rtp(2, MAX_MEDIA_BYTES)).is_some());
}

#[test]
fn udp_setup_names_the_client_ports_and_datagrams_are_relabelled() {
    let mut s = PublishSession::new("s".into());
    announce(&mut s);
    let r = req(
        Method::Setup,
        &format!("{URL}/streamid=1"),
        &[(
            "Transport",
            "RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record",
        )],
        b"",
    );
    let a = s.setup(&r).unwrap();
    assert_eq!(
        a.transport,
        PubTransport::Udp {
            client_rtp: 5000,
            client_rtcp: 5001
        }
    );
    let resp = s.setup_done(&a, Some((20000, 20001)));
    let t = resp.headers.get("Transport").unwrap();
    assert!(
        t.contains("client_port=5000-5001") && t.contains("server_port=20000-20001"),
        "{t}"
    );
    s.record(&req(Method::Record, URL, &[("Session", "s")], b""))
        .unwrap();
    assert_eq!(s.on_datagram(1, false, rtp(1, 100)).unwrap().channel(), 2);
    assert_eq!(s.on_datagram(1, true, rtp(1, 100)).unwrap().channel(), 3);
}

#[test]
fn url_paths_ignore_authority_and_query() {
    assert_eq!(url_path("rtsp://h:1/a/b?x=1"), "/a/b");
    assert_eq!(url_path("rtsp://h"), "/");
    assert_eq!(url_path("/a"), "/a");
}

/// Replays what a real publisher sent, with the session id its server gave it;
/// returns the session and the frames passed on.
fn replay(c2s: &[u8], session: &str) -> (PublishSession, Vec<InterleavedFrame>) {
    let mut dec = mediagate_rtsp::Decoder::default();
    dec.extend_from_slice(c2s);
    let mut s = PublishSession::new(session.into());
    let mut out = Vec::new();
    while let Some(item) = dec.next_item().expect("a real publisher's bytes parse") {
        match item {
            mediagate_rtsp::Item::Request(req) => match req.method {
                Method::Announce => {
                    s.announce(&req).expect("ANNOUNCE accepted");
                }
                Method::Setup => {
                    let ask = s.setup(&req).expect("SETUP accepted");
                    let r = s.setup_done(&ask, Some((20_000, 20_001)));
                    assert_eq!(r.status, StatusCode::OK);
                }
                Method::Record => {
                    s.record(&req).expect("RECORD accepted");
                }
                _ => {}
            },
            mediagate_rtsp::Item::Frame(f) => {
                out.extend(s.on_interleaved(f.channel(), f.payload().clone()))
            }
            mediagate_rtsp::Item::Response(_) => {}
        }
    }
    (s, out)
}

#[test]
fn ffmpegs_real_publishing_sessions_are_accepted_and_its_media_passes() {
    let (s, frames) = replay(
        include_bytes!("../../../testdata/rtsp/ffmpeg5.1-to-ffmpeg5.1-listen/record-tcp.c2s"),
        "3622851140",
    );
    assert!(s.is_recording());
    assert_eq!(s.described().unwrap().tracks.len(), 2);
    assert!(!frames.is_empty(), "the capture's media is passed on");
    assert!(frames.iter().all(|f| f.channel() < 4));
    assert_eq!(
        s.drops(),
        Drops::default(),
        "nothing of a real publisher is dropped"
    );
    let udp = include_bytes!("../../../testdata/rtsp/ffmpeg5.1-to-ffmpeg5.1-listen/record-udp.c2s");
    let text = String::from_utf8_lossy(udp);
    let session = text
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .expect("the capture names its session")
        .trim()
        .to_owned();
    let (s, _) = replay(udp, &session);
    assert!(s.is_recording());
}

#[test]
fn real_announce_sdps_of_ffmpeg_and_rtspclientsink_are_accepted() {
    for (sdp, tracks) in [
        (
            &include_bytes!("../../../testdata/sdp/ffmpeg5.1-announce-h264-aac.sdp")[..],
            2,
        ),
        (
            &include_bytes!(
                "../../../testdata/sdp/gstreamer1.22-rtspclientsink-announce-h264-aac.sdp"
            )[..],
            2,
        ),
    ] {
        let mut s = PublishSession::new("s".into());
        let path = s
            .announce(&req(
                Method::Announce,
                URL,
                &[("Content-Type", "application/sdp")],
                sdp,
            ))
            .expect("a real encoder's SDP is accepted");
        assert_eq!(path, "/live/cam");
        let d = s.described().unwrap();
        assert_eq!(d.tracks.len(), tracks);
        // rtspclientsink announces its audio first: the hub finds video by type.
        assert!(d.video_track().is_some());
    }
}
