//! RADIUS record, packet, spool and sender tests; the sender against an in-process
//! UDP server that answers, stays silent, or answers with the wrong secret.

use super::*;
use crate::session_stats::{MediaProxySession, SipInfo};
use mediagate_relay::record::{LegRecord, SessionRecord, StreamRecord};
use proptest::prelude::*;

fn session(reason: &str, caller_bytes: u64) -> MediaProxySession {
    let leg = |codec: &str, local: &str, bytes| LegRecord {
        codec: codec.into(),
        local: local.into(),
        remote: "198.51.100.2:4000".into(),
        bytes,
        packets: 1,
        ..LegRecord::default()
    };
    let record = SessionRecord {
        call_id: "call-1@host".into(),
        from_tag: "ft".into(),
        to_tag: "tt".into(),
        start_unix_ms: 1_000_000,
        answer_unix_ms: 1_002_700,
        end_unix_ms: 1_065_000,
        reason: reason.into(),
        streams: vec![
            StreamRecord {
                media_type: "video".into(),
                caller: leg("H264", "192.0.2.1:30000", caller_bytes),
                callee: leg("H264", "192.0.2.1:30002", 7),
                ..StreamRecord::default()
            },
            StreamRecord {
                media_type: "audio".into(),
                caller: leg("PCMA", "192.0.2.1:30004", 5),
                callee: leg("PCMA", "192.0.2.1:30006", 9),
                ..StreamRecord::default()
            },
        ],
    };
    let sip = SipInfo {
        caller_ua: Some("SIPp".into()),
        callee_ua: Some("Kamailio".into()),
        ..SipInfo::default()
    };
    MediaProxySession::from_record(&record, &sip)
}

fn value(r: &AcctRecord, code: u8) -> Option<&[u8]> {
    r.attributes
        .iter()
        .find(|a| a.code == code)
        .map(|a| a.value.as_slice())
}

fn text(r: &AcctRecord, code: u8) -> Option<&str> {
    value(r, code).map(|v| std::str::from_utf8(v).unwrap())
}

fn int(r: &AcctRecord, code: u8) -> Option<u32> {
    value(r, code).map(|v| u32::from_be_bytes(v.try_into().unwrap()))
}

#[test]
fn a_record_holds_mediaproxys_attributes() {
    let r = AcctRecord::from_session(&session("media timeout", 100), "mediaproxy@default");
    assert_eq!(int(&r, attr::ACCT_STATUS_TYPE), Some(3));
    assert_eq!(text(&r, attr::USER_NAME), Some("mediaproxy@default"));
    assert_eq!(text(&r, attr::ACCT_SESSION_ID), Some("call-1@host"));
    assert_eq!(int(&r, attr::ACCT_SESSION_TIME), Some(65));
    assert_eq!(int(&r, attr::ACCT_INPUT_OCTETS), Some(105));
    assert_eq!(int(&r, attr::ACCT_OUTPUT_OCTETS), Some(16));
    assert_eq!(value(&r, attr::ACCT_INPUT_GIGAWORDS), None);
    assert_eq!(text(&r, attr::SIP_FROM_TAG), Some("ft"));
    assert_eq!(text(&r, attr::SIP_TO_TAG), Some("tt"));
    assert_eq!(value(&r, attr::NAS_IP_ADDRESS), Some(&[192, 0, 2, 1][..]));
    assert_eq!(text(&r, attr::SIP_USER_AGENTS), Some("SIPp+Kamailio"));
    assert_eq!(text(&r, attr::SIP_APPLICATIONS), Some("audio, video"));
    assert_eq!(text(&r, attr::MEDIA_CODECS), Some("H264, PCMA"));
    assert_eq!(text(&r, attr::MEDIA_INFO), Some("timeout"));
    assert_eq!(
        int(&r, attr::ACCT_DELAY_TIME),
        Some(2),
        "2.7 s, whole seconds"
    );

    let r = AcctRecord::from_session(&session("deleted", 5 << 32 | 1), "u");
    assert_eq!(
        text(&r, attr::MEDIA_INFO),
        None,
        "empty Media-Info is left out"
    );
    assert_eq!(int(&r, attr::ACCT_INPUT_OCTETS), Some(6));
    assert_eq!(int(&r, attr::ACCT_INPUT_GIGAWORDS), Some(5));
}

