use super::*;
use mediagate_ng::bencode::dict;
use proptest::prelude::*;

fn samples() -> Vec<Message> {
    vec![
        Message::Hello(Hello::ours(Side::Relay, "relay1")),
        Message::Refuse {
            reason: "no".into(),
        },
        Message::Status(Status {
            addresses: vec!["192.0.2.1".into(), "2001:db8::1".into()],
            draining: true,
            sessions: 12,
            bps: 64_000,
        }),
        Message::Ping { seq: 7 },
        Message::Pong { seq: 7 },
        Message::Request {
            seq: 1,
            body: dict([("command", Value::str("ping"))]),
        },
        Message::Reply {
            seq: 1,
            body: dict([("result", Value::str("pong"))]),
        },
        Message::ListSessions,
        Message::Sessions {
            calls: vec!["a@b".into(), "c".into()],
            more: false,
        },
        Message::Sessions {
            calls: vec!["d".into()],
            more: true,
        },
        Message::Ended {
            call_id: "a@b".into(),
            reason: "timeout".into(),
            record: "{\"call_id\":\"a@b\"}".into(),
        },
        Message::StatsRequest { seq: 9 },
        Message::Stats(Stats {
            seq: 9,
            version: "0.1.0".into(),
            uptime: 3600,
            bps: 128_000,
            calls: vec!["{\"call_id\":\"a@b\"}".into()],
            more: true,
        }),
        Message::Stats(Stats {
            seq: 9,
            version: "0.1.0".into(),
            uptime: 3600,
            bps: 128_000,
            calls: vec![],
            more: false,
        }),
    ]
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let bytes = m.encode().unwrap();
        let (back, used) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(back, m);
        assert_eq!(used, bytes.len());
    }
}

#[test]
fn every_split_point_needs_more_then_gives_the_same_messages() {
    let mut stream = Vec::new();
    for m in samples() {
        m.encode_into(&mut stream).unwrap();
    }
    for cut in 0..=stream.len() {
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        r.push(&stream[..cut]);
        while let Some(m) = r.next_message().unwrap() {
            got.push(m);
        }
        r.push(&stream[cut..]);
        while let Some(m) = r.next_message().unwrap() {
            got.push(m);
        }
        assert_eq!(got, samples(), "cut at {cut}");
    }
}

#[test]
fn a_long_session_list_is_split_into_frames_that_fit() {
    let calls: Vec<String> = (0..100_000)
        .map(|i| format!("{i:040}@example.net"))
        .collect();
    let messages = sessions_messages(calls.clone());
    assert!(messages.len() > 1);
    let mut back = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let frame = m.encode().expect("fits a frame");
        let Message::Sessions { calls, more } = decode_frame(&frame).unwrap().unwrap().0 else {
            panic!("not sessions");
        };
        assert_eq!(more, i + 1 < messages.len());
        back.extend(calls);
    }
    assert_eq!(back, calls);
    assert_eq!(
        sessions_messages(Vec::new()),
        [Message::Sessions {
            calls: vec![],
            more: false
        }]
    );
}

#[test]
fn live_statistics_are_split_into_frames_that_fit_and_a_huge_record_is_left_out() {
    let record = format!("{{\"call_id\":\"{}\"}}", "x".repeat(2000));
    let mut calls: Vec<String> = (0..2_000).map(|_| record.clone()).collect();
    calls.insert(1_000, "y".repeat(SESSIONS_CHUNK_BYTES + 1));
    let (messages, left_out) = stats_messages(4, "0.1.0", 12, 64_000, calls);
    assert_eq!(left_out, 1);
    assert!(messages.len() > 1);
    let mut back = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let frame = m.encode().expect("fits a frame");
        let Message::Stats(s) = decode_frame(&frame).unwrap().unwrap().0 else {
            panic!("not stats");
        };
        assert_eq!(
            (s.seq, s.version.as_str(), s.uptime, s.bps),
            (4, "0.1.0", 12, 64_000)
        );
        assert_eq!(s.more, i + 1 < messages.len());
        back.extend(s.calls);
    }
    assert_eq!(back.len(), 2_000);
    assert!(back.iter().all(|c| *c == record));
    let (empty, none) = stats_messages(5, "v", 0, 0, Vec::new());
    assert_eq!(none, 0);
    assert!(
        matches!(&empty[..], [Message::Stats(Stats { calls, more: false, .. })] if calls.is_empty())
    );
}

#[test]
fn only_a_peer_of_minor_version_1_or_later_is_sent_live_statistics_requests() {
    let mut h = Hello::ours(Side::Relay, "r");
    assert!(h.minor_at_least(MINOR_STATS));
    h.version = (1, 0);
    assert!(!h.minor_at_least(MINOR_STATS));
    h.version = (2, 5);
    assert!(!h.minor_at_least(MINOR_STATS));
}

#[test]
fn an_oversized_length_is_refused_from_its_header_alone() {
    let header = ((MAX_FRAME + 1) as u32).to_be_bytes();
    let err = decode_frame(&header).unwrap_err();
    assert_eq!(err.offset, 0);
    assert!(err.reason.contains("exceeds"), "{err}");
    assert!(decode_frame(&[0, 0, 0, 0]).is_err());
}

