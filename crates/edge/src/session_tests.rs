//! The viewer session core driven with a fake clock and a fake source: every way a
//! session ends yields exactly one record; timeouts are exact without sleeping.

use super::*;

const TIMEOUT: Duration = Duration::from_secs(60);
const URL: &str = "rtsp://edge/cam";

/// The fake source: its name, to see which one came back.
type Fake = &'static str;

struct Sim {
    core: ViewerSessions<Fake>,
    now: Now,
    cseq: u32,
}

fn viewer() -> SocketAddr {
    "192.0.2.7:50000".parse().unwrap()
}

impl Sim {
    fn new(tunnel: bool) -> Sim {
        let now = Now {
            at: Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
        Sim {
            core: ViewerSessions::new(TIMEOUT, viewer(), tunnel, now.at),
            now,
            cseq: 0,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.plus(d);
    }

    fn req(&mut self, method: Method, uri: &str, session: Option<&str>) -> Step {
        let mut r = Request::new(method, uri, Version::Rtsp1_0);
        self.cseq += 1;
        r.set_cseq(self.cseq);
        if let Some(s) = session {
            r.headers.append("Session", s);
        }
        self.core.on_traffic(self.now.at);
        self.core.handle_request(&r, self.now)
    }

    /// SETUP as the shell would carry it out: a new session with `tracks` tracks and
    /// `dest` on track 0.
    fn setup_new(&mut self, id: &str, tracks: usize, dest: TrackDest, source: Fake) {
        match self.req(Method::Setup, &format!("{URL}/trackID=0"), None) {
            Step::Setup {
                session: None,
                track: Some(0),
                url,
            } => assert_eq!(url, URL),
            other => panic!("expected a new SETUP, got {other:?}"),
        }
        self.core
            .open(id.into(), URL.into(), tracks, source, self.now);
        self.core.set_dest(id, 0, dest);
    }

    fn all_ended(&mut self) -> Vec<Ended<Fake>> {
        std::iter::from_fn(|| self.core.poll_ended()).collect()
    }
}

fn tcp() -> TrackDest {
    TrackDest::Interleaved { rtp: 0, rtcp: 1 }
}

fn udp() -> TrackDest {
    TrackDest::Udp {
        rtp: "192.0.2.7:6000".parse().unwrap(),
        rtcp: "192.0.2.7:6001".parse().unwrap(),
    }
}

fn status(step: Step) -> u16 {
    match step {
        Step::Reply(r) => r.status.as_u16(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn teardown_ends_the_session_once_with_its_record() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "live");
    sim.advance(Duration::from_secs(42));
    assert_eq!(status(sim.req(Method::Teardown, URL, Some("s1"))), 200);
    let ended = sim.all_ended();
    assert_eq!(ended.len(), 1);
    let e = &ended[0];
    assert_eq!(e.source, "live");
    assert_eq!(
        e.record,
        EndedSession {
            session: "s1".into(),
            viewer: viewer(),
            url: URL.into(),
            transport: ViewerTransport::Tcp,
            started_unix_ms: 1_700_000_000_000,
            duration: Duration::from_secs(42),
            reason: EndReason::Teardown,
            counts: Counts::default(),
            user: None,
            method: String::new(),
            status: 0,
            rule: None,
            origin: None,
            cache: CacheResult::Split,
            user_agent: None,
            reported_lost: 0,
        }
    );
    // Gone: a second TEARDOWN is refused, and nothing else ends later.
    assert_eq!(status(sim.req(Method::Teardown, URL, Some("s1"))), 454);
    sim.core.end_all(EndReason::ConnectionClosed, sim.now);
    assert!(sim.core.handle_timeout(sim.now.plus(TIMEOUT * 10)));
    assert!(sim.all_ended().is_empty());
}

#[test]
fn one_session_ends_alone_when_its_accounting_connection_closes() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "a");
    sim.setup_new("s2", 1, tcp(), "b");
    sim.advance(Duration::from_secs(3));
    assert!(sim
        .core
        .end_session("s1", EndReason::AccountingClosed, sim.now));
    assert!(!sim
        .core
        .end_session("s1", EndReason::AccountingClosed, sim.now));
    let ended = sim.all_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].record.session.as_str(), ended[0].record.reason),
        ("s1", EndReason::AccountingClosed)
    );
    assert_eq!(ended[0].record.duration, Duration::from_secs(3));
    // The other session goes on.
    assert!(sim.core.has_sessions());
    assert_eq!(status(sim.req(Method::GetParameter, URL, Some("s2"))), 200);
}

