//! The relay's side of its `ng` listeners (the listeners themselves are
//! [`crate::ng_listener`], shared with the dispatcher): each message runs against the
//! shared relay state.
//!
//! What it does: answers retransmissions from the cookie cache (the command does not
//! run twice), runs the command in the registry under the state lock, caches and
//! returns the reply in the request's encoding.
//!
//! What it does not: interpret commands (the registry does) or own sockets.

use std::sync::Arc;
use std::time::Instant;

use super::State;
use mediagate_ng::bencode::Value;
use mediagate_ng::framing::{self, Encoding};
use mediagate_ng::reply;
use mediagate_ng::request::Request;

/// Runs one decoded message and returns the framed reply, using the cookie cache.
pub(super) fn process(
    state: &State,
    cookie: &[u8],
    encoding: Encoding,
    body: Result<Value, &'static str>,
) -> Vec<u8> {
    let now = state.now();
    let mut control = state.lock();
    if let Some(cached) = control.cookies.get(cookie, now.at) {
        return cached.to_vec();
    }
    let reply = run_locked(&mut control, body, now);
    let framed = framing::frame_reply(cookie, encoding, &reply);
    control.cookies.insert(cookie, framed.clone(), now.at);
    let ended = control.registry.take_ended();
    let setup = control.registry.take_call_setup();
    drop(control);
    if let Some(d) = setup {
        state.call_setup.observe(d.as_secs_f64());
    }
    state.finish(ended);
    framed
}

/// Runs one command that arrived by another way than an `ng` listener (the
/// dispatcher link, which numbers its own requests, so no cookie cache) and returns
/// the reply dictionary.
pub(super) fn run(state: &State, body: Result<Value, &'static str>) -> Value {
    let now = state.now();
    let mut control = state.lock();
    let reply = run_locked(&mut control, body, now);
    let ended = control.registry.take_ended();
    let setup = control.registry.take_call_setup();
    drop(control);
    if let Some(d) = setup {
        state.call_setup.observe(d.as_secs_f64());
    }
    state.finish(ended);
    reply
}

fn run_locked(
    control: &mut super::Control,
    body: Result<Value, &'static str>,
    now: crate::calls::Now,
) -> Value {
    match body.and_then(|v| Request::from_value(&v).map_err(|e| e.reason())) {
        Ok(req) => {
            let control = &mut *control;
            let reply = control.registry.handle(&req, now, &mut control.env);
            // Signalling may have reopened a latch (a new endpoint): the kernel must
            // stop forwarding to the old one now, not at the next packet or tick.
            if matches!(
                req.command,
                mediagate_ng::request::Command::Offer | mediagate_ng::request::Command::Answer
            ) {
                if let Some(call_id) = req.call_id.as_deref() {
                    for media in control.registry.medias_of(call_id) {
                        control.env.refresh_kernel(&media);
                    }
                }
            }
            if reply::result_of(&reply) == Some("error") {
                let reason = reply
                    .get("error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                tracing::warn!(
                    call = req.call_id.as_deref().unwrap_or("-"),
                    "relay: {} for call {:?} failed: {reason}",
                    req.command.name(),
                    req.call_id.as_deref().unwrap_or("-")
                );
            }
            reply
        }
        Err(reason) => reply::error(reason),
    }
}

impl crate::ng_listener::NgService for State {
    fn process(
        self: Arc<Self>,
        cookie: Vec<u8>,
        encoding: Encoding,
        body: Result<Value, &'static str>,
    ) -> impl std::future::Future<Output = Option<Vec<u8>>> + Send + 'static {
        std::future::ready(Some(process(&self, &cookie, encoding, body)))
    }
}

