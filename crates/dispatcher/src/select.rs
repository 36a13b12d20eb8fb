//! Which relays a new call may go to, in the order to try them.
//!
//! Policy (MediaProxy's, with its random order replaced by load): the relay the SIP
//! proxy prefers (`media_relay`, matched against each relay's advertised and local
//! addresses) goes first when it takes new calls; then every other active relay, least
//! loaded first: fewest calls, then fewest bits per second, then the lower id so the
//! order is stable. Relays that are halting or timed out are never offered a new call.
//! A call already placed is not chosen again: it sticks to its relay (the session map).
//!
//! What it does not: talk to relays or keep state; it sorts the pool's picture.

use std::net::IpAddr;

use crate::pool::{RelayState, RelayView};

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
        }
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
