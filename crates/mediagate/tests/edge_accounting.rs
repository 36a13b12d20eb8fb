//! Accounting connections with real peers (issue 12 item 1): the real `mediagate`
//! binary with a route in `accounting = "authorize"` mode, ffmpeg viewers, and a
//! gst-rtsp-server origin that reports every connection and request it sees.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::EdgeProc;
use mediagate_testkit::ffmpeg::{ffmpeg_read, parse_framecrc, ReadOptions};
use mediagate_testkit::process::{Peer, StdoutHandling};
use mediagate_testkit::{Origin, OriginEvent, OriginEventKind, OriginOptions, Transport};

const VIEWERS: usize = 5;

/// Origin connections open now that carried an accepted accounting DESCRIBE (one
/// with the edge's `X-Forwarded-For`).
fn open_accounting(events: &[OriginEvent]) -> usize {
    open_accounting_for(events, |_| true)
}

/// [`open_accounting`] for the DESCRIBEs whose `X-Forwarded-For` passes `chain`.
fn open_accounting_for(events: &[OriginEvent], chain: impl Fn(&str) -> bool) -> usize {
    let mut accounting = HashSet::new();
    let mut closed = HashSet::new();
    for e in events {
        match &e.kind {
            OriginEventKind::Request(r)
                if r.method == "DESCRIBE"
                    && r.status == 200
                    && r.forwarded_for.as_deref().is_some_and(&chain) =>
            {
                accounting.insert(r.client);
            }
            OriginEventKind::ClientClosed { client } => {
                closed.insert(*client);
            }
            _ => {}
        }
    }
    accounting.difference(&closed).count()
}

/// A long-running ffmpeg viewer, killed when dropped.
fn viewer(url: &str) -> Peer {
    viewer_over(url, Transport::Tcp)
}

fn viewer_over(url: &str, transport: Transport) -> Peer {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(ReadOptions::seconds(transport, 120.0).args(url));
    let keep = StdoutHandling {
        on_line: None,
        keep_all: true,
    };
    Peer::spawn_with("ffmpeg", cmd, keep).expect("ffmpeg starts")
}

fn frames(p: &Peer) -> u64 {
    parse_framecrc(&String::from_utf8_lossy(&p.stdout_bytes())).0
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn authorize_gives_the_origin_one_connection_per_viewer_and_one_stream() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccounting = \"authorize\"\n",
        origin.url("/live")
    ));
    let url = edge.url("/cam");
    let mut viewers: Vec<Peer> = (0..VIEWERS).map(|_| viewer(&url)).collect();
    origin
        .wait_until(
            "an accounting connection per viewer",
            Duration::from_secs(30),
            |ev| open_accounting(ev) == VIEWERS,
        )
        .expect("accounting connections");
    wait_for("every viewer decoding", Duration::from_secs(30), || {
        viewers.iter().all(|v| frames(v) >= 10)
    });
    // Held past a few keep-alive intervals (5 s): still one per viewer, plus the one
    // connection of the one media session.
    std::thread::sleep(Duration::from_secs(12));
    let events = origin.events();
    assert_eq!(
        open_accounting(&events),
        VIEWERS,
        "{}",
        origin.diagnostics()
    );
    assert_eq!(
        origin.open_connections(),
        VIEWERS + 1,
        "{}",
        origin.diagnostics()
    );
    assert_eq!(origin.play_count("/live"), 1, "one media stream");
    assert!(
        origin.request_count("OPTIONS", "/live", 200) >= VIEWERS,
        "keep-alives reached the origin"
    );
    // Each accounting DESCRIBE names the viewer and carries the edge's Via.
    let forwarded: Vec<String> = origin
        .requests()
        .into_iter()
        .filter_map(|r| r.forwarded_for)
        .collect();
    assert!(
        forwarded.len() >= VIEWERS && forwarded.iter().all(|f| f == "127.0.0.1"),
        "{forwarded:?}"
    );
    assert!(viewers.iter().all(|v| v.try_status().is_none()));

    // Closing one viewer closes its accounting connection within a second.
    let gone = viewers.pop().expect("a viewer");
    gone.kill();
    let closed_at = Instant::now();
    origin
        .wait_until(
            "one accounting connection closed",
            Duration::from_secs(5),
            |ev| open_accounting(ev) == VIEWERS - 1,
        )
        .expect("the accounting connection closes");
    let took = closed_at.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The others keep theirs, and the media session stays one.
    assert_eq!(origin.play_count("/live"), 1);
    let before: Vec<u64> = viewers.iter().map(frames).collect();
    std::thread::sleep(Duration::from_secs(2));
    assert!(viewers.iter().zip(&before).all(|(v, b)| frames(v) > *b));

    drop(viewers);
    origin
        .wait_until(
            "every accounting connection closed",
            Duration::from_secs(5),
            |ev| open_accounting(ev) == 0,
        )
        .expect("accounting connections close with their viewers");
}

