//! The record a finished call leaves: who, when, why it ended, and per stream the
//! codecs, addresses and what flowed each way. The fields follow MediaProxy's session
//! statistics (anchors c.3/c.4: caller/callee codec, local and remote addresses,
//! packets and bytes) plus errors, refused packets and RTCP-derived loss and jitter.
//!
//! What it does: holds the values, renders them as one JSON object (the form the
//! records store keeps and the access log writes) and says, as a
//! [`mediagate_ops::store::Record`], which table row a call becomes: `relay_sessions`,
//! the call's identifiers, times, reason and per-direction totals for queries, and the
//! whole record as JSON in `info` (MediaProxy's `media_sessions` keeps one JSON blob
//! per call the same way). Both the row and the JSON are made by `serde`.
//!
//! What it does not: store them (the process's one records writer, in
//! `mediagate_ops::store`, does).

use mediagate_ops::store::{Column, Migration, Record, Step, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `delete` from the SIP proxy (BYE, CANCEL, failure).
    Deleted,
    /// No media for the media timeout.
    Timeout,
    /// No media for the on-hold timeout while every stream was on hold.
    HoldTimeout,
    /// Offered but never answered within the offer timeout.
    OfferTimeout,
    /// The relay shut down.
    Shutdown,
    /// An operator ended it through the admin API.
    Admin,
}

impl EndReason {
    /// The name stored in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Timeout => "media timeout",
            Self::HoldTimeout => "on hold timeout",
            Self::OfferTimeout => "offer timeout",
            Self::Shutdown => "shutdown",
            Self::Admin => "admin",
        }
    }

    /// Whether the SIP proxy should be told (it does not know the call ended).
    pub(crate) fn needs_notification(self) -> bool {
        matches!(self, Self::Timeout | Self::HoldTimeout)
    }
}

/// What one party of one stream sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRecord {
    /// The first codec of the party's SDP.
    pub codec: String,
    /// The relay port the party sent to, `ip:port`.
    pub local: String,
    /// Where the party's media came from (latched), else its signalled endpoint, else
    /// `Unknown`.
    pub remote: String,
    /// RTP packets forwarded from this party.
    pub packets: u64,
    /// RTP bytes forwarded from this party.
    pub bytes: u64,
    /// RTCP packets forwarded from this party.
    pub rtcp_packets: u64,
    /// RTCP bytes forwarded from this party.
    pub rtcp_bytes: u64,
    /// Malformed packets or packets with nowhere to go.
    pub errors: u64,
    /// Packets refused for their source (strangers, RTP bleed attempts).
    pub refused: u64,
    /// From this party's RTCP: cumulative loss of the stream it received.
    pub cumulative_lost: i64,
    /// From this party's RTCP: last fraction lost, 1/256.
    pub fraction_lost: u8,
    /// From this party's RTCP: interarrival jitter, RTP timestamp units.
    pub jitter: u32,
}

/// One stream of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Position of the `m=` line.
    pub index: usize,
    /// `audio`, `video`, `image` ...
    pub media_type: String,
    /// `RTP/AVP`, `udptl` ...
    pub proto: String,
    /// The caller (first offerer).
    pub caller: LegRecord,
    /// The callee.
    pub callee: LegRecord,
    /// Either party's last SDP put the stream on hold (sendonly, inactive,
    /// `0.0.0.0`). Absent in records written before it existed.
    #[serde(default)]
    pub on_hold: bool,
    /// Either party's last SDP closed the stream (port 0). Absent in records written
    /// before it existed.
    #[serde(default)]
    pub closed: bool,
}

/// A finished call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Call-ID.
    pub call_id: String,
    /// The caller's tag.
    pub from_tag: String,
    /// The callee's tag (empty if never answered).
    pub to_tag: String,
    /// Start (the first offer), Unix milliseconds.
    pub start_unix_ms: u64,
    /// The first answer, Unix milliseconds; 0 if never answered. Start to answer is
    /// MediaProxy's post-dial delay. Absent (0) in records written before it existed;
    /// it lives only in the `info` JSON, so the table's columns are unchanged.
    #[serde(default)]
    pub answer_unix_ms: u64,
    /// End, Unix milliseconds.
    pub end_unix_ms: u64,
    /// Why it ended ([`EndReason::as_str`]).
    pub reason: String,
    /// The streams, in `m=` order (closed ones that were never relayed are absent).
    pub streams: Vec<StreamRecord>,
}

