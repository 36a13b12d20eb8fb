//! Session sync between two balancers on loopback: records exported from one table,
//! taken over by the other (relayed pairs at the same ports, towards the latched
//! client), the store's bounds, and the tasks end to end (snapshot, changes, the
//! state file promoting the standby).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_relay::engine::Expected;

use super::run::{start, FailoverConfig};
use super::wire::{Hello, Message, Remove, SessionRecord, Synced, VERSION};
use super::{adopt, export, AdoptError, Store};
use crate::backend::BackendId;
use crate::service::{RelayedPair, Service};

const BACKEND: &str = "127.0.0.1:9";

async fn service(ports: &str) -> Arc<Service> {
    let text = format!(
        "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"t\"\n\
         listen = [\"127.0.0.1:0\"]\nbackends = [\"127.0.0.1:1\", \"{BACKEND}\"]\n\
         media_mode = \"relay\"\nports = \"{ports}\"\n"
    );
    let config = mediagate_config::parse_config(&text).unwrap();
    Arc::new(
        Service::resolve(&config.balancer.service[0], &config.balancer)
            .await
            .unwrap(),
    )
}

/// A session on back end 1 with one relayed stream, as the RTSP engine makes it.
fn session(svc: &Service, server_id: &str, client: SocketAddr, server: SocketAddr) -> String {
    let now = Instant::now();
    let id = svc
        .table()
        .bind(
            BackendId(1),
            server_id,
            Duration::from_secs(60),
            now,
            || format!("lb-{server_id}"),
        )
        .unwrap();
    let relay = svc.relay.as_ref().unwrap();
    let pair = relay.open("127.0.0.1".parse().unwrap(), now).unwrap();
    let expected = [
        Expected {
            endpoint: Some(server),
            ip: Some(server.ip()),
        },
        Expected {
            // What the client declared; it really sends from elsewhere (NAT).
            endpoint: Some("127.0.0.1:7".parse().unwrap()),
            ip: Some(client.ip()),
        },
    ];
    relay.start_pair(pair, expected, now);
    svc.attach_pair(
        &id,
        RelayedPair {
            backend: BackendId(1),
            pair,
            expected,
        },
    );
    id
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, f)| (buf[..n].to_vec(), f))
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3]);
    p
}

/// Waits until both UDP ports of each side can be bound again (the closed pair's
/// sockets are dropped by the forwarding thread, a moment later).
fn wait_free(sides: [SocketAddr; 2]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let free = sides.iter().all(|s| {
            UdpSocket::bind(s).is_ok()
                && UdpSocket::bind(SocketAddr::new(s.ip(), s.port() + 1)).is_ok()
        });
        if free {
            return;
        }
        assert!(Instant::now() < deadline, "ports {sides:?} stay bound");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_session_routes_to_its_back_end_and_its_media_resumes_on_the_same_ports() {
    let active = service("47400-47499").await;
    let server = socket();
    let client = socket();
    let id = session(
        &active,
        "srv-1",
        client.local_addr().unwrap(),
        server.local_addr().unwrap(),
    );
    // The client punches through its NAT from its real port: the active latches it.
    let relay = active.relay.as_ref().unwrap();
    let pair = active.relayed_pairs()[&id][0].pair;
    client.send_to(&rtp(1), pair.sides[1]).unwrap();
    recv(&server).expect("the active relays the client's packet");
    let records = export(&active);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.id.as_str(), r.backend, r.server_id.as_str()),
        (id.as_str(), 1, "srv-1")
    );
    assert_eq!(r.backend_addr.to_string(), BACKEND);
    assert_eq!(r.client, Some(client.local_addr().unwrap().ip()));
    assert_eq!(r.pairs[0].sides, pair.sides);
    assert_eq!(r.pairs[0].latched[1], Some(client.local_addr().unwrap()));
    assert_eq!(relay.latched(pair)[1], Some(client.local_addr().unwrap()));

    // The active dies: its ports are free, the standby takes the session over.
    active.end_session(&id);
    drop(active);
    wait_free(pair.sides);
    let standby = service("47400-47499").await;
    assert_eq!(adopt(&standby, r, Instant::now()), Ok(0));
    let routed = standby
        .table()
        .route(&id, Instant::now())
        .map(|e| (e.backend, e.server_id.clone()));
    assert_eq!(routed, Some((BackendId(1), "srv-1".to_owned())));
    // The back end's media reaches the client's latched port at once, from the same
    // balancer port as before.
    server.send_to(&rtp(2), pair.sides[0]).unwrap();
    let (data, from) = recv(&client).expect("media resumes towards the latched client");
    assert_eq!((data, from), (rtp(2), pair.sides[1]));
    assert_eq!(
        adopt(&standby, r, Instant::now()),
        Err(AdoptError::Refused),
        "taken twice"
    );
    // TEARDOWN on the new active closes the resumed pair.
    standby.end_session(&id);
    assert!(standby.relayed_pairs().is_empty());
}

