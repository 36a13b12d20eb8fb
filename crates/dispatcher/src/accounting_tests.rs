use std::time::{Duration, Instant};

use mediagate_ops::store::Record;
use mediagate_relay::record::{LegRecord, SessionRecord, StreamRecord};

use super::*;
use crate::dialog_end::{RpcTarget, SipProxy};
use crate::session_stats::SipInfo;
use crate::sessions::Placed;

fn placed(relay: &str, dialog_id: Option<&str>) -> Placed {
    Placed {
        relay: relay.into(),
        from_tag: Some("ft".into()),
        to_tag: Some("tt".into()),
        start_unix_ms: 1_700_000_000_000,
        dialog_id: dialog_id.map(str::to_owned),
        second_relay: None,
    }
}

fn record(call_id: &str, reason: &str, packets: u64) -> SessionRecord {
    SessionRecord {
        call_id: call_id.into(),
        from_tag: "ft".into(),
        to_tag: "tt".into(),
        start_unix_ms: 1_700_000_000_000,
        answer_unix_ms: 1_700_000_000_500,
        end_unix_ms: 1_700_000_030_000,
        reason: reason.into(),
        streams: vec![StreamRecord {
            media_type: "audio".into(),
            caller: LegRecord {
                codec: "PCMU".into(),
                local: "192.0.2.1:30000".into(),
                packets,
                bytes: packets * 172,
                ..LegRecord::default()
            },
            callee: LegRecord {
                codec: "PCMU".into(),
                local: "192.0.2.1:30002".into(),
                packets,
                bytes: packets * 172,
                ..LegRecord::default()
            },
            ..StreamRecord::default()
        }],
    }
}

fn ended(
    call_id: &str,
    relay: &str,
    reason: &str,
    stats: serde_json::Value,
    dialog: Option<&str>,
) -> EndedCall {
    EndedCall {
        call_id: call_id.into(),
        relay: relay.into(),
        reason: reason.into(),
        placed: placed(relay, dialog),
        stats,
        sip: SipInfo::default(),
    }
}

/// A dialog ender whose proxy never answers: only the decision is under test here
/// (the Kamailio tests check the request on the wire).
fn silent_ender() -> Arc<DialogEnder> {
    Arc::new(DialogEnder::new(
        SipProxy::Kamailio,
        RpcTarget::Udp("127.0.0.1:9".parse().unwrap()),
        Duration::from_millis(10),
        1,
    ))
}

fn hook(local: &[&str], dialogs: bool) -> Arc<ClusterAccounting> {
    ClusterAccounting::new(AccountingOptions {
        local_relays: local.iter().map(|s| (*s).to_owned()).collect(),
        records: None,
        radius: None,
        dialogs: dialogs.then(silent_ender),
        record_wait: Duration::from_secs(60),
    })
}

#[tokio::test]
async fn a_timed_out_call_with_media_and_a_dialog_id_ends_its_dialog() {
    let h = hook(&[], true);
    let mut seen = h.observe();
    let stats = record("c1", "media timeout", 50).to_json();
    h.ended(ended("c1", "remote1", "media timeout", stats, Some("7:9")));
    let a = seen.try_recv().unwrap();
    assert!(a.from_relay);
    assert_eq!(a.record.reason, "media timeout");
    assert_eq!(a.dialog_ended, Some(7 << 32 | 9));

    // No media ever relayed: MediaProxy leaves the dialog alone.
    let stats = record("c2", "media timeout", 0).to_json();
    h.ended(ended("c2", "remote1", "media timeout", stats, Some("7:10")));
    assert_eq!(seen.try_recv().unwrap().dialog_ended, None);
    // No dialog id (an ng call).
    let stats = record("c3", "media timeout", 50).to_json();
    h.ended(ended("c3", "remote1", "media timeout", stats, None));
    assert_eq!(seen.try_recv().unwrap().dialog_ended, None);
    // An operator's end is not a timeout.
    let stats = record("c4", "admin", 50).to_json();
    h.ended(ended("c4", "remote1", "admin", stats, Some("1:1")));
    assert_eq!(seen.try_recv().unwrap().dialog_ended, None);
    // A lost call has no record; its dialog is ended all the same.
    h.ended(ended(
        "c5",
        "remote1",
        LOST,
        serde_json::Value::Null,
        Some("1:2"),
    ));
    let a = seen.try_recv().unwrap();
    assert!(!a.from_relay);
    assert_eq!(
        (a.record.reason.as_str(), a.record.streams.len()),
        (LOST, 0)
    );
    assert_eq!(a.dialog_ended, Some(1 << 32 | 2));
}

