//! The I/O shell of one accounting connection: opens it (the DESCRIBE of
//! [`crate::accounting`], through `upstream::describe_with`, so redirects and every
//! hop pass the `reach` checks like any other origin connection), then a task holds
//! it, sending the keep-alives [`AccountingClock`] asks for and reading the answers,
//! until the [`AccountingConn`] handle is dropped (the viewer's session ended), the
//! origin closes it, or the origin stops answering. In the last two cases it tells
//! the viewer's connection ([`OriginWatch`]), which ends the viewer's session.
//!
//! For `accounting = "session"` the connection also carries the viewer's own origin
//! session: each SETUP and the PLAY of the viewer is repeated on it with the
//! `Authorization` the viewer sent on that request (a Digest answer is only good for
//! its own method), every track over TCP interleaved; the task then reads and discards
//! the media, and sends a TEARDOWN when the viewer's session ends.
//!
//! What it does not: decide anything about timing (the clock does) or pass media on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mediagate_rtsp::{Item, Method, Response};
use tokio::sync::{oneshot, Notify};

use crate::accounting::{refusal, AccountingClock, CloseWhy, Due, ANSWER_TIMEOUT};
use crate::metrics::{AccountingGauge, EdgeStats, OriginClose};
use crate::rtsp_client::{ClientError, RtspClient};
use crate::session::Now;
use crate::tracker::TaskGuard;
use crate::upstream::{self, Described, UpstreamTarget};

/// How long a closing accounting session may take to write its TEARDOWN.
const TEARDOWN_WRITE: std::time::Duration = std::time::Duration::from_millis(300);

/// A viewer's accounting connection, as its session holds it.
#[derive(Debug)]
pub(crate) enum Accounting {
    /// Held by its task; dropping it closes the connection at once.
    Held { conn: AccountingConn },
    /// `session` mode between the DESCRIBE and the viewer's PLAY: the viewer's SETUPs
    /// and PLAY still have to be repeated on it.
    Opening(Box<Opening>),
}

/// An accounting connection held by its task. Dropping it closes the connection.
#[derive(Debug)]
pub(crate) struct AccountingConn {
    _ended: oneshot::Sender<()>,
    origin_gone: Arc<AtomicBool>,
    /// What the origin's DESCRIBE answered for this viewer.
    answer: Arc<Described>,
}

impl AccountingConn {
    /// Whether the origin closed it (or stopped answering).
    pub fn origin_gone(&self) -> bool {
        self.origin_gone.load(Ordering::Acquire)
    }
}

impl Accounting {
    /// Whether the origin has ended a held connection.
    pub fn origin_gone(&self) -> bool {
        matches!(self, Accounting::Held { conn } if conn.origin_gone())
    }

    /// The origin's answer to this viewer's DESCRIBE: the description as the origin
    /// has it now, with its validators, so the accounting connection is also the
    /// freshness check of a cached copy (issue 12 item 1).
    pub fn origin_answer(&self) -> &Arc<Described> {
        match self {
            Accounting::Held { conn } => &conn.answer,
            Accounting::Opening(o) => &o.answer,
        }
    }
}

/// How a held connection tells its viewer's connection that the origin ended it: one
/// per viewer connection, shared by its accounting connections (each has its own flag,
/// so the viewer's connection knows whose).
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginWatch {
    pub notify: Arc<Notify>,
}

/// An accounting connection whose DESCRIBE the origin accepted, not yet held.
#[derive(Debug)]
pub(crate) struct Opening {
    client: RtspClient,
    described: Described,
    /// The DESCRIBE's answer as the origin gave it (before any SETUP here).
    answer: Arc<Described>,
    url: String,
    full_session: bool,
    stats: Arc<EdgeStats>,
    /// In the `accounting_connections` gauge from the origin's acceptance on.
    gauge: AccountingGauge,
}

/// Asks the origin about a viewer: DESCRIBE `target` with the viewer's own
/// `authorization` (the route's credentials are never sent here) and `forwarded_for`.
/// A refusal is the viewer's answer.
pub(crate) async fn describe(
    target: &UpstreamTarget,
    authorization: Option<&str>,
    forwarded_for: &str,
    full_session: bool,
    stats: &Arc<EdgeStats>,
) -> Result<Opening, Response> {
    let mut target = target.clone();
    target.credentials = None;
    let (client, described) = upstream::describe_with(&target, authorization, Some(forwarded_for))
        .await
        .map_err(|e| refused(&target.url.to_string(), "DESCRIBE", &e, stats))?;
    Ok(Opening {
        client,
        url: target.url.to_string(),
        answer: Arc::new(described.clone()),
        described,
        full_session,
        stats: stats.clone(),
        gauge: AccountingGauge::new(stats.clone()),
    })
}

