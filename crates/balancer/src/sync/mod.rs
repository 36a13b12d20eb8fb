//! Failover through keepalived (issue 14 item 7): the active balancer streams its
//! session table to the standby, and the standby takes those sessions over when
//! keepalived makes it the VRRP master.
//!
//! How the pieces fit (the operator's side is `config/keepalived-mediagate.conf`):
//! * keepalived owns the VIP and decides who is active; its notify script writes
//!   `MASTER`, `BACKUP` or `FAULT` into `[balancer] vrrp_state_file`, which
//!   [`run`] polls. Without that key the balancer is always active.
//! * The balancer's health drives keepalived's priority through
//!   `[balancer] vrrp_track_file` (`0` while every RTSP service has a back end up, `1`
//!   otherwise), and keepalived's track script checks the RTSP port answers, so a
//!   dead balancer loses the VIP within a second.
//! * While active, the balancer connects to `sync_peer` and sends [`wire`] messages:
//!   a full snapshot on connect, then the sessions that appeared or changed (a new
//!   stream, a latch) and those that ended, found by diffing the table ten times a
//!   second (less often above 10,000 sessions: about 100,000 records a second). The standby accepts on `sync_listen`, only from `sync_peer`'s IP, and
//!   keeps what it receives in a [`Store`] beside its own table.
//! * On becoming active ([`adopt`]) every stored session enters the table under the
//!   ID the client knows, on the same back end with the back end's own session ID,
//!   with a fresh timeout; its relayed pairs are bound at the same ports and started
//!   towards where each side was latched, so a client's next keep-alive and TEARDOWN
//!   reach the same back end and its UDP media keeps flowing.
//!
//! What it does not: elect anything (keepalived does), sync keep-alive refreshes (a
//! takeover gives every session a fresh timeout instead), sync client-IP persistence
//! or tunnels, or hand a session back when the old active returns (run keepalived
//! with `nopreempt`, as the shipped config does). TCP connections through the
//! balancer (RTSP control, interleaved media) break on failover as with any proxy;
//! clients reconnect and carry on with their session ID.

pub(crate) mod run;
pub(crate) mod wire;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mediagate_relay::engine::Expected;

use crate::backend::BackendId;
use crate::rtsp::sessions::SessionEntry;
use crate::service::{RelayedPair, Service};
use wire::{Message, PairRecord, SessionRecord};

/// Every session of `svc`'s table as the sync stream carries it.
pub(crate) fn export(svc: &Service) -> Vec<SessionRecord> {
    let mut pairs = svc.relayed_pairs();
    let table = svc.table();
    let mut out = Vec::with_capacity(table.len());
    for (id, entry) in table.entries() {
        let Some(backend) = svc.backend(entry.backend) else {
            continue;
        };
        let relayed = pairs.remove(id).unwrap_or_default();
        let records: Vec<PairRecord> = relayed
            .iter()
            .map(|p| PairRecord {
                sides: p.pair.sides,
                backend_endpoint: p.expected[0].endpoint,
                backend_ip: p.expected[0].ip,
                client_endpoint: p.expected[1].endpoint,
                client_ip: p.expected[1].ip,
                latched: svc
                    .relay
                    .as_ref()
                    .map_or([None, None], |r| r.latched(p.pair)),
            })
            .collect();
        out.push(SessionRecord {
            service: svc.name.clone(),
            id: id.clone(),
            backend: entry.backend.0,
            backend_addr: backend.addr,
            server_id: entry.server_id.clone(),
            timeout_ms: u64::try_from(entry.timeout.as_millis()).unwrap_or(u64::MAX),
            streams: entry.streams,
            client: records.iter().find_map(|p| p.client_ip),
            pairs: records,
        });
    }
    out
}

/// Why a synced session was not taken over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdoptError {
    #[error(
        "back end {0} is not this node's back end {1} of the service; configure both nodes alike"
    )]
    OtherBackend(std::net::SocketAddr, u32),
    #[error("the session table is full or already holds the session")]
    Refused,
}

/// Takes over session `record` (the caller found its service): into the table with a
/// fresh timeout, its relayed pairs bound at the same ports and started. Returns how
/// many of its pairs could not be bound (their ports taken or not this node's).
pub(crate) fn adopt(
    svc: &Service,
    record: &SessionRecord,
    now: Instant,
) -> Result<usize, AdoptError> {
    let backend = BackendId(record.backend);
    match svc.backend(backend) {
        Some(b) if b.addr == record.backend_addr => {}
        _ => {
            return Err(AdoptError::OtherBackend(
                record.backend_addr,
                record.backend,
            ))
        }
    }
    let entry = SessionEntry {
        backend,
        server_id: record.server_id.clone(),
        timeout: Duration::from_millis(record.timeout_ms),
        last_seen: now,
        streams: record.streams,
        pending_setups: 0,
    };
    if !svc.table().adopt(&record.id, entry) {
        return Err(AdoptError::Refused);
    }
    let mut unbound = 0;
    for p in &record.pairs {
        let Some(relay) = &svc.relay else {
            unbound += 1;
            continue;
        };
        let pair = mediagate_relay::engine::Pair { sides: p.sides };
        if let Err(e) = relay.open_at(pair, now) {
            tracing::warn!(service = %svc.name, session = %record.id, "balancer: cannot bind a synced pair at {:?}: {e}", p.sides);
            unbound += 1;
            continue;
        }
        // Where each side was latched is where its media really comes from (a
        // client's NAT mapping): send there at once, before it sends again.
        let expected = [
            Expected {
                endpoint: p.latched[0].or(p.backend_endpoint),
                ip: p.backend_ip,
            },
            Expected {
                endpoint: p.latched[1].or(p.client_endpoint),
                ip: p.client_ip,
            },
        ];
        relay.start_pair(pair, expected, now);
        svc.attach_pair(
            &record.id,
            RelayedPair {
                backend,
                pair,
                expected,
            },
        );
    }
    Ok(unbound)
}

/// What the standby holds of its peer's table, per service, bounded.
#[derive(Debug)]
pub(crate) struct Store {
    sessions: HashMap<(String, String), SessionRecord>,
    cap: usize,
    /// The peer's full snapshot arrived on the current connection.
    pub(crate) synced: bool,
    /// Sessions dropped because the store was full.
    pub(crate) dropped: u64,
}

impl Store {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            cap,
            synced: false,
            dropped: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Applies one message of the peer's stream.
    pub(crate) fn apply(&mut self, message: Message) {
        match message {
            // A new connection starts with a full snapshot: what was held is stale.
            Message::Hello(_) => {
                self.sessions.clear();
                self.synced = false;
            }
            Message::Add(r) => {
                let key = (r.service.clone(), r.id.clone());
                if self.sessions.len() >= self.cap && !self.sessions.contains_key(&key) {
                    self.dropped += 1;
                    return;
                }
                self.sessions.insert(key, r);
            }
            Message::Remove(r) => {
                self.sessions.remove(&(r.service, r.id));
            }
            Message::Synced(_) => self.synced = true,
        }
    }

    /// Everything held, emptied (the node became active).
    pub(crate) fn take(&mut self) -> Vec<SessionRecord> {
        self.synced = false;
        self.sessions.drain().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests;
