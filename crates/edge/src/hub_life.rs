//! When a live hub lives and when it lets its viewers go, sans-IO: the lease count and
//! the linger after the last lease, and the give-up clock that runs while the upstream
//! session is lost. Time is an argument; the hub actor asks [`HubLife::poll_timeout`]
//! when to wake and calls [`HubLife::handle_timeout`] then.
//!
//! A hub kept warm (an `always_on` route holds it) also gets a restart clock: when its
//! upstream session ends for good (the first open failed, or the origin stayed away
//! past the give-up time) it says when to open it again, with exponential back-off,
//! so a warm hub never stays dead waiting for a viewer to revive it.
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
    /// A warm hub's upstream is down for good and its back-off has passed: open a new
    /// upstream session.
    pub restart: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct HubLife {
    linger: Duration,
    give_up: Duration,
    leases: usize,
    linger_until: Option<Instant>,
    lost_since: Option<Instant>,
    /// Keep-warm holders (always-on routes); while above zero the hub restarts its
    /// upstream on its own.
    warm: usize,
    restart_at: Option<Instant>,
    backoff_min: Duration,
    backoff_max: Duration,
    next_backoff: Duration,
}

impl HubLife {
    pub fn new(linger: Duration, give_up: Duration) -> Self {
        Self {
            linger,
            give_up,
            leases: 0,
            linger_until: None,
            lost_since: None,
            warm: 0,
            restart_at: None,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            next_backoff: DEFAULT_BACKOFF_MIN,
        }
    }

    /// The back-off between restarts of a warm hub's upstream (from `min`, doubling
    /// to `max`, back to `min` once a session opens).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self.next_backoff = min;
        self
    }

    /// One more keep-warm holder.
    pub fn warm(&mut self) {
        self.warm += 1;
    }

    /// One keep-warm holder fewer; with none left no restart is due any more.
    pub fn unwarm(&mut self) {
        self.warm = self.warm.saturating_sub(1);
        if self.warm == 0 {
            self.restart_at = None;
        }
    }

    pub fn is_warm(&self) -> bool {
        self.warm > 0
    }

    /// The upstream session ended for good (first open failed, or given up). A warm
    /// hub schedules its restart after the next back-off step; others wait for a
    /// viewer.
    pub fn upstream_down(&mut self, now: Instant) {
        if self.warm == 0 || self.restart_at.is_some() {
            return;
        }
        self.restart_at = Some(now + self.next_backoff);
        self.next_backoff = (self.next_backoff * 2).min(self.backoff_max);
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
        self.next_backoff = self.backoff_min;
    }

    /// How long the upstream has been lost, if it is.
    pub fn lost_for(&self, now: Instant) -> Option<Duration> {
        self.lost_since.map(|t| now.saturating_duration_since(t))
    }

    /// The next moment [`HubLife::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let give_up_at = self.lost_since.map(|t| t + self.give_up);
        [self.linger_until, give_up_at, self.restart_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Due {
        let retire = self.linger_until.is_some_and(|t| t <= now);
        let give_up = self.lost_since.is_some_and(|t| t + self.give_up <= now);
        if give_up {
            self.lost_since = None;
        }
        let restart = self.restart_at.is_some_and(|t| t <= now);
        if restart {
            self.restart_at = None;
        }
        Due {
            retire,
            give_up,
            restart,
        }
    }
}

/// Restart back-off of a warm hub when none is configured (as the supervisor's).
const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(250);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    fn a_cold_hub_never_restarts_its_upstream_on_its_own() {
        let (mut l, t0) = life();
        l.lease();
        l.upstream_down(t0);
        assert_eq!(l.poll_timeout(), None);
        assert!(!l.handle_timeout(t0 + Duration::from_secs(3600)).restart);
    }

    #[test]
    fn a_warm_hub_restarts_with_back_off_reset_by_a_good_session() {
        let min = Duration::from_millis(250);
        let max = Duration::from_secs(1);
        let (l, t0) = life();
        let mut l = l.with_backoff(min, max);
        l.lease();
        l.warm();
        l.upstream_down(t0);
        assert_eq!(l.poll_timeout(), Some(t0 + min));
        // A second report of the same outage does not push the restart out.
        l.upstream_down(t0 + Duration::from_millis(100));
        assert_eq!(l.poll_timeout(), Some(t0 + min));
        assert!(
            !l.handle_timeout(t0 + min - Duration::from_millis(1))
                .restart
        );
        let due = l.handle_timeout(t0 + min);
        assert!(due.restart && !due.retire && !due.give_up);
        assert_eq!(l.poll_timeout(), None, "one restart per outage");
        // It failed again: twice the wait, then capped at max.
        let t1 = t0 + Duration::from_secs(1);
        l.upstream_down(t1);
        assert_eq!(l.poll_timeout(), Some(t1 + min * 2));
        assert!(l.handle_timeout(t1 + min * 2).restart);
        let t2 = t1 + Duration::from_secs(1);
        l.upstream_down(t2);
        assert_eq!(l.poll_timeout(), Some(t2 + max));
        assert!(l.handle_timeout(t2 + max).restart);
        // A session that opened resets the back-off.
        l.upstream_ready();
        let t3 = t2 + Duration::from_secs(10);
        l.upstream_down(t3);
        assert_eq!(l.poll_timeout(), Some(t3 + min));
    }

    #[test]
    fn unwarming_cancels_a_pending_restart_and_lets_the_hub_linger() {
        let (mut l, t0) = life();
        l.lease();
        l.warm();
        assert!(l.is_warm());
        l.upstream_down(t0);
        l.unwarm();
        l.unlease(t0);
        assert!(!l.is_warm());
        assert_eq!(l.poll_timeout(), Some(t0 + LINGER));
        let due = l.handle_timeout(t0 + LINGER);
        assert!(due.retire && !due.restart);
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
