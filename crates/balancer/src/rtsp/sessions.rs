//! The balancer's RTSP session table (sans-IO: no sockets, time passed in).
//!
//! What it does: maps the session IDs the balancer hands to clients to the back end
//! that owns the session and the ID that back end minted, so two back ends minting the
//! same ID never collide (the "session ID mapping" problem); refreshes a session on
//! every request that names it (keep-alives), expires it after its timeout, drops it on
//! TEARDOWN, bounds the table, and caps pending SETUPs and streams per session
//! (RFC 2326 §12.37 Session, §10.7 TEARDOWN; the caps as `nf_conntrack_rtsp`).
//!
//! What it does not: mint IDs (the caller passes a random source, so tests are
//! deterministic), parse headers, or know about connections.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::backend::BackendId;

/// One session as the table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionEntry {
    pub(crate) backend: BackendId,
    /// The ID the back end minted.
    pub(crate) server_id: String,
    pub(crate) timeout: Duration,
    pub(crate) last_seen: Instant,
    pub(crate) streams: u32,
    pub(crate) pending_setups: u32,
}

/// Why a SETUP is refused before it reaches the back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupRefused {
    /// The table holds `max_sessions` already.
    TableFull,
    /// This session has `max_pending_setups` SETUPs in flight.
    TooManyPending,
    /// This session has `max_streams` streams.
    TooManyStreams,
}

/// The caps a table enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) max_sessions: usize,
    pub(crate) max_pending_setups: u32,
    pub(crate) max_streams: u32,
}

#[derive(Debug)]
pub(crate) struct SessionTable {
    by_id: HashMap<String, SessionEntry>,
    by_server: HashMap<(BackendId, String), String>,
    limits: SessionLimits,
}

