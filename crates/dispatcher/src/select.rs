//! Which relays a new call may go to, in the order to try them.
//!
//! Policy (MediaProxy's, with its random order replaced by load): the relay the SIP
//! proxy prefers (`media_relay`, matched against each relay's advertised and local
//! addresses) goes first when it takes new calls; then every other active relay, least
//! loaded first: fewest calls, then fewest bits per second, then the lower id so the
//! order is stable. Relays that are halting or timed out are never offered a new call.
//! A call already placed is not chosen again: it sticks to its relay (the session map).
//!
//! A linked relay reports its calls every few seconds; in a burst of short calls that
//! figure is stale at once, and choosing by it alone sent 75-85% of a burst to one
//! relay. [`LiveLoad`] corrects it with what the dispatcher placed and ended on each
//! relay since that report: its session map's count then and now.
//!
//! What it does not: talk to relays or hold the calls; it sorts the pool's picture and
//! remembers, per relay, its own count when each report was first seen.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::pool::{RelayId, RelayState, RelayView};

/// Per relay: the report last seen and the dispatcher's own count of calls on the
/// relay when it was first seen.
#[derive(Debug, Default)]
pub(crate) struct LiveLoad {
    seen: HashMap<RelayId, (u64, u64)>,
}

impl LiveLoad {
    /// Turns each reporting relay's `sessions` into an estimate of now: the report's
    /// figure plus the calls this dispatcher holds on it now minus those it held when
    /// the report was first seen (so placements and ends since count, and calls of
    /// other dispatchers sharing the relay still count as reported). `held` gives the
    /// dispatcher's count by relay name. Relays whose figure is always current are
    /// left alone.
    ///
    /// A report is measured from when this first sees it, not when the relay took its
    /// count; called at every placement, the gap is one placement's round trip.
    pub(crate) fn correct(&mut self, relays: &mut [RelayView], held: impl Fn(&str) -> u64) {
        self.seen
            .retain(|id, _| relays.iter().any(|r| r.id == *id && r.report.is_some()));
        for relay in relays.iter_mut() {
            let Some(report) = relay.report else { continue };
            let now = held(&relay.name);
            let then = match self.seen.get(&relay.id) {
                Some(&(seen, then)) if seen == report => then,
                _ => {
                    self.seen.insert(relay.id, (report, now));
                    now
                }
            };
            relay.sessions = (relay.sessions + now).saturating_sub(then);
        }
    }
}

/// The relays to try for a new call, best first.
pub(crate) fn candidates(relays: &[RelayView], preferred: Option<IpAddr>) -> Vec<&RelayView> {
    let mut active: Vec<&RelayView> = relays
        .iter()
        .filter(|r| r.state == RelayState::Active)
        .collect();
    active.sort_by_key(|r| {
        let wanted = preferred.is_some_and(|ip| r.addresses.contains(&ip));
        (!wanted, r.sessions, r.bps, r.id)
    });
    active
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::RelayId;

    fn relay(id: u64, ip: &str, state: RelayState, sessions: u64, bps: u64) -> RelayView {
        RelayView {
            id: RelayId(id),
            name: format!("r{id}"),
            addresses: vec![ip.parse().unwrap()],
            state,
            sessions,
            bps,
            report: None,
        }
    }

    /// Two linked relays as their last status reports left them.
    fn linked(report: u64, sessions: [u64; 2]) -> Vec<RelayView> {
        (0..2)
            .map(|i| RelayView {
                report: Some(report),
                ..relay(
                    i + 1,
                    "192.0.2.1",
                    RelayState::Active,
                    sessions[i as usize],
                    0,
                )
            })
            .collect()
    }

    /// Places `n` calls one after another, each on the first candidate, as the router
    /// does; `held` is the dispatcher's own count by relay.
    fn burst(live: &mut LiveLoad, pool: &[RelayView], held: &mut HashMap<String, u64>, n: usize) {
        for _ in 0..n {
            let mut relays = pool.to_vec();
            live.correct(&mut relays, |name| held.get(name).copied().unwrap_or(0));
            let first = candidates(&relays, None)[0].name.clone();
            *held.entry(first).or_default() += 1;
        }
    }

    #[test]
    fn a_burst_between_two_reports_spreads_evenly() {
        let mut live = LiveLoad::default();
        let mut held = HashMap::new();
        // Both reported idle; without the correction every call went to r1.
        burst(&mut live, &linked(1, [0, 0]), &mut held, 100);
        assert_eq!((held["r1"], held["r2"]), (50, 50));
        // The next report counts them; the burst goes on evenly from there.
        burst(&mut live, &linked(2, [50, 50]), &mut held, 100);
        assert_eq!((held["r1"], held["r2"]), (100, 100));
        // Short calls: 60 of r1's end before the next report, so r1 takes the next 60.
        *held.get_mut("r1").unwrap() -= 60;
        burst(&mut live, &linked(2, [50, 50]), &mut held, 60);
        assert_eq!((held["r1"], held["r2"]), (100, 100));
    }

    #[test]
    fn calls_of_other_dispatchers_still_count_and_live_figures_stay() {
        let mut live = LiveLoad::default();
        let mut held = HashMap::new();
        // r1 holds 30 calls of another dispatcher: r2 takes the first 30 alone.
        burst(&mut live, &linked(7, [30, 0]), &mut held, 40);
        assert_eq!((held["r1"], held["r2"]), (5, 35));
        // A relay whose figure is always current is not corrected.
        let mut relays = vec![relay(1, "192.0.2.1", RelayState::Active, 4, 0)];
        live.correct(&mut relays, |_| 100);
        assert_eq!(relays[0].sessions, 4);
    }

    #[test]
    fn least_loaded_active_first_and_preferred_before_all() {
        let relays = [
            relay(1, "192.0.2.1", RelayState::Active, 10, 0),
            relay(2, "192.0.2.2", RelayState::Active, 3, 900),
            relay(3, "192.0.2.3", RelayState::Active, 3, 100),
            relay(4, "192.0.2.4", RelayState::Halting, 0, 0),
            relay(5, "192.0.2.5", RelayState::TimedOut, 0, 0),
        ];
        let ids = |v: Vec<&RelayView>| v.into_iter().map(|r| r.id.0).collect::<Vec<_>>();
        assert_eq!(ids(candidates(&relays, None)), [3, 2, 1]);
        assert_eq!(
            ids(candidates(&relays, Some("192.0.2.1".parse().unwrap()))),
            [1, 3, 2]
        );
        // A halting preferred relay is not tried; an unknown preference changes nothing.
        assert_eq!(
            ids(candidates(&relays, Some("192.0.2.4".parse().unwrap()))),
            [3, 2, 1]
        );
        assert_eq!(
            ids(candidates(&relays, Some("198.51.100.1".parse().unwrap()))),
            [3, 2, 1]
        );
        assert!(candidates(&relays[3..], None).is_empty());
    }
}
