//! [`ClusterAccounting`]: the dispatcher's [`EndedHook`], which accounts every call the
//! cluster finished and ends the dialogs whose media stopped (issue 15 items 4 and 6).
//!
//! For each ended call it finds the relay's record, then:
//! * **records store**: writes the record into `relay_sessions` (the relay's own table
//!   and schema), but only for calls of **remote** relays. An in-process relay
//!   (`[[dispatcher.local_relay]]`) is a relay engine with the process's records
//!   writer, which already wrote that record; writing it again would count the call
//!   twice. So the rule is by where the call ran, not by what the record says.
//! * **RADIUS** ([`RadiusAccounting`]), when configured: MediaProxy's attributes, from
//!   the record plus what the SIP proxy told (URIs, User-Agents), for every call.
//! * **dialog end** ([`DialogEnder`]), when configured, with MediaProxy's rule: the
//!   proxy gave a `dialog_id` and the relay timed the media out after it had started
//!   (some packet relayed), or the relay lost the call (it restarted). Calls from the
//!   `ng` front door carry no dialog id and are never ended here.
//!
//! Where the record comes from:
//! * a relay's own report of a call it ended (timeouts, operator): the event carries
//!   the record;
//! * a `delete`: the router hands the call over with the `delete` reply, which is not
//!   a record. The call then waits (at most [`AccountingOptions::record_wait`], longer
//!   than the relays' delete delay) for the relay's record of it, which comes through
//!   [`EndedHook::late_record`] once the relay has really removed the call;
//! * none (the relay lost the call, or its record never came): a record made from the
//!   placement, with no streams, so the call is still counted.
//!
//! What it does not: decide when a call ended (the router does) or deliver (the
//! RADIUS client and the records writer retry and spool).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use mediagate_ops::store::RecordSink;
use mediagate_relay::record::SessionRecord;

use crate::dialog_end::{DialogEnder, DialogRef};
use crate::radius::RadiusAccounting;
use crate::router::{parse_dialog_id, EndedCall, EndedHook};
use crate::session_stats::MediaProxySession;

/// The reason the router gives a call a relay no longer has.
const LOST: &str = "relay lost the call";

/// What [`ClusterAccounting`] does with finished calls.
#[derive(Debug, Clone, Default)]
pub struct AccountingOptions {
    /// Names of the in-process relays, whose engines write their own records.
    pub local_relays: HashSet<String>,
    /// The process's records writer.
    pub records: Option<RecordSink>,
    /// RADIUS accounting.
    pub radius: Option<RadiusAccounting>,
    /// Ending dialogs on the SIP proxy.
    pub dialogs: Option<Arc<DialogEnder>>,
    /// How long a deleted call waits for its relay's record before it is accounted
    /// from its placement alone.
    pub record_wait: Duration,
}

/// What became of one finished call, for tests and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Accounted {
    /// The record accounted (the relay's, or one made from the placement).
    pub record: SessionRecord,
    /// The relay it ran on.
    pub relay: String,
    /// Whether the record came from the relay.
    pub from_relay: bool,
    /// Whether it went to the records store.
    pub stored: bool,
    /// The dialog id the SIP proxy was asked to end, if any.
    pub dialog_ended: Option<u64>,
}

struct Waiting {
    call: EndedCall,
    since: Instant,
}

/// The dispatcher's accounting hook.
pub struct ClusterAccounting {
    /// `dialogs` is taken out into [`ClusterAccounting::dialogs`] (a reload replaces it).
    options: AccountingOptions,
    dialogs: Mutex<Option<Arc<DialogEnder>>>,
    waiting: Mutex<HashMap<(String, String), Waiting>>,
    seen: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Accounted>>>,
}

impl std::fmt::Debug for ClusterAccounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccounting")
            .field("local_relays", &self.options.local_relays)
            .field("radius", &self.options.radius.is_some())
            .field("dialogs", &self.dialogs().is_some())
            .field("waiting", &self.waiting().len())
            .finish()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The relay's record in `stats`, if it is one and is about `call_id`.
fn relay_record(call_id: &str, stats: &serde_json::Value) -> Option<SessionRecord> {
    SessionRecord::from_json_value(stats).filter(|r| r.call_id == call_id)
}

/// A record for a call whose relay gave none: placement, end now, no streams.
fn placement_record(call: &EndedCall, end_unix_ms: u64) -> SessionRecord {
    SessionRecord {
        call_id: call.call_id.clone(),
        from_tag: call.placed.from_tag.clone().unwrap_or_default(),
        to_tag: call.placed.to_tag.clone().unwrap_or_default(),
        start_unix_ms: call.placed.start_unix_ms,
        answer_unix_ms: 0,
        end_unix_ms: end_unix_ms.max(call.placed.start_unix_ms),
        reason: call.reason.clone(),
        streams: Vec::new(),
    }
}

/// Whether any packet was relayed for the call.
fn media_started(record: &SessionRecord) -> bool {
    record
        .streams
        .iter()
        .any(|s| s.caller.packets + s.callee.packets > 0)
}

impl ClusterAccounting {
    /// A hook acting as `options` say. Call [`ClusterAccounting::watch`] so deleted
    /// calls whose record never comes are still accounted.
    pub fn new(mut options: AccountingOptions) -> Arc<Self> {
        let dialogs = Mutex::new(options.dialogs.take());
        Arc::new(Self {
            options,
            dialogs,
            waiting: Mutex::new(HashMap::new()),
            seen: Mutex::new(None),
        })
    }

