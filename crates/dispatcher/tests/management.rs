//! The dispatcher role's management interface and cluster view with a real relay
//! engine in process: MediaProxy's `summary`/`sessions` read over mutual TLS with
//! `openssl s_client` (certificates from `mediagate_link::pki`, as `mediagate cert`
//! makes them), refused without a client certificate or with one the passport does
//! not admit; over plain TCP on loopback; and the same data as the role's `summary`
//! and `sessions` snapshots (the admin API's).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use mediagate_dispatcher::role::Dispatcher;
use mediagate_ng::bencode::Value;
use mediagate_ng::client::RequestBuilder;
use mediagate_ng::request::Command;
use mediagate_ops::role::Role;
use mediagate_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn offer(call_id: &str) -> Value {
    RequestBuilder::new(Command::Offer)
        .str("call-id", call_id)
        .str("from-tag", "ft")
        .str("sdp", SDP)
        .build()
}

/// The dispatcher with one local relay and the management interface; `extra` goes
/// into `[dispatcher]`.
async fn start(dir: &Path, ports: u16, extra: &str) -> Dispatcher {
    let config = common::dispatcher_config(
        dir,
        &format!("ng_listen_udp = [\"127.0.0.1:0\"]\nmanagement_listen = \"127.0.0.1:0\"\n{extra}"),
        &[("local1", "127.0.0.1", ports)],
        "",
    );
    Dispatcher::start(&config, None).await.unwrap()
}

/// `openssl s_client` sending `input`, with the node directory `client` (or no client
/// certificate); its stdout.
fn s_client(addr: SocketAddr, ca: &Path, client: Option<&Path>, input: &str) -> String {
    let mut cmd = Process::new("openssl");
    cmd.args([
        "s_client",
        "-quiet",
        "-connect",
        &addr.to_string(),
        "-CAfile",
    ])
    .arg(ca);
    if let Some(dir) = client {
        cmd.arg("-cert")
            .arg(dir.join("cert.pem"))
            .arg("-key")
            .arg(dir.join("key.pem"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // The server closes after `quit`, or refuses the handshake: either ends s_client.
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_and_sessions_over_mutual_tls_with_a_passport() {
    let dir = TempDir::new("mgmt-tls");
    let pki = dir.0.join("pki");
    mediagate_link::pki::create_ca(&pki, "cluster").unwrap();
    for name in ["dispatcher", "monitor1", "intruder"] {
        mediagate_link::pki::issue(&pki, &dir.0.join(name), name).unwrap();
    }
    let extra = format!(
        "tls_dir = {:?}\nmanagement_passport = \"CN=monitor*\"",
        dir.0.join("dispatcher")
    );
    let d = start(&dir.0, 52_800, &extra).await;
    let addr = d.management_addr().expect("management interface bound");
    let reply = d.router().handle_ng(offer("mgmt-call")).await;
    assert_eq!(reply.get("result").and_then(Value::as_str), Some("ok"));

    let ca = pki.join("ca.pem");
    let monitor = dir.0.join("monitor1");
    let out = tokio::task::spawn_blocking(move || {
        s_client(
            addr,
            &ca,
            Some(&monitor),
            "summary\r\nsessions\r\nversion\r\nquit\r\n",
        )
    })
    .await
    .unwrap();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(
        lines.len(),
        4,
        "three answers and nothing after quit: {out:?}"
    );
    let summary: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(summary[0]["ip"], "127.0.0.1", "{summary}");
    assert_eq!(summary[0]["status"], "active");
    assert_eq!(summary[0]["session_count"], 1);
    assert_eq!(summary[0]["stream_count"]["audio"], 1);
    let sessions: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(sessions[0]["call_id"], "mgmt-call", "{sessions}");
    assert_eq!(sessions[0]["from_tag"], "ft");
    assert_eq!(sessions[0]["streams"][0]["media_type"], "audio");
    assert_eq!(sessions[0]["streams"][0]["status"], "active");
    assert_eq!(lines[2], env!("CARGO_PKG_VERSION"));
    assert_eq!(lines[3], "");

    // The admin API's snapshots hold the same lists.
    let snap = d.snapshot("summary").unwrap().await;
    assert_eq!(snap, summary);
    let snap = d.snapshot("sessions").unwrap().await;
    assert_eq!(snap[0]["call_id"], "mgmt-call");

    // Without a client certificate, and with one the passport does not admit:
    // no answer at all.
    for client in [None, Some(dir.0.join("intruder"))] {
        let ca = pki.join("ca.pem");
        let out = tokio::task::spawn_blocking(move || {
            s_client(addr, &ca, client.as_deref(), "summary\r\nquit\r\n")
        })
        .await
        .unwrap();
        assert!(!out.contains("127.0.0.1"), "{out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_on_loopback_without_tls_dir() {
    let dir = TempDir::new("mgmt-tcp");
    let d = start(&dir.0, 52_900, "").await;
    let addr = d.management_addr().expect("management interface bound");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"summary\nsessions\nquit\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    let summary: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(summary[0]["ip"], "127.0.0.1", "{summary}");
    assert_eq!(summary[0]["session_count"], 0);
    assert_eq!(lines[1], "[]");
}
