//! [`MultiPool`]: several [`RelayPool`]s behind one, so a dispatcher can use relays in
//! its own process ([`LocalPool`](crate::local_pool::LocalPool)) and relays linked over
//! TLS ([`LinkPool`](crate::link::LinkPool)) at the same time.
//!
//! What it does: gives each member pool a slot and keeps relay ids apart by writing
//! the slot into the id's top 16 bits (slot 0's ids are left as they are, so a
//! dispatcher with one pool sees the ids that pool gives); sends a command to the
//! member that owns the id; forwards every member's events with ids rewritten.
//!
//! What it does not: choose among members (the router sees one list of relays) or keep
//! relay names apart: a remote relay whose certificate names it like a local relay
//! shares that name in the session map, so do not give both the same name.

use std::sync::Arc;
use std::time::Duration;

use mediagate_ng::bencode::Value;
use tokio::sync::broadcast;

use crate::pool::{CommandError, PoolFuture, RelayEvent, RelayId, RelayLive, RelayPool, RelayView};

/// How many bits of a [`RelayId`] a member keeps for its own ids.
const SLOT_SHIFT: u32 = 48;
const LOCAL_MASK: u64 = (1 << SLOT_SHIFT) - 1;

/// Relays of several pools as one; see the module docs.
pub struct MultiPool {
    members: Vec<Arc<dyn RelayPool>>,
    events: broadcast::Sender<RelayEvent>,
}

impl std::fmt::Debug for MultiPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiPool")
            .field("members", &self.members.len())
            .finish()
    }
}

fn outer(slot: usize, id: RelayId) -> RelayId {
    RelayId(((slot as u64) << SLOT_SHIFT) | (id.0 & LOCAL_MASK))
}

fn inner(id: RelayId) -> (usize, RelayId) {
    ((id.0 >> SLOT_SHIFT) as usize, RelayId(id.0 & LOCAL_MASK))
}

fn rewrite(slot: usize, event: RelayEvent) -> RelayEvent {
    match event {
        RelayEvent::Connected { relay, calls } => RelayEvent::Connected {
            relay: outer(slot, relay),
            calls,
        },
        RelayEvent::Disconnected { relay } => RelayEvent::Disconnected {
            relay: outer(slot, relay),
        },
        RelayEvent::Ended {
            relay,
            call_id,
            reason,
            stats,
        } => RelayEvent::Ended {
            relay: outer(slot, relay),
            call_id,
            reason,
            stats,
        },
    }
}

