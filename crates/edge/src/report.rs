//! `mediagate report`: totals of the edge's viewer sessions (`edge_sessions`) per URL,
//! per user or per day, from the SQLite store or PostgreSQL with the same query
//! (only the day expression differs between the two).
//!
//! The figures, per group:
//! * viewers: sessions that started at or after `--since` (`DENIED` records are
//!   requests refused before a session existed: not viewers, counted apart);
//! * hours: their watched time summed;
//! * bytes: media bytes sent to them;
//! * hit ratio: the share of those sessions served from the cache (`HIT` or
//!   `REFRESH`); 0 until the cache serves;
//! * saved: bytes served that the origin did not send for them. A `HIT`/`REFRESH`
//!   session saves all its bytes, a `PASS`/`MISS` session none. `SPLIT` sessions of
//!   one URL share one origin stream: the origin is counted as having sent the
//!   longest (most bytes) of them, so saved = their bytes minus that one's. This is
//!   exact while that viewer's watch covers the others' (a stream restarted for
//!   viewers far apart in time was sent more than once, and the saving is then less);
//! * denied: `DENIED` records (refused logins, challenge rounds, access lists,
//!   accounting refusals...), kept out of every figure above.
//!
//! What it does not: read the access log, or count sessions still running (a session
//! is stored when it ends).

use mediagate_ops::store::{
    Dialect, FoundRow, PostgresStore, SqliteStore, StoreError, StoreTarget,
};

use crate::record::ViewerSessionRecord;

/// How the totals are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportBy {
    Url,
    User,
    /// UTC day of the session's start.
    Day,
}

/// The totals of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// The URL, the user (`-` for none) or the day (`YYYY-MM-DD`).
    pub key: String,
    pub viewers: u64,
    pub hours: f64,
    pub bytes: u64,
    /// 0.0 to 1.0.
    pub hit_ratio: f64,
    pub saved_bytes: u64,
    /// Requests refused before a session (`DENIED` records), not in the figures above.
    pub denied: u64,
}

