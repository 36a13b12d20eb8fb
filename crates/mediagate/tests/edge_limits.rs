//! Connections that never become viewers are bounded (issue 12, item 7), tried as a
//! hostile client would: 1,000 connections that send nothing are closed after the idle
//! limit, 200 that trickle header lines (slowloris) are closed at the request limit
//! (well before the idle limit, though bytes keep arriving), over-cap connections are
//! refused, and an ffmpeg viewer playing through the same edge meanwhile keeps
//! playing without a gap. Each closure is counted in the edge's metrics.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mediagate_edge::Edge;
use mediagate_ops::metrics::Metrics;
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

const IDLE: Duration = Duration::from_secs(6);
const REQUEST: Duration = Duration::from_secs(2);

fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn counter(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.encode();
    samples(&text)
        .get(series)
        .copied()
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits until the `mediagate_edge_connections` gauge passes `done`, up to `within`
/// (the edge admits and closes each connection on a task of its own); panics naming
/// `what`.
async fn wait_connections(
    metrics: &Metrics,
    what: &str,
    within: Duration,
    done: impl Fn(f64) -> bool,
) {
    let until = Instant::now() + within;
    loop {
        let counted = counter(metrics, "mediagate_edge_connections");
        if done(counted) {
            return;
        }
        assert!(Instant::now() < until, "{what}: {counted} counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn edge_with(origin: &Origin, limits: &str, metrics: &Metrics) -> (Edge, u16) {
    let toml = format!(
        "[edge]\nlisten = [\"127.0.0.1:0\"]\nlinger = \"1s\"\n{limits}\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url("/live")
    );
    let config = mediagate_config::parse_config(&toml).expect("test config is valid");
    let edge = Edge::new(&config.edge, "limits-edge");
    edge.publish_metrics(metrics);
    let bound = edge
        .bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .expect("edge binds");
    (edge, bound[0].port())
}

/// Whether the edge closed `s` by `until` (a read sees end of stream or a reset).
fn closed_by(s: &mut TcpStream, until: Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // an error response before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_are_closed_while_a_viewer_keeps_playing() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let metrics = Metrics::new();
    let (_edge, port) = edge_with(
        &origin,
        &format!(
            "idle_timeout = \"{}s\"\nrequest_timeout = \"{}s\"\nmax_connections = 5000\nmax_connections_per_client = 5000\n",
            IDLE.as_secs(),
            REQUEST.as_secs()
        ),
        &metrics,
    )
    .await;
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let viewer = tokio::task::spawn_blocking(move || {
        ffmpeg_read(&url, &ReadOptions::seconds(Transport::Tcp, 14.0))
    });
    // Let the viewer reach PLAY before the flood.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let attack = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut idle: Vec<TcpStream> = (0..1000)
            .map(|i| {
                TcpStream::connect(("127.0.0.1", port))
                    .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
            })
            .collect();
        let idle_opened = Instant::now();
        let mut trickling: Vec<(TcpStream, Instant)> = (0..200)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"OPTIONS * RTSP/1.0\r\n").unwrap();
                s.set_nonblocking(true).unwrap();
                (s, Instant::now())
            })
            .collect();
        // One more header line every 500 ms, never the blank line that ends the head,
        // so bytes keep arriving; how long each lived is measured from its first byte.
        let mut lived = vec![None; trickling.len()];
        let trickle_until = Instant::now() + IDLE + Duration::from_secs(3);
        let mut line = 0;
        while Instant::now() < trickle_until && lived.iter().any(Option::is_none) {
            std::thread::sleep(Duration::from_millis(250));
            line += 1;
            for (i, (s, opened)) in trickling.iter_mut().enumerate() {
                if lived[i].is_some() {
                    continue;
                }
                let mut buf = [0u8; 256];
                let closed = match s.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                if closed {
                    lived[i] = Some(opened.elapsed());
                } else if line % 2 == 0 {
                    let _ = s.write_all(format!("X-Line-{line}: x\r\n").as_bytes());
                }
            }
        }
        let idle_deadline = idle_opened + IDLE + Duration::from_secs(4);
        let idle_open = idle
            .iter_mut()
            .map(|s| closed_by(s, idle_deadline))
            .filter(|closed| !closed)
            .count();
        (lived, idle_open, started.elapsed())
    });
    let (lived, idle_open, took) = attack.await.unwrap();
    let survivors = lived.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        survivors, 0,
        "slowloris connections still open after {took:?}"
    );
    let longest = lived.iter().flatten().max().copied().unwrap_or_default();
    assert!(
        longest < IDLE,
        "slowloris must be cut by the request limit, not the idle one: one lived {longest:?}"
    );
    assert_eq!(idle_open, 0, "idle connections still open after the limit");
    assert!(
        counter(
            &metrics,
            "mediagate_edge_connections_closed_by_limit_total{limit=\"slow_request\"}"
        ) >= 200.0
    );
    assert!(
        counter(
            &metrics,
            "mediagate_edge_connections_closed_by_limit_total{limit=\"idle\"}"
        ) >= 1000.0
    );

    let r = viewer.await.unwrap().expect("ffmpeg runs");
    // 14 s at 15 fps: the viewer played through the whole flood.
    assert!(
        r.success && r.video_frames >= 180,
        "the playing viewer was cut: {r:?}"
    );
    assert!(
        !r.errors.iter().any(|l| l.contains("missed")),
        "the viewer lost packets: {r:?}"
    );
    // ffmpeg has exited, but the edge notices its connection close on a task of its
    // own: the gauge is waited for (bounded), as in the test below.
    wait_connections(
        &metrics,
        "every connection is closed and counted out",
        Duration::from_secs(10),
        |n| n == 0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_refused_and_counted() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let metrics = Metrics::new();
    let (_edge, port) = edge_with(
        &origin,
        "max_connections = 8\nmax_connections_per_client = 3\n",
        &metrics,
    )
    .await;
    let held = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect::<Vec<TcpStream>>()
    })
    .await
    .unwrap();
    // The edge admits each connection on a task of its own: the fourth must arrive
    // once those three hold their places, or one of them could be the one refused.
    wait_connections(
        &metrics,
        "the three connections never admitted",
        Duration::from_secs(10),
        |n| n >= 3.0,
    )
    .await;
    let held = tokio::task::spawn_blocking(move || {
        let mut fourth = TcpStream::connect(("127.0.0.1", port)).unwrap();
        fourth
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        let _ = fourth.read_to_string(&mut answer);
        assert!(
            answer.starts_with("RTSP/1.0 503"),
            "over the per-client cap: {answer:?}"
        );
        held
    })
    .await
    .unwrap();
    // Another client address (127.0.0.2 is loopback too) is still served.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = sock
        .connect(([127, 0, 0, 1], port).into())
        .await
        .unwrap()
        .into_std()
        .unwrap();
    other.set_nonblocking(false).unwrap();
    let served = tokio::task::spawn_blocking(move || options_answer(&mut other))
        .await
        .unwrap();
    assert!(served.starts_with("RTSP/1.0 200"), "{served:?}");
    assert_eq!(
        counter(
            &metrics,
            "mediagate_edge_connections_refused_total{limit=\"per_client\"}"
        ),
        1.0
    );
    // A connection that leaves frees its place.
    drop(held);
    wait_connections(
        &metrics,
        "closed connections still counted",
        Duration::from_secs(5),
        |n| n <= 0.0,
    )
    .await;
    let again = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        options_answer(&mut s)
    })
    .await
    .unwrap();
    assert!(again.starts_with("RTSP/1.0 200"), "{again:?}");
}

