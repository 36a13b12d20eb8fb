//! Viewer logins at the edge and origin auth pass-through, with real peers (issue 12
//! items 2 and 3): the real `mediagate` binary, users files made by `mediagate user
//! add`, ffmpeg viewers with and without credentials, a gst-rtsp-server origin with a
//! Digest-protected mount, and an OpenLDAP `slapd` started by the test.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::EdgeProc;
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::ffmpeg::{ffmpeg_read, ReadOptions};
use mediagate_testkit::{Origin, OriginOptions, Transport};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("edge_auth");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// `mediagate user add` with the password on stdin.
fn user_add(file: &Path, user: &str, password: &str, extra: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(["user", "add", "--password-stdin", "--file"])
        .arg(file)
        .args(extra)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mediagate user add runs");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password written");
    let out = child.wait_with_output().expect("mediagate user add ends");
    assert!(
        out.status.success(),
        "user add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rtsp://user:password@127.0.0.1:PORT/path` for the edge.
fn with_login(url: &str, user: &str, password: &str) -> String {
    url.replacen("rtsp://", &format!("rtsp://{user}:{password}@"), 1)
}

fn read(url: &str) -> mediagate_testkit::ffmpeg::ReadReport {
    // 4 s for at least 10 frames of a 15 fps stream: each pass-through viewer waits for
    // its own origin session's first keyframe, and ffmpeg's start-up on a loaded 2-core
    // machine can eat a second or more (the threshold stays as it was).
    let opts = ReadOptions::seconds(Transport::Tcp, 4.0).timeout(Duration::from_secs(30));
    ffmpeg_read(url, &opts).expect("ffmpeg runs")
}

fn plays(url: &str) {
    let r = read(url);
    assert!(
        r.success && r.video_frames >= 10,
        "{url}: {}",
        r.diagnostics
    );
}

fn refused(url: &str, status: &str) {
    let r = read(url);
    assert!(
        !r.success && r.video_frames == 0 && r.error_contains(status),
        "{url} should be refused with {status}: {}",
        r.diagnostics
    );
}

fn origin() -> Origin {
    Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts")
}

#[test]
fn users_file_logins_with_digest_and_basic_through_ffmpeg() {
    let origin = origin();
    let users = scratch("users-digest");
    user_add(
        &users,
        "alice",
        "wonder-land",
        &["--digest-realm", "mediagate", "--group", "staff"],
    );
    user_add(&users, "bob", "builder", &["--digest-realm", "mediagate"]);
    let access_log = scratch("access-digest.log");
    let edge = EdgeProc::start(&format!(
        "[edge.auth]\nusers_file = \"{}\"\n\
         [[edge.route]]\nadvertised = \"/staff\"\norigin = \"{}\"\naccess = {{ groups = [\"staff\"] }}\n\
         [[edge.route]]\nadvertised = \"/open\"\norigin = \"{}\"\n\
         [log]\naccess_log = {:?}\n",
        users.display(),
        origin.url("/live"),
        origin.url("/live"),
        access_log.display().to_string(),
    ));
    // Digest (the edge offers no Basic): right password plays; none or a wrong one 401;
    // a right login outside the rule's group 403.
    plays(&with_login(&edge.url("/staff"), "alice", "wonder-land"));
    refused(&edge.url("/staff"), "401");
    refused(&with_login(&edge.url("/staff"), "alice", "wrong"), "401");
    refused(&with_login(&edge.url("/staff"), "bob", "builder"), "403");
    // A rule without access lists asks for nothing.
    plays(&edge.url("/open"));
    // The login is in the process log of the ended session; the password never is.
    let log = edge.peer.stderr_tail().join("\n");
    assert!(!log.contains("wonder-land"), "password in the log");
    // The logged-in user reaches the access log line and the session record; refused
    // requests opened no session (each left a DENIED line instead: checked below), and
    // the open rule's viewer has no user.
    let is_denied = |l: &String| l.split_whitespace().nth(7) == Some("DENIED");
    let all_lines = wait_for(|| {
        let text = std::fs::read_to_string(&access_log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // Every refusal above and both sessions: as many lines of each status as
        // `check_denied_lines` asserts below, so a line still on its way to the file
        // is waited for rather than found missing.
        let status_count = |status: &str| {
            lines
                .iter()
                .filter(|l| is_denied(l) && l.split_whitespace().nth(6) == Some(status))
                .count()
        };
        (lines.iter().filter(|l| !is_denied(l)).count() >= 2
            && status_count("401") >= 4
            && status_count("403") >= 1)
            .then_some(lines)
    });
    let (denied, lines): (Vec<String>, Vec<String>) = all_lines.into_iter().partition(is_denied);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let user_of = |path: &str| {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"{}\"", edge.url(path))))
            .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"));
        // Fields: time, duration, client, user, ...
        line.split_whitespace().nth(3).unwrap().to_owned()
    };
    assert_eq!(user_of("/staff"), "\"alice\"");
    assert_eq!(user_of("/open"), "-");
    assert!(
        !lines.concat().contains("wonder-land"),
        "password in the access log"
    );
    check_denied_lines(&denied, &edge, &origin);
    let rows = wait_for(|| {
        let rows: Vec<ViewerSessionRecord> = SqliteStore::open(&edge.records_path())
            .and_then(|mut s| s.records(100))
            .unwrap_or_default();
        (rows.len() >= 2 + denied.len()).then_some(rows)
    });
    let (denied_rows, rows): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.cache == "DENIED");
    let mut users: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.url.as_str(), r.username.as_str()))
        .collect();
    users.sort_unstable();
    let (open, staff) = (edge.url("/open"), edge.url("/staff"));
    assert_eq!(users, [(open.as_str(), ""), (staff.as_str(), "alice")]);
    // The same refusals in the store, with the same fields.
    assert_eq!(denied_rows.len(), denied.len(), "{denied_rows:?}");
    for r in &denied_rows {
        assert_eq!(
            (
                r.url.as_str(),
                r.method.as_str(),
                r.reason.as_str(),
                r.session.as_str()
            ),
            (staff.as_str(), "DESCRIBE", "refused", ""),
            "{r:?}"
        );
        assert!(r.status == 401 || r.status == 403, "{r:?}");
        assert_eq!(
            r.username,
            if r.status == 403 { "bob" } else { "" },
            "{r:?}"
        );
        assert_eq!(
            (r.rule.as_str(), r.origin.as_str()),
            ("/staff", origin.url("/live").as_str())
        );
        assert_eq!((r.bytes, r.packets, r.transport.as_str()), (0, 0, "tcp"));
        assert!(r.duration_ms < 5_000 && r.end_unix_ms == r.start_unix_ms + r.duration_ms);
        assert!(r.viewer.starts_with("127.0.0.1:") && r.user_agent.starts_with("Lavf"));
    }
}

