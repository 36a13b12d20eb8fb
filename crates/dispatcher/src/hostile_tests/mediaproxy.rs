//! The MediaProxy UNIX socket against clients that misbehave.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::{cluster, wait_log, TempDir, WAIT};
use crate::front_mediaproxy::{bind, serve_with, FrontLimits};
use crate::role::Dispatcher;

/// Serves the dispatcher's router on a socket of our own with `limits`.
fn front(d: &Dispatcher, path: &Path, limits: FrontLimits) -> watch::Sender<bool> {
    let listener = bind(path).unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve_with(
        Arc::clone(d.router()),
        listener,
        stopped,
        limits,
    ));
    stop
}

/// Reads one reply line, or `None` when the dispatcher closed the connection first.
async fn line(stream: &mut UnixStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("a reply or a close in time")
            .unwrap_or(0);
        if n == 0 {
            assert!(line.is_empty(), "closed mid-line after {line:?}");
            return None;
        }
        line.push(byte[0]);
    }
    Some(String::from_utf8(line).unwrap())
}

async fn ask(stream: &mut UnixStream, text: &[u8]) -> Option<String> {
    stream.write_all(text).await.unwrap();
    line(stream).await
}

fn update(call_id: &str, media: &str) -> String {
    format!(
        "update\r\ntype: request\r\ncall_id: {call_id}\r\nfrom_tag: ft\r\nmedia: {media}\r\n\r\n"
    )
}

/// An `update` the cluster places: the relay's address and one port.
async fn placed(stream: &mut UnixStream, call_id: &str) {
    let reply = ask(
        stream,
        update(call_id, "audio:127.0.0.1:6000:sendrecv").as_bytes(),
    )
    .await
    .expect("a reply");
    let fields: Vec<&str> = reply.split_whitespace().collect();
    assert_eq!(fields.len(), 2, "{reply:?}");
    assert!(fields[0].starts_with("127.0.0."), "{reply:?}");
    assert!(fields[1].parse::<u16>().unwrap() > 0, "{reply:?}");
}

