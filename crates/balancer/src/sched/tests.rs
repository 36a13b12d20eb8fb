//! The schedulers' promises, checked over many picks: weights respected, equal load
//! spread, ineligible back ends never chosen, bounded load never exceeded, source and
//! URL hashing stable across instances and under health changes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;

const SMALL_TABLE: u32 = 4099;

fn view(i: u32, weight: u32) -> BackendView {
    BackendView {
        id: BackendId(i),
        addr: SocketAddr::from(([10, 0, 0, i as u8], 8554)),
        weight,
        up: true,
        sessions: 0,
        bandwidth_bps: 0,
    }
}

fn req(n: u32) -> PickRequest<'static> {
    PickRequest {
        client_ip: IpAddr::V4(Ipv4Addr::from(0xc000_0200u32.wrapping_add(n))),
        url: None,
    }
}

fn all_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastSessions,
        Algorithm::WeightedLeastSessions,
        Algorithm::LeastBandwidth,
        Algorithm::SourceHash,
        Algorithm::UrlHash { load_factor: 1.25 },
    ]
}

/// Runs `picks` new sessions that never end, counting sessions on the views as a
/// router would.
fn run(sched: &mut Scheduler, backends: &mut [BackendView], picks: u32) -> HashMap<BackendId, u64> {
    let mut counts = HashMap::new();
    for n in 0..picks {
        let url = format!("rtsp://vip/vod/{}.mp4", n % 97);
        let r = PickRequest {
            client_ip: req(n).client_ip,
            url: Some(&url),
        };
        let id = sched
            .pick(&r, backends)
            .expect("an eligible back end exists");
        *counts.entry(id).or_insert(0) += 1;
        let b = backends.iter_mut().find(|b| b.id == id).unwrap();
        b.sessions += 1;
        b.bandwidth_bps += 1_000_000;
    }
    counts
}

#[test]
fn round_robin_takes_turns_over_eligible_only() {
    let mut s = Scheduler::new(Algorithm::RoundRobin);
    let mut backends = [view(1, 1), view(2, 1), view(3, 1)];
    backends[1].up = false;
    let picks: Vec<u32> = (0..4)
        .map(|n| s.pick(&req(n), &backends).unwrap().0)
        .collect();
    assert_eq!(picks, [1, 3, 1, 3]);
}

#[test]
fn smooth_weighted_round_robin_interleaves() {
    let mut s = Scheduler::new(Algorithm::WeightedRoundRobin);
    let backends = [view(1, 5), view(2, 1), view(3, 1)];
    let picks: Vec<u32> = (0..7)
        .map(|n| s.pick(&req(n), &backends).unwrap().0)
        .collect();
    // nginx's example sequence for weights 5, 1, 1.
    assert_eq!(picks, [1, 1, 2, 1, 3, 1, 1]);
}

#[test]
fn weighted_least_sessions_minimises_expected_delay() {
    let mut s = Scheduler::new(Algorithm::WeightedLeastSessions);
    let mut a = view(1, 1);
    let mut b = view(2, 3);
    a.sessions = 1; // (1+1)/1 = 2
    b.sessions = 4; // (4+1)/3 ≈ 1.67
    assert_eq!(s.pick(&req(0), &[a.clone(), b.clone()]), Some(BackendId(2)));
    b.sessions = 6; // 7/3 > 2
    assert_eq!(s.pick(&req(0), &[a, b]), Some(BackendId(1)));
}

#[test]
fn least_bandwidth_prefers_the_quietest_per_weight() {
    let mut s = Scheduler::new(Algorithm::LeastBandwidth);
    let mut a = view(1, 1);
    let mut b = view(2, 2);
    a.bandwidth_bps = 3_000_000;
    b.bandwidth_bps = 5_000_000; // 2.5 Mbit/s per weight unit
    a.sessions = 0;
    b.sessions = 10;
    assert_eq!(s.pick(&req(0), &[a, b]), Some(BackendId(2)));
}

#[test]
fn least_sessions_spreads_ties() {
    let mut s = Scheduler::new(Algorithm::LeastSessions);
    let mut backends = [view(1, 1), view(2, 1), view(3, 1)];
    let counts = run(&mut s, &mut backends, 300);
    for i in 1..=3 {
        assert_eq!(counts[&BackendId(i)], 100);
    }
}

