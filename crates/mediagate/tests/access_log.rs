//! The access log and the edge's session records with real peers (issue 12, items 4
//! and 5): ffmpeg viewers through `mediagate run` and a gst-rtsp-server origin; the
//! access log's lines checked field by field in text and JSON, its rotation by rename
//! and SIGHUP, and the same session stored in SQLite and in PostgreSQL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ffmpeg_gapless, EdgeProc};
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::{PostgresStore, SqliteStore};
use mediagate_testkit::postgres::PostgresServer;
use mediagate_testkit::{Origin, OriginOptions, Transport};

fn origin() -> Origin {
    Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts")
}

fn route(origin: &Origin) -> String {
    format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url("/live")
    )
}

fn log_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mediagate-access-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The lines of `path` once it has `n`, or a panic with the edge's output.
fn wait_lines(path: &Path, n: usize, edge: &EdgeProc) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, expected {n}:\n{text}\n{}",
            path.display(),
            lines.len(),
            edge.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A text line split into its fields: bare words, or quoted strings unescaped.
fn split_text(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut field = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => field.push(chars.next().expect("an escaped character")),
                    c => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
    }
    fields
}

/// The text format's field names, in order (docs/operations.md).
const TEXT_FIELDS: [&str; 18] = [
    "time",
    "duration_ms",
    "client",
    "user",
    "method",
    "url",
    "status",
    "cache",
    "rule",
    "transport",
    "bytes",
    "packets",
    "lost",
    "skipped",
    "reason",
    "session",
    "user_agent",
    "origin",
];

/// Checks one viewer session's fields (by name, as text) against what the test did.
fn check_fields(get: &dyn Fn(&str) -> String, edge: &EdgeProc, origin: &Origin, transport: &str) {
    let time = get("time");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "time {time}"
    );
    let duration: u64 = get("duration_ms").parse().unwrap();
    assert!((2_000..30_000).contains(&duration), "duration {duration}");
    assert!(get("client").starts_with("127.0.0.1:"), "{}", get("client"));
    assert_eq!(get("user"), "-");
    assert_eq!(get("method"), "PLAY");
    assert_eq!(get("url"), edge.url("/cam"));
    assert_eq!(get("status"), "200");
    assert_eq!(get("cache"), "SPLIT");
    assert_eq!(get("rule"), "/cam");
    assert_eq!(get("transport"), transport);
    let packets: u64 = get("packets").parse().unwrap();
    let bytes: u64 = get("bytes").parse().unwrap();
    assert!(packets > 50 && bytes > packets * 100, "{packets} {bytes}");
    let lost: u64 = get("lost").parse().unwrap();
    assert_eq!(lost, 0, "loopback loses nothing");
    let _skipped: u64 = get("skipped").parse().unwrap();
    assert!(
        ["teardown", "connection-closed"].contains(&get("reason").as_str()),
        "{}",
        get("reason")
    );
    let session = get("session");
    assert!(
        session.len() == 16 && session.bytes().all(|b| b.is_ascii_hexdigit()),
        "{session}"
    );
    assert!(
        get("user_agent").starts_with("Lavf"),
        "{}",
        get("user_agent")
    );
    assert_eq!(get("origin"), origin.url("/live"));
}

