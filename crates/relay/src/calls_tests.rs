//! Call registry tests with a fake port environment and a fake clock.

use super::*;
use crate::media::Component;
use mediagate_ng::bencode::{decode_exact, Limits};
use mediagate_udp::PortPool;
use rand::rngs::SmallRng;
use rand::SeedableRng as _;

/// Ports from a pool per family, no sockets; remembers what was started and closed.
struct FakeEnv {
    v4: PortPool,
    v6: PortPool,
    rng: SmallRng,
    started: Vec<SharedMedia>,
    closed: Vec<SocketAddr>,
}

impl FakeEnv {
    fn new(pairs: u16) -> Self {
        let q = Duration::from_secs(60);
        Self {
            v4: PortPool::new(30000, 30000 + 2 * pairs - 1, q),
            v6: PortPool::new(40000, 40000 + 2 * pairs - 1, q),
            rng: SmallRng::seed_from_u64(3),
            started: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn in_use(&self) -> usize {
        self.v4.in_use() + self.v6.in_use()
    }
}

impl MediaEnv for FakeEnv {
    fn open_pair(&mut self, family: Family, now: Instant) -> Result<OpenPair, OpenError> {
        let (pool, ip): (&mut PortPool, IpAddr) = match family {
            Family::V4 => (&mut self.v4, "192.0.2.1".parse().unwrap()),
            Family::V6 => (&mut self.v6, "2001:db8::1".parse().unwrap()),
        };
        let port = pool.take(now, &mut self.rng).ok_or(OpenError::Exhausted)?;
        Ok(OpenPair {
            local: SocketAddr::new(ip, port),
            advertised: ip,
        })
    }

    fn start(&mut self, media: &SharedMedia) {
        self.started.push(Arc::clone(media));
    }

    fn close_pair(&mut self, local: SocketAddr, now: Instant) {
        self.closed.push(local);
        match local {
            SocketAddr::V4(_) => self.v4.release(local.port(), now),
            SocketAddr::V6(_) => self.v6.release(local.port(), now),
        }
    }
}

const CALLER_SDP: &str = "v=0\r\n\
o=- 1 1 IN IP4 10.1.0.2\r\n\
s=-\r\n\
c=IN IP4 10.1.0.2\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 8\r\n\
a=rtpmap:8 PCMA/8000\r\n";

const CALLEE_SDP: &str = "v=0\r\n\
o=- 2 1 IN IP4 10.2.0.2\r\n\
s=-\r\n\
c=IN IP4 10.2.0.2\r\n\
t=0 0\r\n\
m=audio 7000 RTP/AVP 8\r\n\
a=rtpmap:8 PCMA/8000\r\n";

fn t0() -> Now {
    Now {
        at: Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

fn request(pairs: &[(&str, Value)]) -> Request {
    let v = Value::Dict(
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    );
    // Go through the wire form, as the server does.
    let v = decode_exact(&v.encode(), &Limits::default()).unwrap();
    Request::from_value(&v).unwrap()
}

fn s(text: &str) -> Value {
    Value::str(text)
}

fn offer(call: &str, from: &str, sdp: &str, extra: &[(&str, Value)]) -> Request {
    let mut pairs = vec![
        ("command", s("offer")),
        ("call-id", s(call)),
        ("from-tag", s(from)),
        ("sdp", s(sdp)),
        ("supports", Value::List(vec![s("load limit")])),
    ];
    pairs.extend_from_slice(extra);
    request(&pairs)
}

fn answer(call: &str, from: &str, to: &str, sdp: &str, extra: &[(&str, Value)]) -> Request {
    let mut pairs = vec![
        ("command", s("answer")),
        ("call-id", s(call)),
        ("from-tag", s(from)),
        ("to-tag", s(to)),
        ("sdp", s(sdp)),
    ];
    pairs.extend_from_slice(extra);
    request(&pairs)
}

fn simple(command: &str, call: &str, extra: &[(&str, Value)]) -> Request {
    let mut pairs = vec![("command", s(command)), ("call-id", s(call))];
    pairs.extend_from_slice(extra);
    request(&pairs)
}

fn sdp_of(reply: &Value) -> String {
    assert_eq!(reply::result_of(reply), Some("ok"), "{reply:?}");
    String::from_utf8(reply.get("sdp").unwrap().as_bytes().unwrap().to_vec()).unwrap()
}

fn error_of(reply: &Value) -> &str {
    assert_eq!(reply::result_of(reply), Some("error"), "{reply:?}");
    reply.get("error-reason").and_then(Value::as_str).unwrap()
}

fn nat_flags() -> Vec<(&'static str, Value)> {
    vec![
        (
            "received-from",
            Value::List(vec![s("IP4"), s("203.0.113.9")]),
        ),
        (
            "replace",
            Value::List(vec![s("origin"), s("session-connection")]),
        ),
        ("ICE", s("remove")),
    ]
}

/// Offer and answer through a registry; returns the registry, env, and the pair.
fn established() -> (Registry, FakeEnv, SharedMedia, Now) {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(100);
    let r = reg.handle(
        &offer("c1", "tagA", CALLER_SDP, &nat_flags()),
        now,
        &mut env,
    );
    sdp_of(&r);
    let r = reg.handle(
        &answer("c1", "tagA", "tagB", CALLEE_SDP, &[]),
        now,
        &mut env,
    );
    sdp_of(&r);
    let media = Arc::clone(&env.started[0]);
    (reg, env, media, now)
}

#[test]
fn a_first_answer_reports_the_call_setup_time_and_a_reanswer_does_not() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(100);
    reg.handle(&offer("c1", "tagA", CALLER_SDP, &[]), now, &mut env);
    assert_eq!(reg.take_call_setup(), None, "an offer sets nothing up");
    // A re-offer before the answer does not restart the clock.
    let later = now.plus(Duration::from_millis(100));
    reg.handle(&offer("c1", "tagA", CALLER_SDP, &[]), later, &mut env);
    let answered = now.plus(Duration::from_millis(250));
    let r = reg.handle(
        &answer("c1", "tagA", "tagB", CALLEE_SDP, &[]),
        answered,
        &mut env,
    );
    assert_eq!(reply::result_of(&r), Some("ok"));
    assert_eq!(reg.take_call_setup(), Some(Duration::from_millis(250)));
    assert_eq!(reg.take_call_setup(), None, "taken once");
    let again = now.plus(Duration::from_secs(30));
    reg.handle(
        &answer("c1", "tagA", "tagB", CALLEE_SDP, &[]),
        again,
        &mut env,
    );
    assert_eq!(reg.take_call_setup(), None, "a re-INVITE's answer");
    let (record, _) = &reg.live_calls(again)[0];
    assert_eq!(
        record.post_dial_delay_ms(),
        Some(250),
        "the record keeps the first answer's time, not the re-INVITE's"
    );
    assert!(!record.streams[0].on_hold && !record.streams[0].closed);
}

#[test]
fn offer_and_answer_rewrite_to_the_facing_legs() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(100);
    let r = reg.handle(
        &offer("c1", "tagA", CALLER_SDP, &nat_flags()),
        now,
        &mut env,
    );
    let offered = sdp_of(&r);
    assert_eq!(env.started.len(), 1);
    let (caller_port, callee_port) = {
        let m = lock(&env.started[0]);
        (m.legs[0].local.port(), m.legs[1].local.port())
    };
    assert_ne!(caller_port, callee_port);
    assert_eq!(
        offered,
        format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio {callee_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=rtcp:{}\r\n",
            callee_port + 1
        )
    );
    let r = reg.handle(
        &answer("c1", "tagA", "tagB", CALLEE_SDP, &[]),
        now,
        &mut env,
    );
    let answered = sdp_of(&r);
    assert_eq!(
        answered,
        format!(
            "v=0\r\no=- 2 1 IN IP4 10.2.0.2\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio {caller_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=rtcp:{}\r\n",
            caller_port + 1
        )
    );
    assert_eq!(env.in_use(), 2);
}

#[test]
fn media_flows_through_the_latched_nat_mapping() {
    let (_reg, _env, media, now) = established();
    let mut m = lock(&media);
    let rtp = [0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9, 0xd5, 0xd5];
    let caller_nat: SocketAddr = "203.0.113.9:61000".parse().unwrap();
    let f = m
        .on_datagram(0, Component::Rtp, caller_nat, &rtp, now.at)
        .unwrap();
    assert_eq!(f.to, "10.2.0.2:7000".parse().unwrap());
    let callee: SocketAddr = "10.2.0.2:7000".parse().unwrap();
    let back = m
        .on_datagram(1, Component::Rtp, callee, &rtp, now.at)
        .unwrap();
    assert_eq!(back.to, caller_nat);
    let stranger: SocketAddr = "198.51.100.7:7000".parse().unwrap();
    assert_eq!(
        m.on_datagram(0, Component::Rtp, stranger, &rtp, now.at),
        None
    );
}

#[test]
fn exhaustion_answers_ran_out_of_ports_and_leaks_nothing() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(3);
    let two_streams = format!("{CALLER_SDP}m=video 6002 RTP/AVP 96\r\n");
    let r = reg.handle(&offer("c1", "a", &two_streams, &[]), now, &mut env);
    assert_eq!(error_of(&r), "Ran out of ports");
    assert_eq!(
        r.encode(),
        b"d6:result5:error12:error-reason16:Ran out of portse"
    );
    assert_eq!(
        env.v4.in_use(),
        0,
        "the first stream's pairs were given back"
    );
    assert_eq!(reg.call_count(), 0);
    assert!(env.started.is_empty());
    assert_eq!(reg.totals().rejected, 1);
}

#[test]
fn retransmitted_offer_reuses_the_ports() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(10);
    let first = sdp_of(&reg.handle(&offer("c1", "a", CALLER_SDP, &[]), now, &mut env));
    let again = sdp_of(&reg.handle(&offer("c1", "a", CALLER_SDP, &[]), now, &mut env));
    assert_eq!(first, again);
    assert_eq!(env.in_use(), 2);
}

