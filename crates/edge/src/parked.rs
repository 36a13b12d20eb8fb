//! UDP viewer sessions whose RTSP connection closed, kept until a new connection names
//! them or their timeout passes (RFC 2326 §3 and §12.37: a session outlives the
//! transport connection it was set up on). What a viewer whose control path broke
//! needs (a balancer failover, a NAT that dropped the TCP mapping): its media goes on,
//! and its next keep-alive on a new connection reaches the same session.
//!
//! Only with `[edge] udp_sessions_outlive_connection`; without it a closed connection
//! ends its sessions at once, as before. Sessions on the connection itself (TCP
//! interleaved, HTTP tunnels) always end with it: their media has nowhere to go.
//!
//! A parked session keeps its source (the hub keeps sending to the viewer's UDP
//! ports) and its accounting connection. Whatever feeds the session holds the
//! session's own handle on its connection's output (`conn_out`): parking unhooks that
//! handle from the closed connection, so a hub that gives the viewer up (its stream
//! ended for good, it drained) or an on-demand origin session that ends closes the
//! handle of that one session, never the other sessions parked from the same
//! connection; adoption hooks it to the new connection's output, so a give-up after
//! that closes the connection the viewer uses now, as for any connected viewer. One
//! task per parked session ends it when a whole session timeout passes with neither
//! a request nor an RTCP packet from the viewer (RFC 7826 §10.5: RTCP shows the
//! client alive; a client such as GStreamer's rtspsrc, whose keep-alive timer starts
//! over with a new connection, depends on it), when the edge drains, the admin API
//! disconnects it, or its handle is closed (given up); adoption by a new connection
//! cancels that task. What it does not do: a parked
//! session does not learn of its origin closing its accounting connection until it is
//! adopted or times out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::accounting_conn::Accounting;
use crate::session::{Detached, EndReason, Now, ViewerSessions};
use crate::source::Source;
use crate::tracker::until_true;
use crate::viewer::{report_ended, ViewerContext};
use crate::viewers::ViewerRegistry;

/// One parked session and what it takes along to the connection that adopts it.
pub(crate) struct Parked {
    pub session: Detached<Source>,
    pub accounting: Option<Accounting>,
    /// Wakes the parked session's timer task when the session is adopted.
    cancel: Arc<Notify>,
    /// Which parking this is: a session adopted and parked again has a new timer.
    token: u64,
}

/// The parked sessions of one edge, by session id.
#[derive(Default)]
pub(crate) struct ParkedSessions {
    map: Mutex<HashMap<String, Parked>>,
    next_token: AtomicU64,
    /// Woken at every parking, for a connection waiting on a handoff
    /// ([`ParkedSessions::adopt_after_handoff`]).
    parked_one: Notify,
}

impl std::fmt::Debug for ParkedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedSessions")
            .field("sessions", &self.map().len())
            .finish()
    }
}

impl ParkedSessions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Parked>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes session `id` for a connection that named it; its timer stops.
    pub fn adopt(&self, id: &str) -> Option<Parked> {
        let p = self.map().remove(id)?;
        p.cancel.notify_one();
        Some(p)
    }

    /// [`adopt`](Self::adopt), waiting up to `wait` while `viewers` says another
    /// connection still holds the session. A client that closes its connection and
    /// names the session on a new one at once (a reconnect, or a client that opens a
    /// connection per request) can be faster than the old connection's task noticing
    /// the close and parking the session; without the wait it would get 454 and the
    /// session would linger until its timeout. A session that ends instead of being
    /// parked (its connection was its media's path) ends the wait at once.
    pub async fn adopt_after_handoff(
        &self,
        id: &str,
        wait: Duration,
        viewers: &ViewerRegistry,
    ) -> Option<Parked> {
        handoff(
            [&self.parked_one, viewers.removed()],
            wait,
            || self.adopt(id),
            || viewers.contains(id),
        )
        .await
    }

    fn take_if(&self, id: &str, token: u64) -> Option<Parked> {
        let mut map = self.map();
        if map.get(id).is_some_and(|p| p.token == token) {
            map.remove(id)
        } else {
            None
        }
    }
}

/// `take()`, retried whenever one of `changes` wakes (a parking, a session ending)
/// while `still_held()`, for up to `wait`.
async fn handoff<T>(
    changes: [&Notify; 2],
    wait: Duration,
    take: impl Fn() -> Option<T>,
    still_held: impl Fn() -> bool,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the checks, so a change in between is not missed.
        let parked = changes[0].notified();
        let ended = changes[1].notified();
        tokio::pin!(parked, ended);
        parked.as_mut().enable();
        ended.as_mut().enable();
        if let Some(t) = take() {
            return Some(t);
        }
        if !still_held() {
            return None;
        }
        let changed = async {
            tokio::select! {
                () = parked => {}
                () = ended => {}
            }
        };
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return None;
        }
    }
}

