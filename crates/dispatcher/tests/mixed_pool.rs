//! The dispatcher role with both kinds of relay at once: one in its own process
//! (`[[dispatcher.local_relay]]`) and one linked over mutual TLS (`relay_listen`,
//! `tls_dir`, `passport`), the relay's end of the link running in this process with
//! certificates from `mediagate_link::pki`.
//!
//! Checked: both relays are id 1 in their own pools, yet calls placed on each (by the
//! proxy's `media-relay` preference) run there, and a later `delete` reaches the relay
//! that holds the call, not the other one with the same inner id.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ng;
use mediagate_dispatcher::pool::RelayPool;
use mediagate_dispatcher::role::Dispatcher;
use mediagate_link::tls::NodeTls;
use mediagate_ng::bencode::Value;
use mediagate_ng::client::RequestBuilder;
use mediagate_ng::request::Command;
use mediagate_relay::engine::{EngineConfig, Relay};
use mediagate_relay::link_client::{self, LinkClientConfig};
use mediagate_testkit::TempDir;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn offer(call_id: &str, relay: &str) -> Value {
    RequestBuilder::new(Command::Offer)
        .str("call-id", call_id)
        .str("from-tag", "ft")
        .str("sdp", SDP)
        .str("media-relay", relay)
        .build()
}

fn delete(call_id: &str) -> Value {
    RequestBuilder::new(Command::Delete)
        .str("call-id", call_id)
        .str("from-tag", "ft")
        .int("delete delay", 0)
        .build()
}

fn connection_ip(reply: &Value) -> String {
    let sdp = reply.get("sdp").and_then(Value::as_str).unwrap_or("");
    sdp.lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("no c= in {reply:?}"))
        .trim()
        .to_owned()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_linked_relays_serve_side_by_side_without_mixing_up_ids() {
    let dir = TempDir::new("mixed-pool");
    let pki = dir.0.join("pki");
    mediagate_link::pki::create_ca(&pki, "mixed pool test CA").unwrap();
    mediagate_link::pki::issue(&pki, &dir.0.join("dispatcher"), "dispatcher").unwrap();
    mediagate_link::pki::issue(&pki, &dir.0.join("remote1"), "remote1").unwrap();

    let config = common::dispatcher_config(
        &dir.0,
        &format!(
            "ng_listen_udp = [\"127.0.0.1:0\"]\nrelay_listen = \"127.0.0.1:0\"\ntls_dir = {:?}\npassport = \"CN=remote*\"",
            dir.0.join("dispatcher")
        ),
        &[("local1", "127.0.0.1", 52_800)],
        "",
    );
    let d = Dispatcher::start(&config, None).await.unwrap();
    let link = d.link_pool().expect("relay_listen starts the link").clone();

    // The remote relay: an engine on 127.0.0.3 with the relay's end of the link.
    let mut engine = EngineConfig::from_config(&config.relay);
    engine.ng_udp = Vec::new();
    engine.ng_tcp = Vec::new();
    let ip = "127.0.0.3".parse().unwrap();
    engine.media = vec![(ip, ip)];
    engine.ports = (52_900, 52_999);
    let remote = Arc::new(Relay::start(engine).await.unwrap());
    let tls = NodeTls::load(&dir.0.join("remote1")).unwrap();
    let at: mediagate_config::DispatcherAddr = link.local_addr().to_string().parse().unwrap();
    link_client::spawn(
        Arc::clone(&remote),
        &[at],
        LinkClientConfig::new(tls.client_config().unwrap(), tls.own_name()),
    );
    wait_until("the remote relay linked with its addresses", || {
        link.relays()
            .first()
            .is_some_and(|r| r.addresses.contains(&ip))
    })
    .await;
    assert_eq!(
        link.relays()[0].id,
        d.local_pool().relays()[0].id,
        "both are id 1 inside their pools"
    );

    let front = d.ng_udp_addrs()[0];
    let (to_remote, to_local) = tokio::task::spawn_blocking(move || {
        (
            ng(front, "1", &offer("r", "127.0.0.3")),
            ng(front, "2", &offer("l", "127.0.0.1")),
        )
    })
    .await
    .unwrap();
    assert_eq!(connection_ip(&to_remote), "127.0.0.3", "{to_remote:?}");
    assert_eq!(connection_ip(&to_local), "127.0.0.1", "{to_local:?}");
    let local = d.local_pool().relay("local1").unwrap();
    assert_eq!((remote.active_calls(), local.active_calls()), (1, 1));

    // The delete of the remote call reaches the remote relay, not local1.
    let gone = tokio::task::spawn_blocking(move || ng(front, "3", &delete("r")))
        .await
        .unwrap();
    assert_eq!(
        gone.get("result").and_then(Value::as_str),
        Some("ok"),
        "{gone:?}"
    );
    wait_until("the remote call deleted", || remote.active_calls() == 0).await;
    assert_eq!(local.active_calls(), 1, "local1 kept its call");
    assert_eq!(d.router().call_count(), 1);
}
