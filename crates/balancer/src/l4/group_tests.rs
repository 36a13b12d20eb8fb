use super::*;
use crate::l4::testutil::*;

#[tokio::test]
async fn a_clients_tcp_and_udp_flows_share_one_back_end_with_persistence() {
    let (tp, up) = free_ports().await;
    // Two back ends serving the group's ports on their own loopback addresses.
    for (ip, tag) in [("127.0.0.2", b"A:"), ("127.0.0.3", b"B:")] {
        tcp_echo(at(ip, tp), tag).await;
        udp_echo(at(ip, up), tag).await;
        udp_echo(at(ip, up + 1), tag).await;
    }
    // The picker's ports do not matter: flows keep the port they arrived on.
    let (inner, _) = round_robin(&[at("127.0.0.2", 9), at("127.0.0.3", 9)]);
    let mut cfg = PortGroupConfig::new(
        Some(at("127.0.0.1", tp)),
        "127.0.0.1".parse().unwrap(),
        vec![up..=up + 1],
    );
    cfg.persistence = Duration::from_secs(1);
    cfg.udp_config.idle_timeout = Duration::from_millis(100);
    let group = PortGroup::start(cfg, inner.clone(), Arc::default())
        .await
        .unwrap();
    let tcp = group.tcp_addr().unwrap();
    let (u1, u2) = (at("127.0.0.1", up), at("127.0.0.1", up + 1));

    // Client 1 (127.0.0.1): its TCP control connection picks, its UDP follows.
    let (c1_tcp, x) = tcp_from("127.0.0.1", tcp).await;
    for _ in 0..2 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(udp_tag(&c, u1).await, x);
        assert_eq!(udp_tag(&c, u2).await, x);
    }
    // Client 2 (127.0.0.4) got the other back end by round robin; its UDP follows it.
    let (c2_tcp, y) = tcp_from("127.0.0.4", tcp).await;
    assert_ne!(x, y);
    let c2 = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    assert_eq!(udp_tag(&c2, u2).await, y);
    assert_eq!(udp_tag(&c2, u1).await, y);
    let x_id = group.picker().pinned("127.0.0.1".parse().unwrap()).unwrap();

    // Every flow of client 1 ends: the pin outlives them for the persistence time.
    drop(c1_tcp);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        group.picker().pinned("127.0.0.1".parse().unwrap()),
        Some(x_id)
    );
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(
        udp_tag(&c, u1).await,
        x,
        "a new flow within the timeout keeps it"
    );
    drop(c);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(group.picker().pinned("127.0.0.1".parse().unwrap()), None);

    // Client 2 is still pinned by its TCP connection (its UDP flows idled out).
    let y_id = group.picker().pinned("127.0.0.4".parse().unwrap()).unwrap();
    assert_eq!(udp_tag(&c2, u2).await, y);
    // Its back end goes down: its UDP flows are dropped at once, the next one moves.
    inner.update(|v| {
        v.iter_mut()
            .filter(|b| b.id == y_id)
            .for_each(|b| b.up = false)
    });
    assert_eq!(group.remove_backend(y_id), 1);
    assert_eq!(udp_tag(&c2, u1).await, x);
    drop(c2_tcp);
    group.stop(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_group_that_cannot_bind_a_port_starts_nothing() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let (inner, _) = round_robin(&[at("127.0.0.2", 9)]);
    let cfg = PortGroupConfig::new(None, "127.0.0.1".parse().unwrap(), vec![port..=port]);
    assert!(PortGroup::start(cfg, inner.clone(), Arc::default())
        .await
        .is_err());
    let too_many = PortGroupConfig::new(None, "127.0.0.1".parse().unwrap(), vec![1..=5000]);
    let e = PortGroup::start(too_many, inner, Arc::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
