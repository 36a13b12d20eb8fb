//! The relay's eBPF fast path on loopback (`forward_io = "ebpf"`), IPv4 and IPv6: the
//! program must load here (the test script installs clang; these tests run as root)
//! and ::1 must be configured, so a machine where either fails fails these tests
//! instead of skipping them.

mod ebpf_kit;

use std::net::IpAddr;
use std::time::Duration;

use ebpf_kit::*;
use mediagate_ng::bencode::Value;
use mediagate_relay::engine::ForwardIo;
use tokio::net::UdpSocket;

fn range(slot: u16) -> (u16, u16) {
    let low = 52000 + slot * 100;
    (low, low + 99)
}

/// Waits for the engine's next reads of the kernel's counters (where nothing is to be
/// seen: a count that must stay zero has no sign to poll for).
async fn a_few_ticks() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

const V4: [u8; 4] = [127, 0, 0, 1];

fn v6() -> IpAddr {
    "::1".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latched_media_goes_through_the_kernel_both_ways_and_is_counted() {
    // The stranger has an address of its own.
    kernel_both_ways(V4.into(), 0, "127.0.0.2:0", 101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_latched_media_goes_through_the_kernel_both_ways_and_is_counted() {
    // ::1 is the only IPv6 loopback address: the stranger is another port on it, with
    // sequence numbers too far off to count as the caller's own move.
    kernel_both_ways(v6(), 5, "[::1]:0", 30_000).await;
}

/// Media between two phones on `ip` (a loopback address), and a stranger bound to
/// `stranger_at` flooding with the caller's SSRC from sequence number `stranger_seq`.
async fn kernel_both_ways(ip: IpAddr, slot: u16, stranger_at: &str, stranger_seq: u16) {
    let relay = start(config_on(range(slot), ForwardIo::Ebpf, ip)).await;
    assert!(relay
        .kernel_forwarding()
        .expect("the fast path is loaded")
        .contains(&"lo".to_owned()));
    let mut ng = Ng::of(&relay).await;
    let p = establish_on(&mut ng, "k-1", ip).await;
    let in_user_space = relay.forwarded_packets();
    assert_eq!(in_user_space, 2, "the two latching packets");

    p.send_both_ways(1..=100).await;
    p.assert_received_both_ways(1..=100).await;
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "no packet went through the relay's sockets"
    );

    // A stranger floods both ports: nothing of it is forwarded, nothing latches to it,
    // and the phones' media still flows.
    let stranger = UdpSocket::bind(stranger_at).await.unwrap();
    for seq in 0..50 {
        for to in [p.caller_relay, p.callee_relay] {
            stranger
                .send_to(&rtp(CALLER_SSRC, stranger_seq + seq), to)
                .await
                .unwrap();
        }
    }
    p.callee
        .send_to(&rtp(CALLEE_SSRC, 101), p.callee_relay)
        .await
        .unwrap();
    assert_eq!(recv_all(&p.callee, Duration::from_millis(200)).await, []);
    assert!(recv_all(&stranger, Duration::from_millis(100))
        .await
        .is_empty());
    assert_eq!(
        recv_all(&p.caller, Duration::from_millis(200)).await,
        [(rtp(CALLEE_SSRC, 101), p.caller_relay)],
        "media still reaches the latched caller"
    );

    let (_, kernel) = until_counts(&relay, |_, k| k >= 201).await;
    assert_eq!(kernel, 201);
    let q = query(&mut ng, "k-1").await;
    let totals = q.get("totals").and_then(|t| t.get("RTP")).unwrap();
    assert_eq!(totals.get("packets"), Some(&Value::Int(203)));
    assert_eq!(totals.get("bytes"), Some(&Value::Int(203 * 172)));

    delete(&mut ng, "k-1").await;
    let records = relay.recent_records();
    let stream = &records[0].streams[0];
    assert_eq!(stream.caller.packets, 101, "what the caller sent");
    assert_eq!(stream.callee.packets, 102, "what the callee sent");
    assert_eq!(stream.caller.bytes, 101 * 172);
    assert_eq!(stream.caller.refused, 50, "the stranger's");
    // Deleted: the kernel forwards nothing more.
    p.caller
        .send_to(&rtp(CALLER_SSRC, 200), p.caller_relay)
        .await
        .unwrap();
    assert!(recv_all(&p.callee, Duration::from_millis(200))
        .await
        .is_empty());
}

/// The caller's NAT mapping changes mid-call: its packets from the new port miss the
/// kernel entry, reach the relay, re-latch there (same SSRC, next sequence numbers,
/// after the quiet time) and the kernel forwards both ways again, to the new port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nat_change_re_latches_and_the_kernel_follows() {
    nat_change(V4.into(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_a_nat_change_re_latches_and_the_kernel_follows() {
    nat_change(v6(), 6).await;
}

async fn nat_change(ip: IpAddr, slot: u16) {
    let mut cfg = config_on(range(slot), ForwardIo::Ebpf, ip);
    cfg.options.latch.relatch_quiet = Duration::from_millis(300);
    let relay = start(cfg).await;
    let mut ng = Ng::of(&relay).await;
    let p = establish_on(&mut ng, "k-nat", ip).await;
    // Far enough ahead of the latching packet that only the kernel's record of the
    // last sequence number makes the re-latch evidence hold (the gap allowed is 100);
    // few enough to fit the callee's receive buffer.
    p.send_from_caller(1..=200).await;
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        200
    );
    let before = relay.forwarded_packets();
    assert_eq!(before, 2);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let moved = UdpSocket::bind((ip, 0)).await.unwrap();
    moved
        .send_to(&rtp(CALLER_SSRC, 201), p.caller_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await,
        [(rtp(CALLER_SSRC, 201), p.callee_relay)],
        "re-latched in user space"
    );
    assert_eq!(relay.forwarded_packets(), before + 1);
    // The callee's media now goes to the new port, and then both ways in the kernel.
    p.callee
        .send_to(&rtp(CALLEE_SSRC, 1), p.callee_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&moved, Duration::from_millis(300)).await,
        [(rtp(CALLEE_SSRC, 1), p.caller_relay)]
    );
    let user_space = relay.forwarded_packets();
    for seq in 2..=20 {
        moved
            .send_to(&rtp(CALLER_SSRC, 200 + seq), p.caller_relay)
            .await
            .unwrap();
        p.callee
            .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
            .await
            .unwrap();
    }
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        19
    );
    assert_eq!(recv_all(&moved, Duration::from_millis(300)).await.len(), 19);
    assert!(recv_all(&p.caller, Duration::from_millis(100))
        .await
        .is_empty());
    assert!(
        relay.forwarded_packets() <= user_space + 1,
        "back in the kernel (at most the packet that installed the entry went up)"
    );
}

/// A call whose media flows only in the kernel is not idle; once the media stops it
/// times out as in user space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_silent_in_the_kernel_path_times_out() {
    let mut cfg = config(range(2), ForwardIo::Ebpf);
    cfg.options.media_timeout = Duration::from_millis(600);
    let relay = start(cfg).await;
    let mut ng = Ng::of(&relay).await;
    let p = establish(&mut ng, "k-idle").await;
    // Three media timeouts' worth of media, all of it in the kernel.
    p.send_from_caller_paced(1..=90, Duration::from_millis(20))
        .await;
    assert_eq!(
        relay.forwarded_packets(),
        2,
        "the media went through the kernel"
    );
    assert_eq!(
        relay.active_calls(),
        1,
        "kernel-forwarded media keeps the call up"
    );
    // Within two media timeouts of the last packet (it was sent just now).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    while relay.active_calls() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(relay.active_calls(), 0, "the silent call timed out");
    let records = relay.recent_records();
    assert_eq!(records[0].reason, "media timeout");
    assert_eq!(records[0].streams[0].caller.packets, 91);
}