#[test]
fn a_session_times_out_exactly_at_its_timeout_and_only_then() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "live");
    let started = sim.now;
    assert_eq!(sim.core.poll_timeout(), started.at + TIMEOUT);
    // A keep-alive halfway moves the deadline.
    sim.advance(TIMEOUT / 2);
    assert_eq!(status(sim.req(Method::GetParameter, URL, Some("s1"))), 200);
    let deadline = sim.now.at + TIMEOUT;
    assert_eq!(sim.core.poll_timeout(), deadline);
    // Not a moment early.
    let almost = Now {
        at: deadline - Duration::from_millis(1),
        unix_ms: sim.now.unix_ms,
    };
    assert!(!sim.core.handle_timeout(almost));
    assert!(sim.all_ended().is_empty());
    // At the deadline: ended, once, and the connection (no traffic either) is idle.
    let at = sim.now.plus(TIMEOUT);
    assert!(sim.core.handle_timeout(at));
    let ended = sim.all_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.reason, EndReason::Timeout);
    assert_eq!(ended[0].record.duration, TIMEOUT / 2 + TIMEOUT);
    assert!(sim.core.handle_timeout(at.plus(TIMEOUT)));
    assert!(sim.all_ended().is_empty());
}

#[test]
fn interleaved_traffic_keeps_a_session_alive() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "live");
    // RTCP receiver reports on the connection, but no request, for three timeouts.
    for _ in 0..6 {
        sim.advance(TIMEOUT / 2);
        sim.core.on_traffic(sim.now.at);
        assert!(!sim.core.handle_timeout(sim.now));
    }
    assert!(sim.all_ended().is_empty());
    assert_eq!(sim.core.len(), 1);
}

#[test]
fn a_closing_connection_ends_every_session_once() {
    let mut sim = Sim::new(false);
    sim.setup_new("a", 1, tcp(), "first");
    sim.setup_new("b", 1, tcp(), "second");
    sim.advance(Duration::from_secs(5));
    sim.core.end_all(EndReason::ConnectionClosed, sim.now);
    sim.core.end_all(EndReason::ConnectionClosed, sim.now);
    let ended = sim.all_ended();
    let sources: Vec<Fake> = ended.iter().map(|e| e.source).collect();
    assert_eq!(sources, ["first", "second"]);
    assert!(ended
        .iter()
        .all(|e| e.record.reason == EndReason::ConnectionClosed
            && e.record.duration == Duration::from_secs(5)));
    assert_eq!(sim.core.len(), 0);
}

#[test]
fn the_record_names_the_transport_the_viewer_used() {
    let mut sim = Sim::new(false);
    sim.setup_new("u", 1, udp(), "x");
    sim.core.end_all(EndReason::Drain, sim.now);
    let e = sim.all_ended().pop().unwrap().record;
    assert_eq!(
        (e.transport, e.reason),
        (ViewerTransport::Udp, EndReason::Drain)
    );

    let mut tunnel = Sim::new(true);
    tunnel.setup_new("t", 1, tcp(), "x");
    tunnel.core.end_all(EndReason::Drain, tunnel.now);
    let e = tunnel.all_ended().pop().unwrap().record;
    assert_eq!(e.transport, ViewerTransport::HttpTunnel);
}

#[test]
fn state_errors_are_answered_without_asking_the_source() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 2, tcp(), "x");
    // Unknown session.
    assert_eq!(status(sim.req(Method::Play, URL, Some("nope"))), 454);
    assert_eq!(status(sim.req(Method::Play, URL, None)), 454);
    assert_eq!(status(sim.req(Method::Pause, URL, None)), 454);
    // One session, one stream.
    let other = "rtsp://edge/other/trackID=0";
    assert_eq!(status(sim.req(Method::Setup, other, Some("s1"))), 459);
    // PLAY of one track of a two-track stream.
    let track = format!("{URL}/trackID=1");
    assert_eq!(status(sim.req(Method::Play, &track, Some("s1"))), 460);
    // Playing fixes the transport.
    assert!(matches!(
        sim.req(Method::Play, URL, Some("s1")),
        Step::Play { session } if session == "s1"
    ));
    sim.core.set_playing("s1", true);
    assert!(sim.core.is_playing("s1"));
    assert_eq!(status(sim.req(Method::Setup, &track, Some("s1"))), 455);
    sim.core.set_playing("s1", false);
    assert!(matches!(
        sim.req(Method::Setup, &track, Some("s1")),
        Step::Setup { session: Some(s), track: Some(1), .. } if s == "s1"
    ));
    // An empty Session on SETUP asks for a new one.
    assert!(matches!(
        sim.req(Method::Setup, &track, Some("")),
        Step::Setup { session: None, .. }
    ));
    assert!(sim.all_ended().is_empty());
}

