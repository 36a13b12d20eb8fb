//! Health probes and the checker task against real peers: a gst-rtsp-server origin
//! from the test kit (OPTIONS and DESCRIBE pass, a wrong path's DESCRIBE 404 takes the
//! back end down after `fall` checks, a killed origin goes down), a local agent port
//! answering `drain` and `50%`, and a back end that answers garbage.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mediagate_balancer::health::{
    probe, query_agent, AgentAdmin, CheckConfig, CheckKind, ExpectStatus, HealthChecker,
    HealthStatus, ProbeError,
};
use mediagate_testkit::{Origin, OriginOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A probe's limit against a real peer: a loaded machine's gst-rtsp-server can take
/// seconds over a first DESCRIBE (it builds the media then).
const TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A small origin: one live mount, no on-demand file to generate, no auth.
fn origin() -> Origin {
    Origin::start(OriginOptions {
        vod_mount: None,
        auth_mount: None,
        ..OriginOptions::default()
    })
    .expect("gst-rtsp-server origin (see crates/testkit/src/origin.rs for the packages)")
}

fn describe(url: String) -> CheckKind {
    CheckKind::RtspDescribe {
        url,
        expect: ExpectStatus::default(),
    }
}

fn fast(addr: SocketAddr, kind: CheckKind) -> CheckConfig {
    CheckConfig {
        interval: Duration::from_millis(200),
        // Well above a loaded machine's answer time: a check that timed out twice
        // would take a good back end down and fail the "no transition" checks.
        timeout: Duration::from_secs(5),
        rise: 2,
        fall: 2,
        ..CheckConfig::new(addr, kind)
    }
}

/// Waits until `pred` holds for the published status, or fails after `within`.
async fn wait_for(
    rx: &mut watch::Receiver<HealthStatus>,
    within: Duration,
    what: &str,
    pred: impl Fn(&HealthStatus) -> bool,
) -> HealthStatus {
    let seen = match tokio::time::timeout(within, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(s)) => Some(*s),
        Ok(Err(_)) => panic!("checker task ended while waiting for {what}"),
        Err(_) => None,
    };
    seen.unwrap_or_else(|| panic!("{what} not seen within {within:?}; last {:?}", *rx.borrow()))
}

#[test]
fn rtsp_probes_pass_on_a_real_origin_and_a_wrong_path_is_404() {
    let origin = origin();
    runtime().block_on(async {
        probe(origin.addr(), &CheckKind::Tcp, TIMEOUT)
            .await
            .expect("tcp");
        let options = CheckKind::RtspOptions {
            url: origin.url("/live"),
            expect: ExpectStatus::default(),
        };
        probe(origin.addr(), &options, TIMEOUT)
            .await
            .expect("OPTIONS");
        probe(origin.addr(), &describe(origin.url("/live")), TIMEOUT)
            .await
            .expect("DESCRIBE /live");
        match probe(
            origin.addr(),
            &describe(origin.url("/no-such-mount")),
            TIMEOUT,
        )
        .await
        {
            Err(ProbeError::Status { code: 404, .. }) => {}
            other => panic!("DESCRIBE of a wrong path: {other:?}"),
        }
        // A check may expect a 404 (a back end whose health URL is a known miss).
        let expect_404 = CheckKind::RtspDescribe {
            url: origin.url("/no-such-mount"),
            expect: ExpectStatus(vec![404..=404]),
        };
        probe(origin.addr(), &expect_404, TIMEOUT)
            .await
            .expect("404 expected");
    });
    // The origin saw our checks as such.
    assert!(origin.request_count("DESCRIBE", "/live", 200) >= 1);
}

#[test]
fn a_wrong_path_goes_down_after_fall_checks_and_the_right_one_stays_up() {
    let origin = origin();
    runtime().block_on(async {
        let good = HealthChecker::spawn(fast(origin.addr(), describe(origin.url("/live"))));
        let bad = HealthChecker::spawn(fast(origin.addr(), describe(origin.url("/no-such-mount"))));
        let mut bad_rx = bad.subscribe();
        let started = Instant::now();
        let down = wait_for(
            &mut bad_rx,
            Duration::from_secs(10),
            "DESCRIBE 404 → down",
            |s| !s.up(),
        )
        .await;
        assert_eq!(down.transitions, 1);
        // fall = 2 checks 200 ms apart, the first at once: not before the second.
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        // Meanwhile the good path's checker saw no transition at all.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let s = good.status();
        assert!(s.up() && s.transitions == 0, "{s:?}");
        // A reload that changes the check keeps the back end up, and the new check runs.
        let good = good.respawn(fast(
            origin.addr(),
            CheckKind::RtspOptions {
                url: origin.url("/live"),
                expect: ExpectStatus::default(),
            },
        ));
        assert!(good.status().up());
        let mut rx = good.subscribe();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(rx.borrow_and_update().up());
    });
    let misses = origin
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "DESCRIBE"
                && r.status == 404
                && r.uri
                    .as_deref()
                    .is_some_and(|u| u.ends_with("/no-such-mount"))
        })
        .count();
    assert!(misses >= 2, "the origin answered {misses} DESCRIBE 404s");
    assert!(
        origin.request_count("OPTIONS", "/live", 200) >= 1,
        "the respawned check ran"
    );
}