#[test]
fn url_hash_sends_one_url_to_one_back_end_and_builds_once() {
    let mut s =
        Scheduler::new(Algorithm::UrlHash { load_factor: 2.0 }).with_table_size(SMALL_TABLE);
    let mut backends = [view(1, 1), view(2, 1), view(3, 1)];
    let url = "rtsp://vip/vod/film.mp4";
    let r = |n| PickRequest {
        client_ip: req(n).client_ip,
        url: Some(url),
    };
    let first = s.pick(&r(0), &backends).unwrap();
    for n in 1..50 {
        assert_eq!(s.pick(&r(n), &backends), Some(first));
    }
    // Health changes do not rebuild: the key falls through to the next preference.
    backends.iter_mut().find(|b| b.id == first).unwrap().up = false;
    let second = s.pick(&r(99), &backends).unwrap();
    assert_ne!(second, first);
    backends.iter_mut().find(|b| b.id == first).unwrap().up = true;
    assert_eq!(s.pick(&r(100), &backends), Some(first));
    assert_eq!(s.table_builds(), 1);
    // A weight change does.
    backends[0].weight = 2;
    s.pick(&r(101), &backends);
    assert_eq!(s.table_builds(), 2);
}

#[test]
fn no_eligible_back_end_no_pick() {
    for alg in all_algorithms() {
        let mut s = Scheduler::new(alg.clone()).with_table_size(SMALL_TABLE);
        let mut down = view(1, 1);
        down.up = false;
        let drained = view(2, 0);
        assert_eq!(s.pick(&req(0), &[down, drained]), None, "{alg:?}");
        assert_eq!(s.pick(&req(0), &[]), None, "{alg:?}");
    }
}

