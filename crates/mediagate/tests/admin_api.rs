//! The management API on the real binary with real peers (issue 11): an ffmpeg viewer
//! through the edge and a call through the relay appear in the API with sane counters
//! and can be ended by it; `/metrics` parses with Prometheus's own parser (`promtool`);
//! the token is enforced; bad bodies get 4xx with a reason; one role drains by API
//! while another runs; and a bounded flood of API requests costs the media nothing.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ffmpeg_gapless, ffmpeg_viewer, ng_ask, ng_offer_answer, EdgeProc};
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::ports::{free_tcp_port, free_udp_port};
use mediagate_testkit::process::{run, Peer};
use mediagate_testkit::{Origin, OriginOptions, Transport};
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request on its own connection.
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("the admin API accepts");
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(body);
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("an answer");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn get(port: u16, path: &str) -> Value {
    let a = http(port, "GET", path, None, b"");
    assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    a.json()
}

/// Waits until `check` holds for the JSON at `path`; returns it.
fn until(port: u16, path: &str, peer: &Peer, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get(port, path);
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {v}\n{}",
            peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn admin_section(port: u16, token: Option<&str>) -> String {
    let mut s = format!("[admin]\nlisten = [\"127.0.0.1:{port}\"]\n");
    if let Some(t) = token {
        s.push_str(&format!("token = \"{t}\"\n"));
    }
    s
}

fn edge_with_api(origin: &Origin, token: Option<&str>) -> (EdgeProc, u16) {
    let api = free_tcp_port().unwrap();
    let extra = format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n{}",
        origin.url("/live"),
        admin_section(api, token)
    );
    (EdgeProc::start(&extra), api)
}

fn status_command(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("status").args(args);
    let out = run("mediagate status", cmd, Duration::from_secs(20)).unwrap();
    (
        out.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.stderr.join("\n"),
    )
}