#[test]
fn a_killed_origin_goes_down_and_its_port_refuses() {
    let origin = origin();
    let addr = origin.addr();
    let rt = runtime();
    rt.block_on(async {
        let checker = HealthChecker::spawn(CheckConfig {
            initially_up: false,
            ..fast(
                addr,
                CheckKind::RtspOptions {
                    url: origin.url("/live"),
                    expect: ExpectStatus::default(),
                },
            )
        });
        let mut rx = checker.subscribe();
        wait_for(&mut rx, Duration::from_secs(10), "rise to up", |s| s.up()).await;
        origin.peer().kill();
        let s = wait_for(
            &mut rx,
            Duration::from_secs(10),
            "down after kill -9",
            |s| !s.up(),
        )
        .await;
        assert_eq!(s.transitions, 2);
        match probe(addr, &CheckKind::Tcp, TIMEOUT).await {
            Err(ProbeError::Connect(_)) => {}
            other => panic!("tcp probe of a killed origin: {other:?}"),
        }
    });
}

/// An agent on a local port: answers whatever `reply` holds, one line per connection.
async fn agent(reply: Arc<Mutex<String>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let line = reply.lock().unwrap().clone();
            tokio::spawn(async move {
                let _ = conn.write_all(line.as_bytes()).await;
            });
        }
    });
    addr
}

#[test]
fn agent_port_drains_and_reweights_a_back_end() {
    let origin = origin();
    runtime().block_on(async {
        let reply = Arc::new(Mutex::new("up ready\n".to_string()));
        let agent_addr = agent(reply.clone()).await;
        let r = query_agent(agent_addr, TIMEOUT).await.unwrap();
        assert_eq!(r.admin, Some(AgentAdmin::Ready));

        let checker = HealthChecker::spawn(CheckConfig {
            agent: Some(agent_addr),
            ..fast(origin.addr(), CheckKind::Tcp)
        });
        let mut rx = checker.subscribe();
        *reply.lock().unwrap() = "drain\n".into();
        let s = wait_for(&mut rx, Duration::from_secs(15), "drain", |s| {
            s.agent_admin == Some(AgentAdmin::Drain)
        })
        .await;
        assert!(
            s.up(),
            "a drained back end stays up for its running sessions"
        );
        assert_eq!(s.effective_weight(10), 0);

        *reply.lock().unwrap() = "ready 50%\n".into();
        let s = wait_for(&mut rx, Duration::from_secs(15), "ready 50%", |s| {
            s.weight_percent == Some(50) && s.agent_admin == Some(AgentAdmin::Ready)
        })
        .await;
        assert_eq!(s.effective_weight(10), 5);

        *reply.lock().unwrap() = "down # maintenance window\n".into();
        wait_for(&mut rx, Duration::from_secs(15), "agent down", |s| !s.up()).await;
        assert!(
            rx.borrow().checks_up,
            "the checks still pass; the agent took it out"
        );

        // An agent that answers nonsense changes nothing.
        *reply.lock().unwrap() = "sideways\n".into();
        assert!(matches!(
            query_agent(agent_addr, TIMEOUT).await,
            Err(ProbeError::Agent(_))
        ));
    });
}

#[test]
fn a_back_end_answering_garbage_fails_the_rtsp_check() {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
                });
            }
        });
        let kind = CheckKind::RtspOptions {
            url: format!("rtsp://{addr}/live"),
            expect: ExpectStatus::default(),
        };
        match probe(addr, &kind, TIMEOUT).await {
            Err(ProbeError::Garbage(_)) => {}
            other => panic!("garbage answer: {other:?}"),
        }
        // A back end that accepts and never answers times out instead of hanging.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let kind = CheckKind::RtspOptions {
            url: format!("rtsp://{silent_addr}/live"),
            expect: ExpectStatus::default(),
        };
        match probe(silent_addr, &kind, Duration::from_millis(300)).await {
            Err(ProbeError::Timeout(_)) => {}
            other => panic!("silent back end: {other:?}"),
        }
        drop(silent);
    });
}
