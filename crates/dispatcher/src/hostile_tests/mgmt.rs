//! The management line protocol over a real TCP listener against clients that
//! misbehave: a trickle that never ends a line, a client that never reads its
//! answers, an over-long line, binary garbage. With two connection slots, a good
//! monitoring client is still served.

use std::sync::Arc;
use std::time::Duration;

use mediagate_relay::record::SessionRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{logs, wait_log, WAIT};
use crate::mgmt::{serve_tcp, MgmtOptions};
use crate::session_stats::{ClusterView, MediaProxySession, RelaySummary, SipInfo};

/// A cluster with many calls, so a `sessions` answer is megabytes.
struct Busy(Vec<MediaProxySession>);

impl ClusterView for Busy {
    fn summary(&self) -> crate::pool::PoolFuture<'_, Vec<RelaySummary>> {
        Box::pin(async { vec![RelaySummary::error("192.0.2.1")] })
    }
    fn sessions(&self) -> crate::pool::PoolFuture<'_, Vec<MediaProxySession>> {
        Box::pin(async { self.0.clone() })
    }
}

fn busy() -> Busy {
    let sip = SipInfo {
        from_uri: format!("sip:{}@example.com", "a".repeat(200)),
        to_uri: format!("sip:{}@example.com", "b".repeat(200)),
        ..SipInfo::default()
    };
    Busy(
        (0..5_000)
            .map(|i| {
                let record = SessionRecord {
                    call_id: format!("call-{i}-{}", "x".repeat(100)),
                    ..SessionRecord::default()
                };
                MediaProxySession::from_record(&record, &sip)
            })
            .collect(),
    )
}

/// Reads one answer line.
async fn line(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&out));
        out.push(byte[0]);
    }
    String::from_utf8(out).unwrap()
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hold_a_slot_without_a_request_or_without_reading_are_closed() {
    logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let options = MgmtOptions {
        idle_timeout: Duration::from_millis(500),
        max_connections: 2,
    };
    let view: Arc<dyn ClusterView> = Arc::new(busy());
    let server = tokio::spawn(serve_tcp(listener, view, options));

    // Slot 1: a client that asks for megabytes, again and again, and never reads.
    let mut deaf = TcpStream::connect(at).await.unwrap();
    deaf.write_all(&b"sessions\r\n".repeat(50)).await.unwrap();
    // Slot 2: a trickle of bytes that never ends a line, each within the timeout.
    let trickle = tokio::spawn(async move {
        let mut s = TcpStream::connect(at).await.unwrap();
        for _ in 0..40 {
            if s.write_all(b"s").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        closed(&mut s).await
    });
    // Both slots are taken: this one waits for one of them to be given back.
    let started = tokio::time::Instant::now();
    let mut good = TcpStream::connect(at).await.unwrap();
    good.write_all(b"summary\r\n").await.unwrap();
    let summary = crate::mgmt::answer(crate::mgmt::MgmtRequest::Summary, &busy())
        .await
        .unwrap();
    assert_eq!(line(&mut good).await.as_bytes(), summary);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(trickle.await.unwrap(), "the trickle is still open");
    wait_log(&["management client closed", "idle for 500ms"]).await;
    wait_log(&[
        "management client closed",
        "did not read its answer within 500ms",
    ])
    .await;
    assert!(closed(&mut deaf).await);

    // An over-long line closes; a garbage line is `error`, and the connection goes on.
    let mut long = TcpStream::connect(at).await.unwrap();
    let _ = long.write_all(&[b'x'; 1000]).await;
    assert!(closed(&mut long).await);
    wait_log(&["management client closed", "longer than 256 bytes"]).await;
    let mut good = TcpStream::connect(at).await.unwrap();
    good.write_all(b"\xff\xfe\x00\x01garbage\r\nversion\r\n")
        .await
        .unwrap();
    assert_eq!(line(&mut good).await, "error\r\n");
    assert_eq!(
        line(&mut good).await,
        format!("{}\r\n", env!("CARGO_PKG_VERSION"))
    );
    server.abort();
}
