//! Loops between edges are refused (issue 12, item 6): two edges whose routes point
//! at each other answer `508 Loop Detected` instead of forwarding forever, and a
//! route that names the edge's own listener is refused before any connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mediagate_edge::Edge;

fn config(route_to: Option<SocketAddr>) -> mediagate_config::EdgeConfig {
    let route = route_to.map_or_else(String::new, |a| {
        format!("[[edge.route]]\nadvertised = \"/cam\"\norigin = \"rtsp://{a}/cam\"\n")
    });
    let toml = format!("[edge]\nlisten = [\"127.0.0.1:0\"]\n{route}");
    mediagate_config::parse_config(&toml)
        .expect("test config is valid")
        .edge
}

/// The status line of the answer to a DESCRIBE of `url` sent to `edge`.
fn describe_status(edge: SocketAddr, url: &str) -> String {
    let mut s = TcpStream::connect(edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_routed_at_each_other_answer_loop_detected() {
    // One host name for both, as two instances on one machine have: the per-process
    // token in Via tells them apart.
    let a = Edge::new(&config(None), "same-host");
    let b = Edge::new(&config(None), "same-host");
    let a_addr = a.bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    let b_addr = b.bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    a.reload(&config(Some(b_addr)));
    b.reload(&config(Some(a_addr)));
    let status = tokio::task::spawn_blocking(move || {
        describe_status(a_addr, &format!("rtsp://{a_addr}/cam"))
    })
    .await
    .unwrap();
    assert!(status.starts_with("RTSP/1.0 508"), "{status}");
    assert!(status.contains("Loop Detected"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_the_edge_itself_is_refused_without_connecting() {
    let edge = Edge::new(&config(None), "self-route");
    let addr = edge.bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    edge.reload(&config(Some(addr)));
    let status =
        tokio::task::spawn_blocking(move || describe_status(addr, &format!("rtsp://{addr}/cam")))
            .await
            .unwrap();
    assert!(status.starts_with("RTSP/1.0 403"), "{status}");
    assert!(status.contains("own listener"), "{status}");
}