/// ffmpeg over TCP, a text line checked field by field and against the SQLite row;
/// then logrotate's way: rename, SIGHUP, and the next line is in a new file.
#[test]
fn text_lines_carry_every_field_and_follow_a_rename_and_sighup() {
    let origin = origin();
    let dir = log_dir("text");
    let path = dir.join("access.log");
    let edge = EdgeProc::start(&format!(
        "{}\n[log]\naccess_log = {:?}\n",
        route(&origin),
        path.display().to_string()
    ));
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 3.0);
    assert!(r.video > 0, "{r:?}");
    let lines = wait_lines(&path, 1, &edge);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = split_text(&lines[0]);
    assert_eq!(fields.len(), TEXT_FIELDS.len(), "{}", lines[0]);
    let get = |name: &str| {
        let i = TEXT_FIELDS.iter().position(|f| *f == name).unwrap();
        fields[i].clone()
    };
    check_fields(&get, &edge, &origin, "tcp");

    // The same session in the records store, with the same figures.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<ViewerSessionRecord> = SqliteStore::open(&edge.records_path())
            .and_then(|mut s| s.records(10))
            .unwrap_or_default();
        if !rows.is_empty() || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.session, get("session"));
    assert_eq!(row.viewer, get("client"));
    assert_eq!(row.bytes.to_string(), get("bytes"));
    assert_eq!(row.packets.to_string(), get("packets"));
    assert_eq!(
        (row.method.as_str(), row.status, row.cache.as_str()),
        ("PLAY", 200, "SPLIT")
    );
    assert_eq!((row.rule.as_str(), row.username.as_str()), ("/cam", ""));
    assert_eq!(row.origin, origin.url("/live"));
    assert!(row.user_agent.starts_with("Lavf"), "{row:?}");

    // `mediagate report` reads the same store.
    let (by_url, by_user) = (
        report(&edge, &["--by", "url"]),
        report(&edge, &["--by", "user"]),
    );
    let row = by_url
        .iter()
        .find(|l| l[0] == edge.url("/cam"))
        .unwrap_or_else(|| panic!("{by_url:?}"));
    assert_eq!(row[1], "1", "one viewer: {row:?}");
    assert_eq!(row[3], get("bytes"));
    assert_eq!(row[4], "0.0", "no cache hits yet");
    assert_eq!(row[5], "0", "one viewer of a split stream saves nothing");
    assert_eq!(by_user[1][0], "-", "no user without edge authentication");
    let today = report(&edge, &["--by", "day", "--since", "2000-01-01"]);
    assert_eq!(today.len(), 3, "{today:?}");
    let future = report(&edge, &["--by", "day", "--since", "2999-01-01"]);
    assert_eq!(
        future.len(),
        2,
        "only the header and a zero total: {future:?}"
    );
    assert_eq!(future[1][1], "0");

    // Rotation.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    edge.peer.signal("HUP");
    edge.peer
        .wait_for_stderr_line("log files reopened", Duration::from_secs(10));
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 2.5);
    assert!(r.video > 0, "{r:?}");
    let new_lines = wait_lines(&path, 1, &edge);
    assert_eq!(new_lines.len(), 1, "{new_lines:?}");
    assert_ne!(split_text(&new_lines[0])[15], get("session"));
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        1,
        "the renamed file keeps only the first session"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mediagate report --config` the edge's file with `args`: its table, split in words.
fn report(edge: &EdgeProc, args: &[&str]) -> Vec<Vec<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .arg("report")
        .arg("--config")
        .arg(edge.config_path())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "URL",
            "VIEWERS",
            "HOURS",
            "BYTES",
            "HIT%",
            "SAVED_BYTES",
            "DENIED"
        ]
        .iter()
        .enumerate()
        .map(|(i, h)| if i == 0 {
            lines[0][0].clone()
        } else {
            (*h).to_owned()
        })
        .collect::<Vec<_>>()
    );
    assert_eq!(lines.last().unwrap()[0], "TOTAL", "{text}");
    lines
}

/// JSON lines with the same fields, for a UDP viewer.
#[test]
fn json_lines_carry_the_same_fields_by_name() {
    let origin = origin();
    let dir = log_dir("json");
    let path = dir.join("access.json");
    let edge = EdgeProc::start(&format!(
        "{}\n[log]\naccess_log = {:?}\naccess_log_format = \"json\"\n",
        route(&origin),
        path.display().to_string()
    ));
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Udp, 3.0);
    assert!(r.video > 0, "{r:?}");
    let lines = wait_lines(&path, 1, &edge);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("one JSON object");
    let object = v.as_object().unwrap();
    let names: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut want = TEXT_FIELDS.to_vec();
    want.sort_unstable();
    let mut names = names;
    names.sort_unstable();
    assert_eq!(names, want);
    assert!(v["user"].is_null(), "{v}");
    assert!(v["status"].is_u64() && v["bytes"].is_u64(), "{v}");
    let get = |name: &str| match &v[name] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    check_fields(&get, &edge, &origin, "udp");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same viewer pattern through an edge accounting to SQLite and one accounting to
/// PostgreSQL: both stores have the same columns and the same record, apart from what
/// differs between two sessions (ids, addresses, times, counts).
#[test]
fn sqlite_and_postgres_receive_the_same_edge_records() {
    let server = PostgresServer::start();
    let origin = origin();
    let lite = EdgeProc::start(&route(&origin));
    let pg = EdgeProc::start(&format!(
        "{}\n[accounting]\npostgres_url = \"{}\"\n",
        route(&origin),
        server.url()
    ));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ffmpeg_gapless(&lite.url("/cam"), Transport::Tcp, 3.0));
        let b = s.spawn(|| ffmpeg_gapless(&pg.url("/cam"), Transport::Tcp, 3.0));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.video > 0 && b.video > 0, "{a:?} {b:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut lite_store, mut pg_store, lite_rows, pg_rows) = loop {
        let mut lite_store = SqliteStore::open(&lite.records_path()).ok();
        let mut pg_store = PostgresStore::connect(&server.url().parse().unwrap()).unwrap();
        let lite_rows: Vec<ViewerSessionRecord> = lite_store
            .as_mut()
            .and_then(|s| s.records(10).ok())
            .unwrap_or_default();
        let pg_rows: Vec<ViewerSessionRecord> = pg_store.records(10).unwrap_or_default();
        if (!lite_rows.is_empty() && !pg_rows.is_empty()) || Instant::now() > deadline {
            break (lite_store.unwrap(), pg_store, lite_rows, pg_rows);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        lite_rows.len(),
        1,
        "{lite_rows:?}\n{}",
        lite.peer.diagnostics()
    );
    assert_eq!(pg_rows.len(), 1, "{pg_rows:?}\n{}", pg.peer.diagnostics());
    assert_eq!(
        lite_store.column_names::<ViewerSessionRecord>().unwrap(),
        pg_store.column_names::<ViewerSessionRecord>().unwrap()
    );
    assert_eq!(lite_store.schema_version("edge_sessions").unwrap(), Some(2));
    assert_eq!(pg_store.schema_version("edge_sessions").unwrap(), Some(2));
    let normal = |r: &ViewerSessionRecord, edge: &EdgeProc| {
        assert!(r.packets > 50 && r.bytes > r.packets * 100, "{r:?}");
        assert!(r.duration_ms >= 2_000, "{r:?}");
        ViewerSessionRecord {
            session: String::new(),
            viewer: String::new(),
            url: r.url.replace(&edge.url(""), "EDGE"),
            start_unix_ms: 0,
            end_unix_ms: 0,
            duration_ms: 0,
            packets: 0,
            bytes: 0,
            lost: 0,
            // Either way ffmpeg leaves, depending on its timing.
            reason: String::new(),
            ..r.clone()
        }
    };
    let (l, p) = (normal(&lite_rows[0], &lite), normal(&pg_rows[0], &pg));
    assert_eq!(l, p);
    // The report's query gives the same shape on both: one viewer, its bytes, one day.
    for (edge, row) in [(&lite, &lite_rows[0]), (&pg, &pg_rows[0])] {
        let by_day = report(edge, &["--by", "day"]);
        assert_eq!(by_day.len(), 3, "{by_day:?}");
        assert_eq!(by_day[1][0].len(), 10, "a YYYY-MM-DD day: {by_day:?}");
        assert_eq!(by_day[1][1], "1");
        assert_eq!(by_day[1][3], row.bytes.to_string());
    }
    assert_eq!(
        (l.cache.as_str(), l.status, l.rule.as_str()),
        ("SPLIT", 200, "/cam")
    );
}
