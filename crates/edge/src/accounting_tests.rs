//! The accounting connection's timers with a fake clock, its forwarded-for chain and
//! the answers a refused viewer gets.

use mediagate_rtsp::StatusCode;

use super::*;

const EVERY: Duration = Duration::from_secs(5);
const SILENT: Duration = Duration::from_secs(15);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn keep_alives_go_out_at_the_interval_while_the_origin_answers() {
    let t0 = Instant::now();
    let mut c = AccountingClock::new(EVERY, SILENT, t0);
    assert_eq!(c.poll_timeout(), t0 + EVERY);
    assert_eq!(c.handle_timeout(t0 + secs(4)), None);
    for i in 1..=20u32 {
        let at = t0 + EVERY * i;
        assert_eq!(c.poll_timeout(), at);
        assert_eq!(c.handle_timeout(at), Some(Due::KeepAlive), "keep-alive {i}");
        assert_eq!(c.handle_timeout(at), None, "once per interval");
        c.on_answer();
    }
}

#[test]
fn a_late_timer_sends_one_keep_alive_and_starts_the_interval_again() {
    let t0 = Instant::now();
    let mut c = AccountingClock::new(EVERY, SILENT, t0);
    assert_eq!(c.handle_timeout(t0 + secs(12)), Some(Due::KeepAlive));
    c.on_answer();
    assert_eq!(c.poll_timeout(), t0 + secs(17));
}

#[test]
fn an_origin_that_stops_answering_closes_the_connection() {
    let t0 = Instant::now();
    let mut c = AccountingClock::new(EVERY, SILENT, t0);
    assert_eq!(c.handle_timeout(t0 + secs(5)), Some(Due::KeepAlive));
    assert_eq!(c.handle_timeout(t0 + secs(10)), Some(Due::KeepAlive));
    assert_eq!(c.handle_timeout(t0 + secs(15)), Some(Due::KeepAlive));
    // Counted from the first unanswered keep-alive, not the latest.
    assert_eq!(c.poll_timeout(), t0 + secs(20));
    assert_eq!(
        c.handle_timeout(t0 + secs(20)),
        Some(Due::Close(CloseWhy::OriginSilent))
    );
}

#[test]
fn an_answer_in_time_keeps_the_connection() {
    let t0 = Instant::now();
    let mut c = AccountingClock::new(EVERY, SILENT, t0);
    assert_eq!(c.handle_timeout(t0 + secs(5)), Some(Due::KeepAlive));
    assert_eq!(c.handle_timeout(t0 + secs(10)), Some(Due::KeepAlive));
    c.on_answer();
    assert_eq!(c.handle_timeout(t0 + secs(15)), Some(Due::KeepAlive));
    assert_eq!(c.handle_timeout(t0 + secs(20)), Some(Due::KeepAlive));
    assert_eq!(c.handle_timeout(t0 + secs(25)), Some(Due::KeepAlive));
    assert_eq!(
        c.handle_timeout(t0 + secs(30)),
        Some(Due::Close(CloseWhy::OriginSilent))
    );
}

#[test]
fn the_viewer_ending_closes_at_once_whatever_else_is_due() {
    let t0 = Instant::now();
    let mut c = AccountingClock::new(EVERY, SILENT, t0);
    let end = t0 + secs(3);
    c.on_viewer_ended(end);
    assert_eq!(c.poll_timeout(), end);
    assert_eq!(
        c.handle_timeout(end),
        Some(Due::Close(CloseWhy::ViewerEnded))
    );
    // A keep-alive that is also due never delays the close.
    let mut c = AccountingClock::new(EVERY, SILENT, t0);
    c.on_viewer_ended(t0 + secs(5));
    assert_eq!(
        c.handle_timeout(t0 + secs(5)),
        Some(Due::Close(CloseWhy::ViewerEnded))
    );
    // A second end never postpones the first.
    c.on_viewer_ended(t0 + secs(9));
    assert_eq!(c.poll_timeout(), t0 + secs(5));
}

#[test]
fn forwarded_for_appends_the_viewer_and_keeps_only_addresses() {
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(forwarded_for(std::iter::empty(), v4), "192.0.2.7");
    assert_eq!(
        forwarded_for(["198.51.100.1, 2001:db8::1", "203.0.113.9"].into_iter(), v4),
        "198.51.100.1, 2001:db8::1, 203.0.113.9, 192.0.2.7"
    );
    assert_eq!(
        forwarded_for(
            ["evil\r\nX-Admin: yes, 198.51.100.1, unknown"].into_iter(),
            v4
        ),
        "198.51.100.1, 192.0.2.7"
    );
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(forwarded_for(std::iter::empty(), mapped), "192.0.2.7");
    let long = (1..=20)
        .map(|i| format!("10.0.0.{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let got = forwarded_for([long.as_str()].into_iter(), v4);
    assert_eq!(got.split(", ").count(), MAX_FORWARDED);
    assert!(got.starts_with("10.0.0.14, "), "{got}");
    assert!(got.ends_with(", 192.0.2.7"), "{got}");
}

#[test]
fn a_refused_viewer_gets_the_origins_answer() {
    let r = refusal(&ClientError::Challenged {
        status: StatusCode::UNAUTHORIZED,
        challenges: vec![
            "Digest realm=\"cams\", nonce=\"abc\"".into(),
            "Basic realm=\"cams\"".into(),
        ],
    });
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers.get_all("WWW-Authenticate").collect::<Vec<_>>(),
        [
            "Digest realm=\"cams\", nonce=\"abc\"",
            "Basic realm=\"cams\""
        ]
    );
    for status in [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND] {
        let r = refusal(&ClientError::Status {
            method: "DESCRIBE".into(),
            status,
            reason: "nope".into(),
        });
        assert_eq!(r.status, status);
        assert!(r.headers.get("WWW-Authenticate").is_none());
    }
    let r = refusal(&ClientError::Timeout(secs(10)));
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
}
