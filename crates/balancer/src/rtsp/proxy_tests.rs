//! The RTSP engine against scripted back ends on loopback: what real servers and
//! players rarely do on cue (pipelining, byte-by-byte requests, requests sent by the
//! server, `$` frames both ways, colliding session IDs, garbage from a back end, the
//! PROXY v2 header, the connection cap).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_config::ThreadScheduling;
use mediagate_rtsp::{Decoder, Item, Limits, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::proxy::{accept_loop, Settings};
use crate::proxy_v2;
use crate::service::Service;

/// What a scripted back end saw.
#[derive(Debug)]
enum Seen {
    Proxy(Option<SocketAddr>),
    Request(Request),
    Response(mediagate_rtsp::Response),
    Frame(u8, Bytes),
}

/// A back end answering every request with 200 (echoing CSeq; SETUP gets
/// `Session: {session}` and its Transport back with `server_port=6000-6001`), and
/// writing whatever the test pushes on its connection.
struct FakeBackend {
    addr: SocketAddr,
    /// The accepting task; aborting it closes the listener.
    accept: tokio::task::JoinHandle<()>,
    seen: mpsc::UnboundedReceiver<Seen>,
    push: mpsc::UnboundedSender<Vec<u8>>,
}

async fn fake_backend(session: &'static str, proxy: bool) -> FakeBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (push, push_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let accept = tokio::spawn(async move {
        // The first connection takes what the test pushes; later ones only answer.
        let mut push_rx = Some(push_rx);
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let push = push_rx
                .take()
                .unwrap_or_else(|| mpsc::unbounded_channel().1);
            tokio::spawn(serve_fake(stream, session, proxy, seen_tx.clone(), push));
        }
    });
    FakeBackend {
        addr,
        accept,
        seen,
        push,
    }
}

async fn serve_fake(
    stream: TcpStream,
    session: &'static str,
    proxy: bool,
    seen_tx: mpsc::UnboundedSender<Seen>,
    mut push_rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut dec = Decoder::new(Limits::default());
    if proxy {
        let mut header = vec![0u8; 16];
        rd.read_exact(&mut header).await.unwrap();
        let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
        let mut rest = vec![0u8; len];
        rd.read_exact(&mut rest).await.unwrap();
        header.extend_from_slice(&rest);
        let (h, _) = proxy_v2::decode_datagram(&header).unwrap();
        let _ = seen_tx.send(Seen::Proxy(h.client()));
    }
    loop {
        tokio::select! {
            read = rd.read_buf(dec.buffer_mut()) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                while let Ok(Some(item)) = dec.next_item() {
                    match item {
                        Item::Request(req) => {
                            let mut resp = mediagate_rtsp::Response::reply_to(
                                &req,
                                mediagate_rtsp::StatusCode::OK,
                            );
                            if req.method == mediagate_rtsp::Method::Setup {
                                resp.headers.append("Session", format!("{session};timeout=30"));
                                let t = req.headers.get("Transport").unwrap_or_default();
                                resp.headers.append("Transport", format!("{t};server_port=6000-6001"));
                            } else if let Some(s) = req.headers.get("Session") {
                                resp.headers.append("Session", s);
                            }
                            let _ = seen_tx.send(Seen::Request(req));
                            wr.write_all(&resp.to_bytes()).await.unwrap();
                        }
                        Item::Response(resp) => {
                            let _ = seen_tx.send(Seen::Response(resp));
                        }
                        Item::Frame(f) => {
                            let _ = seen_tx.send(Seen::Frame(f.channel(), f.payload().clone()));
                        }
                    }
                }
            }
            Some(bytes) = push_rx.recv() => {
                wr.write_all(&bytes).await.unwrap();
            }
        }
    }
}

impl FakeBackend {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("the back end sees something")
            .expect("the back end runs")
    }

    async fn request(&mut self) -> Request {
        match self.next().await {
            Seen::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }
}

/// A balancer service over `backends` on a free port; returns its address.
async fn balancer(backends: &[SocketAddr], extra: &str, max_connections: u64) -> SocketAddr {
    balancer_with_service(backends, extra, max_connections)
        .await
        .0
}

/// [`balancer`], with the running service.
async fn balancer_with_service(
    backends: &[SocketAddr],
    extra: &str,
    max_connections: u64,
) -> (SocketAddr, Arc<Service>) {
    balancer_configured(
        backends,
        "",
        &format!("media_mode = \"direct\"\n{extra}"),
        max_connections,
    )
    .await
}