/// The DENIED access log lines of `users_file_logins_with_digest_and_basic_through_ffmpeg`,
/// field by field: every ffmpeg that met the login got a 401 first (the challenge
/// round, logged like Squid's TCP_DENIED/407), the wrong password another, and bob,
/// logged in but not in the rule's group, one 403 that names him.
fn check_denied_lines(denied: &[String], edge: &EdgeProc, origin: &Origin) {
    let mut statuses: Vec<&str> = Vec::new();
    for line in denied {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 18, "{line}");
        assert!(f[0].len() == 24 && f[0].ends_with('Z'), "time: {line}");
        let duration: u64 = f[1].parse().expect("duration_ms");
        assert!(duration < 5_000, "time to refusal: {line}");
        assert!(f[2].starts_with("127.0.0.1:"), "client: {line}");
        let status = f[6];
        let user = if status == "403" { "\"bob\"" } else { "-" };
        assert_eq!(f[3], user, "user (never a password): {line}");
        assert_eq!(f[4], "DESCRIBE", "{line}");
        assert_eq!(f[5], format!("\"{}\"", edge.url("/staff")), "{line}");
        assert!(status == "401" || status == "403", "{line}");
        assert_eq!(f[7], "DENIED");
        assert_eq!(f[8], "\"/staff\"", "rule: {line}");
        assert_eq!(f[9], "tcp", "{line}");
        assert_eq!(
            &f[10..14],
            ["0", "0", "0", "0"],
            "bytes, packets, lost: {line}"
        );
        assert_eq!(
            (f[14], f[15]),
            ("refused", "-"),
            "reason, no session: {line}"
        );
        assert!(f[16].starts_with("\"Lavf"), "user agent: {line}");
        assert_eq!(f[17], format!("\"{}\"", origin.url("/live")), "{line}");
        assert!(
            !line.contains("wonder-land") && !line.contains("builder"),
            "{line}"
        );
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == "403").count(),
        1,
        "{denied:?}"
    );
    // alice's challenge round, the viewer without credentials, the wrong password (at
    // least its first round) and bob's challenge round.
    assert!(
        statuses.iter().filter(|s| **s == "401").count() >= 4,
        "{denied:?}"
    );
}

