//! Bounds on client connections that are not (yet) viewers, sans-IO.
//!
//! What it does:
//! * [`RequestClock`]: per connection, a request must arrive complete within
//!   `request_timeout` of its first byte (a slowloris client trickling one header line
//!   at a time is cut), and a connection with no session is closed after
//!   `idle_timeout` without a complete request. A connection that has a session is
//!   exempt from both: the session timeout governs it, so a playing viewer is never
//!   cut by these limits. Time is an argument; [`RequestClock::deadline`] says when
//!   to call [`RequestClock::check`].
//! * [`ConnTable`]: caps on connections in total and per client address. Admission
//!   hands out a [`ConnTicket`]; dropping it frees the place.
//!
//! What it does not: read sockets or the clock, or count sessions (the viewer limit
//! is the server's); the shells close what these say to close and count it in the
//! edge's metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The limits of one connection, as the settings had them when it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why a connection was closed by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// A request did not arrive complete within the request timeout.
    SlowRequest,
    /// No session and no complete request for the idle timeout.
    Idle,
}

impl Cut {
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::SlowRequest => "slow_request",
            Cut::Idle => "idle",
        }
    }
}

/// The request timers of one connection.
#[derive(Debug, Clone)]
pub(crate) struct RequestClock {
    limits: ConnLimits,
    /// When the first byte of the request now being received arrived.
    partial_since: Option<Instant>,
    /// The last complete request (or the accept).
    last_request: Instant,
}

impl RequestClock {
    pub fn new(limits: ConnLimits, now: Instant) -> Self {
        Self {
            limits,
            partial_since: None,
            last_request: now,
        }
    }

    /// A complete request (or interleaved frame) arrived.
    pub fn on_request(&mut self, now: Instant) {
        self.last_request = now;
        self.partial_since = None;
    }

    /// After everything decodable was taken: `partial` says whether bytes of an
    /// incomplete message remain buffered. The request clock starts with the first
    /// such byte and runs until the message completes.
    pub fn on_buffered(&mut self, partial: bool, now: Instant) {
        if !partial {
            self.partial_since = None;
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// When [`Self::check`] may next cut the connection; `None` while it has a
    /// session.
    pub fn deadline(&self, has_session: bool) -> Option<Instant> {
        if has_session {
            return None;
        }
        let idle = self.last_request + self.limits.idle_timeout;
        Some(match self.partial_since {
            Some(since) => idle.min(since + self.limits.request_timeout),
            None => idle,
        })
    }

    /// Whether the connection must close now.
    pub fn check(&self, has_session: bool, now: Instant) -> Option<Cut> {
        if has_session {
            return None;
        }
        if self.partial_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= self.limits.request_timeout
        }) {
            return Some(Cut::SlowRequest);
        }
        (now.saturating_duration_since(self.last_request) >= self.limits.idle_timeout)
            .then_some(Cut::Idle)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The edge holds `max_connections` already.
    Total,
    /// This client address holds `max_connections_per_client` already.
    PerClient,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerClient => "per_client",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The open client connections, by client address.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnTable(Arc<Mutex<Counts>>);

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnTicket {
    table: ConnTable,
    client: IpAddr,
}

impl ConnTable {
    /// Admits a connection from `client` when both caps allow (the caps are passed
    /// in, so a reload applies to the next connection).
    pub fn admit(
        &self,
        client: IpAddr,
        max_total: usize,
        max_per_client: usize,
    ) -> Result<ConnTicket, Refusal> {
        let mut c = self.lock();
        if c.total >= max_total {
            return Err(Refusal::Total);
        }
        let mine = c.per_client.entry(client).or_default();
        if *mine >= max_per_client {
            return Err(Refusal::PerClient);
        }
        *mine += 1;
        c.total += 1;
        Ok(ConnTicket {
            table: self.clone(),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        let mut c = self.table.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                // The map holds only clients with connections open: bounded by the cap.
                c.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        request_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_connection_that_sends_nothing_is_cut_at_the_idle_limit() {
        let t0 = Instant::now();
        let c = RequestClock::new(LIMITS, t0);
        assert_eq!(c.deadline(false), Some(t0 + secs(10)));
        assert_eq!(c.check(false, t0 + Duration::from_millis(9_999)), None);
        assert_eq!(c.check(false, t0 + secs(10)), Some(Cut::Idle));
    }

    #[test]
    fn a_trickled_request_is_cut_at_the_request_limit_whatever_it_sends() {
        let t0 = Instant::now();
        let mut c = RequestClock::new(LIMITS, t0);
        // One header line every 2 s, never the blank line that completes the head.
        for i in 0..3 {
            c.on_buffered(true, t0 + secs(2 * i));
            assert_eq!(c.check(false, t0 + secs(2 * i)), None, "at {}s", 2 * i);
        }
        assert_eq!(c.deadline(false), Some(t0 + secs(5)));
        assert_eq!(c.check(false, t0 + secs(5)), Some(Cut::SlowRequest));
    }

    #[test]
    fn complete_requests_restart_both_clocks() {
        let t0 = Instant::now();
        let mut c = RequestClock::new(LIMITS, t0);
        c.on_buffered(true, t0 + secs(1));
        c.on_request(t0 + secs(4));
        c.on_buffered(false, t0 + secs(4));
        assert_eq!(c.check(false, t0 + secs(13)), None);
        assert_eq!(c.deadline(false), Some(t0 + secs(14)));
        // A new partial request starts its own clock.
        c.on_buffered(true, t0 + secs(12));
        assert_eq!(c.deadline(false), Some(t0 + secs(14)));
        assert_eq!(c.check(false, t0 + secs(14)), Some(Cut::Idle));
        c.on_request(t0 + secs(14));
        c.on_buffered(true, t0 + secs(14));
        assert_eq!(c.check(false, t0 + secs(19)), Some(Cut::SlowRequest));
    }

    #[test]
    fn a_connection_with_a_session_is_never_cut() {
        let t0 = Instant::now();
        let mut c = RequestClock::new(LIMITS, t0);
        c.on_buffered(true, t0);
        assert_eq!(c.deadline(true), None);
        assert_eq!(c.check(true, t0 + secs(3600)), None);
        // The session ended: the limits apply again, from the last request.
        assert_eq!(c.check(false, t0 + secs(3600)), Some(Cut::SlowRequest));
    }

    #[test]
    fn caps_hold_in_total_and_per_client_and_free_on_drop() {
        let table = ConnTable::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = table.admit(a, 3, 2).unwrap();
        let _a2 = table.admit(a, 3, 2).unwrap();
        assert_eq!(table.admit(a, 3, 2).unwrap_err(), Refusal::PerClient);
        let _b1 = table.admit(b, 3, 2).unwrap();
        assert_eq!(table.admit(b, 3, 2).unwrap_err(), Refusal::Total);
        assert_eq!(table.open(), 3);
        drop(a1);
        assert_eq!(table.open(), 2);
        let _a3 = table.admit(a, 3, 2).unwrap();
        assert_eq!(table.lock().per_client.len(), 2);
    }

    #[test]
    fn the_client_map_forgets_clients_that_left() {
        let table = ConnTable::default();
        let tickets: Vec<_> = (0..50u8)
            .map(|i| {
                table
                    .admit(IpAddr::from([198, 51, 100, i]), 100, 1)
                    .unwrap()
            })
            .collect();
        assert_eq!(table.lock().per_client.len(), 50);
        drop(tickets);
        assert_eq!(table.open(), 0);
        assert!(table.lock().per_client.is_empty());
    }
}
