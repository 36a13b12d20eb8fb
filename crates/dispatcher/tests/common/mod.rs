//! What the dispatcher's integration tests share: a role with two relay engines in its
//! own process, and one `ng` request over UDP.

#![allow(dead_code)] // each test file uses part of it

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mediagate_dispatcher::role::Dispatcher;
use mediagate_ng::bencode::{Limits, Value};
use mediagate_ng::client::{frame_request, reply_to};
use mediagate_ng::framing::Encoding;
use mediagate_testkit::TempDir;

mod config;
pub(crate) use config::dispatcher_config;

/// The dispatcher with local relays `names.0` (127.0.0.1) and `names.1` (127.0.0.2),
/// `ng` on UDP (and TCP), MediaProxy's socket under `dir`, and `extra` config lines
/// after the relays. Each test gives its own `ports` base (200 ports from there) so
/// tests running at once never compete for a port.
pub async fn start_two_local(
    dir: &TempDir,
    ports: u16,
    names: (&str, &str),
    extra: &str,
) -> Dispatcher {
    let front = format!(
        "ng_listen_udp = [\"127.0.0.1:0\"]\nng_listen_tcp = [\"127.0.0.1:0\"]\nmediaproxy_socket = {:?}",
        dir.0.join("run/mp.sock")
    );
    let relays = [
        (names.0, "127.0.0.1", ports),
        (names.1, "127.0.0.2", ports + 100),
    ];
    let config = dispatcher_config(&dir.0, &front, &relays, extra);
    Dispatcher::start(&config, None).await.unwrap()
}

/// Sends one `ng` request over UDP and returns the reply (waiting up to 10 s: the
/// dispatcher's relays share this machine's two cores with the rest of the suite).
pub fn ng(to: SocketAddr, cookie: &str, request: &Value) -> Value {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .send_to(
            &frame_request(cookie.as_bytes(), Encoding::Bencode, request),
            to,
        )
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).expect("ng reply within 10 s");
    reply_to(cookie.as_bytes(), &buf[..n], &Limits::default())
        .expect("reply to our cookie")
        .unwrap()
}