#[test]
fn reinvite_from_the_callee_uses_the_caller_facing_ports() {
    let (mut reg, mut env, media, now) = established();
    let caller_port = lock(&media).legs[0].local.port();
    let hold = CALLEE_SDP.replace(
        "a=rtpmap:8 PCMA/8000\r\n",
        "a=rtpmap:8 PCMA/8000\r\na=sendonly\r\n",
    );
    let r = reg.handle(
        &offer("c1", "tagB", &hold, &[("to-tag", s("tagA"))]),
        now,
        &mut env,
    );
    let out = sdp_of(&r);
    assert!(
        out.contains(&format!("m=audio {caller_port} RTP/AVP 8")),
        "{out}"
    );
    assert!(
        out.contains("a=sendonly"),
        "direction passes through: {out}"
    );
    assert!(lock(&media).legs[1].on_hold);
    assert_eq!(env.in_use(), 2, "no new ports for a re-INVITE");
}

#[test]
fn bridging_ipv4_to_ipv6() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(10);
    let r = reg.handle(
        &offer("c6", "a", CALLER_SDP, &[("address family", s("IP6"))]),
        now,
        &mut env,
    );
    let out = sdp_of(&r);
    assert!(out.contains("c=IN IP6 2001:db8::1\r\n"), "{out}");
    let callee6 = "v=0\r\no=- 1 1 IN IP6 2001:db8::99\r\ns=-\r\nc=IN IP6 2001:db8::99\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\n";
    let back = sdp_of(&reg.handle(&answer("c6", "a", "b", callee6, &[]), now, &mut env));
    assert!(back.contains("c=IN IP4 192.0.2.1\r\n"), "{back}");
    let m = lock(&env.started[0]);
    assert!(m.legs[0].local.is_ipv4() && m.legs[1].local.is_ipv6());
}