#[test]
fn authorize_on_a_digest_mount_passes_the_origins_verdict_to_the_viewer() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let (user, password) = origin.credentials();
    let (user, password) = (user.to_owned(), password.to_owned());
    // The route's own credentials open the shared stream; each viewer's accounting
    // DESCRIBE carries only that viewer's.
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/sec\"\norigin = \"{}\"\naccounting = \"authorize\"\ncredentials = {{ username = \"{user}\", password = \"{password}\" }}\n",
        origin.url("/secure")
    ));
    let read = |url: &str| {
        let opts = ReadOptions::seconds(Transport::Tcp, 2.0).timeout(Duration::from_secs(30));
        ffmpeg_read(url, &opts).expect("ffmpeg runs")
    };
    let login = |p: &str| {
        edge.url("/sec")
            .replacen("rtsp://", &format!("rtsp://{user}:{p}@"), 1)
    };

    let anonymous = read(&edge.url("/sec"));
    assert!(
        !anonymous.success && anonymous.video_frames == 0 && anonymous.error_contains("401"),
        "{}",
        anonymous.diagnostics
    );
    assert_eq!(
        origin.play_count("/secure"),
        0,
        "no media for a refused viewer"
    );

    let good = read(&login(&password));
    assert!(
        good.success && good.video_frames >= 10,
        "{}",
        good.diagnostics
    );
    let wrong = read(&login("not-the-password"));
    assert!(
        !wrong.success && wrong.video_frames == 0 && wrong.error_contains("401"),
        "{}",
        wrong.diagnostics
    );
    // The origin refused the anonymous and the wrong accounting DESCRIBEs, accepted
    // the right one, and streamed once, to the edge.
    let accounting: Vec<u16> = origin
        .requests()
        .into_iter()
        .filter(|r| r.method == "DESCRIBE" && r.forwarded_for.is_some())
        .map(|r| r.status)
        .collect();
    assert!(accounting.contains(&200), "{accounting:?}");
    assert!(
        accounting.iter().filter(|s| **s == 401).count() >= 2,
        "{accounting:?}"
    );
    assert_eq!(origin.play_count("/secure"), 1);
    let log = edge.peer.stderr_tail().join("\n");
    assert!(!log.contains(&password), "{log}");
}