#[test]
fn long_values_are_cut_on_a_character_boundary() {
    let mut s = session("deleted", 1);
    s.call_id = "é".repeat(200);
    s.to_tag.clear();
    let r = AcctRecord::from_session(&s, "u");
    let id = text(&r, attr::ACCT_SESSION_ID).unwrap();
    assert_eq!(id.len(), 252, "126 two-byte characters");
    assert_eq!(value(&r, attr::SIP_TO_TAG), None);
    assert!(encode_request(0, &r.attributes, b"x").is_ok());
}

/// A server's answer to `request`, signed with `secret` (RFC 2866 §3).
fn response_to(request: &[u8], secret: &[u8], attrs: &[u8]) -> Vec<u8> {
    let len = u16::try_from(20 + attrs.len()).unwrap();
    let mut p = vec![ACCOUNTING_RESPONSE, request[1]];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&request[4..20]);
    p.extend_from_slice(attrs);
    let auth = Md5::new().chain_update(&p).chain_update(secret).finalize();
    p[4..20].copy_from_slice(&auth);
    p
}

#[test]
fn request_layout_and_response_checks() {
    let attrs = [
        Attribute::text(attr::USER_NAME, "ab"),
        Attribute::int(40, 3),
    ];
    let req = encode_request(7, &attrs, b"s3cret").unwrap();
    assert_eq!(&req[..4], &[4, 7, 0, 30]);
    assert_eq!(&req[20..], &[1, 4, b'a', b'b', 40, 6, 0, 0, 0, 3]);
    // The authenticator is MD5 over the packet with 16 zero bytes, then the secret.
    let mut zeroed = req.clone();
    zeroed[4..20].fill(0);
    let want = Md5::new()
        .chain_update(&zeroed)
        .chain_update(b"s3cret")
        .finalize();
    assert_eq!(&req[4..20], want.as_slice());

    let ok = response_to(&req, b"s3cret", &[]);
    assert_eq!(check_response(&ok, &req, b"s3cret"), Ok(()));
    let mut padded = ok.clone();
    padded.extend_from_slice(&[0, 0]);
    assert_eq!(check_response(&padded, &req, b"s3cret"), Ok(()), "padding");
    assert_eq!(
        check_response(&ok, &req, b"other"),
        Err(ResponseError::BadAuthenticator)
    );
    assert_eq!(
        check_response(&ok[..19], &req, b"s3cret"),
        Err(ResponseError::Truncated { offset: 19 })
    );
    let mut other_id = ok.clone();
    other_id[1] = 8;
    assert_eq!(
        check_response(&other_id, &req, b"s3cret"),
        Err(ResponseError::OtherIdentifier {
            got: 8,
            expected: 7
        })
    );
    let mut code = ok.clone();
    code[0] = 2;
    assert_eq!(
        check_response(&code, &req, b"s3cret"),
        Err(ResponseError::NotAccountingResponse(2))
    );
    let bad_attr = response_to(&req, b"s3cret", &[18, 1]);
    assert_eq!(
        check_response(&bad_attr, &req, b"s3cret"),
        Err(ResponseError::BadAttribute { offset: 20 })
    );
    let with_attr = response_to(&req, b"s3cret", &[18, 4, b'o', b'k']);
    assert_eq!(check_response(&with_attr, &req, b"s3cret"), Ok(()));
    let mut long = ok.clone();
    long[2..4].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(
        check_response(&long, &req, b"s3cret"),
        Err(ResponseError::BadLength)
    );

    let too_long = [Attribute {
        code: 1,
        value: vec![0; 254],
    }];
    assert_eq!(
        encode_request(0, &too_long, b"s"),
        Err(EncodeError::ValueTooLong { code: 1, len: 254 })
    );
    let many = vec![Attribute::text(1, &"x".repeat(253)); 17];
    assert_eq!(
        encode_request(0, &many, b"s"),
        Err(EncodeError::PacketTooLong(20 + 17 * 255))
    );
}