#[test]
fn rtcp_mux_negotiation() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(10);
    let muxed = format!("{CALLER_SDP}a=rtcp-mux\r\n");
    let out = sdp_of(&reg.handle(&offer("m", "a", &muxed, &[]), now, &mut env));
    assert!(
        out.contains("a=rtcp-mux\r\n"),
        "offered mux passes on: {out}"
    );
    // The callee declines: the caller gets no mux unless `accept` was given.
    let out = sdp_of(&reg.handle(&answer("m", "a", "b", CALLEE_SDP, &[]), now, &mut env));
    assert!(!out.contains("rtcp-mux"), "{out}");
    {
        let m = lock(&env.started[0]);
        assert!(!m.legs[0].rtcp_mux && !m.legs[1].rtcp_mux);
    }
    let out = sdp_of(&reg.handle(
        &answer(
            "m",
            "a",
            "b",
            CALLEE_SDP,
            &[("rtcp-mux", Value::List(vec![s("accept")]))],
        ),
        now,
        &mut env,
    ));
    assert!(out.contains("a=rtcp-mux\r\n"), "{out}");
    let m = lock(&env.started[0]);
    assert!(
        m.legs[0].rtcp_mux && !m.legs[1].rtcp_mux,
        "the relay demultiplexes"
    );
    drop(m);
    // `demux` strips it from the offer.
    let out = sdp_of(&reg.handle(
        &offer(
            "m2",
            "a",
            &muxed,
            &[("rtcp-mux", Value::List(vec![s("demux")]))],
        ),
        now,
        &mut env,
    ));
    assert!(!out.contains("rtcp-mux"), "{out}");
}

