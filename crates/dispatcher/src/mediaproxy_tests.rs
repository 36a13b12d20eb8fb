use super::*;
use proptest::prelude::*;

/// What Kamailio's mediaproxy module sends for an INVITE with SDP (field order and
/// spacing as in its `mediaproxy.c`).
const UPDATE: &[u8] = b"update\r\n\
type: request\r\n\
dialog_id: 1234:5678\r\n\
call_id: abc@192.0.2.5\r\n\
cseq: 1\r\n\
from_uri: sip:alice@example.org\r\n\
to_uri: sip:bob@example.org\r\n\
from_tag: ft1\r\n\
to_tag: \r\n\
user_agent: SIPp\r\n\
signaling_ip: 198.51.100.7\r\n\
media_relay: \r\n\
media: audio:10.0.0.5:4000:sendrecv:ice=no,video:10.0.0.5:4002:sendonly\r\n\
\r\n";

fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    parse_request(buf, &Limits::default())
}

#[test]
fn kamailio_update_parses_and_empty_headers_are_dropped() {
    let Ok(Parsed::Request(r, used)) = parse(UPDATE) else {
        panic!("no request");
    };
    assert_eq!(used, UPDATE.len());
    assert_eq!(r.command, Command::Update);
    assert_eq!(r.update_type, Some(UpdateType::Request));
    assert_eq!(r.call_id, "abc@192.0.2.5");
    assert_eq!(r.from_tag.as_deref(), Some("ft1"));
    assert_eq!(r.to_tag, None);
    assert_eq!(r.media_relay, None);
    assert_eq!(r.signaling_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(r.dialog_id.as_deref(), Some("1234:5678"));
    assert!(!r.headers.iter().any(|(k, _)| k == "to_tag"));
    assert_eq!(
        r.media,
        vec![
            MediaItem {
                media_type: "audio".into(),
                ip: "10.0.0.5".parse().unwrap(),
                port: 4000,
                direction: "sendrecv".into(),
                params: vec![("ice".into(), "no".into())],
            },
            MediaItem {
                media_type: "video".into(),
                ip: "10.0.0.5".parse().unwrap(),
                port: 4002,
                direction: "sendonly".into(),
                params: vec![],
            },
        ]
    );
}

#[test]
fn every_split_point_is_incomplete_then_whole() {
    for cut in 0..UPDATE.len() {
        assert_eq!(
            parse(&UPDATE[..cut]),
            Ok(Parsed::Incomplete),
            "cut at {cut}"
        );
    }
    // Two requests back to back: the first is returned with its length.
    let mut two = UPDATE.to_vec();
    two.extend_from_slice(b"remove\r\ncall_id: x\r\nfrom_tag: a\r\n\r\n");
    let Ok(Parsed::Request(_, used)) = parse(&two) else {
        panic!()
    };
    let Ok(Parsed::Request(r, _)) = parse(&two[used..]) else {
        panic!()
    };
    assert_eq!((r.command, r.call_id.as_str()), (Command::Remove, "x"));
}

#[test]
fn bad_requests_are_refused_with_their_offset() {
    let err = |b: &[u8]| parse(b).unwrap_err();
    assert_eq!(
        err(b"remove\r\nfrom_tag: a\r\n\r\n").reason,
        ErrorReason::MissingCallId
    );
    assert_eq!(
        err(b"frobnicate\r\n\r\n").reason,
        ErrorReason::UnknownCommand
    );
    assert_eq!(
        err(b"update\r\ncall_id: x\r\n\r\n").reason,
        ErrorReason::MissingType
    );
    let e = err(b"remove\r\ncall_id x\r\n\r\n");
    assert_eq!((e.offset, e.reason), (8, ErrorReason::MalformedHeader));
    let e =
        err(b"update\r\ntype: request\r\ncall_id: x\r\nmedia: audio:1.2.3.4:port:sendrecv\r\n\r\n");
    assert_eq!(e.reason, ErrorReason::MalformedMedia);
    // An over-long line is refused before its end arrives.
    let mut long = b"remove\r\ncall_id: ".to_vec();
    long.resize(20_000, b'x');
    let e = err(&long);
    assert_eq!((e.offset, e.reason), (8, ErrorReason::LineTooLong));
    // 10,000 streams.
    let mut many = b"update\r\ntype: request\r\ncall_id: x\r\nmedia: ".to_vec();
    let items: Vec<String> = (0..10_000)
        .map(|i| format!("audio:1.2.3.4:{}:sendrecv", 2 * i))
        .collect();
    many.extend_from_slice(items.join(",").as_bytes());
    many.extend_from_slice(b"\r\n\r\n");
    let big = Limits {
        max_line: 1 << 20,
        ..Limits::default()
    };
    assert_eq!(
        parse_request(&many, &big).unwrap_err().reason,
        ErrorReason::TooManyStreams
    );
    assert_eq!(err(&many).reason, ErrorReason::LineTooLong);
    let mut headers = b"remove\r\n".to_vec();
    for i in 0..100 {
        headers.extend_from_slice(format!("x{i}: y\r\n").as_bytes());
    }
    assert_eq!(err(&headers).reason, ErrorReason::TooManyHeaders);
}

#[test]
fn ipv6_media_and_bare_lf() {
    let Ok(Parsed::Request(r, _)) =
        parse(b"update\ntype: reply\ncall_id: c\nmedia: audio:2001:db8::5:5000:recvonly\n\n")
    else {
        panic!()
    };
    assert_eq!(r.update_type, Some(UpdateType::Reply));
    assert_eq!(r.media[0].ip, "2001:db8::5".parse::<IpAddr>().unwrap());
    assert_eq!(r.media[0].port, 5000);
}

#[test]
fn replies_are_exact() {
    assert_eq!(
        update_reply("203.0.113.9".parse().unwrap(), &[30000, 0]),
        b"203.0.113.9 30000 0\r\n"
    );
    assert_eq!(REMOVED, b"removed\r\n");
    assert_eq!(ERROR, b"error\r\n");
}

#[test]
fn update_becomes_offer_or_answer_and_remove_delete() {
    let Ok(Parsed::Request(r, _)) = parse(UPDATE) else {
        panic!()
    };
    let ng = to_ng(&r);
    let req = mediagate_ng::request::Request::from_value(&ng).unwrap();
    assert_eq!(req.command, mediagate_ng::request::Command::Offer);
    assert_eq!(req.call_id.as_deref(), Some("abc@192.0.2.5"));
    assert_eq!(req.from_tag.as_deref(), Some("ft1"));
    assert_eq!(
        req.options.received_from,
        Some("198.51.100.7".parse().unwrap())
    );
    let sdp = String::from_utf8(req.sdp.unwrap()).unwrap();
    assert!(
        sdp.contains("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.5\r\na=sendrecv\r\n"),
        "{sdp}"
    );
    assert!(
        sdp.contains("m=video 4002 RTP/AVP 96\r\nc=IN IP4 10.0.0.5\r\na=sendonly\r\n"),
        "{sdp}"
    );
    // The SDP is one our SDP parser (the relay's) accepts, stream for stream.
    let parsed = mediagate_sdp::SessionDescription::parse(sdp.as_bytes()).unwrap();
    assert_eq!(parsed.media().len(), 2);

    let mut reply = r.clone();
    reply.update_type = Some(UpdateType::Reply);
    reply.to_tag = Some("tt".into());
    let req = mediagate_ng::request::Request::from_value(&to_ng(&reply)).unwrap();
    assert_eq!(req.command, mediagate_ng::request::Command::Answer);
    assert_eq!(req.to_tag.as_deref(), Some("tt"));

    let mut remove = r;
    remove.command = Command::Remove;
    let req = mediagate_ng::request::Request::from_value(&to_ng(&remove)).unwrap();
    assert_eq!(req.command, mediagate_ng::request::Command::Delete);
    assert!(req.sdp.is_none());
}

#[test]
fn reply_from_rewritten_sdp() {
    let sdp = b"v=0\r\no=- 1 2 IN IP4 203.0.113.9\r\ns=-\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP4 203.0.113.9\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 203.0.113.9\r\n";
    assert_eq!(
        reply_from_sdp(sdp, 2).unwrap(),
        b"203.0.113.9 30000 0\r\n".to_vec()
    );
    assert_eq!(reply_from_sdp(b"v=0\r\n", 1), None);
}

proptest! {
    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_line_shaped_input(
        lines in proptest::collection::vec("[a-z_:, 0-9.=\\r]{0,40}", 0..12)
    ) {
        let text = lines.join("\r\n") + "\r\n\r\n";
        let small = Limits { max_line: 20, max_headers: 4, max_media: 2 };
        let _ = parse_request(text.as_bytes(), &small);
        if let Ok(Parsed::Request(r, used)) = parse(text.as_bytes()) {
            prop_assert!(used <= text.len());
            prop_assert!(!r.call_id.is_empty());
        }
    }

    #[test]
    fn built_requests_round_trip(
        call_id in "[a-zA-Z0-9@.]{1,30}",
        tag in "[a-z0-9]{1,10}",
        ports in proptest::collection::vec(0u16..65535, 1..8),
    ) {
        let media: Vec<String> = ports.iter().map(|p| format!("audio:192.0.2.1:{p}:sendrecv")).collect();
        let text = format!("update\r\ntype: request\r\ncall_id: {call_id}\r\nfrom_tag: {tag}\r\nmedia: {}\r\n\r\n", media.join(","));
        let Ok(Parsed::Request(r, used)) = parse(text.as_bytes()) else {
            return Err(TestCaseError::fail("did not parse"));
        };
        prop_assert_eq!(used, text.len());
        prop_assert_eq!(r.call_id, call_id);
        prop_assert_eq!(r.media.iter().map(|m| m.port).collect::<Vec<_>>(), ports);
    }
}