#[test]
fn garbage_and_unknown_types_are_errors_with_offsets() {
    let mut frame = 5u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"d1:ai");
    let err = decode_frame(&frame).unwrap_err();
    assert!(err.offset >= 4, "{err}");

    let body = dict([("type", Value::str("teleport"))]).encode();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let err = decode_frame(&frame).unwrap_err();
    assert!(
        err.reason.contains("unknown message type `teleport`"),
        "{err}"
    );

    let body = dict([("type", Value::str("ping"))]).encode();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let err = decode_frame(&frame).unwrap_err();
    assert!(err.reason.contains("missing `seq`"), "{err}");
}

#[test]
fn errors_in_a_later_frame_carry_the_stream_offset() {
    let mut stream = Message::Ping { seq: 1 }.encode().unwrap();
    let first = stream.len();
    stream.extend_from_slice(&[0, 0, 0, 0]);
    let mut r = FrameReader::new();
    r.push(&stream);
    assert!(r.next_message().unwrap().is_some());
    assert_eq!(r.next_message().unwrap_err().offset, first);
}

#[test]
fn unknown_keys_are_ignored_for_newer_minor_versions() {
    let body = dict([
        ("type", Value::str("pong")),
        ("seq", Value::Int(3)),
        ("future", Value::str("x")),
    ])
    .encode();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    assert_eq!(
        decode_frame(&frame).unwrap().unwrap().0,
        Message::Pong { seq: 3 }
    );
}

#[test]
fn another_major_version_is_refused_with_advice() {
    let mut h = Hello::ours(Side::Dispatcher, "d");
    assert!(h.check_compatible().is_ok());
    h.version = (1, 9);
    assert!(h.check_compatible().is_ok());
    h.version = (2, 0);
    let why = h.check_compatible().unwrap_err();
    assert!(why.contains("2.0") && why.contains("upgrade"), "{why}");
}

fn any_text() -> impl Strategy<Value = String> {
    "[ -~]{0,20}"
}

fn any_message() -> impl Strategy<Value = Message> {
    let seq = 0u64..=i64::MAX as u64;
    prop_oneof![
        (any_text(), any_text(), 0u64..5, 0u64..5).prop_map(|(name, software, a, b)| {
            Message::Hello(Hello {
                version: (a, b),
                side: Side::Relay,
                name,
                software,
            })
        }),
        seq.clone().prop_map(|seq| Message::Ping { seq }),
        seq.clone().prop_map(|seq| Message::StatsRequest { seq }),
        (
            seq.clone(),
            any_text(),
            seq.clone(),
            proptest::collection::vec(any_text(), 0..5),
            any::<bool>()
        )
            .prop_map(|(seq, version, uptime, calls, more)| {
                Message::Stats(Stats {
                    seq,
                    version,
                    uptime,
                    bps: uptime / 2,
                    calls,
                    more,
                })
            }),
        (seq.clone(), any_text()).prop_map(|(seq, s)| Message::Request {
            seq,
            body: dict([("sdp", Value::str(&s))]),
        }),
        (proptest::collection::vec(any_text(), 0..10), any::<bool>())
            .prop_map(|(calls, more)| Message::Sessions { calls, more }),
        (any_text(), any_text(), any_text()).prop_map(|(call_id, reason, record)| {
            Message::Ended {
                call_id,
                reason,
                record,
            }
        }),
        (
            proptest::collection::vec(any_text(), 0..3),
            any::<bool>(),
            seq.clone(),
            seq
        )
            .prop_map(
                |(addresses, draining, sessions, bps)| Message::Status(Status {
                    addresses,
                    draining,
                    sessions,
                    bps,
                })
            ),
    ]
}

proptest! {
    #[test]
    fn messages_round_trip(m in any_message()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(decode_frame(&bytes).unwrap().unwrap(), (m, bytes.len()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut r = FrameReader::new();
        r.push(&bytes);
        while let Ok(Some(_)) = r.next_message() {}
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 1..300)) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let _ = decode_frame(&frame);
    }
}

#[test]
fn commands_and_replies_encode_as_their_dictionary_would() {
    // Requests and replies skip building the message dictionary; their bytes must be
    // what every other message gets from it.
    for m in samples() {
        let bytes = m.encode().unwrap();
        let body = m.to_value().encode();
        assert_eq!(&bytes[..4], &(body.len() as u32).to_be_bytes(), "{m:?}");
        assert_eq!(&bytes[4..], &body[..], "{m:?}");
    }
}

#[test]
fn a_request_over_the_frame_cap_is_refused_and_leaves_the_buffer_as_it_was() {
    let mut out = Message::Ping { seq: 1 }.encode().unwrap();
    let before = out.clone();
    let huge = Message::Request {
        seq: 2,
        body: dict([("sdp", Value::Bytes(vec![b'x'; MAX_FRAME]))]),
    };
    let err = huge.encode_into(&mut out).unwrap_err();
    assert!(err.reason.contains("exceeds"), "{err}");
    assert_eq!(out, before);
}