#[test]
fn closed_and_t38_streams() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(10);
    let sdp = format!("{CALLER_SDP}m=video 0 RTP/AVP 96\r\nm=image 6004 udptl t38\r\n");
    let out = sdp_of(&reg.handle(&offer("f", "a", &sdp, &[]), now, &mut env));
    assert!(out.contains("m=video 0 RTP/AVP 96\r\n"), "{out}");
    assert_eq!(env.started.len(), 2, "audio and T.38, not the closed video");
    let t38 = lock(&env.started[1]);
    assert!(!t38.is_rtp);
    assert!(out.contains(&format!(
        "m=image {} udptl t38\r\n",
        t38.legs[1].local.port()
    )));
    assert!(!out.contains(&format!("a=rtcp:{}", t38.legs[1].local.port() + 1)));
}

#[test]
fn hostile_offers() {
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(100);
    let mut huge = String::from("v=0\r\nc=IN IP4 10.0.0.1\r\n");
    for i in 0..10_000 {
        huge.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 2000 + 2 * i));
    }
    let r = reg.handle(&offer("h", "a", &huge, &[]), now, &mut env);
    assert_eq!(error_of(&r), "Failed to parse SDP");
    assert_eq!(env.in_use(), 0);
    let r = reg.handle(&offer("h", "a", "not sdp", &[]), now, &mut env);
    assert_eq!(error_of(&r), "Failed to parse SDP");
    let r = reg.handle(
        &offer("h", "a", "v=0\r\nm=audio 1 RTP/AVP 0\r\n", &[]),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "Incomplete SDP specification");
    let r = reg.handle(
        &simple("offer", "h", &[("from-tag", s("a"))]),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "No SDP body in message");
    let r = reg.handle(
        &request(&[("command", s("offer")), ("sdp", s(CALLER_SDP))]),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "No call-id in message");
    let r = reg.handle(
        &simple("offer", "h", &[("sdp", s(CALLER_SDP))]),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "No from-tag in message");
    assert_eq!(reg.call_count(), 0);
}

#[test]
fn answer_errors() {
    let (mut reg, mut env, _media, now) = established();
    let r = reg.handle(&answer("nope", "a", "b", CALLEE_SDP, &[]), now, &mut env);
    assert_eq!(error_of(&r), "Unknown call-id");
    let r = reg.handle(
        &answer("c1", "stranger", "b", CALLEE_SDP, &[]),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "Invalid dialogue association");
    let r = reg.handle(
        &simple(
            "answer",
            "c1",
            &[("from-tag", s("tagA")), ("sdp", s(CALLEE_SDP))],
        ),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "No to-tag in message");
    // A stream the offer never opened is refused rather than bypassing the relay.
    let extra = format!("{CALLEE_SDP}m=video 7002 RTP/AVP 96\r\n");
    let out = sdp_of(&reg.handle(&answer("c1", "tagA", "tagB", &extra, &[]), now, &mut env));
    assert!(out.contains("m=video 0 RTP/AVP 96"), "{out}");
}

