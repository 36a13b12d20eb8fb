//! RTCP for cache hits with the real binary (issue 13 item 3, issue 12's `lost`): a hit
//! viewer gets sender reports whose counts and RTP timestamp match what it was sent,
//! and a UDP hit viewer's receiver reports reach its session record. The origin is
//! gst-rtsp-server's on-demand mount; one ffmpeg viewer fills the cache first.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::EdgeProc;
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::SqliteStore;
use mediagate_rtp::rtcp::{Compound, RtcpPacket, SenderInfo};
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

struct CacheDir(PathBuf);

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn records(edge: &EdgeProc, n: usize) -> Vec<ViewerSessionRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<ViewerSessionRecord> = SqliteStore::open(&edge.records_path())
            .and_then(|mut s| s.records(50))
            .unwrap_or_default();
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `session`'s row of `rows`, failing the test with `missing` when there is none.
fn record_of<'a>(
    rows: &'a [ViewerSessionRecord],
    session: &str,
    missing: &str,
) -> &'a ViewerSessionRecord {
    rows.iter()
        .find(|r| r.session == session)
        .unwrap_or_else(|| panic!("{missing}: {rows:#?}"))
}

fn sender_info(rtcp: &[u8]) -> Option<SenderInfo> {
    let c = Compound::parse(rtcp).ok()?;
    let has_cname = c
        .packets()
        .any(|p| matches!(p, RtcpPacket::SourceDescription(_)));
    c.packets().find_map(|p| match p {
        RtcpPacket::SenderReport(sr) if has_cname => Some(sr.sender_info()),
        _ => None,
    })
}

fn setup(
    c: &mut common::RawRtsp,
    url: &str,
    track: usize,
    transport: &str,
    session: Option<&str>,
) -> mediagate_rtsp::Response {
    let mut h = vec![("Transport", transport)];
    if let Some(s) = session {
        h.push(("Session", s));
    }
    let r = c.req("SETUP", &format!("{url}/trackID={track}"), &h);
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    r
}

/// A receiver report from SSRC 0x1234 about `ssrc`: 1/256 lost, 7 in all.
fn receiver_report(ssrc: u32) -> Vec<u8> {
    let block = mediagate_rtp::rtcp::ReportBlock {
        ssrc,
        fraction_lost: 1,
        cumulative_lost: 7,
        extended_highest_seq: 100,
        jitter: 0,
        last_sr: 0,
        delay_since_last_sr: 0,
    };
    let mut rr = [0u8; 64];
    let mut w = mediagate_rtp::rtcp::build::CompoundWriter::new(&mut rr);
    w.receiver_report(0x1234, &[block]).unwrap();
    let n = w.finish().unwrap();
    rr[..n].to_vec()
}

/// An RTP/RTCP port pair of the test kit's, claimed against other test processes.
fn udp_pair() -> (UdpSocket, UdpSocket) {
    mediagate_testkit::ports::UdpPortPair::reserve()
        .expect("a free UDP port pair")
        .into_sockets()
}