fn arb_backends() -> impl Strategy<Value = Vec<BackendView>> {
    prop::collection::vec((0u32..6, any::<bool>(), 0u64..50, 0u64..10_000_000), 1..9).prop_map(
        |v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (weight, up, sessions, bw))| BackendView {
                    id: BackendId(i as u32),
                    addr: SocketAddr::from(([10, 0, 1, i as u8], 554)),
                    weight,
                    up,
                    sessions,
                    bandwidth_bps: bw,
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the set, no algorithm picks a down or drained back end, and each picks
    /// one exactly when one is eligible.
    #[test]
    fn never_picks_an_ineligible_back_end(backends in arb_backends(), n in 0u32..1000) {
        let any_eligible = backends.iter().any(|b| b.eligible());
        for alg in all_algorithms() {
            let mut s = Scheduler::new(alg.clone()).with_table_size(SMALL_TABLE);
            for k in 0..5 {
                let url = format!("rtsp://vip/{n}/{k}");
                let r = PickRequest { client_ip: req(n + k).client_ip, url: Some(&url) };
                match s.pick(&r, &backends) {
                    Some(id) => {
                        let b = backends.iter().find(|b| b.id == id).unwrap();
                        prop_assert!(b.eligible(), "{:?} picked {:?}", alg, b);
                    }
                    None => prop_assert!(!any_eligible, "{:?} picked nothing", alg),
                }
            }
        }
    }

    /// Over many picks each weighted algorithm gives each back end its weight's share
    /// (exactly for wrr, within a session for the least-* ones).
    #[test]
    fn weights_are_respected(weights in prop::collection::vec(1u32..8, 2..6)) {
        let total_w: u32 = weights.iter().sum();
        let rounds = 40;
        for alg in [Algorithm::WeightedRoundRobin, Algorithm::WeightedLeastSessions, Algorithm::LeastBandwidth] {
            let mut s = Scheduler::new(alg.clone());
            let mut backends: Vec<BackendView> =
                weights.iter().enumerate().map(|(i, &w)| view(i as u32, w)).collect();
            let counts = run(&mut s, &mut backends, total_w * rounds);
            for (i, &w) in weights.iter().enumerate() {
                let got = counts.get(&BackendId(i as u32)).copied().unwrap_or(0) as i64;
                let want = i64::from(w * rounds);
                prop_assert!((got - want).abs() <= 1, "{:?}: back end {} got {} want {}", alg, i, got, want);
            }
        }
    }

    /// Smooth wrr has no bursts: every run of W picks (W the weight total) gives each
    /// back end exactly its weight, and at every point each back end's count stays
    /// within one pick of its exact share (a bursty a a a a a b c would be 1.4 off).
    #[test]
    fn weighted_round_robin_has_no_bursts(weights in prop::collection::vec(1u32..8, 2..6)) {
        let total: u32 = weights.iter().sum();
        let mut s = Scheduler::new(Algorithm::WeightedRoundRobin);
        let backends: Vec<BackendView> =
            weights.iter().enumerate().map(|(i, &w)| view(i as u32, w)).collect();
        let picks: Vec<usize> = (0..total * 3).map(|n| s.pick(&req(n), &backends).unwrap().0 as usize).collect();
        for window in picks.windows(total as usize) {
            for (i, &w) in weights.iter().enumerate() {
                prop_assert_eq!(window.iter().filter(|&&p| p == i).count(), w as usize);
            }
        }
        let mut counts = vec![0f64; weights.len()];
        for (k, &p) in picks.iter().enumerate() {
            counts[p] += 1.0;
            for (i, &w) in weights.iter().enumerate() {
                let share = (k + 1) as f64 * f64::from(w) / f64::from(total);
                prop_assert!((counts[i] - share).abs() < 1.0, "back end {} at pick {}: {} vs {}", i, k, counts[i], share);
            }
        }
    }

    /// Bounded load: after every pick, no back end holds more than its cap.
    #[test]
    fn url_hash_never_exceeds_the_bound(
        weights in prop::collection::vec(1u32..4, 2..7),
        factor in 1.0f64..2.0,
        hot in 1u32..5,
    ) {
        let mut s = Scheduler::new(Algorithm::UrlHash { load_factor: factor }).with_table_size(SMALL_TABLE);
        let mut backends: Vec<BackendView> =
            weights.iter().enumerate().map(|(i, &w)| view(i as u32, w)).collect();
        for n in 0..400u32 {
            // A few hot URLs: without the bound they would pile onto a few back ends.
            let url = format!("rtsp://vip/live/{}", n % hot);
            let r = PickRequest { client_ip: req(n).client_ip, url: Some(&url) };
            let id = s.pick(&r, &backends).unwrap();
            backends.iter_mut().find(|b| b.id == id).unwrap().sessions += 1;
            let total: u64 = backends.iter().map(|b| b.sessions).sum();
            let wsum: f64 = backends.iter().map(|b| f64::from(b.weight)).sum();
            for b in &backends {
                let cap = (factor * total as f64 * f64::from(b.weight) / wsum).ceil() as u64;
                prop_assert!(b.sessions <= cap, "{:?} over cap {} (total {})", b, cap, total);
            }
        }
    }

    /// Two balancers (fresh schedulers) with the same back ends pick the same back end
    /// for every URL and every client, for both hashing algorithms.
    #[test]
    fn hashing_agrees_across_instances(n in 2u32..9, keys in prop::collection::vec(any::<u32>(), 30)) {
        let backends: Vec<BackendView> = (0..n).map(|i| view(i, 1 + i % 3)).collect();
        for alg in [Algorithm::SourceHash, Algorithm::UrlHash { load_factor: 1.25 }] {
            let mut a = Scheduler::new(alg.clone()).with_table_size(SMALL_TABLE);
            let mut b = Scheduler::new(alg.clone()).with_table_size(SMALL_TABLE);
            for k in &keys {
                let url = format!("rtsp://vip/vod/{k}");
                let r = PickRequest { client_ip: req(*k).client_ip, url: Some(&url) };
                prop_assert_eq!(a.pick(&r, &backends), b.pick(&r, &backends));
            }
        }
    }

    /// Source hashing: a back end going down moves its own clients only, and they come
    /// back when it returns.
    #[test]
    fn source_hash_skips_ineligible_consistently(n in 2u32..9, down in 0u32..9) {
        let down = down % n;
        let mut backends: Vec<BackendView> = (0..n).map(|i| view(i, 1)).collect();
        let mut s = Scheduler::new(Algorithm::SourceHash);
        let before: Vec<BackendId> = (0..300).map(|c| s.pick(&req(c), &backends).unwrap()).collect();
        backends[down as usize].up = false;
        for c in 0..300u32 {
            let now = s.pick(&req(c), &backends).unwrap();
            if before[c as usize] != BackendId(down) {
                prop_assert_eq!(now, before[c as usize]);
            } else {
                prop_assert_ne!(now, BackendId(down));
            }
        }
        backends[down as usize].up = true;
        for c in 0..300u32 {
            prop_assert_eq!(s.pick(&req(c), &backends).unwrap(), before[c as usize]);
        }
    }
}