#[test]
fn delete_now_delayed_and_unknown() {
    let (mut reg, mut env, media, now) = established();
    lock(&media).legs[0].rtp.packets = 5;
    let r = reg.handle(
        &simple("delete", "c1", &[("from-tag", s("tagA"))]),
        now,
        &mut env,
    );
    assert_eq!(reply::result_of(&r), Some("ok"));
    assert_eq!(
        r.get("totals")
            .and_then(|t| t.get("RTP"))
            .and_then(|t| t.get("packets")),
        Some(&Value::Int(5))
    );
    assert_eq!(reg.call_count(), 1, "lingers for the delete delay");
    assert_eq!(reg.active_call_count(), 0);
    reg.poll(now.plus(Duration::from_secs(29)), &mut env);
    assert!(reg.take_ended().is_empty());
    reg.poll(now.plus(Duration::from_secs(30)), &mut env);
    let ended = reg.take_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, EndReason::Deleted);
    let rec = &ended[0].record;
    assert_eq!(
        (rec.from_tag.as_str(), rec.to_tag.as_str()),
        ("tagA", "tagB")
    );
    assert_eq!(
        rec.end_unix_ms, now.unix_ms,
        "ended when deleted, not when purged"
    );
    assert_eq!(rec.streams[0].caller.packets, 5);
    assert_eq!(rec.streams[0].caller.codec, "PCMA");
    assert_eq!(env.in_use(), 0);
    assert_eq!(env.closed.len(), 2);

    let r = reg.handle(&simple("delete", "c1", &[]), now, &mut env);
    assert_eq!(
        r.encode(),
        b"d6:result2:ok7:warning38:Call-ID not found or tags didn't matche"
    );
    let r = reg.handle(
        &simple("delete", "c1", &[("flags", Value::List(vec![s("fatal")]))]),
        now,
        &mut env,
    );
    assert_eq!(error_of(&r), "Call-ID not found or tags didn't match");
}

#[test]
fn a_new_offer_revives_a_call_in_its_delete_delay() {
    let (mut reg, mut env, _media, now) = established();
    reg.handle(&simple("delete", "c1", &[]), now, &mut env);
    assert_eq!(reg.active_call_count(), 0);
    sdp_of(&reg.handle(&offer("c1", "tagA", CALLER_SDP, &[]), now, &mut env));
    assert_eq!(reg.active_call_count(), 1);
    reg.poll(now.plus(Duration::from_secs(31)), &mut env);
    assert!(
        reg.take_ended().is_empty(),
        "not purged after the old delay"
    );
}

#[test]
fn delete_with_zero_delay_and_wrong_tags() {
    let (mut reg, mut env, _media, now) = established();
    let r = reg.handle(
        &simple("delete", "c1", &[("from-tag", s("zzz"))]),
        now,
        &mut env,
    );
    assert_eq!(
        r.get("warning").and_then(Value::as_str),
        Some("Call-ID not found or tags didn't match")
    );
    let r = reg.handle(
        &simple(
            "delete",
            "c1",
            &[
                ("from-tag", s("tagB")),
                ("delete delay", Value::Int(0)),
                ("flags", Value::List(vec![s("fast")])),
            ],
        ),
        now,
        &mut env,
    );
    assert_eq!(r, reply::ok(Vec::new()));
    assert_eq!(reg.call_count(), 0);
    assert_eq!(reg.take_ended().len(), 1);
}