#[test]
fn a_teardown_closes_the_accounting_connection_while_the_viewer_stays_connected() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccounting = \"authorize\"\n",
        origin.url("/live")
    ));
    let url = edge.url("/cam");
    let mut v = common::RawRtsp::connect(edge.port);
    let d = v.req("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status.as_u16(), 200);
    assert_eq!(
        open_accounting(&origin.events()),
        1,
        "opened by the DESCRIBE"
    );
    let s = v.req(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(s.status.as_u16(), 200);
    let session = s
        .headers
        .get("Session")
        .and_then(|h| h.split(';').next())
        .expect("a session")
        .to_owned();
    let p = v.req("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status.as_u16(), 200);
    origin
        .wait_play_count("/live", 1, Duration::from_secs(20))
        .expect("the shared stream plays");
    assert_eq!(open_accounting(&origin.events()), 1, "the same one, held");
    let t = v.req("TEARDOWN", &url, &[("Session", &session)]);
    assert_eq!(t.status.as_u16(), 200);
    let ended = Instant::now();
    origin
        .wait_until(
            "the accounting connection closed",
            Duration::from_secs(5),
            |ev| open_accounting(ev) == 0,
        )
        .expect("closed by the TEARDOWN");
    let took = ended.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The viewer's connection is still usable.
    let o = v.req("OPTIONS", &url, &[]);
    assert_eq!(o.status.as_u16(), 200);
}

#[test]
fn through_a_parent_edge_the_origin_still_sees_and_releases_each_viewer() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let route = |advertised: &str| {
        format!(
            "[[edge.route]]\nadvertised = \"{advertised}\"\norigin = \"{}\"\naccounting = \"authorize\"\n",
            origin.url("/live")
        )
    };
    // The child asks the parent for the origin's own URL, which the parent's route
    // (a path prefix, any host) matches.
    let parent = EdgeProc::start(&route("/live"));
    let child = EdgeProc::start(&format!(
        "parent = \"rtsp://127.0.0.1:{}\"\n{}",
        parent.port,
        route("/cam")
    ));
    // To the parent, the child's one shared session is a viewer too: the origin sees
    // its accounting connection (forwarded for the child) besides the viewer's
    // (forwarded for the viewer, then the child; all on loopback here).
    let through_child = |f: &str| f == "127.0.0.1, 127.0.0.1";
    let v = viewer(&child.url("/cam"));
    origin
        .wait_until(
            "the parent's accounting connections",
            Duration::from_secs(30),
            |ev| open_accounting_for(ev, through_child) == 1 && open_accounting(ev) == 2,
        )
        .expect("the parent opens its own accounting connections");
    wait_for("the viewer decoding", Duration::from_secs(30), || {
        frames(&v) >= 10
    });
    // Held past the parent's idle limit for connections without a session (10 s):
    // the child's keep-alives keep its accounting connection at the parent open.
    std::thread::sleep(Duration::from_secs(12));
    let events = origin.events();
    assert_eq!(
        open_accounting_for(&events, through_child),
        1,
        "{}",
        origin.diagnostics()
    );
    assert_eq!(open_accounting(&events), 2, "{}", origin.diagnostics());
    assert_eq!(origin.play_count("/live"), 1);
    v.kill();
    let ended = Instant::now();
    origin
        .wait_until(
            "the viewer's accounting connection closed",
            Duration::from_secs(5),
            |ev| open_accounting_for(ev, through_child) == 0,
        )
        .expect("closing the viewer closes the chain");
    let took = ended.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The child's shared session lingers (2 s), then its own goes too.
    origin
        .wait_until(
            "every accounting connection closed",
            Duration::from_secs(10),
            |ev| open_accounting(ev) == 0,
        )
        .expect("the child's shared session ends after its linger");
}

/// The accounting connection is the origin's hold on the viewer: when the origin's
/// side ends it, the viewer's session ends too (the edge has no credentials to ask
/// again). The "origin" here is a parent edge, stopped with SIGTERM: it drains, which
/// closes the child's accounting connections. The TCP viewer's connection closes; the
/// UDP viewer gets an RTCP BYE and stops; both records say `accounting-closed`.
#[test]
fn the_origin_closing_an_accounting_connection_ends_the_viewers_session() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let parent = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/live\"\norigin = \"{}\"\naccounting = \"authorize\"\n",
        origin.url("/live")
    ));
    let log = std::env::temp_dir().join(format!(
        "mediagate-accounting-closed-{}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let child = EdgeProc::start(&format!(
        "parent = \"rtsp://127.0.0.1:{}\"\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccounting = \"authorize\"\n\
         [log]\naccess_log = {:?}\n",
        parent.port,
        origin.url("/live"),
        log.display().to_string()
    ));
    let tcp = viewer_over(&child.url("/cam"), Transport::Tcp);
    let udp = viewer_over(&child.url("/cam"), Transport::Udp);
    wait_for("both viewers decoding", Duration::from_secs(30), || {
        frames(&tcp) >= 10 && frames(&udp) >= 10
    });
    assert!(tcp.try_status().is_none() && udp.try_status().is_none());
    parent.peer.signal("TERM");
    let stopped = Instant::now();
    for v in [&tcp, &udp] {
        assert!(
            v.wait_timeout(Duration::from_secs(5)).is_some(),
            "a viewer still runs 5 s after its accounting connection closed:\n{}\n{}",
            v.diagnostics(),
            child.peer.diagnostics()
        );
    }
    let took = stopped.elapsed();
    let lines = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= 2 || Instant::now() > deadline {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(lines.len(), 2, "{lines:?}\n{}", child.peer.diagnostics());
    let mut seen: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // transport, reason
            (f[9].to_owned(), f[14].to_owned())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("tcp".to_owned(), "accounting-closed".to_owned()),
            ("udp".to_owned(), "accounting-closed".to_owned())
        ],
        "{lines:?} (viewers ended {took:?} after the SIGTERM)"
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn session_gives_each_viewer_its_own_origin_session_beside_the_shared_stream() {
    const N: usize = 3;
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let (user, password) = origin.credentials();
    let (user, password) = (user.to_owned(), password.to_owned());
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccounting = \"session\"\n\
         [[edge.route]]\nadvertised = \"/sec\"\norigin = \"{}\"\naccounting = \"session\"\n\
         credentials = {{ username = \"{user}\", password = \"{password}\" }}\n",
        origin.url("/live"),
        origin.url("/secure"),
    ));
    let mut viewers: Vec<Peer> = (0..N).map(|_| viewer(&edge.url("/cam"))).collect();
    // One PLAY for the shared stream, one per viewer on its accounting connection.
    origin
        .wait_play_count("/live", N + 1, Duration::from_secs(30))
        .expect("an origin session per viewer");
    wait_for("every viewer decoding", Duration::from_secs(30), || {
        viewers.iter().all(|v| frames(v) >= 10)
    });
    std::thread::sleep(Duration::from_secs(7));
    let events = origin.events();
    assert_eq!(open_accounting(&events), N, "{}", origin.diagnostics());
    assert_eq!(origin.open_connections(), N + 1, "{}", origin.diagnostics());
    assert_eq!(origin.play_count("/live"), N + 1);

    let gone = viewers.pop().expect("a viewer");
    gone.kill();
    let ended = Instant::now();
    origin
        .wait_until(
            "one accounting session closed",
            Duration::from_secs(5),
            |ev| open_accounting(ev) == N - 1,
        )
        .expect("the accounting session closes");
    let took = ended.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    drop(viewers);

    // On a Digest mount the viewer's credentials open its own origin session too.
    let read = |url: &str| {
        let opts = ReadOptions::seconds(Transport::Tcp, 2.0).timeout(Duration::from_secs(30));
        ffmpeg_read(url, &opts).expect("ffmpeg runs")
    };
    let anonymous = read(&edge.url("/sec"));
    assert!(
        !anonymous.success && anonymous.error_contains("401"),
        "{}",
        anonymous.diagnostics
    );
    let url = edge
        .url("/sec")
        .replacen("rtsp://", &format!("rtsp://{user}:{password}@"), 1);
    let good = read(&url);
    assert!(
        good.success && good.video_frames >= 10,
        "{}",
        good.diagnostics
    );
    assert_eq!(
        origin.play_count("/secure"),
        2,
        "the shared stream and the viewer's"
    );
}