impl SessionTable {
    pub(crate) fn new(limits: SessionLimits) -> Self {
        Self {
            by_id: HashMap::new(),
            by_server: HashMap::new(),
            limits,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Sessions per back end, for schedulers and counters.
    pub(crate) fn count_by_backend(&self) -> HashMap<BackendId, u64> {
        let mut counts = HashMap::new();
        for entry in self.by_id.values() {
            *counts.entry(entry.backend).or_insert(0) += 1;
        }
        counts
    }

    /// The session `id` names, refreshed; `None` when unknown or expired (an expired
    /// one is removed and returned in the second value, so the caller can count it).
    pub(crate) fn route(&mut self, id: &str, now: Instant) -> Option<&SessionEntry> {
        let expired = self
            .by_id
            .get(id)
            .is_some_and(|e| now.saturating_duration_since(e.last_seen) >= e.timeout);
        if expired {
            self.remove(id);
            return None;
        }
        let entry = self.by_id.get_mut(id)?;
        entry.last_seen = now;
        Some(entry)
    }

    /// The balancer's ID for a back end's session, if the table has it.
    pub(crate) fn client_id(&self, backend: BackendId, server_id: &str) -> Option<&str> {
        self.by_server
            .get(&(backend, server_id.to_owned()))
            .map(String::as_str)
    }

    /// Whether a SETUP may go to the back end: `session` is the balancer's ID the
    /// request names, `None` for a SETUP that will create a session. Counts it as
    /// pending when allowed; [`Self::setup_done`] ends that.
    pub(crate) fn begin_setup(&mut self, session: Option<&str>) -> Result<(), SetupRefused> {
        let Some(id) = session else {
            return if self.by_id.len() >= self.limits.max_sessions {
                Err(SetupRefused::TableFull)
            } else {
                Ok(())
            };
        };
        let Some(entry) = self.by_id.get_mut(id) else {
            return Ok(());
        };
        if entry.pending_setups >= self.limits.max_pending_setups {
            return Err(SetupRefused::TooManyPending);
        }
        if entry.streams + entry.pending_setups >= self.limits.max_streams {
            return Err(SetupRefused::TooManyStreams);
        }
        entry.pending_setups += 1;
        Ok(())
    }

    /// A SETUP's answer came: the session (by the ID the request named, or the one
    /// the answer made) gains a stream when it succeeded. A SETUP that created a
    /// session is counted by [`Self::bind`].
    pub(crate) fn setup_done(&mut self, requested: Option<&str>, ok: bool) {
        if let Some(entry) = requested.and_then(|id| self.by_id.get_mut(id)) {
            entry.pending_setups = entry.pending_setups.saturating_sub(1);
            if ok {
                entry.streams += 1;
            }
        }
    }

    /// The balancer's ID for the back end's session `server_id`, created with
    /// `mint` (retried on the unlikely collision) when new. `None` when the table is
    /// full.
    pub(crate) fn bind(
        &mut self,
        backend: BackendId,
        server_id: &str,
        timeout: Duration,
        now: Instant,
        mut mint: impl FnMut() -> String,
    ) -> Option<String> {
        let key = (backend, server_id.to_owned());
        if let Some(id) = self.by_server.get(&key) {
            let id = id.clone();
            if let Some(entry) = self.by_id.get_mut(&id) {
                entry.last_seen = now;
                entry.timeout = timeout;
            }
            return Some(id);
        }
        if self.by_id.len() >= self.limits.max_sessions {
            return None;
        }
        let id = loop {
            let id = mint();
            if !self.by_id.contains_key(&id) {
                break id;
            }
        };
        self.by_id.insert(
            id.clone(),
            SessionEntry {
                backend,
                server_id: server_id.to_owned(),
                timeout,
                last_seen: now,
                streams: 1,
                pending_setups: 0,
            },
        );
        self.by_server.insert(key, id.clone());
        Some(id)
    }

    /// Every session, for the failover sync stream.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&String, &SessionEntry)> {
        self.by_id.iter()
    }

    /// Failover: takes a session the peer balancer had, under the ID clients know.
    /// False when the ID or the back end's session is taken already, or the table is
    /// full.
    pub(crate) fn adopt(&mut self, id: &str, entry: SessionEntry) -> bool {
        let key = (entry.backend, entry.server_id.clone());
        if self.by_id.len() >= self.limits.max_sessions
            || self.by_id.contains_key(id)
            || self.by_server.contains_key(&key)
        {
            return false;
        }
        self.by_server.insert(key, id.to_owned());
        self.by_id.insert(id.to_owned(), entry);
        true
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<SessionEntry> {
        let entry = self.by_id.remove(id)?;
        self.by_server
            .remove(&(entry.backend, entry.server_id.clone()));
        Some(entry)
    }

    /// Removes every session whose timeout has passed; returns them.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(String, SessionEntry)> {
        let expired: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) >= e.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.remove(&id).map(|e| (id, e)))
            .collect()
    }

    /// Removes every session of `backend` (it was removed or died); returns them.
    pub(crate) fn remove_backend(&mut self, backend: BackendId) -> Vec<(String, SessionEntry)> {
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| e.backend == backend)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(&id).map(|e| (id, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SessionLimits = SessionLimits {
        max_sessions: 2,
        max_pending_setups: 2,
        max_streams: 3,
    };

    fn minter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("lb{n}")
        }
    }

    #[test]
    fn two_back_ends_minting_the_same_id_get_two_client_ids() {
        let now = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let mut mint = minter();
        let a = t
            .bind(
                BackendId(0),
                "1234",
                Duration::from_secs(60),
                now,
                &mut mint,
            )
            .unwrap();
        let b = t
            .bind(
                BackendId(1),
                "1234",
                Duration::from_secs(60),
                now,
                &mut mint,
            )
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(t.route(&a, now).unwrap().backend, BackendId(0));
        assert_eq!(t.route(&b, now).unwrap().backend, BackendId(1));
        assert_eq!(t.client_id(BackendId(1), "1234"), Some(b.as_str()));
        // The same back-end session again is the same client ID.
        let again = t
            .bind(
                BackendId(0),
                "1234",
                Duration::from_secs(60),
                now,
                &mut mint,
            )
            .unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn a_collision_of_minted_ids_is_retried() {
        let now = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let mut ids = ["same", "same", "other"].into_iter();
        let mut mint = || ids.next().unwrap().to_owned();
        t.bind(BackendId(0), "x", Duration::from_secs(1), now, &mut mint);
        let second = t.bind(BackendId(0), "y", Duration::from_secs(1), now, &mut mint);
        assert_eq!(second.as_deref(), Some("other"));
    }

    #[test]
    fn keep_alives_refresh_and_silence_expires() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let id = t
            .bind(BackendId(0), "s", Duration::from_secs(60), t0, minter())
            .unwrap();
        assert!(t.route(&id, t0 + Duration::from_secs(59)).is_some());
        assert!(t.expire(t0 + Duration::from_secs(100)).is_empty());
        let gone = t.expire(t0 + Duration::from_secs(119));
        assert_eq!(gone.len(), 1);
        assert!(t.route(&id, t0 + Duration::from_secs(119)).is_none());
        assert_eq!(t.client_id(BackendId(0), "s"), None);
    }

    #[test]
    fn a_request_after_the_timeout_finds_no_session() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let id = t
            .bind(BackendId(0), "s", Duration::from_secs(10), t0, minter())
            .unwrap();
        assert!(t.route(&id, t0 + Duration::from_secs(10)).is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let mut mint = minter();
        for s in ["a", "b"] {
            assert!(t.begin_setup(None).is_ok());
            t.bind(BackendId(0), s, Duration::from_secs(1), now, &mut mint)
                .unwrap();
        }
        assert_eq!(t.begin_setup(None), Err(SetupRefused::TableFull));
        assert!(t
            .bind(BackendId(0), "c", Duration::from_secs(1), now, &mut mint)
            .is_none());
        let first = t.client_id(BackendId(0), "a").unwrap().to_owned();
        t.remove(&first);
        assert!(t.begin_setup(None).is_ok());
    }

    #[test]
    fn pending_setups_and_streams_are_capped() {
        let now = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let id = t
            .bind(BackendId(0), "s", Duration::from_secs(60), now, minter())
            .unwrap();
        // One stream from the SETUP that made the session; two may be pending.
        assert!(t.begin_setup(Some(&id)).is_ok());
        assert!(t.begin_setup(Some(&id)).is_ok());
        assert_eq!(t.begin_setup(Some(&id)), Err(SetupRefused::TooManyPending));
        t.setup_done(Some(&id), true);
        t.setup_done(Some(&id), false);
        // Two streams now, one more allowed.
        assert!(t.begin_setup(Some(&id)).is_ok());
        t.setup_done(Some(&id), true);
        assert_eq!(t.begin_setup(Some(&id)), Err(SetupRefused::TooManyStreams));
    }

    #[test]
    fn an_adopted_session_routes_under_its_id_and_is_not_taken_twice() {
        let now = Instant::now();
        let mut t = SessionTable::new(LIMITS);
        let entry = SessionEntry {
            backend: BackendId(1),
            server_id: "srv".to_owned(),
            timeout: Duration::from_secs(60),
            last_seen: now,
            streams: 2,
            pending_setups: 0,
        };
        assert!(t.adopt("lb1", entry.clone()));
        assert!(!t.adopt("lb1", entry.clone()), "the ID is taken");
        assert!(
            !t.adopt("lb2", entry.clone()),
            "the back end's session is taken"
        );
        assert_eq!(t.route("lb1", now).map(|e| e.backend), Some(BackendId(1)));
        assert_eq!(t.client_id(BackendId(1), "srv"), Some("lb1"));
        assert_eq!(t.entries().count(), 1);
        let other = SessionEntry {
            server_id: "srv2".to_owned(),
            ..entry.clone()
        };
        assert!(t.adopt("lb2", other));
        let third = SessionEntry {
            server_id: "srv3".to_owned(),
            ..entry
        };
        assert!(!t.adopt("lb3", third), "the table is full");
    }

    #[test]
    fn a_back_end_s_sessions_can_be_dropped_at_once() {
        let now = Instant::now();
        let mut t = SessionTable::new(SessionLimits {
            max_sessions: 10,
            ..LIMITS
        });
        let mut mint = minter();
        for (b, s) in [(0, "a"), (1, "b"), (0, "c")] {
            t.bind(BackendId(b), s, Duration::from_secs(1), now, &mut mint);
        }
        assert_eq!(t.remove_backend(BackendId(0)).len(), 2);
        assert_eq!(t.count_by_backend().get(&BackendId(1)), Some(&1));
        assert_eq!(t.len(), 1);
    }
}