#[test]
fn protocol_errors_come_before_any_session_lookup() {
    let mut sim = Sim::new(false);
    let mut r = Request::new(Method::Options, URL, Version::Rtsp2_0);
    r.set_cseq(1);
    assert_eq!(status(sim.core.handle_request(&r, sim.now)), 505);
    let r = Request::new(Method::Options, URL, Version::Rtsp1_0);
    assert_eq!(status(sim.core.handle_request(&r, sim.now)), 400, "no CSeq");
    let mut r = Request::new(Method::Describe, URL, Version::Rtsp1_0);
    r.set_cseq(2);
    r.headers.append("Require", "funky-feature");
    match sim.core.handle_request(&r, sim.now) {
        Step::Reply(resp) => {
            assert_eq!(resp.status.as_u16(), 551);
            assert_eq!(resp.headers.get("Unsupported"), Some("funky-feature"));
        }
        other => panic!("expected 551, got {other:?}"),
    }
    assert!(matches!(
        sim.req(Method::Describe, &format!("{URL}/"), None),
        Step::Describe { url } if url == URL
    ));
    assert_eq!(status(sim.req(Method::Record, URL, None)), 405);
    assert_eq!(status(sim.req(Method::Options, "*", None)), 200);
}

#[test]
fn the_logged_in_user_reaches_the_ended_record() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "live");
    sim.core.set_info(
        "s1",
        SessionInfo {
            user: Some("alice".into()),
            ..SessionInfo::default()
        },
    );
    sim.advance(TIMEOUT);
    sim.core.handle_timeout(sim.now);
    let ended = sim.all_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.user.as_deref(), Some("alice"));
    assert_eq!(ended[0].record.reason, EndReason::Timeout);
}

/// An RR from the viewer reporting `lost` on each of `ssrcs` (cumulative).
fn receiver_report(ssrcs: &[(u32, i32)]) -> Vec<u8> {
    use mediagate_rtp::rtcp::{build::CompoundWriter, ReportBlock};
    let blocks: Vec<ReportBlock> = ssrcs
        .iter()
        .map(|&(ssrc, lost)| ReportBlock {
            ssrc,
            cumulative_lost: lost,
            ..ReportBlock::default()
        })
        .collect();
    let mut buf = vec![0u8; 512];
    let mut w = CompoundWriter::new(&mut buf);
    w.receiver_report(0x1234, &blocks).unwrap();
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn the_record_keeps_the_play_answer_the_route_and_the_viewers_reported_loss() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "live");
    sim.core.set_info(
        "s1",
        SessionInfo {
            user: Some("alice".into()),
            rule: Some("/cam".into()),
            origin: Some("rtsp://192.0.2.10/cam".into()),
            cache: CacheResult::Pass,
            user_agent: Some("Lavf".into()),
        },
    );
    sim.core.answered("s1", &Method::Setup, StatusCode::OK);
    sim.core.answered("s1", &Method::Play, StatusCode::OK);
    // A later keep-alive's answer does not replace the PLAY's.
    sim.core
        .answered("s1", &Method::GetParameter, StatusCode::SESSION_NOT_FOUND);
    // Reports on the session's RTCP channel count; the latest cumulative figure per
    // source wins, summed over sources; other channels and garbage are ignored.
    sim.core.on_interleaved(1, &receiver_report(&[(7, 5)]));
    sim.core
        .on_interleaved(1, &receiver_report(&[(7, 9), (8, 2)]));
    sim.core.on_interleaved(3, &receiver_report(&[(7, 100)]));
    sim.core.on_interleaved(1, b"not rtcp");
    assert_eq!(status(sim.req(Method::Teardown, URL, Some("s1"))), 200);
    let ended = sim.all_ended();
    let r = &ended[0].record;
    assert_eq!(r.user.as_deref(), Some("alice"));
    assert_eq!((r.method.as_str(), r.status), ("PLAY", 200));
    assert_eq!(r.rule.as_deref(), Some("/cam"));
    assert_eq!(r.origin.as_deref(), Some("rtsp://192.0.2.10/cam"));
    assert_eq!(r.cache, CacheResult::Pass);
    assert_eq!(r.user_agent.as_deref(), Some("Lavf"));
    assert_eq!(r.reported_lost, 11);
}