/// The query for `by` in `dialect`: one row per group and URL, sessions started at
/// or after the parameter (Unix ms).
pub fn report_sql(by: ReportBy, dialect: Dialect) -> String {
    let param = match dialect {
        Dialect::Sqlite => "?1",
        Dialect::Postgres => "$1",
    };
    let key = match (by, dialect) {
        (ReportBy::Url, _) => "url",
        (ReportBy::User, _) => "username",
        (ReportBy::Day, Dialect::Sqlite) => {
            "strftime('%Y-%m-%d', start_unix_ms / 1000, 'unixepoch')"
        }
        (ReportBy::Day, Dialect::Postgres) => {
            "to_char(to_timestamp(start_unix_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    };
    format!(
        "SELECT {key} AS k, url, \
         CAST(SUM(CASE WHEN cache <> 'DENIED' THEN 1 ELSE 0 END) AS BIGINT) AS viewers, \
         CAST(SUM(CASE WHEN cache <> 'DENIED' THEN duration_ms ELSE 0 END) AS BIGINT) AS duration_ms, \
         CAST(SUM(CASE WHEN cache = 'DENIED' THEN 1 ELSE 0 END) AS BIGINT) AS denied, \
         CAST(SUM(bytes) AS BIGINT) AS bytes, \
         CAST(SUM(CASE WHEN cache IN ('HIT', 'REFRESH') THEN 1 ELSE 0 END) AS BIGINT) AS hits, \
         CAST(SUM(CASE WHEN cache IN ('HIT', 'REFRESH', 'SPLIT') THEN bytes ELSE 0 END) AS BIGINT) AS shared, \
         CAST(MAX(CASE WHEN cache = 'SPLIT' THEN bytes ELSE 0 END) AS BIGINT) AS split_max \
         FROM edge_sessions WHERE start_unix_ms >= {param} GROUP BY 1, 2 ORDER BY 1, 2"
    )
}

/// Folds the query's (group, URL) rows into one row per group, in key order.
pub fn fold(rows: &[FoundRow]) -> Vec<ReportRow> {
    let int = |r: &FoundRow, name: &str| {
        r.get(name)
            .and_then(serde_json::Value::as_i64)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0)
    };
    let mut out: Vec<(ReportRow, u64, u64)> = Vec::new();
    for r in rows {
        let key = r
            .get("k")
            .and_then(serde_json::Value::as_str)
            .filter(|k| !k.is_empty())
            .unwrap_or("-")
            .to_owned();
        if out.last().is_none_or(|(last, _, _)| last.key != key) {
            out.push((
                ReportRow {
                    key,
                    viewers: 0,
                    hours: 0.0,
                    bytes: 0,
                    hit_ratio: 0.0,
                    saved_bytes: 0,
                    denied: 0,
                },
                0,
                0,
            ));
        }
        let Some((row, duration_ms, hits)) = out.last_mut() else {
            continue;
        };
        row.viewers += int(r, "viewers");
        row.denied += int(r, "denied");
        row.bytes += int(r, "bytes");
        row.saved_bytes += int(r, "shared").saturating_sub(int(r, "split_max"));
        *duration_ms += int(r, "duration_ms");
        *hits += int(r, "hits");
    }
    out.into_iter()
        .map(|(mut row, duration_ms, hits)| {
            row.hours = duration_ms as f64 / 3_600_000.0;
            row.hit_ratio = if row.viewers == 0 {
                0.0
            } else {
                hits as f64 / row.viewers as f64
            };
            row
        })
        .collect()
}

/// The totals from the store `target` names (PostgreSQL when configured, else the
/// SQLite file; never its fallback file), for sessions started at or after
/// `since_unix_ms`.
pub fn report(
    target: &StoreTarget,
    by: ReportBy,
    since_unix_ms: u64,
) -> Result<Vec<ReportRow>, StoreError> {
    let since = i64::try_from(since_unix_ms).unwrap_or(i64::MAX);
    let rows = match target {
        StoreTarget::Sqlite(path) => SqliteStore::open(path)?
            .select::<ViewerSessionRecord>(&report_sql(by, Dialect::Sqlite), since)?,
        StoreTarget::Postgres { url, .. } => PostgresStore::connect(url)?
            .select::<ViewerSessionRecord>(&report_sql(by, Dialect::Postgres), since)?,
    };
    Ok(fold(&rows))
}

/// The totals as a table for people: one header line, one line per group, a total.
pub fn render(by: ReportBy, rows: &[ReportRow]) -> String {
    let title = match by {
        ReportBy::Url => "URL",
        ReportBy::User => "USER",
        ReportBy::Day => "DAY",
    };
    let width = rows
        .iter()
        .map(|r| r.key.len())
        .chain([title.len(), "TOTAL".len()])
        .max()
        .unwrap_or(5);
    let mut out = format!(
        "{title:<width$}  {:>8}  {:>10}  {:>16}  {:>6}  {:>16}  {:>8}\n",
        "VIEWERS", "HOURS", "BYTES", "HIT%", "SAVED_BYTES", "DENIED"
    );
    let line = |out: &mut String, key: &str, r: &ReportRow| {
        out.push_str(&format!(
            "{key:<width$}  {:>8}  {:>10.2}  {:>16}  {:>6.1}  {:>16}  {:>8}\n",
            r.viewers,
            r.hours,
            r.bytes,
            r.hit_ratio * 100.0,
            r.saved_bytes,
            r.denied
        ));
    };
    for r in rows {
        line(&mut out, &r.key, r);
    }
    let viewers: u64 = rows.iter().map(|r| r.viewers).sum();
    let hits: f64 = rows.iter().map(|r| r.hit_ratio * r.viewers as f64).sum();
    let total = ReportRow {
        key: String::new(),
        viewers,
        hours: rows.iter().map(|r| r.hours).sum(),
        bytes: rows.iter().map(|r| r.bytes).sum(),
        hit_ratio: if viewers == 0 {
            0.0
        } else {
            hits / viewers as f64
        },
        saved_bytes: rows.iter().map(|r| r.saved_bytes).sum(),
        denied: rows.iter().map(|r| r.denied).sum(),
    };
    line(&mut out, "TOTAL", &total);
    out
}

/// `YYYY-MM-DD` (UTC midnight) as Unix milliseconds.
pub fn parse_day(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a date: write YYYY-MM-DD (UTC), e.g. 2026-12-01");
    let mut parts = text.trim().splitn(3, '-');
    let mut next = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next(4)?, next(2)?, next(2)?);
    if y < 1970 {
        return Err(bad());
    }
    let civil = mediagate_rtsp::headers::Civil {
        year: u16::try_from(y).map_err(|_| bad())?,
        month: u8::try_from(m).map_err(|_| bad())?,
        day: u8::try_from(d).map_err(|_| bad())?,
        hour: 0,
        minute: 0,
        second: 0,
    };
    // The one calendar conversion of the project; it refuses a day the month lacks.
    let secs = civil.to_unix_seconds().ok_or_else(bad)?;
    u64::try_from(secs * 1000).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mediagate_ops::store::Record;

    use super::*;
    use crate::session::{CacheResult, EndReason, EndedSession, ViewerTransport};
    use crate::sink::Counts;

    #[test]
    fn days_parse_as_utc_midnight() {
        assert_eq!(parse_day("1970-01-01"), Ok(0));
        assert_eq!(parse_day("2000-03-01"), Ok(951_868_800_000));
        assert_eq!(parse_day("2024-02-29"), Ok(1_709_164_800_000));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-1-01",
            "yesterday",
            "",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }

    fn session(
        url: &str,
        user: Option<&str>,
        cache: CacheResult,
        start: u64,
        bytes: u64,
    ) -> ViewerSessionRecord {
        ViewerSessionRecord::from(&EndedSession {
            session: format!("{url}{start}{bytes}"),
            viewer: "192.0.2.7:5004".parse().unwrap(),
            url: url.into(),
            transport: ViewerTransport::Tcp,
            started_unix_ms: start,
            duration: Duration::from_secs(1800),
            reason: EndReason::Teardown,
            counts: Counts {
                packets: 1,
                bytes,
                lost: 0,
            },
            user: user.map(str::to_owned),
            method: "PLAY".into(),
            status: 200,
            rule: None,
            origin: None,
            cache,
            user_agent: None,
            reported_lost: 0,
        })
    }

    fn denied(url: &str, user: Option<&str>, start: u64) -> ViewerSessionRecord {
        let mut r = session(url, user, CacheResult::Denied, start, 0);
        r.duration_ms = 12;
        r.end_unix_ms = start + 12;
        (r.method, r.status, r.reason, r.session) =
            ("DESCRIBE".into(), 401, "refused".into(), String::new());
        r
    }

    /// The query and the folding together, on a real SQLite file.
    #[test]
    fn totals_per_url_user_and_day_from_sqlite() {
        let path =
            std::env::temp_dir().join(format!("mediagate-report-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let day1 = parse_day("2026-12-01").unwrap();
        let day2 = parse_day("2026-12-02").unwrap();
        let records = [
            session(
                "rtsp://e/a",
                Some("alice"),
                CacheResult::Split,
                day1 + 1000,
                1000,
            ),
            session(
                "rtsp://e/a",
                Some("bob"),
                CacheResult::Split,
                day1 + 2000,
                600,
            ),
            session("rtsp://e/a", None, CacheResult::Hit, day2 + 1000, 500),
            session(
                "rtsp://e/b",
                Some("alice"),
                CacheResult::Pass,
                day2 + 2000,
                700,
            ),
            // Refused requests: in no figure but their own count.
            denied("rtsp://e/a", None, day1 + 3000),
            denied("rtsp://e/a", Some("bob"), day2 + 3000),
            denied("rtsp://e/c", None, day2 + 4000),
        ];
        let mut store = SqliteStore::open(&path).unwrap();
        store.prepare(&ViewerSessionRecord::TABLE).unwrap();
        store.insert(&records).unwrap();
        let target = StoreTarget::Sqlite(path.clone());

        let by_url = report(&target, ReportBy::Url, 0).unwrap();
        assert_eq!(by_url.len(), 3, "{by_url:?}");
        let a = &by_url[0];
        assert_eq!(
            (a.key.as_str(), a.viewers, a.bytes, a.denied),
            ("rtsp://e/a", 3, 2100, 2)
        );
        let c = &by_url[2];
        assert_eq!(
            (c.key.as_str(), c.viewers, c.hours, c.denied),
            ("rtsp://e/c", 0, 0.0, 1)
        );
        assert_eq!((c.hit_ratio, c.saved_bytes), (0.0, 0));
        assert!((a.hours - 1.5).abs() < 1e-9, "{a:?}");
        assert!((a.hit_ratio - 1.0 / 3.0).abs() < 1e-9, "{a:?}");
        // The hit's 500, plus the split viewers' 1600 less the origin's one stream.
        assert_eq!(a.saved_bytes, 500 + 600);
        assert_eq!((by_url[1].saved_bytes, by_url[1].hit_ratio), (0, 0.0));

        let by_user = report(&target, ReportBy::User, 0).unwrap();
        let keys: Vec<&str> = by_user.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["-", "alice", "bob"]);
        assert_eq!(by_user[1].viewers, 2);
        assert_eq!((by_user[2].viewers, by_user[2].denied), (1, 1));

        let by_day = report(&target, ReportBy::Day, day2).unwrap();
        assert_eq!(by_day.len(), 1, "{by_day:?}");
        assert_eq!(
            (by_day[0].key.as_str(), by_day[0].viewers, by_day[0].denied),
            ("2026-12-02", 2, 2)
        );

        let text = render(ReportBy::Url, &by_url);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].starts_with("URL ") && lines[0].ends_with("  DENIED"),
            "{text}"
        );
        let total: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            (total[0], total[1], total[3], total[6]),
            ("TOTAL", "4", "2800", "3"),
            "{text}"
        );
        assert_eq!(lines[3].split_whitespace().nth(1), Some("0"), "{text}");
        let _ = std::fs::remove_file(&path);
    }
}