fn session_of(r: &mediagate_rtsp::Response) -> String {
    r.headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn hit_viewers_get_sender_reports_and_their_receiver_reports_are_recorded() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let dir =
        CacheDir(std::env::temp_dir().join(format!("mediagate-cache-{}-rtcp", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let api = mediagate_testkit::ports::free_tcp_port().unwrap();
    let edge = EdgeProc::start(&format!(
        "[edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n\
         [admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        dir.0.display().to_string(),
        origin.url("/vod")
    ));
    let url = edge.url("/clip");
    let fill = ffmpeg_read(&url, &ReadOptions::until_end(Transport::Tcp)).expect("ffmpeg runs");
    assert!(fill.success, "the fill: {fill:#?}");
    common::admin::wait_cache_holds(api, "the complete clip", |o| o["complete"] == true);

    // A TCP hit viewer: the SRs on channel 1 count exactly the video packets before
    // them, and their RTP timestamp is the media time playing then (packets go out
    // up to 300 ms ahead of it).
    let mut c = common::RawRtsp::connect(edge.port);
    assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
    let r = setup(&mut c, &url, 0, "RTP/AVP/TCP;unicast;interleaved=0-1", None);
    let session = session_of(&r);
    setup(
        &mut c,
        &url,
        1,
        "RTP/AVP/TCP;unicast;interleaved=2-3",
        Some(&session),
    );
    c.record_frames();
    let play = c.req("PLAY", &url, &[("Session", &session)]);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    let frames = c.read_frames_for(Duration::from_secs(7));
    let (mut packets, mut octets, mut last_ts) = (0u32, 0u32, None);
    let mut reports = 0;
    for f in &frames {
        match f.channel {
            0 => {
                let p = mediagate_rtp::RtpPacket::parse(&f.payload).expect("RTP");
                packets += 1;
                octets += p.payload().len() as u32;
                last_ts = Some(p.timestamp());
            }
            1 => {
                let Some(sr) = sender_info(&f.payload) else {
                    continue;
                };
                reports += 1;
                assert_eq!((sr.packet_count, sr.octet_count), (packets, octets));
                let ahead = last_ts.unwrap().wrapping_sub(sr.rtp_timestamp) as i32;
                // Packets go out up to the player's lead plus one batch (300 + 100 ms)
                // before their time, and the last one of a batch may be a frame later.
                assert!(
                    (-9_000..=90 * 500).contains(&ahead),
                    "the last packet sent is {ahead} ticks ahead of the SR's time"
                );
            }
            _ => {}
        }
    }
    assert_eq!(reports, 2, "an SR after 0.5 s and one 5 s later");
    assert_eq!(
        c.req("TEARDOWN", &url, &[("Session", &session)])
            .status
            .as_u16(),
        200
    );

    // A UDP hit viewer: SRs arrive on its RTCP port; its RR's loss is recorded.
    let (rtp, rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    rtcp.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = common::RawRtsp::connect(edge.port);
    assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
    let transport = format!("RTP/AVP;unicast;client_port={port}-{}", port + 1);
    let r = setup(&mut c, &url, 0, &transport, None);
    let session = session_of(&r);
    let server_rtcp: u16 = r
        .headers
        .get("Transport")
        .and_then(|t| t.split(';').find_map(|p| p.strip_prefix("server_port=")))
        .and_then(|p| p.split('-').nth(1))
        .and_then(|p| p.parse().ok())
        .expect("server_port in the SETUP answer");
    // Both tracks, so the viewer asks for the object the fill recorded.
    let (audio_rtp, _audio_rtcp) = udp_pair();
    let audio_port = audio_rtp.local_addr().unwrap().port();
    let transport = format!(
        "RTP/AVP;unicast;client_port={audio_port}-{}",
        audio_port + 1
    );
    setup(&mut c, &url, 1, &transport, Some(&session));
    let play = c.req("PLAY", &url, &[("Session", &session)]);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    let mut buf = [0u8; 2048];
    // The first SR is due 0.5 s after PLAY; 10 s bounds the wait on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sr = loop {
        assert!(
            Instant::now() < deadline,
            "no SR on the UDP viewer's RTCP port"
        );
        let n = rtcp.recv(&mut buf).expect("RTCP within 10 s");
        if let Some(sr) = sender_info(&buf[..n]) {
            break sr;
        }
    };
    assert!(sr.packet_count > 0);
    let rr = receiver_report(sr.ssrc);
    rtcp.send_to(&rr[..], ("127.0.0.1", server_rtcp)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.req("TEARDOWN", &url, &[("Session", &session)])
            .status
            .as_u16(),
        200
    );
    let rows = records(&edge, 3);
    let udp = rows
        .iter()
        .find(|r| r.cache == "HIT" && r.reported_lost > 0)
        .unwrap_or_else(|| panic!("no HIT record with the reported loss: {rows:#?}"));
    assert_eq!(udp.reported_lost, 7, "{udp:#?}");
}

/// A hit whose held range ends before the clip does goes on from the origin (the
/// seam); its UDP viewer keeps getting sender reports from then on, in its own
/// numbering (the origin's reports translated: the SSRC of the packets it gets, the
/// timestamp of the same media time).
#[test]
fn a_hit_that_continues_from_the_origin_keeps_sending_sender_reports() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 20,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let dir = CacheDir(
        std::env::temp_dir().join(format!("mediagate-cache-{}-rtcp-seam", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let api = mediagate_testkit::ports::free_tcp_port().unwrap();
    let edge = EdgeProc::start(&format!(
        "[edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n\
         [admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        dir.0.display().to_string(),
        origin.url("/vod")
    ));
    let url = edge.url("/clip");
    // The first 3 s are held; the rest is not.
    let fill = ffmpeg_read(&url, &ReadOptions::seconds(Transport::Tcp, 3.0)).expect("ffmpeg runs");
    assert!(fill.video_frames > 0, "the partial fill: {fill:#?}");
    assert_eq!(records(&edge, 1).len(), 1);
    common::admin::wait_cache_holds(api, "the partial fill's run", |o| {
        o["ranges"].as_array().is_some_and(|r| !r.is_empty())
    });

    let (rtp, rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (audio_rtp, _audio_rtcp) = udp_pair();
    let audio_port = audio_rtp.local_addr().unwrap().port();
    let mut c = common::RawRtsp::connect(edge.port);
    assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
    let transport = format!("RTP/AVP;unicast;client_port={port}-{}", port + 1);
    let session = session_of(&setup(&mut c, &url, 0, &transport, None));
    let transport = format!(
        "RTP/AVP;unicast;client_port={audio_port}-{}",
        audio_port + 1
    );
    setup(&mut c, &url, 1, &transport, Some(&session));
    let play = c.req("PLAY", &url, &[("Session", &session)]);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    let rtptime0: u32 = play
        .headers
        .get("RTP-Info")
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.split(';').find_map(|p| p.strip_prefix("rtptime=")))
        .and_then(|v| v.parse().ok())
        .expect("the video rtptime in RTP-Info");

    // Until the clip has played out: each video SR's media time (from its RTP
    // timestamp) and SSRC.
    let mut buf = [0u8; 2048];
    let mut reports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(24);
    while Instant::now() < deadline {
        let Ok(n) = rtcp.recv(&mut buf) else {
            continue;
        };
        if let Some(sr) = sender_info(&buf[..n]) {
            let media_ms = sr.rtp_timestamp.wrapping_sub(rtptime0) / 90;
            reports.push((media_ms, sr.ssrc, sr.packet_count));
        }
    }
    let mut first = [0u8; 2048];
    rtp.set_nonblocking(true).unwrap();
    let n = rtp.recv(&mut first).expect("video packets came");
    let ssrc = mediagate_rtp::RtpPacket::parse(&first[..n])
        .expect("RTP")
        .ssrc();
    let _ = c.req("TEARDOWN", &url, &[("Session", &session)]);

    // The player's reports cover what is held; the origin's, translated, the rest.
    let after_seam: Vec<_> = reports.iter().filter(|r| r.0 >= 6_000).collect();
    assert!(
        !after_seam.is_empty(),
        "no sender report after the held 3 s: {reports:?}"
    );
    assert!(
        reports.iter().all(|r| r.1 == ssrc && r.0 <= 21_000),
        "one SSRC, the packets' own, and media times within the clip: {reports:?} (ssrc {ssrc:#x})"
    );
    assert!(
        reports.windows(2).all(|w| w[0].2 <= w[1].2),
        "packet counts go on across the seam: {reports:?}"
    );
    assert_eq!(
        origin.play_count("/vod"),
        2,
        "the fill and the continuation"
    );
    let rows = records(&edge, 2);
    assert!(
        rows.iter().filter(|r| r.cache == "MISS").count() == 2,
        "a hit that continued from the origin and recorded is a MISS: {rows:#?}"
    );
}

/// The `server_port` of a SETUP answer.
fn server_ports(r: &mediagate_rtsp::Response) -> (u16, u16) {
    r.headers
        .get("Transport")
        .and_then(|t| t.split(';').find_map(|p| p.strip_prefix("server_port=")))
        .and_then(|p| {
            let (a, b) = p.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .expect("server_port in the SETUP answer")
}

/// Datagrams waiting on `sock` now, with their senders' ports.
fn drain(sock: &UdpSocket) -> Vec<u16> {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut from = Vec::new();
    while let Ok((_, addr)) = sock.recv_from(&mut buf) {
        from.push(addr.port());
    }
    from
}

/// Hit viewers of one object are answered the same server ports (the cache's shared
/// pair, so a playout group sends all of them a batch in one `sendmmsg`), each gets
/// the media on its own ports from the port it was told, and each one's RTCP is
/// credited to it by source address: a parked session whose viewer sends receiver
/// reports outlives the session timeout and records its own reported loss, while a
/// silent one times out.
#[test]
fn hit_viewers_share_server_ports_and_their_rtcp_is_told_apart() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let dir = CacheDir(std::env::temp_dir().join(format!(
        "mediagate-cache-{}-rtcp-shared",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    let api = mediagate_testkit::ports::free_tcp_port().unwrap();
    let edge = EdgeProc::start(&format!(
        "session_timeout = \"2s\"\nudp_sessions_outlive_connection = true\n\
         [edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n\
         [admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        dir.0.display().to_string(),
        origin.url("/vod")
    ));
    let url = edge.url("/clip");
    let fill = ffmpeg_read(&url, &ReadOptions::until_end(Transport::Tcp)).expect("ffmpeg runs");
    assert!(fill.success, "the fill: {fill:#?}");
    common::admin::wait_cache_holds(api, "the complete clip", |o| o["complete"] == true);

    // Two UDP viewers of both tracks (the object the fill recorded).
    struct Udp {
        c: common::RawRtsp,
        session: String,
        socks: Vec<(UdpSocket, UdpSocket)>,
        server: Vec<(u16, u16)>,
    }
    let mut viewers: Vec<Udp> = (0..2)
        .map(|_| {
            let mut c = common::RawRtsp::connect(edge.port);
            assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
            let (mut session, mut socks, mut server) = (None, Vec::new(), Vec::new());
            for track in 0..2 {
                let (rtp, rtcp) = udp_pair();
                let port = rtp.local_addr().unwrap().port();
                let transport = format!("RTP/AVP;unicast;client_port={port}-{}", port + 1);
                let r = setup(&mut c, &url, track, &transport, session.as_deref());
                session.get_or_insert_with(|| session_of(&r));
                server.push(server_ports(&r));
                socks.push((rtp, rtcp));
            }
            Udp {
                c,
                session: session.unwrap(),
                socks,
                server,
            }
        })
        .collect();
    assert_eq!(
        viewers[0].server, viewers[1].server,
        "hit viewers of one object are answered the same server ports"
    );
    for v in &mut viewers {
        let play = v.c.req("PLAY", &url, &[("Session", &v.session)]);
        assert_eq!(play.status.as_u16(), 200, "{play:?}");
    }
    std::thread::sleep(Duration::from_millis(800));
    for (i, v) in viewers.iter().enumerate() {
        for (track, (rtp, _)) in v.socks.iter().enumerate() {
            let from = drain(rtp);
            assert!(
                from.len() > 5,
                "viewer {i} got {} on track {track}",
                from.len()
            );
            assert!(
                from.iter().all(|p| *p == v.server[track].0),
                "viewer {i}: media from the port its SETUP answer named"
            );
        }
    }
    // Both connections close; the sessions go on (parked) until they time out.
    let (reporting, silent): (Vec<_>, Vec<_>) = viewers
        .into_iter()
        .map(|v| (v.session, v.socks, v.server))
        .enumerate()
        .partition(|(i, _)| *i == 0);
    let (_, (reporting, socks, server)) = reporting.into_iter().next().unwrap();
    let (_, (silent, _silent_socks, _)) = silent.into_iter().next().unwrap();
    let rr = receiver_report(1);
    // Two timeouts and more, with the video track's report every half second.
    for _ in 0..10 {
        socks[0]
            .1
            .send_to(&rr[..], ("127.0.0.1", server[0].1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let rows = records(&edge, 2);
    let timed_out = record_of(&rows, &silent, "the silent session did not time out");
    assert_eq!(timed_out.reason, "timeout", "{timed_out:#?}");
    assert_eq!(timed_out.reported_lost, 0, "{timed_out:#?}");
    assert!(
        rows.iter().all(|r| r.session != reporting),
        "the session ended while its viewer reported: {rows:#?}"
    );
    assert!(
        drain(&socks[0].0).len() > 5,
        "the reporting viewer's media stopped"
    );
    let mut c = common::RawRtsp::connect(edge.port);
    let r = c.req("TEARDOWN", &url, &[("Session", &reporting)]);
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let rows = records(&edge, 3);
    let kept = record_of(&rows, &reporting, "no record of the reporting session");
    assert_eq!(kept.cache, "HIT", "{kept:#?}");
    assert_eq!(
        kept.reported_lost, 7,
        "its own reports, credited to it: {kept:#?}"
    );
}
