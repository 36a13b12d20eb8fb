//! The edge's running viewer sessions as the admin API sees them: who, from where,
//! watching what, how, since when, and a way to disconnect each.
//!
//! What it does: viewer connections add a [`LiveViewer`] when a session opens (its
//! first SETUP), update its transport, and remove it when the session ends; the
//! registry hands out copies for a picture and pokes a connection to close. Counters
//! are not kept here: a picture reads each session's [`Tally`] (on-demand viewers are
//! counted into it per packet) and adds what the live hubs have sent a playing viewer
//! since it joined (added to the tally only when it leaves), so forwarding pays nothing
//! for the API.
//!
//! What it does not: end sessions itself. Disconnecting pokes the connection's task,
//! which closes the connection and ends its sessions with reason `admin` through the
//! usual path (one "ended" event each, records, logs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::session::ViewerTransport;
use crate::sink::{Counts, Tally};

/// Longest user agent kept (a hostile client may send kilobytes).
const MAX_USER_AGENT: usize = 256;

/// One running viewer session.
#[derive(Debug, Clone)]
pub(crate) struct LiveViewer {
    pub id: String,
    pub peer: SocketAddr,
    pub url: String,
    pub transport: ViewerTransport,
    pub user_agent: Option<String>,
    pub started_unix_ms: u64,
    pub started: Instant,
    pub tally: Arc<Tally>,
    /// The connection's task wakes on it and closes the connection.
    pub disconnect: Arc<Notify>,
}

/// A viewer session as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerInfo {
    /// The RTSP `Session` id.
    pub id: String,
    /// The viewer's address.
    pub address: SocketAddr,
    /// How it receives its media.
    pub transport: ViewerTransport,
    /// The stream URL as the viewer named it.
    pub url: String,
    /// Its `User-Agent` (at most 256 characters), if it sent one.
    pub user_agent: Option<String>,
    /// When the session opened, Unix milliseconds.
    pub started_unix_ms: u64,
    /// How long it has been open.
    pub watched: Duration,
    /// What it has been sent, and lost by falling behind.
    pub counts: Counts,
}

/// Every running viewer session of one edge, by session id.
#[derive(Debug, Default)]
pub(crate) struct ViewerRegistry {
    map: Mutex<HashMap<String, LiveViewer>>,
    /// Woken whenever a session leaves the registry (it ended), for a connection
    /// waiting on a handoff (`parked::ParkedSessions::adopt_after_handoff`).
    removed: Notify,
}

impl ViewerRegistry {
    fn map(&self) -> MutexGuard<'_, HashMap<String, LiveViewer>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, mut viewer: LiveViewer) {
        if let Some(ua) = &mut viewer.user_agent {
            if let Some((cut, _)) = ua.char_indices().nth(MAX_USER_AGENT) {
                ua.truncate(cut);
            }
        }
        self.map().insert(viewer.id.clone(), viewer);
    }

    pub fn set_transport(&self, id: &str, transport: ViewerTransport) {
        if let Some(v) = self.map().get_mut(id) {
            v.transport = transport;
        }
    }

    /// Who closes session `id` for the admin API from now on (a connection that
    /// adopted it, or its parked timer).
    pub fn set_disconnect(&self, id: &str, disconnect: Arc<Notify>) {
        if let Some(v) = self.map().get_mut(id) {
            v.disconnect = disconnect;
        }
    }

    pub fn remove(&self, id: &str) {
        self.map().remove(id);
        self.removed.notify_waiters();
    }

    /// Woken at every [`ViewerRegistry::remove`].
    pub fn removed(&self) -> &Notify {
        &self.removed
    }

    pub fn contains(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    /// Asks the connection of session `id` to close; false when no such session runs.
    pub fn disconnect(&self, id: &str) -> bool {
        match self.map().get(id) {
            Some(v) => {
                // A stored permit: the connection's task sees it even if it is busy
                // with a request right now.
                v.disconnect.notify_one();
                true
            }
            None => false,
        }
    }

    /// Every session, oldest first, with `live` (from the hubs, by tally address)
    /// added to its tally's counts.
    pub fn picture(&self, live: &HashMap<usize, Counts>, now: Instant) -> Vec<ViewerInfo> {
        let mut out: Vec<ViewerInfo> = self
            .map()
            .values()
            .map(|v| {
                let mut counts = v.tally.counts();
                if let Some(l) = live.get(&(Arc::as_ptr(&v.tally) as usize)) {
                    counts.packets += l.packets;
                    counts.bytes += l.bytes;
                    counts.lost += l.lost;
                }
                ViewerInfo {
                    id: v.id.clone(),
                    address: v.peer,
                    transport: v.transport,
                    url: v.url.clone(),
                    user_agent: v.user_agent.clone(),
                    started_unix_ms: v.started_unix_ms,
                    watched: now.saturating_duration_since(v.started),
                    counts,
                }
            })
            .collect();
        out.sort_by(|a, b| (a.started_unix_ms, &a.id).cmp(&(b.started_unix_ms, &b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(id: &str, started_unix_ms: u64, tally: Arc<Tally>, now: Instant) -> LiveViewer {
        LiveViewer {
            id: id.into(),
            peer: "192.0.2.1:5000".parse().unwrap(),
            url: "rtsp://edge/cam1".into(),
            transport: ViewerTransport::Tcp,
            user_agent: Some("x".repeat(1000)),
            started_unix_ms,
            started: now,
            tally,
            disconnect: Arc::default(),
        }
    }

    #[test]
    fn a_picture_adds_the_hubs_counts_to_the_tally() {
        let now = Instant::now();
        let reg = ViewerRegistry::default();
        let tally = Arc::new(Tally::default());
        tally.add(10, 1000, 1);
        reg.add(viewer("b", 2, tally.clone(), now));
        reg.add(viewer("a", 1, Arc::default(), now));
        reg.set_transport("b", ViewerTransport::Udp);
        let live = HashMap::from([(
            Arc::as_ptr(&tally) as usize,
            Counts {
                packets: 5,
                bytes: 500,
                lost: 2,
            },
        )]);
        let later = now + Duration::from_secs(7);
        let picture = reg.picture(&live, later);
        assert_eq!(picture.len(), 2);
        assert_eq!(picture[0].id, "a", "oldest first");
        let b = &picture[1];
        assert_eq!(
            b.counts,
            Counts {
                packets: 15,
                bytes: 1500,
                lost: 3
            }
        );
        assert_eq!(b.transport, ViewerTransport::Udp);
        assert_eq!(b.watched, Duration::from_secs(7));
        assert_eq!(b.user_agent.as_ref().map(String::len), Some(MAX_USER_AGENT));
    }

    #[tokio::test]
    async fn disconnecting_wakes_the_connection_even_if_it_listens_later() {
        let reg = ViewerRegistry::default();
        let v = viewer("a", 1, Arc::default(), Instant::now());
        let poke = v.disconnect.clone();
        reg.add(v);
        assert!(!reg.disconnect("nope"));
        assert!(reg.disconnect("a"));
        tokio::time::timeout(Duration::from_secs(1), poke.notified())
            .await
            .expect("the permit was kept");
        reg.remove("a");
        assert!(!reg.contains("a"));
    }
}