/// `f`'s value once it has one, polled for up to 15 seconds.
fn wait_for<T>(f: impl Fn() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn basic_only_users_are_checked_against_argon2() {
    let origin = origin();
    let users = scratch("users-basic");
    user_add(&users, "carol", "s3cret pass", &[]);
    let edge = EdgeProc::start(&format!(
        "[edge.auth]\nusers_file = \"{}\"\nbasic = true\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccess = {{ authenticate = true }}\n",
        users.display(),
        origin.url("/live"),
    ));
    plays(&with_login(&edge.url("/cam"), "carol", "s3cret%20pass"));
    refused(&edge.url("/cam"), "401");
    refused(&with_login(&edge.url("/cam"), "carol", "s3cret"), "401");
    refused(&with_login(&edge.url("/cam"), "dave", "s3cret"), "401");
}

#[test]
fn a_users_file_change_applies_on_reload() {
    let origin = origin();
    let users = scratch("users-reload");
    user_add(&users, "erin", "first", &["--digest-realm", "mediagate"]);
    let edge = EdgeProc::start(&format!(
        "[edge.auth]\nusers_file = \"{}\"\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccess = {{ users = [\"erin\"] }}\n",
        users.display(),
        origin.url("/live"),
    ));
    plays(&with_login(&edge.url("/cam"), "erin", "first"));
    user_add(&users, "erin", "second", &["--digest-realm", "mediagate"]);
    let loads = users_file_loads(&edge.peer.stderr_tail());
    edge.peer.signal("HUP");
    edge.peer
        .wait_for_stderr("reload", Duration::from_secs(10), |lines| {
            (users_file_loads(lines) > loads).then_some(())
        });
    refused(&with_login(&edge.url("/cam"), "erin", "first"), "401");
    plays(&with_login(&edge.url("/cam"), "erin", "second"));
}

/// How often the edge has logged loading its users file.
fn users_file_loads(log: &[String]) -> usize {
    log.iter()
        .filter(|l| l.contains("edge users file loaded"))
        .count()
}

#[test]
fn origin_digest_challenges_pass_through_to_ffmpeg() {
    let origin = origin();
    let (user, password) = origin.credentials();
    let (user, password) = (user.to_owned(), password.to_owned());
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/sec\"\norigin = \"{}\"\n",
        origin.url("/secure")
    ));
    // No credentials: the origin's 401 and its Digest challenge reach the viewer.
    refused(&edge.url("/sec"), "401");
    // The viewer's own credentials reach the origin, which lets it play.
    plays(&with_login(&edge.url("/sec"), &user, &password));
    // Wrong ones are refused by the origin, through the edge.
    refused(
        &with_login(&edge.url("/sec"), &user, "not-the-password"),
        "401",
    );
    // The origin saw a Digest answer it accepted, and played once: for that viewer.
    assert!(origin.request_count("DESCRIBE", "/secure", 200) >= 1);
    assert_eq!(origin.play_count("/secure"), 1);
    // Each viewer is checked by its own DESCRIBE: two viewers with credentials, two
    // origin sessions (a pass-through stream is never split with another viewer).
    let url = with_login(&edge.url("/sec"), &user, &password);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| read(&url));
        let b = s.spawn(|| read(&url));
        (a.join().expect("viewer a"), b.join().expect("viewer b"))
    });
    assert!(a.success && a.video_frames >= 10, "{}", a.diagnostics);
    assert!(b.success && b.video_frames >= 10, "{}", b.diagnostics);
    assert_eq!(origin.play_count("/secure"), 3);
    // An unauthenticated viewer after them still gets the challenge: nothing was
    // cached or reused.
    refused(&edge.url("/sec"), "401");
    let log = edge.peer.stderr_tail().join("\n");
    assert!(
        !log.contains("Authorization") && !log.contains(&password),
        "{log}"
    );
}

