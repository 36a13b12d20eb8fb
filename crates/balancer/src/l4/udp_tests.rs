use std::sync::atomic::AtomicUsize;

use super::*;
use crate::l4::testutil::*;
use crate::proxy_v2;

async fn service(config: UdpConfig, picker: Arc<dyn Picker>) -> (ServiceHandle, UdpFlows) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    spawn(s, config, picker, Arc::default()).unwrap()
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn ask(c: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    c.send_to(payload, to).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), c.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(from, to, "answers come from the service's address");
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn replies_go_back_to_each_of_several_clients() {
    let a = udp_echo("127.0.0.1:0".parse().unwrap(), b"A:").await;
    let b = udp_echo("127.0.0.1:0".parse().unwrap(), b"B:").await;
    let (picker, _) = round_robin(&[a, b]);
    let (svc, flows) = service(UdpConfig::default(), picker).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(client().await);
    }
    // Interleaved: every client's datagrams, round after round, stay on its back end.
    let mut tags = vec![Vec::new(); clients.len()];
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            let payload = format!("client {i} round {round}");
            let got = ask(c, svc.local_addr(), payload.as_bytes()).await;
            assert_eq!(&got[2..], payload.as_bytes());
            tags[i].push(got[..2].to_vec());
        }
    }
    for t in &tags {
        assert!(t.iter().all(|x| x == &t[0]), "one back end per flow: {t:?}");
    }
    let a_count = tags.iter().filter(|t| t[0] == b"A:").count();
    assert_eq!(a_count, 3, "round robin spread the six flows");
    assert_eq!(flows.len(), 6);
    let st = svc.counters().snapshot();
    assert_eq!(st.accepted, 6);
    let a_stats = st.backends[&BackendId(1)];
    assert_eq!(
        (
            a_stats.flows,
            a_stats.packets_to_backend,
            a_stats.packets_to_client
        ),
        (3, 9, 9)
    );
}

#[tokio::test]
async fn an_idle_flow_is_forgotten_and_the_next_datagram_starts_a_new_one() {
    let a = udp_echo("127.0.0.1:0".parse().unwrap(), b"A:").await;
    let fixed = Arc::new(Fixed(BackendId(1), a, AtomicUsize::new(0)));
    let config = UdpConfig {
        idle_timeout: Duration::from_millis(200),
        ..UdpConfig::default()
    };
    let (svc, flows) = service(config, fixed.clone()).await;
    let c = client().await;
    ask(&c, svc.local_addr(), b"1").await;
    assert_eq!(flows.len(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(flows.len(), 0);
    assert_eq!(fixed.2.load(Relaxed), 1, "the picker heard the flow end");
    ask(&c, svc.local_addr(), b"2").await;
    let st = svc.counters().snapshot();
    assert_eq!((st.idle_closed, st.backends[&BackendId(1)].flows), (1, 2));
}

#[tokio::test]
async fn a_down_back_ends_flows_are_dropped_at_once_and_re_picked() {
    let a = udp_echo("127.0.0.1:0".parse().unwrap(), b"A:").await;
    let b = udp_echo("127.0.0.1:0".parse().unwrap(), b"B:").await;
    let (picker, _) = round_robin(&[a, b]);
    let (svc, flows) = service(UdpConfig::default(), picker.clone()).await;
    let c = client().await;
    assert_eq!(&ask(&c, svc.local_addr(), b"x").await[..2], b"A:");
    picker.update(|v| v[0].up = false);
    assert_eq!(flows.remove_backend(BackendId(1)), 1);
    assert_eq!(&ask(&c, svc.local_addr(), b"x").await[..2], b"B:");
    assert_eq!(svc.counters().snapshot().backends[&BackendId(1)].active, 0);
}

#[tokio::test]
async fn the_flow_table_is_bounded() {
    let a = udp_echo("127.0.0.1:0".parse().unwrap(), b"A:").await;
    let (picker, _) = round_robin(&[a]);
    let config = UdpConfig {
        max_flows: 2,
        ..UdpConfig::default()
    };
    let (svc, flows) = service(config, picker).await;
    let (c1, c2, c3) = (client().await, client().await, client().await);
    ask(&c1, svc.local_addr(), b"1").await;
    ask(&c2, svc.local_addr(), b"2").await;
    c3.send_to(b"3", svc.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_millis(300), c3.recv_from(&mut buf)).await;
    assert!(r.is_err(), "no answer for a flow the table has no room for");
    assert_eq!(flows.len(), 2);
    assert_eq!(svc.counters().snapshot().refused_full, 1);
}

#[tokio::test]
async fn proxy_v2_prefixes_the_first_or_every_datagram() {
    // A back end that answers with what it received, raw.
    for (mode, headers) in [
        (UdpProxyV2::FirstDatagram, [true, false, false]),
        (UdpProxyV2::EveryDatagram, [true, true, true]),
        (UdpProxyV2::Off, [false, false, false]),
    ] {
        let be = udp_echo("127.0.0.1:0".parse().unwrap(), b"").await;
        let (picker, _) = round_robin(&[be]);
        let config = UdpConfig {
            proxy_v2: mode,
            ..UdpConfig::default()
        };
        let (svc, _flows) = service(config, picker).await;
        let c = client().await;
        for want_header in headers {
            let got = ask(&c, svc.local_addr(), b"rtp").await;
            if want_header {
                let (h, at) = proxy_v2::decode_datagram(&got).unwrap();
                assert_eq!(h.client(), Some(c.local_addr().unwrap()), "{mode:?}");
                assert_eq!(
                    h.addresses,
                    proxy_v2::Addresses::Inet {
                        transport: Transport::Dgram,
                        source: c.local_addr().unwrap(),
                        destination: svc.local_addr(),
                    }
                );
                assert_eq!(&got[at..], b"rtp");
            } else {
                assert_eq!(got, b"rtp", "{mode:?}");
            }
        }
        assert_eq!(
            svc.counters().snapshot().backends[&BackendId(1)].bytes_to_backend,
            9,
            "PROXY bytes are not payload"
        );
    }
}

#[tokio::test]
async fn stop_ends_every_flow() {
    let a = udp_echo("127.0.0.1:0".parse().unwrap(), b"A:").await;
    let fixed = Arc::new(Fixed(BackendId(1), a, AtomicUsize::new(0)));
    let (svc, flows) = service(UdpConfig::default(), fixed.clone()).await;
    let c = client().await;
    ask(&c, svc.local_addr(), b"1").await;
    tokio::time::timeout(Duration::from_secs(3), svc.stop(Duration::from_millis(100)))
        .await
        .unwrap();
    assert!(flows.is_empty());
    assert_eq!(fixed.2.load(Relaxed), 1);
}

#[tokio::test]
async fn a_back_end_answering_port_unreachable_is_reported_once_per_flow() {
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (picker, failed) = round_robin(&[dead_addr]);
    let (svc, _flows) = service(UdpConfig::default(), picker).await;
    let c = client().await;
    for _ in 0..5 {
        c.send_to(b"x", svc.local_addr()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(*failed.lock().unwrap(), vec![BackendId(1)]);
    assert_eq!(
        svc.counters().snapshot().backends[&BackendId(1)].connect_failures,
        1
    );
}