proptest! {
    #[test]
    fn response_checks_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        request in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        if let Err(ResponseError::Truncated { offset } | ResponseError::BadAttribute { offset }) =
            check_response(&data, &request, b"s")
        {
            prop_assert!(offset <= data.len());
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-radius-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(n: u32) -> AcctRecord {
    AcctRecord {
        attributes: vec![Attribute::int(attr::ACCT_SESSION_TIME, n)],
    }
}

#[test]
fn the_spool_keeps_order_survives_reopening_and_is_bounded() {
    let dir = temp_dir("spool");
    let path = dir.join("spool.jsonl");
    let mut spool = Spool::open(path.clone(), 3).unwrap();
    assert!(spool.is_empty());
    for n in 0..3 {
        spool.push(&record(n)).unwrap();
    }
    assert!(matches!(spool.push(&record(9)), Err(SpoolError::Full(_))));
    // A torn last line (a crash mid-write) is skipped.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"attributes\":[{\"co")
        .unwrap();
    let spool2 = Spool::open(path.clone(), 3).unwrap();
    assert_eq!(spool2.len(), 3);
    assert_eq!(
        spool2.read().unwrap(),
        vec![record(0), record(1), record(2)]
    );
    spool.drop_front(2).unwrap();
    assert_eq!(spool.read().unwrap(), vec![record(2)]);
    spool.push(&record(3)).unwrap();
    assert_eq!(spool.read().unwrap(), vec![record(2), record(3)]);
    spool.drop_front(2).unwrap();
    assert!(spool.is_empty() && !path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A RADIUS accounting server in the test: answers with `secret` while `up`.
async fn fake_server(
    socket: UdpSocket,
    secret: &'static [u8],
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        if !up.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let req = buf[..n].to_vec();
        let _ = socket.send_to(&response_to(&req, secret, &[]), from).await;
        let _ = seen.send(req);
    }
}

fn session_time_of(packet: &[u8]) -> u32 {
    let mut at = 20;
    while at + 2 <= packet.len() {
        let len = usize::from(packet[at + 1]);
        if packet[at] == attr::ACCT_SESSION_TIME {
            return u32::from_be_bytes(packet[at + 2..at + 6].try_into().unwrap());
        }
        at += len;
    }
    panic!("no Acct-Session-Time");
}

#[tokio::test]
async fn the_sender_retries_spools_while_the_server_is_away_and_resends_in_order() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = temp_dir("sender");
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up = Arc::new(AtomicBool::new(false));
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let options = RadiusOptions {
        timeout: Duration::from_millis(20),
        retries: 1,
        resend_interval: Duration::from_millis(100),
        ..RadiusOptions::new(server.local_addr().unwrap(), "s3cret", &dir)
    };
    let spool_path = options.spool_path.clone();
    tokio::spawn(fake_server(server, b"s3cret", Arc::clone(&up), seen_tx));
    let (client, task) = RadiusAccounting::start(options).await.unwrap();
    let send = |n: u64| {
        let mut s = session("deleted", 1);
        s.duration = n;
        client.account(&s).unwrap();
    };
    // Server away: the first record spills after its tries, the next joins it.
    send(1);
    send(2);
    let spooled = async {
        while Spool::open(spool_path.clone(), 10).unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), spooled)
        .await
        .expect("both records spooled");
    up.store(true, Ordering::SeqCst);
    send(3);
    let mut order = Vec::new();
    while order.len() < 3 {
        let p = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("the server gets every record")
            .unwrap();
        order.push(session_time_of(&p));
    }
    assert_eq!(order, vec![1, 2, 3], "spooled records first, in order");
    let drained = async {
        while spool_path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .expect("spool emptied");
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_server_with_another_secret_is_not_believed() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let dir = temp_dir("secret");
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let options = RadiusOptions {
        timeout: Duration::from_millis(20),
        retries: 2,
        ..RadiusOptions::new(server.local_addr().unwrap(), "s3cret", &dir)
    };
    let spool_path = options.spool_path.clone();
    tokio::spawn(fake_server(
        server,
        b"wrong",
        Arc::new(AtomicBool::new(true)),
        seen_tx,
    ));
    let (client, task) = RadiusAccounting::start(options).await.unwrap();
    client.account(&session("deleted", 1)).unwrap();
    for _ in 0..3 {
        let p = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("a try")
            .unwrap();
        assert_eq!(p[1], 0, "retries keep the identifier");
    }
    let spooled = async {
        while !spool_path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), spooled)
        .await
        .expect("unacknowledged record spooled");
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
