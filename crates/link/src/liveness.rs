//! The link's timers as pure state, time passed in: the relay's pings ([`Pinger`]),
//! the dispatcher's view of a relay's silence and command time-outs ([`Watchdog`]),
//! and the relay's reconnection back-off ([`Backoff`]).
//!
//! What it does not: sleep or read a clock; the link tasks ask when the next deadline
//! is and call back with `now`.

use std::time::{Duration, Instant};

/// Default ping interval of a relay.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Pings a relay may send without a pong before it drops the link.
pub const MAX_MISSED_PINGS: u32 = 3;
/// Default time a dispatcher keeps a relay whose command timed out and which has not
/// pinged since.
pub const RECOVER_INTERVAL: Duration = Duration::from_secs(60);

/// What the relay's ping timer wants now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingStep {
    /// Nothing until [`Pinger::next_at`].
    Wait,
    /// Send `ping` with this sequence number.
    Ping(u64),
    /// [`MAX_MISSED_PINGS`] pings went unanswered: drop the link.
    Dead,
}

/// A relay's pings to one dispatcher.
#[derive(Debug, Clone)]
pub struct Pinger {
    interval: Duration,
    max_missed: u32,
    next_at: Instant,
    seq: u64,
    unanswered: u32,
}

impl Pinger {
    /// First ping one `interval` after `now`.
    pub fn new(now: Instant, interval: Duration, max_missed: u32) -> Self {
        Self {
            interval,
            max_missed,
            next_at: now + interval,
            seq: 0,
            unanswered: 0,
        }
    }

    /// When to call [`Pinger::poll`] next.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// Advances to `now`.
    pub fn poll(&mut self, now: Instant) -> PingStep {
        if now < self.next_at {
            return PingStep::Wait;
        }
        if self.unanswered >= self.max_missed {
            return PingStep::Dead;
        }
        self.unanswered += 1;
        self.seq += 1;
        self.next_at = now + self.interval;
        PingStep::Ping(self.seq)
    }

    /// A pong arrived. Only the latest ping's pong counts: an old one says nothing
    /// about whether the link is alive now.
    pub fn on_pong(&mut self, seq: u64) {
        if seq == self.seq {
            self.unanswered = 0;
        }
    }
}

/// Why a dispatcher drops a relay's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it; look again at the instant given.
    Alive(Instant),
    /// Nothing heard (no ping) for this long.
    Silent(Duration),
    /// A command timed out and no ping came within the recover interval.
    NotRecovered(Duration),
}

/// A dispatcher's watch over one relay's link.
#[derive(Debug, Clone)]
pub struct Watchdog {
    silence_limit: Duration,
    recover: Duration,
    last_heard: Instant,
    timed_out_at: Option<Instant>,
}

impl Watchdog {
    /// A link heard from at `now`; dropped after `silence_limit` without a ping, or
    /// `recover` after a command timed out without a ping since.
    pub fn new(now: Instant, silence_limit: Duration, recover: Duration) -> Self {
        Self {
            silence_limit,
            recover,
            last_heard: now,
            timed_out_at: None,
        }
    }

    /// A ping arrived: the relay is alive and, if a command had timed out, recovered.
    pub fn on_ping(&mut self, now: Instant) {
        self.last_heard = now;
        self.timed_out_at = None;
    }

    /// A command to the relay timed out.
    pub fn on_command_timeout(&mut self, now: Instant) {
        self.timed_out_at.get_or_insert(now);
    }

    /// Whether a command timed out and no ping has come since.
    pub fn is_timed_out(&self) -> bool {
        self.timed_out_at.is_some()
    }

    /// The verdict at `now`.
    pub fn poll(&self, now: Instant) -> Verdict {
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= self.silence_limit {
            return Verdict::Silent(silent);
        }
        let mut next = self.last_heard + self.silence_limit;
        if let Some(at) = self.timed_out_at {
            let since = now.saturating_duration_since(at);
            if since >= self.recover {
                return Verdict::NotRecovered(since);
            }
            next = next.min(at + self.recover);
        }
        Verdict::Alive(next)
    }
}

/// Reconnection delays: `first` after the first loss, doubling up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// 1 s, then 2, 4, 8 and 10 s from then on, for the link's defaults.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// A link came up and worked: the next loss waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn three_unanswered_pings_then_dead_and_a_pong_resets() {
        let t0 = Instant::now();
        let mut p = Pinger::new(t0, 10 * S, 3);
        assert_eq!(p.poll(t0 + 9 * S), PingStep::Wait);
        assert_eq!(p.poll(t0 + 10 * S), PingStep::Ping(1));
        assert_eq!(p.poll(t0 + 20 * S), PingStep::Ping(2));
        p.on_pong(1); // stale: does not count
        assert_eq!(p.poll(t0 + 30 * S), PingStep::Ping(3));
        assert_eq!(p.poll(t0 + 40 * S), PingStep::Dead);

        let mut p = Pinger::new(t0, 10 * S, 3);
        for i in 1..10 {
            assert_eq!(p.poll(t0 + i * 10 * S), PingStep::Ping(u64::from(i)));
            p.on_pong(u64::from(i));
        }
        assert_eq!(p.next_at(), t0 + 100 * S);
    }

    #[test]
    fn a_silent_relay_is_dropped_and_a_timed_out_one_after_the_recover_interval() {
        let t0 = Instant::now();
        let w = Watchdog::new(t0, 30 * S, 60 * S);
        assert_eq!(w.poll(t0 + 29 * S), Verdict::Alive(t0 + 30 * S));
        assert_eq!(w.poll(t0 + 30 * S), Verdict::Silent(30 * S));

        let mut w = Watchdog::new(t0, 30 * S, 60 * S);
        w.on_command_timeout(t0 + 5 * S);
        assert!(w.is_timed_out());
        w.on_ping(t0 + 10 * S);
        assert!(!w.is_timed_out(), "a ping recovers it");

        // Pinging but timed out again: the first time-out counts, and without a ping
        // since, the recover interval ends it even though the silence limit is far.
        let mut w = Watchdog::new(t0, 300 * S, 60 * S);
        w.on_command_timeout(t0 + S);
        w.on_command_timeout(t0 + 20 * S);
        assert_eq!(w.poll(t0 + 60 * S), Verdict::Alive(t0 + 61 * S));
        assert_eq!(w.poll(t0 + 61 * S), Verdict::NotRecovered(60 * S));
    }

    #[test]
    fn backoff_is_one_second_then_doubles_up_to_ten() {
        let mut b = Backoff::new(S, 10 * S);
        let got: Vec<_> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(), S);
    }
}
