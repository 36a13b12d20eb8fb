//! `DENIED` records, sans-IO: a request refused before a viewer session existed (an
//! edge login challenge or failure, 401/407; an access list, 403; a reach refusal; a
//! loop, 508; the origin refusing the viewer on its accounting connection; the viewer
//! limit) leaves one access log line and one `edge_sessions` row, as Squid logs
//! `TCP_DENIED/407` for a challenge round.
//!
//! What it does: decides which answers are refusals ([`is_refusal`]), builds the record
//! ([`Refused::record`]: no session id, duration = time to refusal, the user only if
//! one had logged in, never a password), and bounds how many are recorded
//! ([`DeniedBudget`]): refusals cost the client one request each, so a flood of them
//! could otherwise outrun the records writer, whose channel is not bounded. Beyond the
//! budget a refusal is still answered and counted in the metrics, just not recorded.
//!
//! What it does not: send anything, read the clock, or record connections refused
//! before a request was read (the client ACL and the connection caps: those are only
//! counted in the metrics).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediagate_rtsp::StatusCode;

use crate::session::{CacheResult, EndReason, EndedSession, Now, ViewerTransport};
use crate::sink::Counts;

/// Refusals recorded per second on average, across the edge.
pub(crate) const RECORDS_PER_SECOND: u32 = 1_000;

/// Refusals recorded at once above the rate (a crowd of players starting together each
/// gets a challenge first).
pub(crate) const BURST: u32 = 1_000;

/// Whether an answer to a request that would open a session refuses the viewer by its
/// status alone: an authorization (401, 407), a prohibition (403: access list, reach,
/// forward allow list) or a loop (508). Other refusals (the accounting connection's,
/// whatever status the origin gave; the viewer limit) are flagged where they arise.
pub(crate) fn is_refusal(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 407 | 508)
}

/// A request refused before it had a session, as the shell knew it.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub viewer: SocketAddr,
    /// The request URL as the viewer sent it.
    pub url: String,
    pub method: String,
    pub status: u16,
    pub tunnel: bool,
    /// When the request was taken up.
    pub received: Now,
    /// A user that had logged in at the edge before the refusal (never a password).
    pub user: Option<String>,
    pub rule: Option<String>,
    pub origin: Option<String>,
    pub user_agent: Option<String>,
}

impl Refused {
    /// Its record, refused at `now`.
    pub fn record(self, now: Now) -> EndedSession {
        EndedSession {
            session: String::new(),
            viewer: self.viewer,
            url: self.url,
            transport: if self.tunnel {
                ViewerTransport::HttpTunnel
            } else {
                ViewerTransport::Tcp
            },
            started_unix_ms: self.received.unix_ms,
            duration: now.at.saturating_duration_since(self.received.at),
            reason: EndReason::Refused,
            counts: Counts::default(),
            user: self.user,
            method: self.method,
            status: self.status,
            rule: self.rule,
            origin: self.origin,
            cache: CacheResult::Denied,
            user_agent: self.user_agent,
            reported_lost: 0,
        }
    }
}

/// A rate limit on recorded refusals (GCRA: one "theoretical arrival time" instead of
/// a token count, so it needs no refill step).
#[derive(Debug, Clone)]
pub(crate) struct DeniedBudget {
    interval: Duration,
    burst: Duration,
    next: Option<Instant>,
}

impl Default for DeniedBudget {
    fn default() -> Self {
        Self::new(RECORDS_PER_SECOND, BURST)
    }
}

impl DeniedBudget {
    /// `per_second` on average, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Self {
            interval,
            burst: interval * burst.max(1).saturating_sub(1),
            next: None,
        }
    }

    /// Whether one more refusal may be recorded at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let next = self.next.map_or(now, |n| n.max(now));
        if next.saturating_duration_since(now) > self.burst {
            return false;
        }
        self.next = Some(next + self.interval);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_statuses() {
        for s in [401, 403, 407, 508] {
            assert!(is_refusal(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 404, 454, 461, 502, 503] {
            assert!(!is_refusal(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn a_record_is_denied_with_the_time_to_refusal_and_no_session() {
        let t0 = Now {
            at: Instant::now(),
            unix_ms: 1_733_449_353_000,
        };
        let r = Refused {
            viewer: "192.0.2.7:40000".parse().unwrap(),
            url: "rtsp://edge/cams/front".into(),
            method: "DESCRIBE".into(),
            status: 401,
            tunnel: false,
            received: t0,
            user: None,
            rule: Some("/cams".into()),
            origin: Some("rtsp://192.0.2.10/front".into()),
            user_agent: Some("Lavf".into()),
        }
        .record(t0.plus(Duration::from_millis(30)));
        assert_eq!(r.cache, CacheResult::Denied);
        assert_eq!(r.reason, EndReason::Refused);
        assert_eq!(r.duration, Duration::from_millis(30));
        assert_eq!(r.started_unix_ms, t0.unix_ms);
        assert_eq!((r.method.as_str(), r.status), ("DESCRIBE", 401));
        assert!(r.session.is_empty());
        assert_eq!(r.transport, ViewerTransport::Tcp);
        assert_eq!(r.counts, Counts::default());
    }

    #[test]
    fn the_budget_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = DeniedBudget::new(10, 5);
        let taken = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(taken, 5);
        // One more every 100 ms.
        assert!(!b.take(t0 + Duration::from_millis(50)));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // A quiet second refills the burst, not more.
        let later = t0 + Duration::from_secs(5);
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 5);
    }
}
