//! The record a finished viewer session leaves in the process's records store: who
//! watched what, over which transport, for how long, how it ended and what was
//! delivered. One row of `edge_sessions` per [`EndedSession`], made by `serde`.
//!
//! Migration 2 adds what the access log shows too: the user, the answer (method and
//! status), the remap rule, the cache result, the user agent, the origin and the loss
//! the viewer's RTCP reported. Rows written before it read `''` and 0 there.
//!
//! What it does not: the access log's line format (`access`), or the accounting
//! connection's outcome (a later migration).

use mediagate_ops::store::{Column, Migration, Record, Step, Table};
use serde::{Deserialize, Serialize};

use crate::session::EndedSession;

/// One finished viewer session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerSessionRecord {
    /// The RTSP `Session` id the viewer was given.
    pub session: String,
    /// The viewer's address, `ip:port`.
    pub viewer: String,
    /// The stream URL as the viewer named it.
    pub url: String,
    /// `udp`, `tcp` or `http-tunnel`.
    pub transport: String,
    pub start_unix_ms: u64,
    pub end_unix_ms: u64,
    pub duration_ms: u64,
    /// `teardown`, `timeout`, `connection-closed` or `drain`.
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
    /// Packets the viewer did not get because it fell behind.
    pub lost: u64,
    /// The authenticated user; empty without edge authentication.
    #[serde(default)]
    pub username: String,
    /// The method and RTSP status of the session's PLAY answer (else its last one).
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub status: u16,
    /// The remap rule's advertised prefix; empty when no rule routed the session.
    #[serde(default)]
    pub rule: String,
    /// `HIT`, `MISS`, `REFRESH`, `SPLIT`, `PASS` or `DENIED`.
    #[serde(default)]
    pub cache: String,
    #[serde(default)]
    pub user_agent: String,
    /// The origin URL, without credentials.
    #[serde(default)]
    pub origin: String,
    /// Packets lost as the viewer's RTCP receiver reports said.
    #[serde(default)]
    pub reported_lost: u64,
}

impl From<&EndedSession> for ViewerSessionRecord {
    fn from(ended: &EndedSession) -> Self {
        let duration_ms = u64::try_from(ended.duration.as_millis()).unwrap_or(u64::MAX);
        Self {
            session: ended.session.clone(),
            viewer: ended.viewer.to_string(),
            url: ended.url.clone(),
            transport: ended.transport.as_str().to_owned(),
            start_unix_ms: ended.started_unix_ms,
            end_unix_ms: ended.started_unix_ms.saturating_add(duration_ms),
            duration_ms,
            reason: ended.reason.as_str().to_owned(),
            packets: ended.counts.packets,
            bytes: ended.counts.bytes,
            lost: ended.counts.lost,
            username: ended.user.clone().unwrap_or_default(),
            method: ended.method.clone(),
            status: ended.status,
            rule: ended.rule.clone().unwrap_or_default(),
            cache: ended.cache.as_str().to_owned(),
            user_agent: ended.user_agent.clone().unwrap_or_default(),
            origin: ended.origin.clone().unwrap_or_default(),
            reported_lost: ended.reported_lost,
        }
    }
}

/// The columns of `edge_sessions` after its `id` key, in table order: the record's
/// fields by the same names, for queries, and the whole record as JSON in `info` (as
/// `relay_sessions` keeps it), so fields added later need no new column to be kept.
const COLUMNS: &[Column] = &[
    Column::text("session"),
    Column::text("viewer"),
    Column::text("url"),
    Column::text("transport"),
    Column::int64("start_unix_ms"),
    Column::int64("end_unix_ms"),
    Column::int64("duration_ms"),
    Column::text("reason"),
    Column::int64("packets"),
    Column::int64("bytes"),
    Column::int64("lost"),
    Column::json("info"),
    // Migration 2.
    Column::text("username"),
    Column::text("method"),
    Column::int64("status"),
    Column::text("rule"),
    Column::text("cache"),
    Column::text("user_agent"),
    Column::text("origin"),
    Column::int64("reported_lost"),
];

/// The columns migration 1 created: the record's first twelve.
const COLUMNS_1: &[Column] = COLUMNS.split_at(12).0;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        steps: &[
            Step::CreateTable(COLUMNS_1),
            Step::CreateIndex {
                name: "edge_sessions_end",
                columns: &["end_unix_ms"],
            },
            Step::CreateIndex {
                name: "edge_sessions_url",
                columns: &["url"],
            },
        ],
    },
    Migration {
        version: 2,
        steps: &[
            Step::AddColumn(Column::text("username")),
            Step::AddColumn(Column::text("method")),
            Step::AddColumn(Column::int64("status")),
            Step::AddColumn(Column::text("rule")),
            Step::AddColumn(Column::text("cache")),
            Step::AddColumn(Column::text("user_agent")),
            Step::AddColumn(Column::text("origin")),
            Step::AddColumn(Column::int64("reported_lost")),
            Step::CreateIndex {
                name: "edge_sessions_username",
                columns: &["username"],
            },
        ],
    },
];

impl Record for ViewerSessionRecord {
    const TABLE: Table = Table {
        name: "edge_sessions",
        columns: COLUMNS,
        migrations: MIGRATIONS,
        key: "session",
        keys_in_logs: "viewer sessions",
    };
    type Row<'a> = ViewerSessionRow<'a>;

    fn row(&self) -> ViewerSessionRow<'_> {
        ViewerSessionRow {
            columns: self,
            info: self,
        }
    }
}

/// One finished viewer session as a row of `edge_sessions`.
#[derive(Serialize)]
pub struct ViewerSessionRow<'a> {
    #[serde(flatten)]
    columns: &'a ViewerSessionRecord,
    info: &'a ViewerSessionRecord,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::{CacheResult, EndReason, ViewerTransport};
    use crate::sink::Counts;

    #[test]
    fn an_ended_session_becomes_its_row() {
        let ended = EndedSession {
            session: "a1b2".into(),
            viewer: "192.0.2.7:5004".parse().unwrap(),
            url: "rtsp://edge/cam1".into(),
            transport: ViewerTransport::HttpTunnel,
            started_unix_ms: 1_000,
            duration: Duration::from_millis(2_500),
            reason: EndReason::Timeout,
            counts: Counts {
                packets: 10,
                bytes: 12_000,
                lost: 2,
            },
            user: Some("alice".into()),
            method: "PLAY".into(),
            status: 200,
            rule: Some("/cams".into()),
            origin: Some("rtsp://192.0.2.10/cam1".into()),
            cache: CacheResult::Split,
            user_agent: None,
            reported_lost: 4,
        };
        let record = ViewerSessionRecord::from(&ended);
        assert_eq!(record.end_unix_ms, 3_500);
        assert_eq!(record.duration_ms, 2_500);
        ViewerSessionRecord::TABLE.check().unwrap();
        let row = serde_json::to_value(record.row()).unwrap();
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let columns: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        let (mut keys, mut columns) = (keys, columns);
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
        assert_eq!(row["transport"], ended.transport.as_str());
        assert_eq!(row["reason"], ended.reason.as_str());
        assert_eq!(row["viewer"], "192.0.2.7:5004");
        assert_eq!(row["info"]["session"], "a1b2");
        assert_eq!(row["username"], "alice");
        assert_eq!(row["status"], 200);
        assert_eq!(row["cache"], "SPLIT");
        assert_eq!(row["user_agent"], "");
        assert_eq!(row["reported_lost"], 4);
    }
}