/// A balancer service with `role` lines in `[balancer]` and `service` lines in its
/// `[[balancer.service]]`.
async fn balancer_configured(
    backends: &[SocketAddr],
    role: &str,
    service: &str,
    max_connections: u64,
) -> (SocketAddr, Arc<Service>) {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "[edge]\nenabled = false\n[balancer]\nenabled = true\n{role}\n[[balancer.service]]\nname = \"t\"\n\
         listen = [\"127.0.0.1:0\"]\nbackends = [{}]\n{service}\n",
        list.join(", ")
    );
    let config = mediagate_config::parse_config(&text).unwrap();
    let svc = Arc::new(
        Service::resolve(&config.balancer.service[0], &config.balancer)
            .await
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Arc::new(Settings {
        header_timeout: Duration::from_secs(2),
        session_timeout: Duration::from_secs(60),
        max_connections,
        scheduling: ThreadScheduling::NORMAL,
        open: 0.into(),
    });
    for task in crate::service::watch_health(&svc) {
        drop(task);
    }
    tokio::spawn(accept_loop(listener, Arc::clone(&svc), settings));
    (addr, svc)
}

/// A client connection that reads items.
struct Client {
    stream: TcpStream,
    dec: Decoder,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            dec: Decoder::new(Limits::default()),
        }
    }

    async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    async fn item(&mut self) -> Item {
        loop {
            if let Some(item) = self.dec.next_item().unwrap() {
                return item;
            }
            let n = tokio::time::timeout(
                Duration::from_secs(5),
                self.stream.read_buf(self.dec.buffer_mut()),
            )
            .await
            .expect("an answer in time")
            .unwrap();
            assert!(n > 0, "the balancer closed the connection");
        }
    }

    async fn response(&mut self) -> mediagate_rtsp::Response {
        match self.item().await {
            Item::Response(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

fn session_of(resp: &mediagate_rtsp::Response) -> String {
    resp.headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

const SETUP: &str = "SETUP rtsp://x/a/track1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n";

#[tokio::test]
async fn pipelined_and_byte_by_byte_requests_are_answered_in_order() {
    let mut be = fake_backend("s1", false).await;
    let addr = balancer(&[be.addr], "", 100).await;
    let mut c = Client::connect(addr).await;
    c.send("OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: 1\r\n\r\nDESCRIBE rtsp://x/a RTSP/1.0\r\nCSeq: 2\r\n\r\n")
        .await;
    for byte in SETUP.bytes() {
        c.stream.write_all(&[byte]).await.unwrap();
    }
    for cseq in ["1", "2", "3"] {
        let r = c.response().await;
        assert_eq!(r.headers.get("CSeq"), Some(cseq));
    }
    for method in ["OPTIONS", "DESCRIBE", "SETUP"] {
        assert_eq!(be.request().await.method.as_str(), method);
    }
}

#[tokio::test]
async fn two_back_ends_minting_one_id_keep_two_sessions_apart() {
    let mut a = fake_backend("same", false).await;
    let mut b = fake_backend("same", false).await;
    let addr = balancer(&[a.addr, b.addr], "", 100).await;
    let mut first = Client::connect(addr).await;
    first.send(SETUP).await;
    let id_a = session_of(&first.response().await);
    let mut second = Client::connect(addr).await;
    second.send(SETUP).await;
    let id_b = session_of(&second.response().await);
    assert_ne!(id_a, id_b);
    assert_ne!(id_a, "same");
    a.request().await;
    b.request().await;
    // PLAY for each on one third connection reaches each session's own back end,
    // carrying the back end's own ID.
    let mut third = Client::connect(addr).await;
    third
        .send(&format!(
            "PLAY rtsp://x/a RTSP/1.0\r\nCSeq: 4\r\nSession: {id_b}\r\n\r\n"
        ))
        .await;
    assert_eq!(session_of(&third.response().await), id_b);
    let play = b.request().await;
    assert_eq!(play.headers.get("Session"), Some("same"));
    third
        .send(&format!(
            "PLAY rtsp://x/a RTSP/1.0\r\nCSeq: 5\r\nSession: {id_a}\r\n\r\n"
        ))
        .await;
    assert_eq!(session_of(&third.response().await), id_a);
    assert_eq!(a.request().await.method.as_str(), "PLAY");
}

#[tokio::test]
async fn server_requests_and_interleaved_frames_cross_both_ways() {
    let mut be = fake_backend("srv", false).await;
    let addr = balancer(&[be.addr], "", 100).await;
    let mut c = Client::connect(addr).await;
    c.send(SETUP).await;
    let id = session_of(&c.response().await);
    be.request().await;
    // The back end sends a frame, then a request of its own, then another frame.
    let mut push = vec![b'$', 0, 0, 3, 1, 2, 3];
    push.extend_from_slice(
        b"GET_PARAMETER rtsp://x/a RTSP/1.0\r\nCSeq: 100\r\nSession: srv\r\n\r\n",
    );
    push.extend_from_slice(&[b'$', 1, 0, 1, 9]);
    be.push.send(push).unwrap();
    match c.item().await {
        Item::Frame(f) => assert_eq!((f.channel(), &f.payload()[..]), (0, &[1u8, 2, 3][..])),
        other => panic!("{other:?}"),
    }
    match c.item().await {
        Item::Request(r) => {
            assert_eq!(r.headers.get("CSeq"), Some("100"));
            assert_eq!(r.headers.get("Session"), Some(id.as_str()));
        }
        other => panic!("{other:?}"),
    }
    match c.item().await {
        Item::Frame(f) => assert_eq!(f.channel(), 1),
        other => panic!("{other:?}"),
    }
    // The client answers the server's request and sends RTCP on channel 1.
    c.send(&format!(
        "RTSP/1.0 200 OK\r\nCSeq: 100\r\nSession: {id}\r\n\r\n"
    ))
    .await;
    c.stream.write_all(&[b'$', 1, 0, 2, 7, 7]).await.unwrap();
    match be.next().await {
        Seen::Response(r) => {
            assert_eq!(r.headers.get("CSeq"), Some("100"));
            assert_eq!(r.headers.get("Session"), Some("srv"));
        }
        other => panic!("{other:?}"),
    }
    match be.next().await {
        Seen::Frame(ch, payload) => assert_eq!((ch, &payload[..]), (1, &[7u8, 7][..])),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn proxy_v2_tells_the_back_end_the_client_s_address() {
    let mut be = fake_backend("p", true).await;
    let addr = balancer(&[be.addr], "proxy_protocol = true", 100).await;
    let mut c = Client::connect(addr).await;
    c.send("OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .await;
    c.response().await;
    match be.next().await {
        Seen::Proxy(client) => assert_eq!(client, Some(c.stream.local_addr().unwrap())),
        other => panic!("{other:?}"),
    }
    assert_eq!(be.request().await.method.as_str(), "OPTIONS");
}

#[tokio::test]
async fn a_back_end_answering_garbage_gets_the_client_a_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"\x00\x01garbage\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let addr = balancer(&[backend], "", 100).await;
    let mut c = Client::connect(addr).await;
    c.send("DESCRIBE rtsp://x/a RTSP/1.0\r\nCSeq: 7\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, mediagate_rtsp::StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers.get("CSeq"), Some("7"));
}

#[tokio::test]
async fn a_dead_back_end_gets_the_client_a_503() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    drop(listener);
    let addr = balancer(&[backend], "", 100).await;
    let mut c = Client::connect(addr).await;
    c.send("DESCRIBE rtsp://x/a RTSP/1.0\r\nCSeq: 7\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, mediagate_rtsp::StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let be = fake_backend("c", false).await;
    let addr = balancer(&[be.addr], "", 1).await;
    let mut first = Client::connect(addr).await;
    first
        .send("OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .await;
    first.response().await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// How many requests each back end saw within a short wait.
async fn counts(backends: &mut [FakeBackend]) -> Vec<usize> {
    let mut out = Vec::new();
    for b in backends.iter_mut() {
        let mut n = 0;
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), b.seen.recv()).await
        {
            n += 1;
        }
        out.push(n);
    }
    out
}

#[tokio::test]
async fn client_ip_persistence_keeps_a_client_on_one_back_end() {
    for (extra, spread) in [("", true), ("persistence_timeout = \"10m\"", false)] {
        let mut backends = vec![
            fake_backend("a", false).await,
            fake_backend("b", false).await,
            fake_backend("c", false).await,
        ];
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let addr = balancer(&addrs, extra, 100).await;
        for cseq in 1..=3 {
            let mut c = Client::connect(addr).await;
            c.send(&format!(
                "OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n"
            ))
            .await;
            c.response().await;
        }
        let seen = counts(&mut backends).await;
        if spread {
            assert_eq!(seen, [1, 1, 1], "round robin without persistence");
        } else {
            assert!(seen.contains(&3), "{seen:?}");
        }
    }
}

#[tokio::test]
async fn a_back_end_that_fails_its_checks_loses_its_sessions_and_new_ones() {
    let mut a = fake_backend("a", false).await;
    let mut b = fake_backend("b", false).await;
    let health = "[balancer.service.health]\ncheck = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
    let addr = balancer(&[a.addr, b.addr], health, 100).await;
    let mut c = Client::connect(addr).await;
    c.send(SETUP).await;
    let id = session_of(&c.response().await);
    a.request().await;
    // Back end a stops listening: its checks fail.
    a.accept.abort();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut other = Client::connect(addr).await;
    other
        .send(&format!(
            "PLAY rtsp://x/a RTSP/1.0\r\nCSeq: 4\r\nSession: {id}\r\n\r\n"
        ))
        .await;
    assert_eq!(
        other.response().await.status,
        mediagate_rtsp::StatusCode::SESSION_NOT_FOUND
    );
    // New sessions all go to b.
    for cseq in 10..13 {
        let mut c = Client::connect(addr).await;
        c.send(&format!(
            "OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n"
        ))
        .await;
        assert!(c.response().await.status.is_success());
        assert_eq!(b.request().await.method.as_str(), "OPTIONS");
    }
}

#[tokio::test]
async fn a_reload_retires_a_back_end_without_dropping_its_sessions() {
    let mut a = fake_backend("a", false).await;
    let mut b = fake_backend("b", false).await;
    let (addr, svc) = balancer_with_service(&[a.addr], "", 100).await;
    let mut c = Client::connect(addr).await;
    c.send(SETUP).await;
    let id = session_of(&c.response().await);
    a.request().await;
    // The file now lists only b: a is retired, b joins.
    let text = format!(
        "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"t\"\n\
         listen = [\"127.0.0.1:0\"]\nbackends = [\"{}\"]\nmedia_mode = \"direct\"\n",
        b.addr
    );
    let config = mediagate_config::parse_config(&text).unwrap();
    assert!(svc.reload_backends(&config.balancer.service[0]).is_empty());
    // The running session still reaches a, from any connection.
    let mut other = Client::connect(addr).await;
    other
        .send(&format!(
            "PLAY rtsp://x/a RTSP/1.0\r\nCSeq: 4\r\nSession: {id}\r\n\r\n"
        ))
        .await;
    assert!(other.response().await.status.is_success());
    assert_eq!(a.request().await.method.as_str(), "PLAY");
    // New sessions go to b only.
    for cseq in 10..12 {
        let mut n = Client::connect(addr).await;
        n.send(&format!(
            "OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n"
        ))
        .await;
        assert!(n.response().await.status.is_success());
        assert_eq!(b.request().await.method.as_str(), "OPTIONS");
    }
    let list = svc.backend_list();
    assert_eq!(list.len(), 2);
    assert!(list[0].retired() && !list[1].retired());
}

/// Relay mode: a relayed stream that moves no RTP for `media_timeout` is closed and
/// counted, and RTP through it puts that off; its session stays.
#[tokio::test]
async fn a_relayed_stream_without_media_is_closed_after_media_timeout() {
    let mut a = fake_backend("a", false).await;
    let (addr, svc) = balancer_configured(
        &[a.addr],
        "media_timeout = \"20s\"",
        "media_mode = \"relay\"\nports = \"46400-46499\"",
        100,
    )
    .await;
    let viewer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    viewer
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = viewer.local_addr().unwrap().port();
    let mut c = Client::connect(addr).await;
    let start = std::time::Instant::now();
    c.send(&format!(
        "SETUP rtsp://x/a/track1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port={port}-{}\r\n\r\n",
        port + 1
    ))
    .await;
    let resp = c.response().await;
    assert!(resp.status.is_success(), "{resp:?}");
    let id = session_of(&resp);
    a.request().await;
    let pairs = svc.relayed_pairs();
    let pair = pairs[&id][0].pair;
    // The back end's RTP reaches the viewer through the pair.
    let backend_rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3];
    backend_rtp.send_to(&rtp, pair.sides[0]).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = viewer.recv_from(&mut buf).expect("relayed RTP");
    assert_eq!(&buf[..n], &rtp);
    let after = |s: u64| start + Duration::from_secs(s);
    // Media at 15 s (as the sweep sees it) puts the timeout off to 35 s.
    assert_eq!(svc.expire_media(after(15)), 0);
    assert_eq!(svc.expire_media(after(30)), 0);
    assert_eq!(svc.expire_media(after(36)), 1);
    assert!(svc.relayed_pairs().is_empty());
    assert_eq!(crate::service::read(&svc.stats.media_timeouts), 1);
    assert_eq!(svc.expire_media(after(60)), 0, "counted once");
    // The session itself is still routed.
    c.send(&format!(
        "PLAY rtsp://x/a RTSP/1.0\r\nCSeq: 4\r\nSession: {id}\r\n\r\n"
    ))
    .await;
    assert!(c.response().await.status.is_success());
    // Nothing is forwarded on the closed pair.
    backend_rtp.send_to(&rtp, pair.sides[0]).unwrap();
    viewer
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        viewer.recv_from(&mut buf).is_err(),
        "a closed pair forwarded"
    );
}