#[test]
fn without_a_play_the_record_keeps_the_last_answer() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 1, tcp(), "live");
    sim.core.answered("s1", &Method::Setup, StatusCode::OK);
    sim.core
        .answered("s1", &Method::Play, StatusCode::SERVICE_UNAVAILABLE);
    sim.core.end_all(EndReason::ConnectionClosed, sim.now);
    let r = &sim.all_ended()[0].record;
    assert_eq!((r.method.as_str(), r.status), ("PLAY", 503));
    let mut sim = Sim::new(false);
    sim.setup_new("s2", 1, tcp(), "live");
    sim.core.answered("s2", &Method::Setup, StatusCode::OK);
    sim.core.end_all(EndReason::ConnectionClosed, sim.now);
    let r = &sim.all_ended()[0].record;
    assert_eq!((r.method.as_str(), r.status), ("SETUP", 200));
}

#[test]
fn the_record_keeps_the_cache_result_the_play_decided() {
    let mut sim = Sim::new(false);
    sim.setup_new("s1", 2, tcp(), "on-demand");
    sim.core.set_info(
        "s1",
        SessionInfo {
            cache: CacheResult::Pass,
            ..SessionInfo::default()
        },
    );
    // On-demand media's source is only known at PLAY: a hit, here.
    sim.core.set_cache("s1", CacheResult::Hit);
    sim.core.set_cache("nope", CacheResult::Miss);
    assert_eq!(status(sim.req(Method::Teardown, URL, Some("s1"))), 200);
    let ended = sim.all_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.cache, CacheResult::Hit);
}

#[test]
fn a_closed_connections_udp_session_moves_to_a_new_connection_with_its_record() {
    let mut sim = Sim::new(false);
    sim.setup_new("u", 1, udp(), "udp-source");
    sim.setup_new("t", 1, tcp(), "tcp-source");
    sim.advance(Duration::from_secs(5));
    sim.core.on_traffic(sim.now.at);

    // The connection closes: only the UDP session can go on without it.
    let detached = sim.core.detach_udp();
    assert_eq!(detached.len(), 1);
    assert_eq!(detached[0].id(), "u");
    // Its timeout counts from the connection's last traffic, not its SETUP.
    assert_eq!(detached[0].expires(TIMEOUT), sim.now.at + TIMEOUT);
    sim.core.end_all(EndReason::ConnectionClosed, sim.now);
    let ended = sim.all_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.session, "t");

    // A new connection (another address: a balancer's other node) names it.
    let mut next = Sim::new(false);
    next.now = sim.now.plus(Duration::from_secs(10));
    assert_eq!(status(next.req(Method::GetParameter, URL, Some("u"))), 454);
    next.core.adopt(detached.into_iter().next().unwrap());
    assert_eq!(status(next.req(Method::GetParameter, URL, Some("u"))), 200);
    assert_eq!(next.core.transport("u"), Some(ViewerTransport::Udp));
    // The request refreshed it: a full timeout from now, not from the old traffic.
    next.advance(TIMEOUT - Duration::from_secs(1));
    next.core.handle_timeout(next.now);
    assert!(next.all_ended().is_empty());
    assert_eq!(status(next.req(Method::Teardown, URL, Some("u"))), 200);
    let e = next.all_ended().pop().unwrap();
    assert_eq!(e.source, "udp-source");
    assert_eq!(
        (e.record.reason, e.record.started_unix_ms),
        (EndReason::Teardown, 1_700_000_000_000)
    );
}

#[test]
fn a_detached_session_nobody_adopts_ends_once_with_the_viewer_that_set_it_up() {
    let mut sim = Sim::new(false);
    sim.setup_new("u", 1, udp(), "src");
    let d = sim.core.detach_udp().pop().unwrap();
    assert!(!sim.core.has_sessions());
    let later = sim.now.plus(TIMEOUT);
    let e = ViewerSessions::end_detached(d, EndReason::Timeout, later);
    assert_eq!(e.source, "src");
    assert_eq!(e.record.viewer, viewer());
    assert_eq!(e.record.transport, ViewerTransport::Udp);
    assert_eq!(e.record.reason, EndReason::Timeout);
    assert_eq!(e.record.duration, TIMEOUT);
    assert!(sim.all_ended().is_empty());
}