    fn dialogs(&self) -> Option<Arc<DialogEnder>> {
        self.dialogs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ends the dialogs of calls finishing from now on through `dialogs` (a reload
    /// of `[dispatcher.dialog_end]`); `None` stops ending them. Dialogs being ended
    /// finish with the ender they started with.
    pub fn set_dialogs(&self, dialogs: Option<Arc<DialogEnder>>) {
        *self.dialogs.lock().unwrap_or_else(PoisonError::into_inner) = dialogs;
    }

    /// Every accounted call from now on, for tests.
    pub fn observe(&self) -> tokio::sync::mpsc::UnboundedReceiver<Accounted> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<(String, String), Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls waiting for their relay's record.
    pub fn waiting_count(&self) -> usize {
        self.waiting().len()
    }

    /// Accounts, from their placement, the deleted calls that waited longer than
    /// `record_wait` at `now`.
    pub fn sweep(&self, now: Instant) {
        let wait = self.options.record_wait;
        let overdue: Vec<Waiting> = {
            let mut all = self.waiting();
            let keys: Vec<(String, String)> = all
                .iter()
                .filter(|(_, w)| now.saturating_duration_since(w.since) >= wait)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| all.remove(&k)).collect()
        };
        for w in overdue {
            tracing::info!(
                call = %w.call.call_id,
                "dispatcher: relay {} sent no record of deleted call {}; accounting its placement",
                w.call.relay,
                w.call.call_id
            );
            let record = placement_record(&w.call, unix_ms());
            self.finish(w.call, record, false);
        }
    }

    /// Runs [`ClusterAccounting::sweep`] every `every` until the hook is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                me.sweep(Instant::now());
            }
        });
    }

    fn finish(&self, call: EndedCall, record: SessionRecord, from_relay: bool) {
        let session = MediaProxySession::from_record(&record, &call.sip);
        let stored = match &self.options.records {
            Some(sink) if !self.options.local_relays.contains(&call.relay) => {
                if !sink.send(record.clone()) {
                    tracing::error!(call = %call.call_id, "dispatcher: records writer closed; record of {} lost", call.call_id);
                }
                true
            }
            _ => false,
        };
        if let Some(radius) = &self.options.radius {
            if let Err(e) = radius.account(&session) {
                tracing::error!(call = %call.call_id, "dispatcher: {e}");
            }
        }
        let dialog = dialog_to_end(&call, &record, &session);
        let dialogs = self.dialogs();
        if let (Some(id), Some(ender)) = (dialog, &dialogs) {
            let ender = Arc::clone(ender);
            let call_id = call.call_id.clone();
            tokio::spawn(async move {
                match ender.end(DialogRef::Id(id)).await {
                    Ok(()) => tracing::info!(
                        call = %call_id,
                        "dispatcher: dialog of {call_id} ended on the SIP proxy"
                    ),
                    Err(e) => tracing::warn!(
                        call = %call_id,
                        "dispatcher: could not end the dialog of {call_id}: {e}"
                    ),
                }
            });
        }
        tracing::info!(
            call = %call.call_id,
            "dispatcher: call {} on relay {} is over ({})",
            call.call_id,
            call.relay,
            record.reason
        );
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = seen.as_ref() {
            let _ = tx.send(Accounted {
                record,
                relay: call.relay,
                from_relay,
                stored,
                dialog_ended: dialog.filter(|_| dialogs.is_some()),
            });
        }
    }
}

/// MediaProxy's rule for ending a dialog on the proxy (see the module docs).
fn dialog_to_end(
    call: &EndedCall,
    record: &SessionRecord,
    session: &MediaProxySession,
) -> Option<u64> {
    let id = call
        .sip
        .dialog_id
        .or_else(|| call.placed.dialog_id.as_deref().and_then(parse_dialog_id))?;
    let ended_by_media = session.timed_out() && media_started(record);
    (ended_by_media || call.reason == LOST).then_some(id)
}

impl EndedHook for ClusterAccounting {
    fn ended(&self, call: EndedCall) {
        if let Some(record) = relay_record(&call.call_id, &call.stats) {
            self.finish(call, record, true);
        } else if call.reason == "deleted" {
            let key = (call.relay.clone(), call.call_id.clone());
            self.waiting().insert(
                key,
                Waiting {
                    call,
                    since: Instant::now(),
                },
            );
        } else {
            let record = placement_record(&call, unix_ms());
            self.finish(call, record, false);
        }
    }

    fn late_record(&self, relay: &str, call_id: &str, reason: &str, stats: serde_json::Value) {
        let waiting = self
            .waiting()
            .remove(&(relay.to_owned(), call_id.to_owned()));
        let Some(w) = waiting else {
            tracing::debug!(call = %call_id, "dispatcher: relay {relay} reported call {call_id} ({reason}), not one waiting");
            return;
        };
        match relay_record(call_id, &stats) {
            Some(record) => self.finish(w.call, record, true),
            None => {
                let record = placement_record(&w.call, unix_ms());
                self.finish(w.call, record, false);
            }
        }
    }
}

#[cfg(test)]
#[path = "accounting_tests.rs"]
mod tests;