/// The first bytes of the answer to an OPTIONS on `s`.
fn options_answer(s: &mut TcpStream) -> String {
    s.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A connection from `from` (a loopback address) to the edge on 127.0.0.1:`port`.
async fn connect_from(from: &str, port: u16) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let s = sock
        .connect(([127, 0, 0, 1], port).into())
        .await
        .unwrap()
        .into_std()
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// A child edge's accounting connections all come from its one address: listed in
/// `trusted_clients`, it is exempt from `max_connections_per_client` (100 by default)
/// while any other address is still capped, and both count in the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_clients_are_exempt_from_the_per_client_cap_only() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let metrics = Metrics::new();
    let (_edge, port) = edge_with(
        &origin,
        "max_connections = 400\ntrusted_clients = [\"127.0.0.2/32\"]\n",
        &metrics,
    )
    .await;
    let mut trusted = Vec::new();
    for _ in 0..150 {
        trusted.push(connect_from("127.0.0.2", port).await);
    }
    let mut untrusted = Vec::new();
    for _ in 0..101 {
        untrusted.push(connect_from("127.0.0.3", port).await);
    }
    let (trusted, untrusted) = tokio::task::spawn_blocking(move || {
        for (i, s) in trusted.iter_mut().enumerate() {
            let answer = options_answer(s);
            assert!(
                answer.starts_with("RTSP/1.0 200"),
                "trusted {i}: {answer:?}"
            );
        }
        // The refused one is told unasked (writing to it could meet a reset that
        // discards the answer); the others then answer an OPTIONS. Each connection is
        // admitted on a task of its own, so which one is refused, and when it is told,
        // is the edge's: every socket is read (without waiting) until one has been
        // told something, within a bound.
        let mut told: Vec<Option<String>> = vec![None; untrusted.len()];
        let until = Instant::now() + Duration::from_secs(10);
        while told.iter().all(Option::is_none) && Instant::now() < until {
            for (s, told) in untrusted.iter_mut().zip(&mut told) {
                s.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 64];
                *told = match s.read(&mut buf) {
                    Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    Err(_) => Some(String::new()),
                };
                s.set_nonblocking(false).unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (mut busy, mut served) = (0, 0);
        for (s, told) in untrusted.iter_mut().zip(told) {
            let told = told.unwrap_or_default();
            if told.starts_with("RTSP/1.0 503") {
                busy += 1;
            } else {
                assert!(told.is_empty(), "{told:?}");
                let answer = options_answer(s);
                assert!(answer.starts_with("RTSP/1.0 200"), "{answer:?}");
                served += 1;
            }
        }
        assert_eq!((served, busy), (100, 1));
        (trusted, untrusted)
    })
    .await
    .unwrap();
    assert_eq!(
        counter(
            &metrics,
            "mediagate_edge_connections_refused_total{limit=\"per_client\"}"
        ),
        1.0
    );
    // The trusted ones count in the total and the gauge like any other.
    assert_eq!(counter(&metrics, "mediagate_edge_connections"), 250.0);
    drop((trusted, untrusted));
}