/// A re-INVITE moves the callee to a new endpoint: the caller's next packets go
/// there at once, not to the old one through a stale kernel entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_a_new_endpoint_moves_the_kernel_path_at_once() {
    let relay = start(config(range(4), ForwardIo::Ebpf)).await;
    let mut ng = Ng::of(&relay).await;
    let p = establish(&mut ng, "k-move").await;
    p.caller
        .send_to(&rtp(CALLER_SSRC, 1), p.caller_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(200)).await.len(),
        1
    );
    assert_eq!(relay.forwarded_packets(), 2, "in the kernel");

    let moved = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = ng
        .call(&d(&[
            ("command", s("answer")),
            ("call-id", s("k-move")),
            ("from-tag", s("ft")),
            ("to-tag", s("tt")),
            ("sdp", s(&sdp_for(moved.local_addr().unwrap()))),
            ("received-from", Value::List(vec![s("IP4"), s("127.0.0.1")])),
        ]))
        .await;
    assert_eq!(answer.get("result").and_then(Value::as_str), Some("ok"));
    p.send_from_caller(2..=6).await;
    assert_eq!(recv_all(&moved, Duration::from_millis(300)).await.len(), 5);
    assert!(recv_all(&p.callee, Duration::from_millis(100))
        .await
        .is_empty());
}

