//! The relay when the eBPF program cannot load (here forced with
//! `MEDIAGATE_RELAY_EBPF=off`, which every test of this file sets: a file of its own,
//! so the other tests' process keeps the fast path): `ebpf` refuses to start and says
//! why, `auto` forwards in user space.

mod ebpf_kit;

use std::time::Duration;

use ebpf_kit::*;
use mediagate_relay::engine::{ForwardIo, Relay, StartError};

fn range(slot: u16) -> (u16, u16) {
    let low = 53000 + slot * 100;
    (low, low + 99)
}

fn rule_out_the_fast_path() {
    std::env::set_var(mediagate_ebpf::DISABLE_ENV, "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_refuses_to_start_without_the_program() {
    rule_out_the_fast_path();
    let err = Relay::start(config(range(0), ForwardIo::Ebpf))
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Ebpf(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "forward_io = \"ebpf\": the eBPF fast path is disabled by MEDIAGATE_RELAY_EBPF=off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_forwards_in_user_space_without_the_program() {
    rule_out_the_fast_path();
    let relay = start(config(range(1), ForwardIo::Auto)).await;
    assert_eq!(relay.kernel_forwarding(), None);
    let mut ng = Ng::of(&relay).await;
    let p = establish(&mut ng, "u-1").await;
    p.send_from_caller(1..=20).await;
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        20
    );
    assert_eq!(relay.forwarded_packets(), 22, "every packet in user space");
    assert_eq!(relay.kernel_forwarded_packets(), 0);
}
