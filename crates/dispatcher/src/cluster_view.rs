//! [`RouterView`]: the cluster as monitoring sees it ([`ClusterView`]), read from the
//! router's session map and relay pool, for the management interface and the admin
//! API.
//!
//! Each answer asks every relay for its live statistics ([`RelayPool::live`]: a
//! `stats-request` over the link for remote relays, the engine itself for in-process
//! ones), all at once, and waits at most the router's `relay_timeout` for them. A relay
//! that does not answer in time (or speaks link 1.0, which has no such request) is
//! described from what the pool and the session map hold, so a silent relay never
//! holds up the answer by more than that bound.
//!
//! * `summary`: one entry per relay the pool has now, in the pool's order: its first
//!   media address (MediaProxy's `ip`), `active` or `halting`, and from its live
//!   statistics its version, uptime, calls, streams by media type and bit rate.
//!   Without them: `version` `unknown`, `uptime` 0, `stream_count` empty, and the
//!   calls and bit rate of its last status. A relay that stopped answering
//!   commands (timed out) is listed as MediaProxy lists one: `{"status": "error",
//!   "ip": ...}`, and not asked.
//! * `sessions`: every placed call, sorted by Call-ID, with its live statistics
//!   (streams, codecs, counters) from its relay; a call whose relay did not answer is
//!   listed from the session map alone (tags, start, duration, no streams). URIs and
//!   User-Agents come from the MediaProxy front door. A chained call is listed once,
//!   from the relay facing the caller, with the streams of the relay facing the
//!   callee after its own (their local addresses tell the relays apart), so both
//!   relays' counters are seen.
//!
//! What it does not: cache answers (each request asks afresh) or ask a relay about
//! one call (a relay answers with all of its calls at once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mediagate_relay::record::SessionRecord;

use crate::pool::{PoolFuture, RelayLive, RelayState, RelayView};
use crate::router::Router;
use crate::session_stats::{ClusterView, MediaProxySession, RelaySummary};

/// The cluster as the router and the pool know it.
pub struct RouterView {
    router: Arc<Router>,
}

impl std::fmt::Debug for RouterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterView").finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RouterView {
    /// A view of `router` and its relays.
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }

    /// Each relay with its live statistics, when it gave them within the router's
    /// relay timeout. Relays that time out commands are not asked.
    async fn relays_live(&self) -> Vec<(RelayView, Option<RelayLive>)> {
        let relays = self.router.relays();
        let deadline = self.router.relay_timeout();
        let pool = self.router.pool();
        let asked = relays.iter().map(|r| async move {
            if r.state == RelayState::TimedOut {
                return None;
            }
            // The pools bound their own waits; this bounds a pool that does not.
            tokio::time::timeout(
                deadline + Duration::from_millis(50),
                pool.live(r.id, deadline),
            )
            .await
            .ok()
            .flatten()
        });
        let live = futures_util::future::join_all(asked).await;
        relays.into_iter().zip(live).collect()
    }
}

impl ClusterView for RouterView {
    fn summary(&self) -> PoolFuture<'_, Vec<RelaySummary>> {
        Box::pin(async move {
            self.relays_live()
                .await
                .into_iter()
                .map(|(r, live)| summarize(&r, live.as_ref()))
                .collect()
        })
    }

    fn sessions(&self) -> PoolFuture<'_, Vec<MediaProxySession>> {
        Box::pin(async move {
            let mut by_relay: HashMap<String, HashMap<String, SessionRecord>> = self
                .relays_live()
                .await
                .into_iter()
                .filter_map(|(r, live)| {
                    let calls = live?
                        .calls
                        .into_iter()
                        .map(|c| (c.call_id.clone(), c))
                        .collect();
                    Some((r.name, calls))
                })
                .collect();
            let now = unix_ms();
            self.router
                .calls()
                .into_iter()
                .map(|(call_id, placed)| {
                    let mut take = |relay: &str| {
                        by_relay
                            .get_mut(relay)
                            .and_then(|calls| calls.remove(&call_id))
                    };
                    let live = take(&placed.relay);
                    let second = placed.second_relay.as_deref().and_then(&mut take);
                    let mut record = live.unwrap_or_else(|| SessionRecord {
                        call_id: call_id.clone(),
                        from_tag: placed.from_tag.clone().unwrap_or_default(),
                        to_tag: placed.to_tag.clone().unwrap_or_default(),
                        start_unix_ms: placed.start_unix_ms,
                        end_unix_ms: now.max(placed.start_unix_ms),
                        ..SessionRecord::default()
                    });
                    if let Some(second) = second {
                        record.streams.extend(second.streams);
                    }
                    MediaProxySession::from_record(&record, &self.router.sip_info(&call_id))
                })
                .collect()
        })
    }
}

/// One relay as `summary` lists it, with its live statistics when it gave them.
fn summarize(r: &RelayView, live: Option<&RelayLive>) -> RelaySummary {
    let ip = r
        .addresses
        .first()
        .map_or_else(|| r.name.clone(), ToString::to_string);
    let status = match r.state {
        RelayState::Active => "active",
        RelayState::Halting => "halting",
        RelayState::TimedOut => return RelaySummary::error(ip),
    };
    let mut stream_count = BTreeMap::new();
    for record in live.iter().flat_map(|l| &l.calls) {
        for s in &record.streams {
            *stream_count.entry(s.media_type.clone()).or_insert(0) += 1;
        }
    }
    RelaySummary::Up {
        ip,
        version: live.map_or_else(|| "unknown".to_owned(), |l| l.version.clone()),
        status: status.to_owned(),
        uptime: live.map_or(0, |l| l.uptime),
        session_count: live.map_or(r.sessions, |l| l.calls.len() as u64),
        stream_count,
        bps_relayed: live.map_or(r.bps, |l| l.bps),
    }
}