/// One RTSP request on a fresh connection, its response parsed.
fn raw(port: u16, method: &str, url: &str, headers: &[(&str, &str)]) -> mediagate_rtsp::Response {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: 1\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    s.write_all(text.as_bytes()).unwrap();
    let mut dec = mediagate_rtsp::parse::Decoder::default();
    loop {
        if let Some(mediagate_rtsp::Item::Response(r)) = dec.next_item().unwrap() {
            return r;
        }
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).expect("a response");
        assert!(n > 0, "closed before the response to {method}");
        dec.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn forward_mode_asks_with_407_and_still_passes_the_origins_401() {
    use mediagate_rtsp::auth::ClientAuth;
    let origin = origin();
    let users = scratch("users-forward");
    user_add(&users, "ivy", "ivy-pw", &["--digest-realm", "mediagate"]);
    let edge = EdgeProc::start(&format!(
        "[edge.auth]\nusers_file = \"{}\"\n\
         [edge.forward]\nenabled = true\nallow = [\"127.0.0.1:{}\"]\naccess = {{ users = [\"ivy\"] }}\n",
        users.display(),
        origin.port(),
    ));
    let live = origin.url("/live");
    let accept = ("Accept", "application/sdp");
    let r = raw(edge.port, "DESCRIBE", &live, &[accept]);
    assert_eq!(r.status.as_u16(), 407, "{r:?}");
    assert!(r.headers.get("WWW-Authenticate").is_none());
    let challenges: Vec<&str> = r.headers.get_all("Proxy-Authenticate").collect();
    assert!(!challenges.is_empty() && challenges.iter().all(|c| c.starts_with("Digest ")));
    let proxy_auth = |password: &str| {
        ClientAuth::new("ivy", password)
            .respond(&challenges, "DESCRIBE", &live, "f00dcafe")
            .expect("client answers")
    };
    // The origin's own Authorization header is not the edge's login.
    let wrong_header = proxy_auth("ivy-pw");
    let r = raw(
        edge.port,
        "DESCRIBE",
        &live,
        &[accept, ("Authorization", &wrong_header)],
    );
    assert_eq!(r.status.as_u16(), 407, "{r:?}");
    let r = raw(
        edge.port,
        "DESCRIBE",
        &live,
        &[accept, ("Proxy-Authorization", &proxy_auth("nope"))],
    );
    assert_eq!(r.status.as_u16(), 407, "{r:?}");
    let r = raw(
        edge.port,
        "DESCRIBE",
        &live,
        &[accept, ("Proxy-Authorization", &proxy_auth("ivy-pw"))],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("m=video"),
        "{r:?}"
    );
    // Logged in at the edge, the origin's Digest mount still challenges the viewer,
    // in WWW-Authenticate: the two logins use different headers in forward mode.
    let secure = origin.url("/secure");
    let r = raw(edge.port, "DESCRIBE", &secure, &[accept]);
    assert_eq!(r.status.as_u16(), 407, "{r:?}");
    let challenges: Vec<&str> = r.headers.get_all("Proxy-Authenticate").collect();
    let login = ClientAuth::new("ivy", "ivy-pw")
        .respond(&challenges, "DESCRIBE", &secure, "f00dcafe")
        .expect("client answers");
    let r = raw(
        edge.port,
        "DESCRIBE",
        &secure,
        &[accept, ("Proxy-Authorization", &login)],
    );
    assert_eq!(r.status.as_u16(), 401, "{r:?}");
    assert!(
        r.headers
            .get_all("WWW-Authenticate")
            .any(|c| c.starts_with("Digest ")),
        "{r:?}"
    );
    // Both at once on one request: the edge login in Proxy-Authorization, the answer
    // to the origin's challenge in Authorization, passed on to the origin. (No real
    // player sends both: ffmpeg has no RTSP proxy setting, and GStreamer's rtspsrc
    // `proxy` sends absolute URLs to a proxy but gives up on a 407 without retrying
    // with its `proxy-id`/`proxy-pw`; so the edge side is this raw client.)
    let origin_challenges: Vec<&str> = r.headers.get_all("WWW-Authenticate").collect();
    let (origin_user, origin_password) = origin.credentials();
    let origin_login = ClientAuth::new(origin_user, origin_password)
        .respond(&origin_challenges, "DESCRIBE", &secure, "0ddba11")
        .expect("client answers the origin");
    let r = raw(
        edge.port,
        "DESCRIBE",
        &secure,
        &[
            accept,
            ("Proxy-Authorization", &login),
            ("Authorization", &origin_login),
        ],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("m=video"),
        "{r:?}"
    );
    // The origin reports its requests a moment after answering them.
    wait_for(|| (origin.request_count("DESCRIBE", "/secure", 200) >= 1).then_some(()));
    // The wrong origin password with the right edge login: the origin refuses.
    let bad_origin = ClientAuth::new(origin_user, "not-it")
        .respond(&origin_challenges, "DESCRIBE", &secure, "0ddba11")
        .expect("client answers the origin");
    let r = raw(
        edge.port,
        "DESCRIBE",
        &secure,
        &[
            accept,
            ("Proxy-Authorization", &login),
            ("Authorization", &bad_origin),
        ],
    );
    assert_eq!(r.status.as_u16(), 401, "{r:?}");
}

#[test]
fn a_raw_viewer_sees_the_origins_challenge_unchanged() {
    let origin = origin();
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/sec\"\norigin = \"{}\"\n",
        origin.url("/secure")
    ));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", edge.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n",
        edge.url("/sec")
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = std::io::Read::read(&mut s, &mut buf).expect("answer");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("RTSP/1.0 401"), "{text}");
    let challenge = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .unwrap_or_else(|| panic!("no challenge: {text}"));
    assert!(
        challenge.contains("Digest") && challenge.contains("nonce="),
        "{text}"
    );
}