fn refused(url: &str, method: &str, e: &ClientError, stats: &EdgeStats) -> Response {
    tracing::debug!(url, method, error = %e, "accounting request refused");
    let r = refusal(e);
    stats.accounting_refused(r.status.as_u16());
    r
}

impl Opening {
    /// Whether the viewer's SETUPs and PLAY must still be repeated on it.
    pub fn wants_session(&self) -> bool {
        self.full_session
    }

    /// Repeats the viewer's SETUP of track `i` with its `authorization`.
    pub async fn setup(&mut self, i: usize, authorization: Option<&str>) -> Result<(), Response> {
        upstream::setup_track(&mut self.client, &mut self.described, i, authorization)
            .await
            .map_err(|e| refused(&self.url, "SETUP", &e, &self.stats))
    }

    /// Repeats the viewer's PLAY with its `authorization`.
    pub async fn play(&mut self, authorization: Option<&str>) -> Result<(), Response> {
        upstream::play_as(&mut self.client, &self.described, None, authorization)
            .await
            .map(|_| ())
            .map_err(|e| refused(&self.url, "PLAY", &e, &self.stats))
    }

    /// Hands the connection to a task that keeps it until the handle drops; if the
    /// origin ends it first, the task raises the handle's flag and pokes `watch`.
    pub fn hold(
        self,
        keepalive: std::time::Duration,
        guard: TaskGuard,
        watch: &OriginWatch,
    ) -> AccountingConn {
        let (tx, rx) = oneshot::channel();
        let origin_gone = Arc::<AtomicBool>::default();
        let (flag, notify) = (origin_gone.clone(), watch.notify.clone());
        let clock = AccountingClock::new(keepalive, ANSWER_TIMEOUT, Now::system().at);
        // Requests within an origin session name its aggregate URL.
        let url = if self.full_session {
            self.described.aggregate_url.clone()
        } else {
            self.url
        };
        let full_session = self.full_session;
        let answer = self.answer;
        let (client, stats, gauge) = (self.client, self.stats, self.gauge);
        tokio::spawn(async move {
            let why = hold(client, clock, &url, full_session, rx).await;
            drop(gauge);
            tracing::debug!(url = %url, why = why.as_str(), "accounting connection closed");
            let by_origin = match why {
                CloseWhy::ViewerEnded => None,
                CloseWhy::OriginClosed => Some(OriginClose::Closed),
                CloseWhy::OriginSilent => Some(OriginClose::Silent),
            };
            if let Some(how) = by_origin {
                stats.accounting_origin_closed(how);
                flag.store(true, Ordering::Release);
                notify.notify_one();
            }
            drop(guard);
        });
        AccountingConn {
            _ended: tx,
            origin_gone,
            answer,
        }
    }
}

/// Keeps the connection until the viewer ends or the origin goes; dropping `client`
/// closes the socket. Media of an accounting session is read and dropped.
async fn hold(
    mut client: RtspClient,
    mut clock: AccountingClock,
    url: &str,
    full_session: bool,
    mut ended: oneshot::Receiver<()>,
) -> CloseWhy {
    // One timer for the connection's life, moved only when the clock's deadline moves:
    // in `session` mode media frames arrive many times a second and must cost no timer
    // work or clock reading, only the read that discards them.
    let mut deadline = tokio::time::Instant::from_std(clock.poll_timeout());
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut ended => clock.on_viewer_ended(Now::system().at),
            _ = &mut sleep => {}
            item = client.next_item() => match item {
                Ok(Item::Response(_)) => clock.on_answer(),
                Ok(_) => continue,
                Err(e) => {
                    tracing::info!(url, error = %e, "origin closed an accounting connection; ending its viewer's session");
                    return CloseWhy::OriginClosed;
                }
            },
        }
        while let Some(due) = clock.handle_timeout(Now::system().at) {
            match due {
                Due::KeepAlive => {
                    let req = client.request(Method::Options, url);
                    if let Err(e) = client.send_no_wait(req).await {
                        tracing::info!(url, error = %e, "accounting keep-alive failed; ending its viewer's session");
                        return CloseWhy::OriginClosed;
                    }
                }
                Due::Close(why) => {
                    if why == CloseWhy::OriginSilent {
                        tracing::warn!(url, "origin stopped answering an accounting connection; ending its viewer's session");
                    } else if full_session {
                        // Best effort and bounded: closing the connection ends an
                        // interleaved session at the origin anyway.
                        let req = client.request(Method::Teardown, url);
                        let _ =
                            tokio::time::timeout(TEARDOWN_WRITE, client.send_no_wait(req)).await;
                    }
                    return why;
                }
            }
        }
        let next = tokio::time::Instant::from_std(clock.poll_timeout());
        if next != deadline {
            deadline = next;
            sleep.as_mut().reset(deadline);
        }
    }
}