/// A monotonic and wall-clock reading for the registry.
pub(super) fn read_clock() -> crate::calls::Now {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    crate::calls::Now {
        at: Instant::now(),
        unix_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpStream, UdpSocket};

    use tokio::time::timeout;

    use super::super::{EngineConfig, Relay};

    /// The defaults of `[relay]` with our listeners and ports, records kept in memory.
    /// Built from the config, not a struct literal, so new engine settings need no
    /// change here.
    fn config(ng_udp: &str, ng_tcp: &[&str], ports: (u16, u16)) -> EngineConfig {
        let relay = mediagate_config::RelayConfig::default();
        let mut config = EngineConfig::from_config(&relay);
        config.ng_udp = vec![ng_udp.parse().unwrap()];
        config.ng_tcp = ng_tcp.iter().map(|a| a.parse().unwrap()).collect();
        config.media = vec![("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap())];
        config.ports = ports;
        config.records = None;
        config.forward_threads = 1;
        config
    }

    /// Pings `to` from a client bound to `client_bind`; returns the reply and where it
    /// came from.
    async fn ping(client_bind: &str, to: SocketAddr, cookie: &str) -> (Vec<u8>, SocketAddr) {
        let client = UdpSocket::bind(client_bind).await.unwrap();
        let request = format!("{cookie} d7:command4:pinge");
        client.send_to(request.as_bytes(), to).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let (n, from) = timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .expect("no reply within 2 s")
            .unwrap();
        buf.truncate(n);
        (buf, from)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wildcard_ipv4_answers_from_the_address_reached() {
        let relay = Relay::start(config("0.0.0.0:0", &[], (47_000, 47_099)))
            .await
            .unwrap();
        let port = relay.ng_udp_addrs()[0].port();
        // Loopback holds all of 127.0.0.0/8; without PKTINFO the reply to a request for
        // 127.0.0.2 would leave from 127.0.0.1, the route's preferred source.
        for (i, ip) in ["127.0.0.2", "127.0.0.1", "127.0.0.3"].iter().enumerate() {
            let to: SocketAddr = format!("{ip}:{port}").parse().unwrap();
            let cookie = format!("w{i}");
            let (reply, from) = ping("127.0.0.1:0", to, &cookie).await;
            assert_eq!(reply, format!("{cookie} d6:result4:ponge").into_bytes());
            assert_eq!(from, to, "reply from the address the request reached");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wildcard_dual_stack_answers_from_the_address_reached() {
        let relay = Relay::start(config("[::]:0", &[], (47_100, 47_199)))
            .await
            .unwrap_or_else(|e| panic!("this test needs IPv6: cannot bind [::] here ({e})"));
        let port = relay.ng_udp_addrs()[0].port();
        // IPv4 on the dual-stack socket: the reply must come from 127.0.0.2, not
        // 127.0.0.1.
        let to: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        let (reply, from) = ping("127.0.0.1:0", to, "m1").await;
        assert_eq!(reply, b"m1 d6:result4:ponge");
        assert_eq!(from, to);
        if let Err(e) = std::net::UdpSocket::bind("[::1]:0") {
            panic!(
                "the ::1 half of this test needs IPv6 on the loopback ({e}); enable it \
                 (sysctl net.ipv6.conf.lo.disable_ipv6=0) rather than let it pass unchecked"
            );
        }
        let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let (reply, from) = ping("[::1]:0", to, "m2").await;
        assert_eq!(reply, b"m2 d6:result4:ponge");
        assert_eq!(from, to);
    }

    async fn read_exactly(tcp: &mut TcpStream, want: &[u8]) {
        let mut got = vec![0u8; want.len()];
        timeout(Duration::from_secs(2), tcp.read_exact(&mut got))
            .await
            .expect("reply within 2 s")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_and_bencode_over_tcp() {
        let relay = Relay::start(config("127.0.0.1:0", &["127.0.0.1:0"], (47_200, 47_299)))
            .await
            .unwrap();
        let mut tcp = TcpStream::connect(relay.ng_tcp_addrs()[0]).await.unwrap();
        // Back to back, mixed encodings, braces inside a string; each reply in its
        // request's encoding.
        tcp.write_all(
            b"j1 {\"command\":\"ping\",\"x\":\"}{\"}\nb1 d7:command4:pingej2 {\"command\":\"nope\"}",
        )
        .await
        .unwrap();
        read_exactly(
            &mut tcp,
            b"j1 {\"result\":\"pong\"}b1 d6:result4:pongej2 {\"error-reason\":\"Unrecognized command\",\"result\":\"error\"}",
        )
        .await;
        // One byte at a time.
        for byte in br#"j3 {"command": "ping", "flags": ["a", {"b": []}]}"# {
            tcp.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        read_exactly(&mut tcp, br#"j3 {"result":"pong"}"#).await;
        // A complete object the decoder refuses: an error reply, and the stream goes on.
        tcp.write_all(br#"j4 {"command":"ping","n":1.5} j5 {"command":"ping"}"#)
            .await
            .unwrap();
        read_exactly(
            &mut tcp,
            br#"j4 {"error-reason":"Failed to parse JSON document","result":"error"}j5 {"result":"pong"}"#,
        )
        .await;
        // An object whose end cannot be found: the JSON error reply, then close.
        tcp.write_all(br#"j6 {"command":"ping"]"#).await.unwrap();
        let mut rest = Vec::new();
        timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&rest),
            r#"j6 {"error-reason":"Failed to parse JSON document","result":"error"}"#
        );
    }
}