#[tokio::test]
async fn a_session_of_another_back_end_is_refused() {
    let standby = service("47500-47599").await;
    let record = SessionRecord {
        service: "t".to_owned(),
        id: "x".to_owned(),
        backend: 1,
        backend_addr: "127.0.0.1:10".parse().unwrap(),
        server_id: "s".to_owned(),
        timeout_ms: 1000,
        streams: 1,
        client: None,
        pairs: Vec::new(),
    };
    assert!(matches!(
        adopt(&standby, &record, Instant::now()),
        Err(AdoptError::OtherBackend(..))
    ));
    assert_eq!(standby.table().len(), 0);
}

fn record(id: &str) -> SessionRecord {
    SessionRecord {
        service: "t".to_owned(),
        id: id.to_owned(),
        backend: 0,
        backend_addr: "127.0.0.1:1".parse().unwrap(),
        server_id: id.to_owned(),
        timeout_ms: 1000,
        streams: 1,
        client: None,
        pairs: Vec::new(),
    }
}

#[test]
fn the_store_is_bounded_and_a_new_connection_starts_afresh() {
    let mut store = Store::new(2);
    let hello = || {
        Message::Hello(Hello {
            version: VERSION,
            node: "a".to_owned(),
        })
    };
    store.apply(hello());
    for id in ["a", "b", "c"] {
        store.apply(Message::Add(record(id)));
    }
    assert_eq!((store.len(), store.dropped), (2, 1));
    // A change of a held session is no new one.
    store.apply(Message::Add(record("a")));
    assert_eq!((store.len(), store.dropped), (2, 1));
    store.apply(Message::Synced(Synced {}));
    assert!(store.synced);
    store.apply(Message::Remove(Remove {
        service: "t".to_owned(),
        id: "a".to_owned(),
    }));
    assert_eq!(store.len(), 1);
    store.apply(hello());
    assert_eq!(store.len(), 0);
    assert!(!store.synced);
    store.apply(Message::Add(record("d")));
    let taken = store.take();
    assert_eq!(taken.len(), 1);
    assert_eq!(store.len(), 0);
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_follows_the_active_s_table_and_takes_it_over_when_made_master() {
    let dir = std::env::temp_dir().join(format!("mediagate-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    std::fs::write(&state, "BACKUP\n").unwrap();
    let sync_port = mediagate_testkit::ports::free_tcp_port().unwrap();
    let sync_addr: SocketAddr = format!("127.0.0.1:{sync_port}").parse().unwrap();

    let standby_svc = service("47600-47649").await;
    let (standby, standby_tasks) = start(
        FailoverConfig {
            listen: Some(sync_addr),
            peer: Some("127.0.0.1:1".parse().unwrap()),
            state_file: Some(state.clone()),
            track_file: Some(dir.join("track")),
            max_sessions: 100,
        },
        vec![Arc::clone(&standby_svc)].into(),
    )
    .await
    .unwrap();
    let active_svc = service("47650-47699").await;
    let (active, active_tasks) = start(
        FailoverConfig {
            peer: Some(sync_addr),
            max_sessions: 100,
            ..FailoverConfig::default()
        },
        vec![Arc::clone(&active_svc)].into(),
    )
    .await
    .unwrap();
    let server = socket();
    let client = socket();
    let first = session(
        &active_svc,
        "one",
        client.local_addr().unwrap(),
        server.local_addr().unwrap(),
    );
    let standby_sessions = || standby.json()["standby_sessions"].as_u64();
    wait_for("the snapshot", || {
        standby_sessions() == Some(1) && standby.json()["standby_synced"] == true
    })
    .await;
    assert_eq!(standby.json()["active"], false);
    // The state both sides show: keepalived's word and the sync connections.
    let shown = standby.json();
    assert_eq!(shown["state"], "standby");
    assert_eq!(shown["vrrp_state"], "BACKUP");
    assert_eq!(shown["sync_listen"], sync_addr.to_string());
    assert!(shown["sync_from"]
        .as_str()
        .is_some_and(|f| f.starts_with("127.0.0.1:")));
    assert_eq!(
        shown["sync_peer_connected"], false,
        "a standby streams nothing"
    );
    wait_for("the active's connected flag", || {
        active.json()["sync_peer_connected"] == true
    })
    .await;
    assert_eq!(active.json()["state"], "active");
    assert_eq!(active.json()["vrrp_state"], serde_json::Value::Null);
    let second = session(
        &active_svc,
        "two",
        client.local_addr().unwrap(),
        server.local_addr().unwrap(),
    );
    wait_for("an added session", || standby_sessions() == Some(2)).await;
    active_svc.end_session(&first);
    wait_for("a removed session", || standby_sessions() == Some(1)).await;
    wait_for("the track file", || {
        std::fs::read_to_string(dir.join("track")).is_ok_and(|s| s == "0\n")
    })
    .await;
    // Nothing is taken over while the standby is a VRRP backup.
    assert_eq!(standby_svc.table().len(), 0);

    // keepalived makes the standby master; the active is gone.
    for t in active_tasks {
        t.abort();
    }
    wait_for("the peer's stream to end", || {
        standby.json()["sync_from"].is_null()
    })
    .await;
    std::fs::write(&state, "MASTER\n").unwrap();
    wait_for("the takeover", || standby_svc.table().len() == 1).await;
    assert_eq!(standby.json()["active"], true);
    assert_eq!(standby.json()["state"], "active");
    assert_eq!(standby.json()["vrrp_state"], "MASTER");
    assert_eq!(standby.json()["taken_over_total"], 1);
    assert!(standby_svc.table().route(&second, Instant::now()).is_some());
    // Its pair is on the active's ports, outside this standby's range (both run on
    // one host here), so only routing resumed; the first test covers the pairs.
    for t in standby_tasks {
        t.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_standby_gets_the_snapshot_without_waiting_for_a_change() {
    let sync_port = mediagate_testkit::ports::free_tcp_port().unwrap();
    let sync_addr: SocketAddr = format!("127.0.0.1:{sync_port}").parse().unwrap();
    let standby = |svc: Arc<Service>| {
        start(
            FailoverConfig {
                listen: Some(sync_addr),
                max_sessions: 100,
                ..FailoverConfig::default()
            },
            vec![svc].into(),
        )
    };
    let standby_svc = service("47700-47749").await;
    let (first, first_tasks) = standby(Arc::clone(&standby_svc)).await.unwrap();
    let active_svc = service("47750-47799").await;
    let (_active, _active_tasks) = start(
        FailoverConfig {
            peer: Some(sync_addr),
            max_sessions: 100,
            ..FailoverConfig::default()
        },
        vec![Arc::clone(&active_svc)].into(),
    )
    .await
    .unwrap();
    let (server, client) = (socket(), socket());
    session(
        &active_svc,
        "one",
        client.local_addr().unwrap(),
        server.local_addr().unwrap(),
    );
    wait_for("the first standby's snapshot", || {
        first.json()["standby_sessions"] == 1
    })
    .await;
    // The standby restarts: its listener and connection go, a new one comes up.
    for t in first_tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, _second_tasks) = standby(standby_svc).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.json()["standby_sessions"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the restarted standby never got the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(second.json()["standby_synced"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_track_file_says_1_when_a_service_has_no_back_end_up() {
    let text = "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\n\
                name = \"t\"\nlisten = [\"127.0.0.1:0\"]\nbackends = [\"127.0.0.1:1\"]\n\
                media_mode = \"direct\"\n[balancer.service.health]\ncheck = \"tcp\"\n\
                interval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1\n";
    let config = mediagate_config::parse_config(text).unwrap();
    let svc = Arc::new(
        Service::resolve(&config.balancer.service[0], &config.balancer)
            .await
            .unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("mediagate-track-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let track = dir.join("track");
    let (_failover, tasks) = start(
        FailoverConfig {
            track_file: Some(track.clone()),
            max_sessions: 1,
            ..FailoverConfig::default()
        },
        vec![svc].into(),
    )
    .await
    .unwrap();
    wait_for("the track file says 1", || {
        std::fs::read_to_string(&track).is_ok_and(|s| s == "1\n")
    })
    .await;
    for t in tasks {
        t.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
