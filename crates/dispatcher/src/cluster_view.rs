//! [`RouterView`]: the cluster as monitoring sees it ([`ClusterView`]), read from the
//! router's session map and relay pool, for the management interface and the admin
//! API.
//!
//! * `summary`: one entry per relay the pool has now, in the pool's order: its first
//!   media address (MediaProxy's `ip`), `active` or `halting`, its calls and bit rate
//!   as the pool last heard. A relay that stopped answering (timed out) is listed as
//!   MediaProxy lists one: `{"status": "error", "ip": ...}`. Version, uptime and
//!   streams by media type are known for in-process relays (this build's version,
//!   the dispatcher's uptime, their live calls); for remote relays the link carries
//!   none of them, so `version` is `unknown`, `uptime` 0 and `stream_count` empty.
//! * `sessions`: every placed call, sorted by Call-ID. A call on an in-process relay
//!   has its live statistics (streams, codecs, counters); a call on a remote relay is
//!   listed from the session map alone (tags, start, duration, no streams), since the
//!   link has no request for live statistics. URIs and User-Agents come from the
//!   MediaProxy front door.
//!
//! What it does not: ask relays anything (it only reads what the pool and the map
//! hold, so answering never waits on the network).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use mediagate_relay::record::SessionRecord;

use crate::local_pool::LocalPool;
use crate::pool::RelayState;
use crate::router::Router;
use crate::session_stats::{ClusterView, MediaProxySession, RelaySummary};

/// The cluster as the router and the pool know it.
pub struct RouterView {
    router: Arc<Router>,
    local: Option<Arc<LocalPool>>,
    started: Instant,
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
    /// A view of `router`; `local` gives the in-process relays' live details.
    pub fn new(router: Arc<Router>, local: Option<Arc<LocalPool>>) -> Self {
        Self {
            router,
            local,
            started: Instant::now(),
        }
    }

    /// Live records of the in-process relay `name`, by Call-ID.
    fn local_calls(&self, name: &str) -> Option<HashMap<String, SessionRecord>> {
        let relay = self.local.as_ref()?.relay(name)?;
        Some(
            relay
                .live_calls()
                .into_iter()
                .map(|(r, _)| (r.call_id.clone(), r))
                .collect(),
        )
    }
}

impl ClusterView for RouterView {
    fn summary(&self) -> Vec<RelaySummary> {
        self.router
            .relays()
            .into_iter()
            .map(|r| {
                let ip = r
                    .addresses
                    .first()
                    .map_or_else(|| r.name.clone(), ToString::to_string);
                let status = match r.state {
                    RelayState::Active => "active",
                    RelayState::Halting => "halting",
                    RelayState::TimedOut => return RelaySummary::error(ip),
                };
                let local = self.local_calls(&r.name);
                let mut stream_count = BTreeMap::new();
                for record in local.iter().flat_map(HashMap::values) {
                    for s in &record.streams {
                        *stream_count.entry(s.media_type.clone()).or_insert(0) += 1;
                    }
                }
                RelaySummary::Up {
                    ip,
                    version: if local.is_some() {
                        env!("CARGO_PKG_VERSION").to_owned()
                    } else {
                        "unknown".to_owned()
                    },
                    status: status.to_owned(),
                    uptime: if local.is_some() {
                        self.started.elapsed().as_secs()
                    } else {
                        0
                    },
                    session_count: r.sessions,
                    stream_count,
                    bps_relayed: r.bps,
                }
            })
            .collect()
    }

    fn sessions(&self) -> Vec<MediaProxySession> {
        let now = unix_ms();
        let mut by_relay: HashMap<String, Option<HashMap<String, SessionRecord>>> = HashMap::new();
        self.router
            .calls()
            .into_iter()
            .map(|(call_id, placed)| {
                let live = by_relay
                    .entry(placed.relay.clone())
                    .or_insert_with(|| self.local_calls(&placed.relay))
                    .as_mut()
                    .and_then(|calls| calls.remove(&call_id));
                let record = live.unwrap_or_else(|| SessionRecord {
                    call_id: call_id.clone(),
                    from_tag: placed.from_tag.clone().unwrap_or_default(),
                    to_tag: placed.to_tag.clone().unwrap_or_default(),
                    start_unix_ms: placed.start_unix_ms,
                    end_unix_ms: now.max(placed.start_unix_ms),
                    ..SessionRecord::default()
                });
                MediaProxySession::from_record(&record, &self.router.sip_info(&call_id))
            })
            .collect()
    }
}