#[test]
fn media_hold_and_offer_timeouts() {
    let (mut reg, mut env, media, now) = established();
    let later = |s| now.plus(Duration::from_secs(s));
    lock(&media).legs[0].rtp.last_packet = Some(later(30).at);
    reg.poll(later(89), &mut env);
    assert!(reg.take_ended().is_empty());
    reg.poll(later(90), &mut env);
    let ended = reg.take_ended();
    assert_eq!(ended[0].reason, EndReason::Timeout);
    assert!(ended[0].reason.needs_notification());
    assert_eq!(ended[0].record.end_unix_ms, later(90).unix_ms);

    // On hold: the long timeout applies.
    let (mut reg, mut env, media, now) = established();
    lock(&media).legs[1].on_hold = true;
    reg.poll(now.plus(Duration::from_secs(600)), &mut env);
    assert!(reg.take_ended().is_empty());
    reg.poll(now.plus(Duration::from_secs(3600)), &mut env);
    let ended = reg.take_ended();
    assert_eq!(ended[0].reason, EndReason::HoldTimeout);
    let stream = &ended[0].record.streams[0];
    assert!(stream.on_hold && !stream.closed, "{stream:?}");

    // Never answered: the offer timeout.
    let now = t0();
    let mut reg = Registry::new(RelayOptions::default(), now);
    let mut env = FakeEnv::new(10);
    sdp_of(&reg.handle(&offer("o", "a", CALLER_SDP, &[]), now, &mut env));
    reg.poll(now.plus(Duration::from_secs(120)), &mut env);
    assert!(
        reg.take_ended().is_empty(),
        "ringing is not a media timeout"
    );
    reg.poll(now.plus(Duration::from_secs(3600)), &mut env);
    let ended = reg.take_ended();
    assert_eq!(ended[0].reason, EndReason::OfferTimeout);
    assert_eq!(ended[0].record.answer_unix_ms, 0, "never answered");
    assert_eq!(ended[0].record.post_dial_delay_ms(), None);
    assert_eq!(env.in_use(), 0);
}

#[test]
fn new_options_apply_to_new_calls_and_running_calls_keep_theirs() {
    let (mut reg, mut env, media, now) = established();
    let later = |s| now.plus(Duration::from_secs(s));
    reg.set_options(RelayOptions {
        media_timeout: Duration::from_secs(10),
        max_sessions: 2,
        ..RelayOptions::default()
    });
    sdp_of(&reg.handle(&offer("c2", "x", CALLER_SDP, &[]), now, &mut env));
    sdp_of(&reg.handle(&answer("c2", "x", "y", CALLEE_SDP, &[]), now, &mut env));
    // The call limit counts at once: a third call is refused.
    let r = reg.handle(&offer("c3", "z", CALLER_SDP, &[]), now, &mut env);
    assert_eq!(reply::result_of(&r), Some("load limit"));
    // The new call times out after the new 10 s; the running one keeps its 60 s.
    lock(&media).legs[0].rtp.last_packet = Some(now.at);
    reg.poll(later(10), &mut env);
    let ended = reg.take_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.call_id, "c2");
    reg.poll(later(59), &mut env);
    assert!(reg.take_ended().is_empty());
    reg.poll(later(60), &mut env);
    assert_eq!(reg.take_ended()[0].record.call_id, "c1");
}

#[test]
fn draining_refuses_new_calls_only() {
    let (mut reg, mut env, _media, now) = established();
    reg.set_draining(true);
    let r = reg.handle(&offer("new", "x", CALLER_SDP, &[]), now, &mut env);
    assert_eq!(
        r.encode(),
        b"d6:result10:load limit7:message30:Parallel session limit reachede"
    );
    let mut legacy = offer("new", "x", CALLER_SDP, &[]);
    legacy.supports_load_limit = false;
    assert_eq!(
        error_of(&reg.handle(&legacy, now, &mut env)),
        "Parallel session limit reached"
    );
    sdp_of(&reg.handle(&offer("c1", "tagA", CALLER_SDP, &[]), now, &mut env));
    reg.end_all(now, EndReason::Shutdown, &mut env);
    assert_eq!(reg.take_ended()[0].reason, EndReason::Shutdown);
}

#[test]
fn session_limit() {
    let now = t0();
    let options = RelayOptions {
        max_sessions: 1,
        ..RelayOptions::default()
    };
    let mut reg = Registry::new(options, now);
    let mut env = FakeEnv::new(10);
    sdp_of(&reg.handle(&offer("a", "a", CALLER_SDP, &[]), now, &mut env));
    let r = reg.handle(&offer("b", "a", CALLER_SDP, &[]), now, &mut env);
    assert_eq!(reply::result_of(&r), Some("load limit"));
}