#[test]
fn ldap_logins_bind_as_the_user_found_by_the_search() {
    use mediagate_testkit::slapd::{Slapd, ROOT_DN, ROOT_PW, SUFFIX};
    let ldap = Slapd::start(&format!(
        "dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: uid=frank,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: frank\ncn: Frank\nsn: F\n\
         userPassword: frank-pw\nseeAlso: cn=staff,ou=groups,{SUFFIX}\n\n\
         dn: uid=grace,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: grace\ncn: Grace\nsn: G\n\
         userPassword: grace-pw\n"
    ))
    .expect("slapd starts");
    let origin = origin();
    let edge = EdgeProc::start(&format!(
        "[edge.auth]\nldap = {{ url = \"{}\", base_dn = \"ou=people,{SUFFIX}\", filter = \"(&(objectClass=inetOrgPerson)(uid={{user}}))\", bind_dn = \"{ROOT_DN}\", bind_password = \"{ROOT_PW}\", group_attribute = \"seeAlso\" }}\n\
         [[edge.route]]\nadvertised = \"/staff\"\norigin = \"{}\"\naccess = {{ groups = [\"staff\"] }}\n\
         [[edge.route]]\nadvertised = \"/any\"\norigin = \"{}\"\naccess = {{ authenticate = true }}\n",
        ldap.url(),
        origin.url("/live"),
        origin.url("/live"),
    ));
    // LDAP can only check a password it is given: Basic is offered, and ffmpeg uses it.
    plays(&with_login(&edge.url("/staff"), "frank", "frank-pw"));
    refused(&with_login(&edge.url("/staff"), "frank", "wrong"), "401");
    refused(&edge.url("/staff"), "401");
    // A right password outside the group: 403; the same user may use the other rule.
    refused(&with_login(&edge.url("/staff"), "grace", "grace-pw"), "403");
    plays(&with_login(&edge.url("/any"), "grace", "grace-pw"));
    // An unknown user, and a filter-injection attempt, find no entry.
    refused(&with_login(&edge.url("/any"), "nobody", "x"), "401");
    refused(&with_login(&edge.url("/any"), "*", "frank-pw"), "401");
}