#[test]
fn an_ffmpeg_viewer_is_listed_measured_and_disconnected_by_the_api() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (edge, api) = edge_with_api(&origin, None);
    let viewer = ffmpeg_viewer(&edge.url("/cam"), "probe <b>bold</b>", 60);

    let viewers = until(api, "/api/v1/edge/viewers", &edge.peer, |v| {
        v[0]["packets"].as_u64().unwrap_or(0) > 50
    });
    let v = &viewers[0];
    assert_eq!(viewers.as_array().unwrap().len(), 1, "{viewers}");
    assert_eq!(v["transport"], "tcp");
    assert_eq!(v["url"], edge.url("/cam"));
    assert!(
        v["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    // A client's string comes back as it was sent, as data.
    assert_eq!(v["user_agent"], "probe <b>bold</b>");
    let (packets, bytes) = (v["packets"].as_u64().unwrap(), v["bytes"].as_u64().unwrap());
    assert!(bytes > packets * 10, "{v}");
    assert!(v["watched_seconds"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();

    let streams = until(api, "/api/v1/edge/streams", &edge.peer, |s| {
        s[0]["bitrate_bps"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(streams[0]["origin"], origin.url("/live"));
    assert_eq!(streams[0]["viewers"], 1);
    assert!(
        streams[0]["bytes_in"].as_u64().unwrap() >= bytes / 2,
        "{streams}"
    );
    let roles = get(api, "/api/v1/roles");
    assert_eq!(
        (roles[0]["name"].clone(), roles[0]["sessions"].clone()),
        ("edge".into(), 1.into())
    );

    // Counters grow while it watches (bounded: a loaded machine may stall a moment).
    until(api, "/api/v1/edge/viewers", &edge.peer, |later| {
        later[0]["packets"].as_u64().unwrap_or(0) > packets
    });

    // `mediagate status` shows the same picture.
    let (ok, out, err) = status_command(&["--admin", &format!("http://127.0.0.1:{api}")]);
    assert!(ok, "{err}");
    assert!(out.contains("viewers (1):") && out.contains(&id), "{out}");
    assert!(out.contains("\"probe <b>bold</b>\""), "{out}");

    // /metrics parses with Prometheus's parser (promtool exits 1 on a parse error,
    // 3 on lint findings, which are the metrics' authors' business).
    let metrics = http(api, "GET", "/metrics", None, b"");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .head
        .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        matches!(checked.status.code(), Some(0 | 3)),
        "promtool could not parse /metrics: {}\n{}",
        String::from_utf8_lossy(&checked.stderr),
        metrics.body
    );

    let gone = http(
        api,
        "DELETE",
        &format!("/api/v1/edge/viewers/{id}"),
        None,
        b"",
    );
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(gone.json()["reason"], "admin");
    assert!(
        viewer.wait_timeout(Duration::from_secs(15)).is_some(),
        "ffmpeg kept running after its disconnect\n{}",
        viewer.diagnostics()
    );
    until(api, "/api/v1/edge/viewers", &edge.peer, |v| {
        *v == Value::Array(vec![])
    });
    // The edge's log is read on another thread: wait (bounded) for the line.
    edge.peer.wait_for_stderr(
        "the admin disconnect logged",
        Duration::from_secs(15),
        |lines| {
            lines
                .iter()
                .find(|l| l.contains("viewer session ended") && l.contains("admin"))
                .cloned()
        },
    );
    let again = http(
        api,
        "DELETE",
        &format!("/api/v1/edge/viewers/{id}"),
        None,
        b"",
    );
    assert_eq!(again.status, 404);
}

#[test]
fn the_token_and_bad_bodies_are_enforced_with_reasons() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (edge, api) = edge_with_api(&origin, Some(TOKEN));
    for path in [
        "/api/v1/roles",
        "/metrics",
        "/openapi.json",
        "/api/v1/edge/viewers",
    ] {
        let a = http(api, "GET", path, None, b"");
        assert_eq!(a.status, 401, "{path}");
        assert!(a.json()["error"]
            .as_str()
            .unwrap()
            .contains("needs a token"));
        let a = http(api, "GET", path, Some("wrong-token-0123456789"), b"");
        assert_eq!(a.status, 401, "{path}");
        let a = http(api, "GET", path, Some(TOKEN), b"");
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    let drain = "/api/v1/roles/edge/drain";
    let cases: [(&[u8], u16, &str); 4] = [
        (b"{\"wait\": ", 400, "not valid JSON"),
        (
            b"{\"wait\": true, \"force\": true}",
            400,
            "unknown field `force`",
        ),
        (b"[1, 2]", 400, "does not fit"),
        (&[b' '; 70_000], 413, "larger than 65536 bytes"),
    ];
    for (body, status, says) in cases {
        let a = http(api, "POST", drain, Some(TOKEN), body);
        assert_eq!(a.status, status, "{}", a.body);
        let error = a.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{error}");
    }
    assert_eq!(
        http(api, "GET", "/api/v1/roles", Some(TOKEN), b"").json()[0]["state"],
        "running",
        "no bad request started a drain"
    );
    // The API's reload is SIGHUP's: the unchanged file applies; a broken one changes
    // nothing and says where it is broken.
    let reload = http(api, "POST", "/api/v1/reload", Some(TOKEN), b"");
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert_eq!(reload.json()["reloaded"], true, "{}", reload.body);
    let good = std::fs::read_to_string(edge.config_path()).unwrap();
    std::fs::write(edge.config_path(), format!("{good}\n[edge]\nbogus = 1\n")).unwrap();
    let reload = http(api, "POST", "/api/v1/reload", Some(TOKEN), b"");
    assert_eq!(reload.status, 422, "{}", reload.body);
    let error = reload.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("mediagate.toml:13:1:") && error.contains("nothing changed"),
        "{error}"
    );
    std::fs::write(edge.config_path(), good).unwrap();

    let url = format!("http://127.0.0.1:{api}");
    let (ok, _, err) = status_command(&["--admin", &url]);
    assert!(
        !ok && err.contains("401") && err.contains("--token-file"),
        "{err}"
    );
    let (ok, out, err) = status_command(&["--admin", &url, "--token", TOKEN]);
    assert!(ok && out.contains("edge"), "{out}{err}");
    drop(edge);
    let (ok, _, err) = status_command(&["--admin", &url]);
    assert!(!ok && err.contains("nothing answers at"), "{err}");
}

#[test]
fn a_flood_of_api_requests_costs_the_media_nothing() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (edge, api) = edge_with_api(&origin, None);
    let stop_at = Instant::now() + Duration::from_secs(12);
    let flooders: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                let paths = ["/metrics", "/api/v1/edge/viewers", "/api/v1/edge/streams"];
                let (mut ok, mut busy) = (0u32, 0u32);
                // Bounded by count and by time.
                for n in 0..3000 {
                    if Instant::now() > stop_at {
                        break;
                    }
                    match http(api, "GET", paths[(i + n) % paths.len()], None, b"").status {
                        200 => ok += 1,
                        503 => busy += 1,
                        other => panic!("flood request answered {other}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 6.0);
    let answered: Vec<(u32, u32)> = flooders.into_iter().map(|t| t.join().unwrap()).collect();
    let ok: u32 = answered.iter().map(|a| a.0).sum();
    assert!(ok >= 100, "the API answered too little: {answered:?}");
    assert!(r.video >= 45 && r.audio >= 140, "{r:?}");
    assert!(
        r.gap_warnings.is_empty(),
        "gaps under an API flood: {:?}\n{}",
        r.gap_warnings,
        r.diagnostics
    );
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend([0xffu8; 160]);
    p
}

#[test]
fn a_relayed_call_is_listed_and_ended_by_the_api_and_one_role_drains_alone() {
    let work = std::env::temp_dir().join(format!("mg-admin-relay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (ng_port, rtsp, api) = (
        free_udp_port().unwrap(),
        free_tcp_port().unwrap(),
        free_tcp_port().unwrap(),
    );
    let config = format!(
        "state_dir = {state:?}\n[edge]\nlisten = [\"127.0.0.1:{rtsp}\"]\n\
         [relay]\nenabled = true\nng_listen_udp = [\"127.0.0.1:{ng_port}\"]\n\
         media_address = [{{ address = \"127.0.0.1\" }}]\nports = \"38100-38199\"\n{}",
        admin_section(api, None),
        state = work.join("var").display().to_string(),
    );
    let path = work.join("mediagate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let mg = Peer::spawn("mediagate", cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", api)).is_err() {
        assert!(Instant::now() < deadline, "no API: {}", mg.diagnostics());
        std::thread::sleep(Duration::from_millis(50));
    }

    let control = UdpSocket::bind("127.0.0.1:0").unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (caller_port, callee_port) = (
        caller.local_addr().unwrap().port(),
        callee.local_addr().unwrap().port(),
    );
    let relay_for_caller = ng_offer_answer(
        &control,
        ng_port,
        ["api-call", "alice", "bob"],
        (caller_port, callee_port),
    );
    for seq in 0..20u16 {
        caller
            .send_to(&rtp(seq), ("127.0.0.1", relay_for_caller))
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while got < 20 && callee.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 20, "the relay forwarded the caller's RTP");

    let calls = until(api, "/api/v1/relay/calls", &mg, |c| {
        c[0]["streams"][0]["caller"]["packets"] == 20
    });
    let call = &calls[0];
    assert_eq!(
        (
            &call["call_id"],
            &call["from_tag"],
            &call["to_tag"],
            &call["answered"]
        ),
        (
            &"api-call".into(),
            &"alice".into(),
            &"bob".into(),
            &true.into()
        )
    );
    let stream = &call["streams"][0];
    assert_eq!(stream["media_type"], "audio");
    assert_eq!(stream["caller"]["codec"], "PCMU");
    // Whole datagrams: the 12-byte RTP header and 160 bytes of payload.
    assert_eq!(stream["caller"]["bytes"], 20 * 172);
    assert_eq!(
        stream["caller"]["remote"],
        format!("127.0.0.1:{caller_port}")
    );
    assert_eq!(
        stream["caller"]["local"],
        format!("127.0.0.1:{relay_for_caller}")
    );

    let ended = http(api, "DELETE", "/api/v1/relay/calls/api-call", None, b"");
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(get(api, "/api/v1/relay/calls"), Value::Array(vec![]));
    let missing = http(api, "DELETE", "/api/v1/relay/calls/api-call", None, b"");
    assert_eq!(missing.status, 404);

    // The edge drains alone; the relay keeps serving ng.
    let drained = http(
        api,
        "POST",
        "/api/v1/roles/edge/drain",
        None,
        b"{\"wait\": true}",
    );
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert_eq!(drained.json()["drain"]["complete"], true);
    let roles = get(api, "/api/v1/roles");
    let state = |name: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["state"].clone())
    };
    assert_eq!(state("edge"), Some("drained".into()), "{roles}");
    assert_eq!(state("relay"), Some("running".into()), "{roles}");
    assert!(
        TcpStream::connect(("127.0.0.1", rtsp)).is_err(),
        "the edge stopped listening"
    );
    let ping = ng_ask(&control, ng_port, "p1", "d7:command4:pinge");
    assert!(ping.contains("pong"), "{ping}");

    // SIGTERM still stops everything cleanly (the edge is not drained twice).
    mg.signal("TERM");
    let status = mg.wait_timeout(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", mg.diagnostics());
    let mut store = SqliteStore::open(&work.join("var/accounting.sqlite")).unwrap();
    let records = store
        .records::<mediagate_relay::record::SessionRecord>(10)
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].call_id.as_str(), records[0].reason.as_str()),
        ("api-call", "admin")
    );
    assert_eq!(records[0].streams[0].caller.packets, 20);
    let _ = std::fs::remove_dir_all(&work);
}

/// Runs a tool to completion; panics with its output when it fails.
fn tool(program: &str, args: &[&str], dir: &std::path::Path) {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    let out = run(program, cmd, Duration::from_secs(30)).unwrap();
    assert!(out.success(), "{}", out.diagnostics);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate from it, and a
/// self-signed client certificate from no one the server knows; made with openssl.
fn make_certificates(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let req = |key: &str, out: &str, subject: &str, extra: &[&str]| {
        let mut args = vec!["req"];
        args.extend(extra);
        args.extend(ec);
        args.extend(["-keyout", key, "-out", out, "-subj", subject, "-days", "2"]);
        tool("openssl", &args, dir);
    };
    req("ca.key", "ca.pem", "/CN=mediagate test CA", &["-x509"]);
    req("stranger.key", "stranger.pem", "/CN=stranger", &["-x509"]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        req(&key, &csr, &format!("/CN={who}"), &[]);
        tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
            dir,
        );
    }
}

/// curl over HTTPS trusting the test CA: the HTTP status ("000" when the TLS
/// handshake or the connection failed) and the body.
fn curl(dir: &std::path::Path, port: u16, client: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir).args([
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        "ca.pem",
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(who) = client {
        cmd.args([
            "--cert",
            &format!("{who}.pem"),
            "--key",
            &format!("{who}.key"),
        ]);
    }
    cmd.arg(format!("https://127.0.0.1:{port}/api/v1/roles"));
    let out = run("curl", cmd, Duration::from_secs(20)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

#[test]
fn mutual_tls_admits_clients_of_the_configured_ca_only() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let dir = std::env::temp_dir().join(format!("mg-admin-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let api = free_tcp_port().unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let extra = format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n{}tls_cert = {:?}\ntls_key = {:?}\nclient_ca = {:?}\n",
        origin.url("/live"),
        admin_section(api, None),
        path("server.pem"),
        path("server.key"),
        path("ca.pem"),
    );
    let edge = EdgeProc::start(&extra);

    let (code, body) = curl(&dir, api, Some("client"));
    assert_eq!(code, "200", "{body}\n{}", edge.peer.diagnostics());
    let roles: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(roles[0]["name"], "edge");
    let (code, _) = curl(&dir, api, None);
    assert_eq!(code, "000", "a client without a certificate is refused");
    let (code, _) = curl(&dir, api, Some("stranger"));
    assert_eq!(code, "000", "a certificate from another CA is refused");
    // Plain HTTP gets no answer from the TLS listener.
    let mut conn = TcpStream::connect(("127.0.0.1", api)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(b"GET /api/v1/roles HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "plain HTTP was served");
    let (code, _) = curl(&dir, api, Some("client"));
    assert_eq!(code, "200", "the API still serves after the refusals");

    // `mediagate status` speaks it too.
    let url = format!("https://127.0.0.1:{api}");
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let (ok, out, err) = status_command(&[
        "--admin", &url, "--cacert", &ca, "--cert", &cert, "--key", &key,
    ]);
    assert!(ok && out.contains("viewers (0):"), "{out}{err}");
    let (ok, _, err) = status_command(&["--admin", &url, "--cacert", &ca]);
    assert!(!ok && err.contains("nothing answers"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
