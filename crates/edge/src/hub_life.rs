//! When a live hub lives and when it lets its viewers go, sans-IO: the lease count and
//! the linger after the last lease, and the give-up clock that runs while the upstream
//! session is lost. Time is an argument; the hub actor asks [`HubLife::poll_timeout`]
//! when to wake and calls [`HubLife::handle_timeout`] then.
//!
//! It does not retire the hub or disconnect anyone itself: it says when to, and the
//! actor does it (retiring needs the registry lock, see `hub_registry`).

use std::time::{Duration, Instant};

/// What became due at a [`HubLife::handle_timeout`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// No lease for the whole linger time: the hub should retire (unless a lease is
    /// waiting in its queue, which cancels this).
    pub retire: bool,
    /// The upstream stayed lost for the give-up time: the viewers should be let go.
    pub give_up: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct HubLife {
    linger: Duration,
    give_up: Duration,
    leases: usize,
    linger_until: Option<Instant>,
    lost_since: Option<Instant>,
}

impl HubLife {
    pub fn new(linger: Duration, give_up: Duration) -> Self {
        Self {
            linger,
            give_up,
            leases: 0,
            linger_until: None,
            lost_since: None,
        }
    }

    pub fn lease(&mut self) {
        self.leases += 1;
        self.linger_until = None;
    }

    pub fn unlease(&mut self, now: Instant) {
        self.leases = self.leases.saturating_sub(1);
        if self.leases == 0 {
            self.linger_until = Some(now + self.linger);
        }
    }

    /// The upstream session broke; the give-up clock starts unless it already runs
    /// (a reconnect that fails again does not restart it).
    pub fn upstream_lost(&mut self, now: Instant) {
        self.lost_since.get_or_insert(now);
    }

    pub fn upstream_ready(&mut self) {
        self.lost_since = None;
    }

    /// How long the upstream has been lost, if it is.
    pub fn lost_for(&self, now: Instant) -> Option<Duration> {
        self.lost_since.map(|t| now.saturating_duration_since(t))
    }

    /// The next moment [`HubLife::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let give_up_at = self.lost_since.map(|t| t + self.give_up);
        [self.linger_until, give_up_at].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Due {
        let retire = self.linger_until.is_some_and(|t| t <= now);
        let give_up = self.lost_since.is_some_and(|t| t + self.give_up <= now);
        if give_up {
            self.lost_since = None;
        }
        Due { retire, give_up }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_secs(10);
    const GIVE_UP: Duration = Duration::from_secs(30);

    fn life() -> (HubLife, Instant) {
        (HubLife::new(LINGER, GIVE_UP), Instant::now())
    }

    #[test]
    fn lingers_after_the_last_lease_and_not_before() {
        let (mut l, t0) = life();
        l.lease();
        l.lease();
        assert_eq!(l.poll_timeout(), None);
        l.unlease(t0);
        assert_eq!(l.poll_timeout(), None, "one lease left");
        let t1 = t0 + Duration::from_secs(3);
        l.unlease(t1);
        assert_eq!(l.poll_timeout(), Some(t1 + LINGER));
        assert_eq!(
            l.handle_timeout(t1 + LINGER - Duration::from_millis(1)),
            Due::default()
        );
        assert!(l.handle_timeout(t1 + LINGER).retire);
    }

    #[test]
    fn a_lease_during_the_linger_cancels_retirement() {
        let (mut l, t0) = life();
        l.lease();
        l.unlease(t0);
        l.lease();
        assert_eq!(l.poll_timeout(), None);
        assert!(!l.handle_timeout(t0 + LINGER * 2).retire);
        // The next last lease lingers afresh from its own time.
        let t1 = t0 + Duration::from_secs(60);
        l.unlease(t1);
        assert_eq!(l.poll_timeout(), Some(t1 + LINGER));
    }

    #[test]
    fn gives_up_only_after_the_upstream_stayed_lost_for_the_give_up_time() {
        let (mut l, t0) = life();
        l.lease();
        l.upstream_lost(t0);
        // A failed reconnect later does not restart the clock.
        l.upstream_lost(t0 + Duration::from_secs(5));
        assert_eq!(l.poll_timeout(), Some(t0 + GIVE_UP));
        assert_eq!(
            l.lost_for(t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(7))
        );
        assert!(
            !l.handle_timeout(t0 + GIVE_UP - Duration::from_millis(1))
                .give_up
        );
        let due = l.handle_timeout(t0 + GIVE_UP);
        assert!(due.give_up && !due.retire);
        // Once given up the clock stops: no second give-up.
        assert_eq!(l.poll_timeout(), None);
        assert!(!l.handle_timeout(t0 + GIVE_UP * 3).give_up);
    }

    #[test]
    fn an_upstream_back_in_time_stops_the_give_up_clock() {
        let (mut l, t0) = life();
        l.lease();
        l.upstream_lost(t0);
        l.upstream_ready();
        assert_eq!(l.poll_timeout(), None);
        assert_eq!(l.handle_timeout(t0 + GIVE_UP * 2), Due::default());
        // Lost again: a fresh clock.
        let t1 = t0 + Duration::from_secs(100);
        l.upstream_lost(t1);
        assert_eq!(l.poll_timeout(), Some(t1 + GIVE_UP));
    }

    #[test]
    fn the_earlier_of_linger_and_give_up_wakes_first() {
        let (mut l, t0) = life();
        l.lease();
        l.upstream_lost(t0);
        l.unlease(t0 + Duration::from_secs(25));
        assert_eq!(l.poll_timeout(), Some(t0 + GIVE_UP));
        let due = l.handle_timeout(t0 + GIVE_UP);
        assert!(due.give_up && !due.retire);
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(35)));
        assert!(l.handle_timeout(t0 + Duration::from_secs(35)).retire);
    }
}