#[tokio::test]
async fn without_a_dialog_ender_nothing_is_ended() {
    let h = hook(&[], false);
    let mut seen = h.observe();
    let stats = record("c1", "media timeout", 50).to_json();
    h.ended(ended("c1", "remote1", "media timeout", stats, Some("7:9")));
    assert_eq!(seen.try_recv().unwrap().dialog_ended, None);
}

#[tokio::test]
async fn a_deleted_call_waits_for_its_relays_record() {
    let h = hook(&[], false);
    let mut seen = h.observe();
    let reply = serde_json::json!({"result": "ok", "created": 1_700_000_000});
    h.ended(ended("c1", "remote1", "deleted", reply.clone(), None));
    assert!(
        seen.try_recv().is_err(),
        "nothing accounted before the record"
    );
    assert_eq!(h.waiting_count(), 1);
    // Another relay's report, or another call's, does not match.
    h.late_record(
        "remote2",
        "c1",
        "deleted",
        record("c1", "deleted", 5).to_json(),
    );
    h.late_record(
        "remote1",
        "c9",
        "deleted",
        record("c9", "deleted", 5).to_json(),
    );
    assert!(seen.try_recv().is_err());
    h.late_record(
        "remote1",
        "c1",
        "deleted",
        record("c1", "deleted", 5).to_json(),
    );
    let a = seen.try_recv().unwrap();
    assert!(a.from_relay);
    assert_eq!(
        (a.record.reason.as_str(), a.record.streams[0].caller.packets),
        ("deleted", 5)
    );
    assert_eq!(h.waiting_count(), 0);

    // A record that never comes: the placement is accounted after record_wait.
    h.ended(ended("c2", "remote1", "deleted", reply, None));
    h.sweep(Instant::now() + Duration::from_secs(59));
    assert!(seen.try_recv().is_err());
    h.sweep(Instant::now() + Duration::from_secs(61));
    let a = seen.try_recv().unwrap();
    assert!(!a.from_relay);
    assert_eq!(
        (a.record.call_id.as_str(), a.record.reason.as_str()),
        ("c2", "deleted")
    );
    assert_eq!(
        (a.record.from_tag.as_str(), a.record.to_tag.as_str()),
        ("ft", "tt")
    );
}

#[tokio::test]
async fn only_remote_relays_records_go_to_the_store() {
    let dir = std::env::temp_dir().join(format!("mg-disp-acct-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("accounting.sqlite");
    let writer = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            mediagate_ops::store::spawn(
                mediagate_ops::store::StoreTarget::Sqlite(file),
                &[SessionRecord::TABLE],
                mediagate_ops::store::WriterOptions::default(),
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    let h = ClusterAccounting::new(AccountingOptions {
        local_relays: ["local1".to_owned()].into_iter().collect(),
        records: Some(writer.sink()),
        radius: None,
        dialogs: None,
        record_wait: Duration::from_secs(60),
    });
    let mut seen = h.observe();
    for (call, relay) in [("on-local", "local1"), ("on-remote", "remote1")] {
        let stats = record(call, "media timeout", 3).to_json();
        h.ended(ended(call, relay, "media timeout", stats, None));
    }
    assert!(!seen.try_recv().unwrap().stored);
    assert!(seen.try_recv().unwrap().stored);
    drop(h);
    let report = tokio::task::spawn_blocking(move || writer.close())
        .await
        .unwrap();
    assert_eq!(report.stored, 1);
    let mut store = mediagate_ops::store::SqliteStore::open(&file).unwrap();
    let rows: Vec<SessionRecord> = store.records(10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0], record("on-remote", "media timeout", 3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dialog_ids_read_as_kamailio_writes_them() {
    assert_eq!(parse_dialog_id("3:17"), Some(3 << 32 | 17));
    assert_eq!(parse_dialog_id(" 42 "), Some(42));
    assert_eq!(parse_dialog_id("x:1"), None);
    assert_eq!(parse_dialog_id("4294967296:1"), None);
}