/// True when the dispatcher closed `stream` (EOF, or a reset).
async fn closed(stream: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(WAIT, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn streams(n: usize) -> String {
    (0..n)
        .map(|i| format!("audio:127.0.0.1:{}:sendrecv", 6000 + 2 * (i % 20_000)))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_or_a_close_and_a_good_client_keeps_being_served() {
    let dir = TempDir::new("mp-bad");
    let d = cluster(&dir, 47_300).await;
    let path = dir.0.join("mp.sock");
    let _stop = front(&d, &path, FrontLimits::default());
    let mut good = UnixStream::connect(&path).await.unwrap();
    placed(&mut good, "good-1").await;

    // Faults the module can recover from: `error`, and the same connection goes on.
    let no_call_id =
        b"update\r\ntype: request\r\nfrom_tag: ft\r\nmedia: audio:127.0.0.1:6000:sendrecv\r\n\r\n";
    let mut headers = String::from("remove\r\ncall_id: h\r\n");
    for i in 0..40 {
        headers.push_str(&format!("x-header-{i}: {i}\r\n"));
    }
    headers.push_str("\r\n");
    let too_many_streams = update("s", &streams(65));
    let binary = b"\xff\xfe\x00garbage\x80\x81\r\n\x01\x02\r\n\r\n";
    let cases: [(&[u8], &str); 4] = [
        (no_call_id, "no call_id"),
        (headers.as_bytes(), "too many header lines"),
        (too_many_streams.as_bytes(), "too many media streams"),
        (binary, "not UTF-8 text"),
    ];
    for (request, says) in cases {
        let mut client = UnixStream::connect(&path).await.unwrap();
        assert_eq!(
            ask(&mut client, request).await.as_deref(),
            Some("error\r\n"),
            "{says}"
        );
        wait_log(&["MediaProxy front door", says]).await;
        placed(&mut client, &format!("after-{says}")).await;
        placed(&mut good, &format!("good-{says}")).await;
    }

    // Faults with no blank line in reach: `error`, then the connection closes (the
    // module reconnects).
    let long_line = format!(
        "update\r\ntype: request\r\ncall_id: {}\r\n\r\n",
        "x".repeat(100_000)
    );
    let ten_thousand = update("many", &streams(10_000));
    let mut garbage = vec![0u8; 200_000];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80;
    }
    let cases: [(&[u8], &str); 3] = [
        (long_line.as_bytes(), "line too long"),
        (ten_thousand.as_bytes(), "line too long"),
        (&garbage, "line too long"),
    ];
    for (request, says) in cases {
        let mut client = UnixStream::connect(&path).await.unwrap();
        // The dispatcher may close before taking everything; a broken pipe is fine.
        let _ = client.write_all(request).await;
        assert_eq!(
            line(&mut client).await.as_deref(),
            Some("error\r\n"),
            "{says}"
        );
        assert!(closed(&mut client).await, "{says}: connection still open");
        wait_log(&["MediaProxy front door", says]).await;
        placed(&mut good, &format!("good-{}", request.len())).await;
    }

    // Nothing the cluster held was lost: every good call is still placed.
    let calls: Vec<String> = d.router().calls().into_iter().map(|(c, _)| c).collect();
    for call in [
        "good-1",
        "good-no call_id",
        "after-not UTF-8 text",
        "good-200000",
    ] {
        assert!(
            calls.iter().any(|c| c == call),
            "{call} missing from {calls:?}"
        );
    }
    assert!(!calls.iter().any(|c| c == "many" || c == "s"), "{calls:?}");
    assert_eq!(
        ask(
            &mut good,
            b"remove\r\ncall_id: good-1\r\nfrom_tag: ft\r\n\r\n"
        )
        .await
        .as_deref(),
        Some("removed\r\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_is_closed_but_an_idle_connection_is_not() {
    let dir = TempDir::new("mp-stall");
    let d = cluster(&dir, 47_500).await;
    let path = dir.0.join("mp.sock");
    let stall = Duration::from_millis(400);
    let _stop = front(
        &d,
        &path,
        FrontLimits {
            stall,
            ..FrontLimits::default()
        },
    );
    let mut idle = UnixStream::connect(&path).await.unwrap();
    let mut half = UnixStream::connect(&path).await.unwrap();
    half.write_all(b"update\r\ntype: request\r\ncall_id: half\r\n")
        .await
        .unwrap();
    // A trickle of bytes does not keep a request alive past its time.
    let mut trickle = UnixStream::connect(&path).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut other = UnixStream::connect(&path).await.unwrap();
    placed(&mut other, "while-stalled").await;
    for b in b"update\r\ntype: request\r\n" {
        if trickle.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed(&mut half).await, "the half request is still open");
    assert!(closed(&mut trickle).await, "the trickle is still open");
    assert!(started.elapsed() < stall * 4, "{:?}", started.elapsed());
    wait_log(&["MediaProxy front door", "stayed incomplete for 400 ms"]).await;

    // The connection that sat idle all along is still served.
    tokio::time::sleep(stall).await;
    placed(&mut idle, "after-idle").await;
    placed(&mut other, "after-stall").await;
    assert!(!d.router().calls().iter().any(|(c, _)| c == "half"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_are_closed_and_a_freed_slot_is_served() {
    let dir = TempDir::new("mp-cap");
    let d = cluster(&dir, 47_700).await;
    let path = dir.0.join("mp.sock");
    let _stop = front(
        &d,
        &path,
        FrontLimits {
            max_connections: 8,
            ..FrontLimits::default()
        },
    );
    let mut first = UnixStream::connect(&path).await.unwrap();
    placed(&mut first, "first").await;
    let mut idle = Vec::new();
    for _ in 0..7 {
        idle.push(UnixStream::connect(&path).await.unwrap());
    }
    let mut refused = UnixStream::connect(&path).await.unwrap();
    assert!(closed(&mut refused).await, "a ninth connection was kept");
    wait_log(&["MediaProxy front door", "8 connections already open"]).await;
    // The connections already open keep working.
    placed(&mut first, "first-again").await;
    placed(&mut idle[3], "idle-3").await;

    drop(idle.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut late = UnixStream::connect(&path).await.unwrap();
        // Served if the freed slot was seen; closed (and retried) if not yet.
        let _ = late
            .write_all(update("late", "audio:127.0.0.1:6000:sendrecv").as_bytes())
            .await;
        if let Some(reply) = line(&mut late).await {
            assert!(reply.starts_with("127.0.0."), "{reply:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_replies_is_closed() {
    let dir = TempDir::new("mp-deaf");
    let d = cluster(&dir, 48_300).await;
    let path = dir.0.join("mp.sock");
    let stall = Duration::from_millis(400);
    let _stop = front(
        &d,
        &path,
        FrontLimits {
            stall,
            ..FrontLimits::default()
        },
    );
    // Requests answered `error` at once, far more replies than the socket buffers.
    let deaf = UnixStream::connect(&path).await.unwrap();
    let (mut read, mut write) = deaf.into_split();
    let requests = b"remove\r\ncall_id: nobody\r\n\r\n".repeat(200_000);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&requests).await;
        write
    });
    tokio::time::sleep(stall * 3).await;
    wait_log(&[
        "MediaProxy front door",
        "has not read its replies for 400 ms",
    ])
    .await;
    // What was sent before the close can still be read; then the end.
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, read.read_to_end(&mut sink))
        .await
        .expect("the connection ends")
        .ok();
    assert!(sink.len() < 200_000 * 7, "every reply was written");
    drop(writer);
    let mut other = UnixStream::connect(&path).await.unwrap();
    placed(&mut other, "after-deaf").await;
}