/// Parks `session` (its connection closed) and starts the task that ends it unless a
/// connection adopts it first. `timeout` is the session timeout its connection
/// advertised.
pub(crate) fn park(
    ctx: &Arc<ViewerContext>,
    session: Detached<Source>,
    accounting: Option<Accounting>,
    timeout: Duration,
) {
    let id = session.id().to_owned();
    let out = session.source().output().clone();
    out.park();
    let mut deadline = tokio::time::Instant::from_std(session.expires(timeout));
    let tally = session.source().tally().clone();
    let cancel = Arc::new(Notify::new());
    // The admin API reaches the session here while no connection holds it.
    let disconnect = Arc::new(Notify::new());
    ctx.viewers.set_disconnect(&id, disconnect.clone());
    let token = ctx.parked.next_token.fetch_add(1, Ordering::Relaxed);
    ctx.parked.map().insert(
        id.clone(),
        Parked {
            session,
            accounting,
            cancel: cancel.clone(),
            token,
        },
    );
    ctx.parked.parked_one.notify_waiters();
    tracing::info!(session = %id, "viewer connection closed; its UDP session goes on until a request names it or it times out");
    let ctx = ctx.clone();
    let guard = ctx.tasks.guard();
    tokio::spawn(async move {
        let mut drain = ctx.drain.clone();
        let mut rtcp_seen = tally.rtcp_packets();
        let reason = loop {
            tokio::select! {
                () = cancel.notified() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    let rtcp = tally.rtcp_packets();
                    if rtcp == rtcp_seen {
                        break EndReason::Timeout;
                    }
                    rtcp_seen = rtcp;
                    deadline = tokio::time::Instant::now() + timeout;
                }
                _ = until_true(&mut drain) => break EndReason::Drain,
                () = disconnect.notified() => break EndReason::Admin,
                // Given up: its hub drained or its stream ended for good, or its
                // on-demand origin session ended.
                () = out.closed() => break EndReason::ConnectionClosed,
            }
        };
        if let Some(p) = ctx.parked.take_if(&id, token) {
            // Closes the origin's accounting connection for this viewer.
            drop(p.accounting);
            let ended = ViewerSessions::end_detached(p.session, reason, Now::system());
            report_ended(&ctx, ended).await;
        }
        drop(guard);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn a_handoff_waits_for_the_closing_connection_to_park_or_end_the_session() {
        let parked = Arc::new(Notify::new());
        let ended = Arc::new(Notify::new());
        let slot = Arc::new(Mutex::new(None::<u32>));
        let held = Arc::new(AtomicBool::new(true));
        let take = || slot.lock().unwrap().take();
        let still_held = || held.load(Ordering::Relaxed);
        let wait = Duration::from_secs(1);
        let changes = [&*parked, &*ended];

        // The old connection parks it 200 ms later (and other parkings come first).
        let parker = {
            let (parked, slot) = (parked.clone(), slot.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                parked.notify_waiters();
                tokio::time::sleep(Duration::from_millis(100)).await;
                *slot.lock().unwrap() = Some(7);
                parked.notify_waiters();
            })
        };
        let t = tokio::time::Instant::now();
        assert_eq!(handoff(changes, wait, take, still_held).await, Some(7));
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        parker.await.unwrap();

        // Held elsewhere and never parked: 454 after the wait, not before.
        let t = tokio::time::Instant::now();
        assert_eq!(handoff(changes, wait, take, still_held).await, None);
        assert!(t.elapsed() >= wait, "{:?}", t.elapsed());

        // The old connection ends the session instead (a TCP viewer's): the answer
        // comes when it ends, not after the whole wait.
        let ender = {
            let (ended, held) = (ended.clone(), held.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                held.store(false, Ordering::Relaxed);
                ended.notify_waiters();
            })
        };
        let t = tokio::time::Instant::now();
        assert_eq!(handoff(changes, wait, take, still_held).await, None);
        assert!(t.elapsed() < wait, "{:?}", t.elapsed());
        ender.await.unwrap();

        // Not held by anyone (ended, or never was): no wait at all.
        let t = tokio::time::Instant::now();
        assert_eq!(handoff(changes, wait, take, still_held).await, None);
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );

        // Already parked: taken at once.
        *slot.lock().unwrap() = Some(8);
        assert_eq!(handoff(changes, wait, take, still_held).await, Some(8));
    }
}