/// An IPv4 caller and an IPv6 callee (`address family` IP6): the relay bridges them in
/// user space, since the kernel path does not translate between IP versions; the media
/// arrives byte-exact both ways and the kernel forwards none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_ipv4_ipv6_call_stays_in_user_space() {
    let mut cfg = config(range(7), ForwardIo::Ebpf);
    cfg.media.push((v6(), v6()));
    let relay = start(cfg).await;
    let mut ng = Ng::of(&relay).await;
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = UdpSocket::bind("[::1]:0")
        .await
        .expect("this test needs ::1 on lo (`ip -6 addr show lo`)");
    let offer = ng
        .call(&d(&[
            ("command", s("offer")),
            ("call-id", s("k-bridge")),
            ("from-tag", s("ft")),
            ("sdp", s(&sdp_for(caller.local_addr().unwrap()))),
            ("received-from", Value::List(vec![s("IP4"), s("127.0.0.1")])),
            ("address family", s("IP6")),
        ]))
        .await;
    let callee_relay = std::net::SocketAddr::new(v6(), media_port(&offer));
    let answer = ng
        .call(&d(&[
            ("command", s("answer")),
            ("call-id", s("k-bridge")),
            ("from-tag", s("ft")),
            ("to-tag", s("tt")),
            ("sdp", s(&sdp_for(callee.local_addr().unwrap()))),
            ("received-from", Value::List(vec![s("IP6"), s("::1")])),
            ("address family", s("IP4")),
        ]))
        .await;
    let caller_relay = std::net::SocketAddr::new(V4.into(), media_port(&answer));
    for seq in 0..30 {
        caller
            .send_to(&rtp(CALLER_SSRC, seq), caller_relay)
            .await
            .unwrap();
        callee
            .send_to(&rtp(CALLEE_SSRC, seq), callee_relay)
            .await
            .unwrap();
    }
    let expect = |ssrc, from| expected(ssrc, 0..=29, from);
    // Every datagram byte-exact; the order is not checked here: on a loaded machine
    // the user-space path has delivered a few of this burst late, and whether any went
    // through the kernel is what the counters below say.
    let sorted = |mut v: Vec<(Vec<u8>, std::net::SocketAddr)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(recv_all(&callee, Duration::from_millis(300)).await),
        sorted(expect(CALLER_SSRC, callee_relay))
    );
    assert_eq!(
        sorted(recv_all(&caller, Duration::from_millis(300)).await),
        sorted(expect(CALLEE_SSRC, caller_relay))
    );
    a_few_ticks().await;
    assert_eq!(relay.forwarded_packets(), 60, "all of it in user space");
    assert_eq!(relay.kernel_forwarded_packets(), 0);
}

/// Env var that makes [`child_relay`] run (only as [`kill_9_leaves_nothing_forwarding`]'s
/// child process).
const CHILD_ENV: &str = "MEDIAGATE_EBPF_TEST_CHILD";

/// The relay of [`kill_9_leaves_nothing_forwarding`], in a process of its own: prints its
/// `ng` address and runs until killed.
#[test]
#[ignore = "run by kill_9_leaves_nothing_forwarding as its child process"]
fn child_relay() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "only run as the child of kill_9_leaves_nothing_forwarding"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let relay = start(config(range(3), ForwardIo::Ebpf)).await;
        println!("NG {}", relay.ng_udp_addrs()[0]);
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// The fast path's links and map belong to the relay's process: frozen (SIGSTOP), the
/// relay still forwards in the kernel; killed with SIGKILL, nothing forwards at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_nothing_forwarding() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_relay", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let ng_addr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("NG ").map(str::to_owned))
        .expect("the child relay's ng address")
        .parse()
        .unwrap();
    let mut ng = Ng::new(ng_addr).await;
    let p = establish(&mut ng, "k-kill").await;
    let pid = child.id().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    p.send_from_caller(1..=10).await;
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        10,
        "a frozen relay still forwards in the kernel"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    p.send_from_caller(11..=20).await;
    assert!(
        recv_all(&p.callee, Duration::from_millis(300))
            .await
            .is_empty(),
        "forwarded after the relay was killed"
    );
}