#[test]
fn query_list_statistics_ping_unknown() {
    let (mut reg, mut env, media, now) = established();
    {
        let mut m = lock(&media);
        m.legs[0].rtp.packets = 3;
        m.legs[0].rtp.bytes = 516;
        m.legs[1].rtcp.packets = 1;
    }
    let q = reg.handle(&simple("query", "c1", &[]), now, &mut env);
    assert_eq!(reply::result_of(&q), Some("ok"));
    let totals = q.get("totals").unwrap();
    assert_eq!(
        totals.get("RTP").and_then(|t| t.get("bytes")),
        Some(&Value::Int(516))
    );
    assert_eq!(
        totals.get("RTCP").and_then(|t| t.get("packets")),
        Some(&Value::Int(1))
    );
    let tag_a = q.get("tags").and_then(|t| t.get("tagA")).unwrap();
    assert_eq!(
        tag_a.get("in dialogue with").and_then(Value::as_str),
        Some("tagB")
    );
    assert_eq!(q.get("created"), Some(&Value::Int(1_700_000_000)));
    let r = reg.handle(&simple("query", "zz", &[]), now, &mut env);
    assert_eq!(error_of(&r), "Unknown call-id");

    let l = reg.handle(&request(&[("command", s("list"))]), now, &mut env);
    assert_eq!(l.get("calls"), Some(&Value::List(vec![s("c1")])));
    let l = reg.handle(
        &request(&[("command", s("list")), ("limit", Value::Int(0))]),
        now,
        &mut env,
    );
    assert_eq!(l.get("calls"), Some(&Value::List(vec![])));

    let st = reg.handle(&request(&[("command", s("statistics"))]), now, &mut env);
    let cur = st
        .get("statistics")
        .and_then(|s| s.get("currentstatistics"))
        .unwrap();
    assert_eq!(cur.get("sessionsown"), Some(&Value::Int(1)));
    let total = st
        .get("statistics")
        .and_then(|s| s.get("totalstatistics"))
        .unwrap();
    assert_eq!(total.get("relayedpackets"), Some(&Value::Int(4)));
    assert_eq!(total.get("managedsessions"), Some(&Value::Int(1)));
    let ctl = st
        .get("statistics")
        .and_then(|s| s.get("controlstatistics"))
        .unwrap();
    assert_eq!(ctl.get("totaloffercount"), Some(&Value::Int(1)));

    assert_eq!(
        reg.handle(&request(&[("command", s("ping"))]), now, &mut env),
        reply::pong()
    );
    let r = reg.handle(&request(&[("command", s("block DTMF"))]), now, &mut env);
    assert_eq!(error_of(&r), "Unrecognized command");
}

#[test]
fn the_live_picture_and_an_operator_ending_a_call() {
    let (mut reg, mut env, _media, now) = established();
    let later = now.plus(Duration::from_secs(3));
    let live = reg.live_calls(later);
    assert_eq!(live.len(), 1);
    let (call, answered) = &live[0];
    assert!(answered);
    assert_eq!(
        (
            call.call_id.as_str(),
            call.from_tag.as_str(),
            call.to_tag.as_str()
        ),
        ("c1", "tagA", "tagB")
    );
    assert_eq!(call.duration_ms(), 3000);
    assert_eq!(call.streams.len(), 1);
    assert!(!call.streams[0].caller.codec.is_empty(), "{call:?}");
    assert!(reg.take_ended().is_empty(), "a picture ends nothing");

    assert!(!reg.end_by_operator("nope", later, &mut env));
    assert!(reg.end_by_operator("c1", later, &mut env));
    let ended = reg.take_ended();
    assert_eq!(ended[0].reason, EndReason::Admin);
    assert_eq!(ended[0].record.reason, "admin");
    assert_eq!(env.closed.len(), 2, "both legs' ports are released");
    assert!(reg.live_calls(later).is_empty());
    assert_eq!(reg.totals().other_ended, 1);
}
