//! Ending a dialog on a real Kamailio (Debian 5.6, `dialog` + `jsonrpcs` over UDP
//! datagrams): two SIPp phones call through it; the dispatcher's client ends the
//! dialog, by MediaProxy's dialog id (`dlg.end_dlg`) and by Call-ID and tags
//! (`dlg.terminate_dlg`); both phones' scenarios succeed only when Kamailio's BYE
//! reaches them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mediagate_dispatcher::dialog_end::{
    DialogEndError, DialogEnder, DialogRef, RpcTarget, SipProxy,
};
use mediagate_testkit::ports::free_udp_port;
use mediagate_testkit::process::{require_program, Peer};
use serde_json::Value as Json;

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialog_end_peers")
}

struct Work(PathBuf);

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sipp(work: &Path, name: &str, args: &[String]) -> Peer {
    let mut cmd = Command::new("timeout");
    cmd.current_dir(work)
        .arg("40")
        .arg("sipp")
        .args(args)
        .args(["-i", "127.0.0.1", "-m", "1", "-nostdin", "-mp"]);
    cmd.arg(free_udp_port().unwrap().to_string());
    Peer::spawn(name, cmd).unwrap()
}

/// The one confirmed dialog Kamailio holds now, once it is confirmed.
async fn confirmed_dialog(ender: &DialogEnder, kamailio: &Peer) -> Json {
    for _ in 0..200 {
        if let Ok(Json::Array(list)) = ender.call("dlg.list", Json::Array(vec![])).await {
            if let Some(d) = list.into_iter().find(|d| d["state"] == 4) {
                return d;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no confirmed dialog in Kamailio:\n{}",
        kamailio.diagnostics()
    );
}

async fn call_and_end(
    work: &Path,
    ender: &DialogEnder,
    kamailio: &Peer,
    sip_port: u16,
    uas_port: u16,
    by_id: bool,
) {
    let uas = sipp(
        work,
        "sipp-uas",
        &[
            "-sf".into(),
            "uas.xml".into(),
            "-p".into(),
            uas_port.to_string(),
        ],
    );
    // The callee must listen before the caller's INVITE comes.
    tokio::task::block_in_place(|| uas.wait_udp_bound(uas_port, None, Duration::from_secs(20)));
    let uac = sipp(
        work,
        "sipp-uac",
        &[
            format!("127.0.0.1:{sip_port}"),
            "-sf".into(),
            "uac.xml".into(),
            "-p".into(),
            free_udp_port().unwrap().to_string(),
        ],
    );
    let dialog = confirmed_dialog(ender, kamailio).await;
    let result = if by_id {
        let h_entry = dialog["h_entry"].as_u64().expect("h_entry");
        let h_id = dialog["h_id"].as_u64().expect("h_id");
        // What Kamailio's mediaproxy module sends as `dialog_id`.
        ender.end(DialogRef::Id(h_entry << 32 | h_id)).await
    } else {
        let text = |v: &Json| {
            v.as_str()
                .unwrap_or_else(|| panic!("tags in {dialog}"))
                .to_owned()
        };
        let (call_id, from_tag, to_tag) = (
            text(&dialog["call-id"]),
            text(&dialog["caller"]["tag"]),
            text(&dialog["callee"]["tag"]),
        );
        ender
            .end(DialogRef::Tags {
                call_id: &call_id,
                from_tag: &from_tag,
                to_tag: &to_tag,
            })
            .await
    };
    result.unwrap_or_else(|e| panic!("ending {dialog}: {e}\n{}", kamailio.diagnostics()));
    for phone in [&uac, &uas] {
        let status = phone.wait_timeout(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not get its BYE:\n{}\n{}",
            phone.name(),
            phone.diagnostics(),
            kamailio.diagnostics()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_ends_the_dialog_and_both_phones_get_bye() {
    require_program("kamailio", "kamailio").unwrap();
    require_program("sipp", "sip-tester").unwrap();
    let work = Work(std::env::temp_dir().join(format!("mg-dlgend-kam-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&work.0);
    std::fs::create_dir_all(&work.0).unwrap();
    for f in ["uac.xml", "uas.xml"] {
        std::fs::copy(peers().join(f), work.0.join(f)).unwrap();
    }
    let (sip, rpc, uas) = (
        free_udp_port().unwrap(),
        free_udp_port().unwrap(),
        free_udp_port().unwrap(),
    );
    let cfg = std::fs::read_to_string(peers().join("kamailio.cfg"))
        .unwrap()
        .replace("__SIP__", &sip.to_string())
        .replace("__RPC__", &rpc.to_string())
        .replace("__UAS__", &uas.to_string());
    std::fs::write(work.0.join("kamailio.cfg"), cfg).unwrap();
    let mut cmd = Command::new("kamailio");
    cmd.current_dir(&work.0)
        .args(["-f", "kamailio.cfg", "-DD", "-E", "-Y"])
        .arg(&work.0);
    let kamailio = Peer::spawn("kamailio", cmd).unwrap();
    let ender = DialogEnder::new(
        SipProxy::Kamailio,
        RpcTarget::Udp(([127, 0, 0, 1], rpc).into()),
        // Each try's wait: Kamailio answers in milliseconds, but a loaded machine
        // can take longer than half a second.
        Duration::from_secs(2),
        3,
    );
    // Kamailio answers once it is up; no dialogs yet.
    let mut up = false;
    for _ in 0..40 {
        if let Ok(list) = ender.call("dlg.list", Json::Array(vec![])).await {
            assert_eq!(list, Json::Array(vec![]));
            up = true;
            break;
        }
    }
    assert!(
        up,
        "Kamailio's RPC never answered:\n{}",
        kamailio.diagnostics()
    );

    call_and_end(&work.0, &ender, &kamailio, sip, uas, true).await;
    call_and_end(&work.0, &ender, &kamailio, sip, uas, false).await;

    // A dialog that no longer exists is the proxy's error, not a silent success.
    let gone = ender.end(DialogRef::Id(1 << 32 | 1)).await;
    assert!(matches!(gone, Err(DialogEndError::Rpc(_))), "{gone:?}");
    kamailio.terminate(Duration::from_secs(5));
}
