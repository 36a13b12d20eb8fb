//! Accounting connections, sans-IO: what a route's `accounting = "authorize"` asks of
//! the origin for each viewer, and when.
//!
//! For every viewer session on such a route the edge opens a connection of its own to
//! the origin and sends a DESCRIBE carrying the viewer's `Authorization` (never the
//! route's credentials: those are the shared stream's), this edge's `Via`, and an
//! `X-Forwarded-For` naming the viewer. A refusal is the viewer's answer
//! ([`refusal`]: a `401` keeps the origin's challenges). An accepted connection is held
//! for the viewer's whole session, so the origin's connection count equals the number
//! of viewers; [`AccountingClock`] says when to send the keep-alive (`OPTIONS`) that
//! keeps it from being closed as idle, when an origin that stopped answering counts as
//! gone, and that the connection closes as soon as the viewer's session ends. When the
//! origin's side ends it (closed, or silent), the viewer's session ends too: the
//! connection is the origin's hold on the viewer, and the edge keeps no credentials to
//! ask again.
//!
//! Through a parent mediagate the child's accounting DESCRIBE is, to the parent, a
//! viewer's DESCRIBE: a parent route with `accounting = "authorize"` opens its own to
//! the origin, with the `X-Forwarded-For` chain extended, and holds it while the
//! child's is open (the child's own shared session is a viewer of the parent too, so
//! the origin sees one more per child and stream). The keep-alive interval
//! ([`KEEPALIVE_INTERVAL`]) is below a parent edge's default `idle_timeout` (10 s) so
//! the child's held connection survives there.
//!
//! `accounting = "session"` adds a full origin session per viewer on the same
//! connection (the shell, `accounting_conn`, repeats the viewer's SETUPs and PLAY);
//! the timers are the same.
//!
//! What it does not: open sockets, read the clock, or carry media (the viewer's media
//! still comes from the shared hub).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mediagate_rtsp::Response;

use crate::rtsp_client::ClientError;
use crate::session::error;
use crate::source::client_error;

/// Keep-alives on an accounting connection this often: below a parent mediagate's
/// default `idle_timeout` (10 s) and far below the 60 s after which servers such as
/// gst-rtsp-server close a connection that holds no session.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// A keep-alive unanswered this long means the origin is gone: the connection closes
/// rather than being counted as a viewer the origin no longer sees.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Addresses kept in an `X-Forwarded-For` chain (the last ones: the nearest hops).
const MAX_FORWARDED: usize = 8;

/// What the shell must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a keep-alive on the connection.
    KeepAlive,
    /// Close the connection.
    Close(CloseWhy),
}

/// Why an accounting connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseWhy {
    /// The viewer's session ended (any reason) or its connection went away.
    ViewerEnded,
    /// The origin left a keep-alive unanswered for [`ANSWER_TIMEOUT`].
    OriginSilent,
    /// The origin closed the connection (or a keep-alive could not be written).
    OriginClosed,
}

impl CloseWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseWhy::ViewerEnded => "viewer-ended",
            CloseWhy::OriginSilent => "origin-silent",
            CloseWhy::OriginClosed => "origin-closed",
        }
    }
}

/// The timers of one accounting connection, after the origin accepted its DESCRIBE.
#[derive(Debug, Clone)]
pub(crate) struct AccountingClock {
    interval: Duration,
    answer_timeout: Duration,
    next_keepalive: Instant,
    /// When the oldest keep-alive still without an answer was sent.
    unanswered_since: Option<Instant>,
    close_at: Option<Instant>,
}

impl AccountingClock {
    /// A connection whose DESCRIBE was answered at `now`.
    pub fn new(interval: Duration, answer_timeout: Duration, now: Instant) -> Self {
        Self {
            interval,
            answer_timeout,
            next_keepalive: now + interval,
            unanswered_since: None,
            close_at: None,
        }
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_keepalive;
        if let Some(since) = self.unanswered_since {
            t = t.min(since + self.answer_timeout);
        }
        if let Some(c) = self.close_at {
            t = t.min(c);
        }
        t
    }

    /// What is due at `now`, if anything. A `KeepAlive` counts as sent.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Due> {
        if self.close_at.is_some_and(|c| c <= now) {
            return Some(Due::Close(CloseWhy::ViewerEnded));
        }
        if self
            .unanswered_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.answer_timeout)
        {
            return Some(Due::Close(CloseWhy::OriginSilent));
        }
        if now >= self.next_keepalive {
            self.next_keepalive = now + self.interval;
            self.unanswered_since.get_or_insert(now);
            return Some(Due::KeepAlive);
        }
        None
    }

    /// The origin answered (any response on the connection counts).
    pub fn on_answer(&mut self) {
        self.unanswered_since = None;
    }

    /// The viewer's session ended: the connection closes at once.
    pub fn on_viewer_ended(&mut self, now: Instant) {
        self.close_at = Some(self.close_at.map_or(now, |c| c.min(now)));
    }
}

/// The `X-Forwarded-For` value for a viewer at `peer` whose request carried
/// `incoming` (from a child edge): the chain with `peer` appended. Entries that are
/// not IP addresses are dropped (a viewer cannot smuggle text to the origin through
/// it) and only the last [`MAX_FORWARDED`] are kept; `peer` is always last, as this
/// edge saw it.
pub(crate) fn forwarded_for<'a>(incoming: impl Iterator<Item = &'a str>, peer: IpAddr) -> String {
    let mut chain: Vec<IpAddr> = incoming
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    chain.push(peer.to_canonical());
    let skip = chain.len().saturating_sub(MAX_FORWARDED);
    chain[skip..]
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The viewer's answer when the origin refuses (or cannot be asked about) it: the
/// origin's status, with its challenges on a `401`.
pub(crate) fn refusal(e: &ClientError) -> Response {
    match e {
        ClientError::Challenged { status, challenges } => {
            let mut r = error(*status, "the origin asks for your credentials");
            for c in challenges {
                r.headers.append("WWW-Authenticate", c.clone());
            }
            r
        }
        ClientError::Status { status, .. } => error(*status, "the origin refused this viewer"),
        other => client_error(other),
    }
}

#[cfg(test)]
#[path = "accounting_tests.rs"]
mod tests;