impl SessionRecord {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.end_unix_ms.saturating_sub(self.start_unix_ms)
    }

    /// Offer to first answer in milliseconds; `None` if the call was never answered.
    pub fn post_dial_delay_ms(&self) -> Option<u64> {
        (self.answer_unix_ms != 0).then(|| self.answer_unix_ms.saturating_sub(self.start_unix_ms))
    }

    /// Reads a record from its JSON ([`SessionRecord::to_json`], the store's `info`
    /// column, a relay's `expired` report); `None` if a field is missing or has the
    /// wrong type. Fields added after a record was written take their defaults.
    pub fn from_json_value(json: &Json) -> Option<Self> {
        Self::deserialize(json).ok()
    }

    /// Packets forwarded in both directions, RTP and RTCP.
    pub(crate) fn total_packets(&self) -> u64 {
        self.streams
            .iter()
            .flat_map(|s| [&s.caller, &s.callee])
            .map(|l| l.packets + l.rtcp_packets)
            .sum()
    }

    /// The record as a JSON object: its fields plus `duration_ms`.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(CallJson::of(self)).unwrap_or(Json::Null)
    }

    /// Reads back a record written by [`SessionRecord::to_json`] (the store's `info`
    /// column); `None` if a field is missing or has the wrong type.
    #[cfg(test)]
    pub(crate) fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// The record as JSON: its fields and its duration, for readers of the `info` column
/// that do not subtract.
#[derive(Serialize)]
pub(crate) struct CallJson<'a> {
    #[serde(flatten)]
    record: &'a SessionRecord,
    duration_ms: u64,
}

impl<'a> CallJson<'a> {
    fn of(record: &'a SessionRecord) -> Self {
        Self {
            record,
            duration_ms: record.duration_ms(),
        }
    }
}

/// The columns of `relay_sessions` after its `id` key, in table order.
pub const COLUMNS: &[Column] = &[
    Column::text("call_id"),
    Column::text("from_tag"),
    Column::text("to_tag"),
    Column::int64("start_unix_ms"),
    Column::int64("end_unix_ms"),
    Column::int64("duration_ms"),
    Column::text("reason"),
    Column::int64("caller_packets"),
    Column::int64("caller_bytes"),
    Column::int64("callee_packets"),
    Column::int64("callee_bytes"),
    Column::json("info"),
];

/// Version 1 is the table earlier releases created without keeping a version, so
/// their databases open as they are.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    steps: &[
        Step::CreateTable(COLUMNS),
        Step::CreateIndex {
            name: "relay_sessions_call_id",
            columns: &["call_id"],
        },
        Step::CreateIndex {
            name: "relay_sessions_end",
            columns: &["end_unix_ms"],
        },
    ],
}];

/// One finished call as a row of `relay_sessions`: the totals summed over the streams
/// (saturating), and the whole record as JSON.
#[derive(Serialize)]
pub struct CallRow<'a> {
    call_id: &'a str,
    from_tag: &'a str,
    to_tag: &'a str,
    start_unix_ms: u64,
    end_unix_ms: u64,
    duration_ms: u64,
    reason: &'a str,
    caller_packets: u64,
    caller_bytes: u64,
    callee_packets: u64,
    callee_bytes: u64,
    info: CallJson<'a>,
}

impl Record for SessionRecord {
    const TABLE: Table = Table {
        name: "relay_sessions",
        columns: COLUMNS,
        migrations: MIGRATIONS,
        key: "call_id",
        keys_in_logs: "call-ids",
    };
    type Row<'a> = CallRow<'a>;