impl MultiPool {
    /// Joins `members` (at most 65,536) and starts forwarding their events on the
    /// current runtime. Members subscribe here, so events a member sends after this
    /// call reach [`RelayPool::subscribe`]rs of the joined pool.
    pub fn new(members: Vec<Arc<dyn RelayPool>>) -> Self {
        assert!(members.len() <= 1 << (64 - SLOT_SHIFT), "too many pools");
        let (events, _) = broadcast::channel(4096);
        for (slot, member) in members.iter().enumerate() {
            let mut from = member.subscribe();
            let to = events.clone();
            tokio::spawn(async move {
                loop {
                    match from.recv().await {
                        Ok(event) => {
                            // No subscriber yet is fine, as in the members.
                            let _ = to.send(rewrite(slot, event));
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                "dispatcher: {n} relay event(s) lost (too many at once)"
                            );
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        Self { members, events }
    }
}

/// The pool the role's router uses: the local relays alone, the linked relays alone
/// (when no local relay is configured), or both joined, local first so local ids stay
/// as the [`LocalPool`](crate::local_pool::LocalPool) gives them.
pub(crate) fn joined(
    local: &Arc<crate::local_pool::LocalPool>,
    link: Option<&crate::link::LinkPool>,
) -> Arc<dyn RelayPool> {
    let local_relays = !local.engines().is_empty();
    match link {
        None => Arc::clone(local) as Arc<dyn RelayPool>,
        Some(link) if !local_relays => Arc::new(link.clone()),
        Some(link) => Arc::new(MultiPool::new(vec![
            Arc::clone(local) as Arc<dyn RelayPool>,
            Arc::new(link.clone()),
        ])),
    }
}

impl RelayPool for MultiPool {
    fn relays(&self) -> Vec<RelayView> {
        let mut all = Vec::new();
        for (slot, member) in self.members.iter().enumerate() {
            all.extend(member.relays().into_iter().map(|mut v| {
                v.id = outer(slot, v.id);
                v
            }));
        }
        all
    }

    fn command(
        &self,
        relay: RelayId,
        request: Value,
        deadline: Duration,
    ) -> PoolFuture<'_, Result<Value, CommandError>> {
        let (slot, id) = inner(relay);
        match self.members.get(slot) {
            Some(member) => member.command(id, request, deadline),
            None => Box::pin(async { Err(CommandError::Gone) }),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.events.subscribe()
    }

    fn live(&self, relay: RelayId, deadline: Duration) -> PoolFuture<'_, Option<RelayLive>> {
        let (slot, id) = inner(relay);
        match self.members.get(slot) {
            Some(member) => member.live(id, deadline),
            None => Box::pin(async { None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Mutex;

    use super::*;
    use crate::pool::RelayState;

    /// A pool with fixed relays that answers each command with the id it got.
    struct Fixed {
        ids: Vec<u64>,
        events: broadcast::Sender<RelayEvent>,
        got: Mutex<Vec<RelayId>>,
    }

    impl Fixed {
        fn new(ids: Vec<u64>) -> Arc<Self> {
            Arc::new(Self {
                ids,
                events: broadcast::channel(16).0,
                got: Mutex::new(Vec::new()),
            })
        }
    }

    impl RelayPool for Fixed {
        fn relays(&self) -> Vec<RelayView> {
            self.ids
                .iter()
                .map(|&id| RelayView {
                    id: RelayId(id),
                    name: format!("r{id}"),
                    addresses: vec![IpAddr::from([127, 0, 0, 1])],
                    state: RelayState::Active,
                    sessions: 0,
                    bps: 0,
                    report: None,
                })
                .collect()
        }

        fn command(
            &self,
            relay: RelayId,
            _request: Value,
            _deadline: Duration,
        ) -> PoolFuture<'_, Result<Value, CommandError>> {
            self.got.lock().unwrap().push(relay);
            let known = self.ids.contains(&relay.0);
            Box::pin(async move {
                if known {
                    Ok(Value::Int(relay.0 as i64))
                } else {
                    Err(CommandError::Gone)
                }
            })
        }

        fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
            self.events.subscribe()
        }
    }

    #[tokio::test]
    async fn ids_of_two_pools_stay_apart_and_commands_reach_their_owner() {
        let local = Fixed::new(vec![1, 2]);
        let linked = Fixed::new(vec![1]);
        let multi = MultiPool::new(vec![
            Arc::clone(&local) as Arc<dyn RelayPool>,
            Arc::clone(&linked) as Arc<dyn RelayPool>,
        ]);
        let ids: Vec<RelayId> = multi.relays().iter().map(|v| v.id).collect();
        let remote = RelayId((1 << SLOT_SHIFT) | 1);
        assert_eq!(ids, vec![RelayId(1), RelayId(2), remote]);

        let d = Duration::from_millis(10);
        assert_eq!(
            multi.command(RelayId(2), Value::Int(0), d).await,
            Ok(Value::Int(2))
        );
        assert_eq!(
            multi.command(remote, Value::Int(0), d).await,
            Ok(Value::Int(1))
        );
        assert_eq!(*local.got.lock().unwrap(), vec![RelayId(2)]);
        assert_eq!(*linked.got.lock().unwrap(), vec![RelayId(1)]);
        let nobody = RelayId((7 << SLOT_SHIFT) | 1);
        assert_eq!(
            multi.command(nobody, Value::Int(0), d).await,
            Err(CommandError::Gone)
        );
    }

    #[tokio::test]
    async fn events_come_through_with_the_joined_ids() {
        let local = Fixed::new(vec![1]);
        let linked = Fixed::new(vec![1]);
        let multi = MultiPool::new(vec![
            Arc::clone(&local) as Arc<dyn RelayPool>,
            Arc::clone(&linked) as Arc<dyn RelayPool>,
        ]);
        let mut events = multi.subscribe();
        linked
            .events
            .send(RelayEvent::Disconnected { relay: RelayId(1) })
            .unwrap();
        local
            .events
            .send(RelayEvent::Connected {
                relay: RelayId(1),
                calls: vec!["c".into()],
            })
            .unwrap();
        let mut got = vec![
            tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap(),
            tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap(),
        ];
        got.sort_by_key(|e| matches!(e, RelayEvent::Disconnected { .. }));
        assert_eq!(
            got,
            vec![
                RelayEvent::Connected {
                    relay: RelayId(1),
                    calls: vec!["c".into()]
                },
                RelayEvent::Disconnected {
                    relay: RelayId((1 << SLOT_SHIFT) | 1)
                },
            ]
        );
    }
}
