//! RADIUS accounting against a real FreeRADIUS (Debian's `freeradius`): every record
//! arrives in the server's detail file attribute by attribute, and records made while
//! the server is stopped are spooled and arrive, in order, once it is back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mediagate_dispatcher::radius::{RadiusAccounting, RadiusOptions, Spool};
use mediagate_dispatcher::session_stats::{MediaProxySession, SipInfo};
use mediagate_relay::record::{LegRecord, SessionRecord, StreamRecord};
use mediagate_testkit::freeradius::FreeRadius;

const SECRET: &str = "t3st-secret";

fn dictionary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/radius/dictionary.mediagate")
}

fn session(call_id: &str, reason: &str) -> MediaProxySession {
    let leg = |codec: &str, local: &str, remote: &str, bytes| LegRecord {
        codec: codec.into(),
        local: local.into(),
        remote: remote.into(),
        packets: bytes / 100,
        bytes,
        ..LegRecord::default()
    };
    let record = SessionRecord {
        call_id: call_id.into(),
        from_tag: "from-1".into(),
        to_tag: "to-1".into(),
        start_unix_ms: 1_700_000_000_000,
        answer_unix_ms: 1_700_000_003_400,
        end_unix_ms: 1_700_000_090_000,
        reason: reason.into(),
        streams: vec![
            StreamRecord {
                media_type: "audio".into(),
                proto: "RTP/AVP".into(),
                caller: leg("PCMA", "192.0.2.10:30000", "198.51.100.1:4000", 16_000),
                callee: leg("PCMA", "192.0.2.10:30002", "203.0.113.1:6000", 15_000),
                ..StreamRecord::default()
            },
            StreamRecord {
                index: 1,
                media_type: "video".into(),
                proto: "RTP/AVP".into(),
                caller: leg("H264", "192.0.2.10:30004", "198.51.100.1:4002", 900),
                callee: leg("H264", "192.0.2.10:30006", "203.0.113.1:6002", 100),
                ..StreamRecord::default()
            },
        ],
    };
    let sip = SipInfo {
        from_uri: "sip:alice@example.org".into(),
        to_uri: "sip:bob@example.org".into(),
        caller_ua: Some("SIPp caller".into()),
        callee_ua: Some("SIPp callee".into()),
        dialog_id: None,
    };
    MediaProxySession::from_record(&record, &sip)
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeradius_gets_every_record_field_by_field_and_spooled_ones_after_an_outage() {
    let mut server = FreeRadius::start(SECRET, &[&dictionary()]).expect("start FreeRADIUS");
    let state = std::env::temp_dir().join(format!("mg-radius-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let options = RadiusOptions {
        // Long enough for a loaded machine's FreeRADIUS: a first record answered late
        // would be spooled and sent again, and the detail file would hold it twice.
        timeout: Duration::from_secs(1),
        retries: 1,
        resend_interval: Duration::from_millis(300),
        ..RadiusOptions::new(server.addr(), SECRET, &state)
    };
    let spool_path = options.spool_path.clone();
    let (client, task) = RadiusAccounting::start(options).await.unwrap();

    client
        .account(&session("call-1@example.org", "media timeout"))
        .unwrap();
    wait_for(
        "the first record in the detail file",
        Duration::from_secs(10),
        || server.records().len() == 1,
    )
    .await;
    let first = &server.records()[0];
    let field = |name: &str| {
        first
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {first:?}\n{}", server.detail()))
    };
    assert_eq!(field("Acct-Status-Type"), "Interim-Update");
    assert_eq!(field("User-Name"), "mediaproxy@default");
    assert_eq!(field("Acct-Session-Id"), "call-1@example.org");
    assert_eq!(field("Acct-Session-Time"), "90");
    assert_eq!(field("Acct-Input-Octets"), "16900");
    assert_eq!(field("Acct-Output-Octets"), "15100");
    assert_eq!(field("Sip-From-Tag"), "from-1");
    assert_eq!(field("Sip-To-Tag"), "to-1");
    assert_eq!(field("NAS-IP-Address"), "192.0.2.10");
    assert_eq!(field("Sip-User-Agents"), "SIPp caller+SIPp callee");
    assert_eq!(field("Sip-Applications"), "audio, video");
    assert_eq!(field("Media-Codecs"), "PCMA, H264");
    assert_eq!(field("Media-Info"), "timeout");
    assert_eq!(field("Acct-Delay-Time"), "3");
    let names: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("Attr-")),
        "every attribute has a dictionary name: {names:?}"
    );

    // The server goes away: records spill to the spool.
    server.stop();
    client
        .account(&session("call-2@example.org", "deleted"))
        .unwrap();
    client
        .account(&session("call-3@example.org", "deleted"))
        .unwrap();
    let spool_len = || Spool::open(spool_path.clone(), 100).unwrap().len();
    wait_for("two records spooled", Duration::from_secs(30), || {
        spool_len() == 2
    })
    .await;
    assert_eq!(server.records().len(), 1);

    // It comes back: the spool arrives in order and empties.
    server.restart().expect("restart FreeRADIUS");
    wait_for(
        "spooled records in the detail file",
        Duration::from_secs(15),
        || server.records().len() == 3,
    )
    .await;
    let ids: Vec<String> = server
        .records()
        .iter()
        .map(|r| {
            r.iter()
                .find(|(k, _)| k == "Acct-Session-Id")
                .map(|(_, v)| v.clone())
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids,
        [
            "call-1@example.org",
            "call-2@example.org",
            "call-3@example.org"
        ]
    );
    let second = &server.records()[1];
    assert!(
        !second.iter().any(|(k, _)| k == "Media-Info"),
        "a deleted call has no Media-Info: {second:?}"
    );
    wait_for("the spool emptied", Duration::from_secs(15), || {
        !spool_path.exists()
    })
    .await;
    task.abort();
    let _ = std::fs::remove_dir_all(&state);
}