    fn row(&self) -> CallRow<'_> {
        let sum = |f: fn(&StreamRecord) -> u64| {
            self.streams.iter().map(f).fold(0u64, u64::saturating_add)
        };
        CallRow {
            call_id: &self.call_id,
            from_tag: &self.from_tag,
            to_tag: &self.to_tag,
            start_unix_ms: self.start_unix_ms,
            end_unix_ms: self.end_unix_ms,
            duration_ms: self.duration_ms(),
            reason: &self.reason,
            caller_packets: sum(|s| s.caller.packets),
            caller_bytes: sum(|s| s.caller.bytes),
            callee_packets: sum(|s| s.callee.packets),
            callee_bytes: sum(|s| s.callee.bytes),
            info: CallJson::of(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let r = SessionRecord {
            call_id: "c1".into(),
            from_tag: "f".into(),
            to_tag: "t".into(),
            start_unix_ms: 1_000,
            end_unix_ms: 61_500,
            reason: EndReason::Timeout.as_str().into(),
            streams: vec![StreamRecord {
                index: 0,
                media_type: "audio".into(),
                proto: "RTP/AVP".into(),
                caller: LegRecord {
                    codec: "PCMA".into(),
                    packets: 10,
                    rtcp_packets: 1,
                    ..LegRecord::default()
                },
                callee: LegRecord {
                    packets: 5,
                    ..LegRecord::default()
                },
                ..StreamRecord::default()
            }],
            ..SessionRecord::default()
        };
        assert_eq!(r.duration_ms(), 60_500);
        assert_eq!(r.total_packets(), 16);
        let j = r.to_json();
        assert_eq!(j["reason"], "media timeout");
        assert_eq!(j["streams"][0]["caller"]["codec"], "PCMA");
        assert_eq!(j["streams"][0]["callee"]["packets"], 5);
        assert_eq!(SessionRecord::from_json(&j.to_string()), Some(r.clone()));
        assert_eq!(SessionRecord::from_json("{}"), None);
        assert_eq!(SessionRecord::from_json_value(&j), Some(r.clone()));
        assert_eq!(r.post_dial_delay_ms(), None);
        let answered = SessionRecord {
            answer_unix_ms: 2_250,
            ..r.clone()
        };
        assert_eq!(answered.post_dial_delay_ms(), Some(1_250));
        assert_eq!(answered.to_json()["answer_unix_ms"], 2_250);
        assert!(EndReason::Timeout.needs_notification());
        assert!(!EndReason::Deleted.needs_notification());
    }

    use mediagate_ops::store::{Dialect, SqliteStore};

    /// The DDL every release before versioned migrations ran: `relay_sessions` and its
    /// indexes, no version table.
    pub(crate) const UNVERSIONED_SQLITE_DDL: &str = "CREATE TABLE IF NOT EXISTS relay_sessions (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    from_tag TEXT NOT NULL,
    to_tag TEXT NOT NULL,
    start_unix_ms INTEGER NOT NULL,
    end_unix_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    caller_packets INTEGER NOT NULL,
    caller_bytes INTEGER NOT NULL,
    callee_packets INTEGER NOT NULL,
    callee_bytes INTEGER NOT NULL,
    info TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_sessions_call_id ON relay_sessions (call_id);
CREATE INDEX IF NOT EXISTS relay_sessions_end ON relay_sessions (end_unix_ms);";

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mg-relay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn both_back_ends_declare_the_same_columns() {
        let sqlite = Dialect::Sqlite.schema_sql(&SessionRecord::TABLE);
        let pg = Dialect::Postgres.schema_sql(&SessionRecord::TABLE);
        let names = |sql: &str| -> Vec<String> {
            sql.lines()
                .filter(|l| l.ends_with("NOT NULL,") || l.ends_with("NOT NULL"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        };
        assert_eq!(names(&sqlite), names(&pg));
        assert_eq!(names(&sqlite).len(), 12);
        assert!(
            sqlite.contains("    caller_bytes INTEGER NOT NULL,"),
            "{sqlite}"
        );
        assert!(pg.contains("    caller_bytes BIGINT NOT NULL,"), "{pg}");
        assert!(pg.contains("    info TEXT NOT NULL\n);"), "{pg}");
        assert_eq!(
            mediagate_ops::store::insert_sql(&SessionRecord::TABLE),
            "INSERT INTO relay_sessions (call_id, from_tag, to_tag, start_unix_ms, end_unix_ms, \
             duration_ms, reason, caller_packets, caller_bytes, callee_packets, callee_bytes, info) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        // Version 1 is exactly the schema earlier releases created.
        assert_eq!(sqlite, UNVERSIONED_SQLITE_DDL);
        assert!(pg.starts_with(
            "CREATE TABLE IF NOT EXISTS relay_sessions (\n    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n    call_id TEXT NOT NULL,"
        ), "{pg}");
        assert!(pg.contains("start_unix_ms BIGINT NOT NULL"));
        assert!(pg.ends_with("ON relay_sessions (end_unix_ms);"));
        SessionRecord::TABLE.check().unwrap();
    }

    #[test]
    fn rows_sum_streams_and_saturate() {
        let leg = |packets, bytes| LegRecord {
            packets,
            bytes,
            ..LegRecord::default()
        };
        let rec = SessionRecord {
            call_id: "c".into(),
            start_unix_ms: 5,
            end_unix_ms: u64::MAX,
            streams: vec![
                StreamRecord {
                    caller: leg(3, 300),
                    callee: leg(u64::MAX, 1),
                    ..StreamRecord::default()
                },
                StreamRecord {
                    caller: leg(4, 400),
                    callee: leg(1, 1),
                    ..StreamRecord::default()
                },
            ],
            ..SessionRecord::default()
        };
        let dir = temp_dir("record-row");
        let mut store = SqliteStore::open(&dir.join("a.sqlite")).unwrap();
        store.insert(std::slice::from_ref(&rec)).unwrap();
        let row = &store.find::<SessionRecord>("c").unwrap()[0];
        assert_eq!(
            (&row["caller_packets"], &row["caller_bytes"]),
            (&7.into(), &700.into())
        );
        assert_eq!(
            (&row["callee_packets"], &row["callee_bytes"]),
            (&i64::MAX.into(), &2.into())
        );
        assert_eq!(row["end_unix_ms"], i64::MAX);
        assert_eq!(row["duration_ms"], i64::MAX);
        let info: Json = serde_json::from_str(row["info"].as_str().unwrap()).unwrap();
        assert_eq!(
            info["duration_ms"],
            u64::MAX - 5,
            "the JSON keeps the exact duration"
        );
        assert_eq!(
            SessionRecord::from_json(row["info"].as_str().unwrap()),
            Some(rec)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_database_from_before_versions_opens_and_keeps_working() {
        let dir = temp_dir("record-old-db");
        let path = dir.join("accounting.sqlite");
        let old = SqliteStore::open(&path).unwrap();
        old.execute_batch(UNVERSIONED_SQLITE_DDL).unwrap();
        old.execute_batch(
            "INSERT INTO relay_sessions (call_id, from_tag, to_tag, start_unix_ms, end_unix_ms, \
             duration_ms, reason, caller_packets, caller_bytes, callee_packets, callee_bytes, info) \
             VALUES ('old@x', 'a', 'b', 1, 2, 1, 'deleted', 3, 4, 5, 6, '{\"call_id\":\"old@x\",\"from_tag\":\"a\",\"to_tag\":\"b\",\"start_unix_ms\":1,\"end_unix_ms\":2,\"duration_ms\":1,\"reason\":\"deleted\",\"streams\":[]}')",
        )
        .unwrap();
        assert_eq!(old.schema_version("relay_sessions").unwrap(), None);
        drop(old);

        let mut store = SqliteStore::open(&path).unwrap();
        let new = SessionRecord {
            call_id: "new@x".into(),
            ..SessionRecord::default()
        };
        store.insert(std::slice::from_ref(&new)).unwrap();
        assert_eq!(store.schema_version("relay_sessions").unwrap(), Some(1));
        let back = store.records::<SessionRecord>(10).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[0].call_id.as_str(), back[0].end_unix_ms),
            ("old@x", 2)
        );
        assert_eq!(back[1], new);
        assert_eq!(
            store.find::<SessionRecord>("old@x").unwrap()[0]["callee_bytes"],
            6
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
