//! The balancer role with real peers: three gst-rtsp-server origins (the test kit's) as
//! back ends on loopback, ffmpeg and GStreamer rtspsrc viewers through `mediagate
//! balancer` over TCP interleaved, UDP and the HTTP tunnel in its media modes, a
//! kill -9 of an origin under health checks, and raw RTSP for what
//! players never send (unknown sessions, `destination=` to a third party, malformed
//! requests). Which back end served which session is read from the origins' request
//! logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::ports::free_tcp_port;
use mediagate_testkit::process::Peer;
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

/// Three small origins with one live mount each.
fn origins() -> Vec<Origin> {
    (0..3)
        .map(|_| {
            Origin::start(OriginOptions {
                vod_mount: None,
                auth_mount: None,
                threads: 4,
                ..OriginOptions::default()
            })
            .expect("gst-rtsp-server origin starts")
        })
        .collect()
}

struct Balancer {
    peer: Peer,
    port: u16,
    admin: u16,
    _dir: std::path::PathBuf,
}

impl Balancer {
    /// `mediagate run` with one RTSP service over `origins` in `mode`, its admin API on
    /// a free port.
    fn start(origins: &[Origin], mode: &str, extra: &str) -> Balancer {
        let port = free_tcp_port().unwrap();
        let admin = free_tcp_port().unwrap();
        let dir = std::env::temp_dir().join(format!("mediagate-bal-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let backends: Vec<String> = origins
            .iter()
            .map(|o| format!("\"rtsp://127.0.0.1:{}\"", o.port()))
            .collect();
        let config = format!(
            "state_dir = {var:?}\n[edge]\nenabled = false\n[admin]\nlisten = [\"127.0.0.1:{admin}\"]\n\
             [balancer]\nenabled = true\nheader_timeout = \"2s\"\n{extra}\n\
             [[balancer.service]]\nname = \"rtsp\"\nlisten = [\"127.0.0.1:{port}\"]\n\
             media_mode = \"{mode}\"\nbackends = [{}]\n",
            backends.join(", "),
            var = dir.join("var").display().to_string(),
        );
        let path = dir.join("mediagate.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
        cmd.arg("run").arg("--config").arg(&path);
        Self::spawn(cmd, port, admin, dir)
    }

    fn spawn(cmd: Command, port: u16, admin: u16, dir: std::path::PathBuf) -> Balancer {
        let peer = Peer::spawn("mediagate", cmd).expect("mediagate starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !peer
            .stderr_tail()
            .iter()
            .any(|l| l.contains("listening for RTSP"))
        {
            assert!(
                Instant::now() < deadline && peer.try_status().is_none(),
                "balancer did not start: {}",
                peer.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The admin API starts after the roles: wait for it too, before a test asks it.
        if admin != 0 {
            peer.wait_for_stderr_line(
                &format!("admin API: listening on 127.0.0.1:{admin}"),
                (deadline + Duration::from_secs(10)).saturating_duration_since(Instant::now()),
            );
        }
        Balancer {
            peer,
            port,
            admin,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }
}

/// How many PLAYs each origin answered with 200.
fn plays(origins: &[Origin]) -> Vec<usize> {
    origins.iter().map(|o| o.play_count("/live")).collect()
}

fn read_ok(url: &str, transport: Transport) {
    // 3 s: a viewer that joins the live stream between keyframes decodes nothing until
    // the next one (up to a GOP), and a loaded machine adds start-up time.
    let report = ffmpeg_read(
        url,
        &ReadOptions::seconds(transport, 3.0).timeout(Duration::from_secs(20)),
    )
    .expect("ffmpeg runs");
    assert!(
        report.video_frames > 5,
        "{transport} through the balancer: {report:#?}"
    );
}

#[test]
fn the_quick_start_spreads_tcp_viewers_over_three_origins() {
    let origins = origins();
    let port = free_tcp_port().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("balancer")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    for o in &origins {
        cmd.arg("--backend")
            .arg(format!("rtsp://127.0.0.1:{}", o.port()));
    }
    let dir = std::env::temp_dir().join(format!("mediagate-balq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    cmd.current_dir(&dir);
    let balancer = Balancer::spawn(cmd, port, 0, dir);
    for _ in 0..3 {
        read_ok(&balancer.url("/live"), Transport::Tcp);
    }
    // Round robin: one viewer on each origin.
    assert_eq!(plays(&origins), [1, 1, 1]);
}

#[test]
fn relay_mode_relays_udp_media_through_the_balancer_s_ports() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "");
    read_ok(&balancer.url("/live"), Transport::Udp);
    // The origin was asked to send to the balancer's pair, never to the viewer's own
    // ports (the balancer's range is 40000-44095 by default).
    assert!(logged(&origins, |r| r.method == "SETUP"));
    let setups: Vec<String> = origins
        .iter()
        .flat_map(|o| o.requests())
        .filter(|r| r.method == "SETUP")
        .filter_map(|r| r.transport)
        .collect();
    assert!(!setups.is_empty());
    for t in &setups {
        let port: u16 = t
            .split(';')
            .find_map(|p| p.strip_prefix("client_port="))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no client_port in {t}"));
        assert!((40000..=44095).contains(&port), "{t}");
    }
}

/// Also: the viewers' connections ran on threads under `rtsp_scheduling` (a nice
/// value, which needs no privilege to raise).
#[test]
fn relay_mode_serves_tcp_and_http_tunnel_viewers() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "rtsp_scheduling = \"normal:5\"");
    read_ok(&balancer.url("/live"), Transport::Tcp);
    read_ok(&balancer.url("/live"), Transport::HttpTunnel);
    // The tunnel's GET and POST reached one origin: its PLAY came on the POST half.
    assert_eq!(
        plays(&origins).iter().sum::<usize>(),
        2,
        "{:?}",
        plays(&origins)
    );
    let nice = mediagate_testkit::process::thread_nice_values(balancer.peer.pid(), "mg-rtsp-");
    assert!(
        !nice.is_empty() && nice.iter().all(|&n| n == 5),
        "mg-rtsp threads' nice values: {nice:?}"
    );
}

#[test]
fn direct_mode_serves_udp_tcp_and_http_tunnel_viewers() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "direct", "");
    read_ok(&balancer.url("/live"), Transport::Udp);
    read_ok(&balancer.url("/live"), Transport::Tcp);
    read_ok(&balancer.url("/live"), Transport::HttpTunnel);
    assert_eq!(plays(&origins).iter().sum::<usize>(), 3);
}

#[test]
fn gstreamer_rtspsrc_plays_over_udp_and_tcp_in_relay_mode() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "");
    for transport in [Transport::Udp, Transport::Tcp] {
        // Until 6 video buffers, bounded at 20 s: a viewer joining between keyframes
        // gets its first video a GOP later, and 2 s of play once gave only 3 buffers
        // on a loaded machine.
        let options = mediagate_testkit::RtspsrcOptions::new(transport, Duration::from_secs(20))
            .until_buffers(6, 0);
        let report = mediagate_testkit::rtspsrc_with(&balancer.url("/live"), &options)
            .expect("rtspsrc runs");
        assert!(
            report.video_buffers > 5 && report.errors.is_empty(),
            "rtspsrc over {transport}: {report:#?}"
        );
    }
}

#[test]
fn redirect_mode_sends_ffmpeg_to_an_origin() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "redirect", "");
    read_ok(&balancer.url("/live"), Transport::Tcp);
    read_ok(&balancer.url("/live"), Transport::Tcp);
    assert_eq!(plays(&origins), [1, 1, 0]);
}

/// A raw RTSP connection to the balancer.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `request` and reads one response head and its body.
    fn ask(&mut self, request: &str) -> String {
        self.stream.write_all(request.as_bytes()).unwrap();
        self.response()
    }

    fn response(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                let len: usize = header(&head, "Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let whole = String::from_utf8_lossy(&self.buf[..end + 4 + len]).into_owned();
                    self.buf.drain(..end + 4 + len);
                    return whole;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("an answer");
            assert!(
                n > 0,
                "closed before an answer; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the balancer closed the connection (EOF within the read timeout).
    fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Waits (bounded) until some origin has logged a request `want` accepts: origins log
/// a request a moment after answering it.
fn logged(origins: &[Origin], want: impl Fn(&mediagate_testkit::RequestEvent) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if origins.iter().any(|o| o.requests().iter().any(&want)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn session_id(message: &str) -> String {
    header(message, "Session")
        .expect("a Session header")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// DESCRIBE and SETUP of the live mount's first track over `raw`; the SETUP's answer.
fn setup(raw: &mut Raw, url: &str, transport: &str) -> String {
    let describe = raw.ask(&format!(
        "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    ));
    assert!(describe.starts_with("RTSP/1.0 200"), "{describe}");
    let control = describe
        .lines()
        .find_map(|l| l.strip_prefix("a=control:").filter(|c| *c != "*"))
        .expect("a track control")
        .to_owned();
    let base = header(&describe, "Content-Base").unwrap_or(url).to_owned();
    let track = if control.starts_with("rtsp://") {
        control
    } else {
        format!("{}/{control}", base.trim_end_matches('/'))
    };
    raw.ask(&format!(
        "SETUP {track} RTSP/1.0\r\nCSeq: 2\r\nTransport: {transport}\r\n\r\n"
    ))
}

#[test]
fn sessions_are_the_balancer_s_own_and_route_from_any_connection() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "");
    let url = balancer.url("/live");
    let mut first = Raw::connect(balancer.port);
    let answer = setup(&mut first, &url, "RTP/AVP/TCP;unicast;interleaved=0-1");
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let id = session_id(&answer);
    assert!(logged(&origins, |r| r.method == "SETUP" && r.session.is_some()));
    // The ID the client sees is not the one the origin minted.
    let origin_ids: Vec<String> = origins
        .iter()
        .flat_map(|o| o.requests())
        .filter_map(|r| r.session)
        .collect();
    assert!(!origin_ids.is_empty());
    assert!(!origin_ids.contains(&id), "{id} is an origin's own ID");
    // A keep-alive on another connection reaches the session's origin.
    let mut second = Raw::connect(balancer.port);
    let keepalive = second.ask(&format!(
        "GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 5\r\nSession: {id}\r\n\r\n"
    ));
    assert!(keepalive.starts_with("RTSP/1.0 200"), "{keepalive}");
    // gst-rtsp-server answers GET_PARAMETER without Session; where an answer names
    // it, it is the balancer's ID.
    if header(&keepalive, "Session").is_some() {
        assert_eq!(session_id(&keepalive), id);
    }
    assert!(logged(&origins, |r| r.method == "GET_PARAMETER"));
    // An unknown session gets 454 without reaching any origin.
    let get_parameters = |origins: &[Origin]| {
        origins
            .iter()
            .map(|o| {
                o.requests()
                    .iter()
                    .filter(|r| r.method == "GET_PARAMETER")
                    .count()
            })
            .sum::<usize>()
    };
    let before = get_parameters(&origins);
    let unknown = second.ask(&format!(
        "GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 6\r\nSession: 0123456789abcdef\r\n\r\n"
    ));
    assert!(unknown.starts_with("RTSP/1.0 454"), "{unknown}");
    assert_eq!(header(&unknown, "CSeq"), Some("6"));
    // TEARDOWN removes it: the next request naming it gets 454.
    let teardown = second.ask(&format!(
        "TEARDOWN {url} RTSP/1.0\r\nCSeq: 7\r\nSession: {id}\r\n\r\n"
    ));
    assert!(teardown.starts_with("RTSP/1.0 200"), "{teardown}");
    // The origin logs in order and a moment after answering: once the TEARDOWN sent
    // after it is logged, a GET_PARAMETER the balancer passed on would be too.
    assert!(logged(&origins, |r| r.method == "TEARDOWN"));
    assert_eq!(
        get_parameters(&origins),
        before,
        "the unknown session's GET_PARAMETER reached an origin"
    );
    let gone = second.ask(&format!(
        "GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 8\r\nSession: {id}\r\n\r\n"
    ));
    assert!(gone.starts_with("RTSP/1.0 454"), "{gone}");
}

#[test]
fn a_destination_naming_a_third_party_never_reaches_the_origin() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "direct", "");
    let mut raw = Raw::connect(balancer.port);
    let answer = setup(
        &mut raw,
        &balancer.url("/live"),
        "RTP/AVP;unicast;destination=192.0.2.99;client_port=40010-40011",
    );
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    assert!(logged(&origins, |r| r.method == "SETUP"));
    let setups: Vec<String> = origins
        .iter()
        .flat_map(|o| o.requests())
        .filter(|r| r.method == "SETUP")
        .filter_map(|r| r.transport)
        .collect();
    assert_eq!(setups.len(), 1, "{setups:?}");
    assert!(!setups[0].contains("destination"), "{setups:?}");
    assert!(setups[0].contains("client_port=40010-40011"), "{setups:?}");
}

#[test]
fn malformed_and_oversized_requests_get_400_and_a_closed_connection() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "");
    let mut raw = Raw::connect(balancer.port);
    let answer = raw.ask("OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: 1\r\nNo colon here\r\n\r\n");
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer}");
    assert!(raw.closed());
    let mut raw = Raw::connect(balancer.port);
    let long = "a".repeat(70 * 1024);
    let answer = raw.ask(&format!(
        "OPTIONS rtsp://x/{long} RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    ));
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer}");
    assert!(raw.closed());
    // A client that never finishes its request is closed after header_timeout.
    let mut slow = Raw::connect(balancer.port);
    slow.stream
        .write_all(b"OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq")
        .unwrap();
    let started = Instant::now();
    assert!(slow.closed());
    assert!(started.elapsed() < Duration::from_secs(8));
    // Nothing of it reached an origin.
    assert!(origins.iter().all(|o| o.requests().is_empty()));
}

#[test]
fn balancer_status_shows_services_and_back_ends() {
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "");
    read_ok(&balancer.url("/live"), Transport::Tcp);
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(["balancer", "status", "--admin"])
        .arg(format!("http://127.0.0.1:{}", balancer.admin))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("services (1):"), "{text}");
    assert!(text.contains("back ends (3):"), "{text}");
    assert!(text.contains("(1 in all)"), "{text}");
    assert!(
        text.contains("failover: not configured (this node is always active)"),
        "{text}"
    );
    let _ = &balancer.peer;
}

/// Every `mediagate_balancer_` family a running balancer exposes has its row in
/// docs/metrics.md, and the counters moved for the viewer that played.
#[test]
fn every_balancer_metric_is_documented_and_counts() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .expect("docs/metrics.md");
    let origins = origins();
    let balancer = Balancer::start(&origins, "relay", "");
    read_ok(&balancer.url("/live"), Transport::Tcp);
    let mut api = TcpStream::connect(("127.0.0.1", balancer.admin)).unwrap();
    api.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    api.read_to_string(&mut text).unwrap();
    let mut families = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE mediagate_balancer_") else {
            continue;
        };
        let (name, ty) = rest.split_once(' ').unwrap();
        let name = name.trim_end_matches("_total");
        families.push(if ty == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        });
    }
    assert!(families.len() >= 19, "{text}");
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| !docs.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "balancer metrics missing from docs/metrics.md: {missing:?}"
    );
    let served = origins
        .iter()
        .position(|o| o.play_count("/live") == 1)
        .expect("one origin served the viewer");
    let label = format!("backend=\"rtsp/127.0.0.1:{}\"", origins[served].port());
    let sent = text
        .lines()
        .find(|l| {
            l.starts_with("mediagate_balancer_backend_sent_bytes_total") && l.contains(&label)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(sent > 10_000, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("mediagate_balancer_requests_total{service=\"rtsp\"}")),
        "{text}"
    );
    // The viewer's requests and their answers were each timed once.
    for way in ["request", "response"] {
        let timed = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "mediagate_balancer_rtsp_{way}_forward_seconds_count{{service=\"rtsp\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(timed >= 3.0, "{way}: {text}");
    }
}

/// kill -9 of one origin: with RTSP OPTIONS checks every 200 ms, new viewers avoid it
/// within a check interval or two and the sessions it held are gone from the table.
#[test]
fn a_killed_origin_is_avoided_and_its_sessions_end() {
    let origins = origins();
    let health = "[balancer.service.health]\ncheck = \"rtsp_options\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n";
    let port = free_tcp_port().unwrap();
    let admin = free_tcp_port().unwrap();
    let dir = std::env::temp_dir().join(format!("mediagate-balk-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let backends: Vec<String> = origins
        .iter()
        .map(|o| format!("\"rtsp://127.0.0.1:{}\"", o.port()))
        .collect();
    let config = format!(
        "state_dir = {var:?}\n[edge]\nenabled = false\n[admin]\nlisten = [\"127.0.0.1:{admin}\"]\n\
         [balancer]\nenabled = true\n[[balancer.service]]\nname = \"rtsp\"\n\
         listen = [\"127.0.0.1:{port}\"]\nbackends = [{}]\n{health}",
        backends.join(", "),
        var = dir.join("var").display().to_string(),
    );
    let path = dir.join("mediagate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let balancer = Balancer::spawn(cmd, port, admin, dir);
    // One session held on the first origin (round robin starts there).
    let mut raw = Raw::connect(balancer.port);
    let answer = setup(
        &mut raw,
        &balancer.url("/live"),
        "RTP/AVP/TCP;unicast;interleaved=0-1",
    );
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let id = session_id(&answer);
    assert!(logged(&origins[..1], |r| r.method == "SETUP"));
    origins[0].peer().kill();
    // Logged once the failed check has marked it down and its sessions are ended: a
    // fixed pause could end before a loaded machine ran the checks.
    balancer
        .peer
        .wait_for_stderr_line("balancer: a back end went down", Duration::from_secs(15));
    let mut other = Raw::connect(balancer.port);
    let gone = other.ask(&format!(
        "GET_PARAMETER {} RTSP/1.0\r\nCSeq: 9\r\nSession: {id}\r\n\r\n",
        balancer.url("/live")
    ));
    assert!(gone.starts_with("RTSP/1.0 454"), "{gone}");
    for _ in 0..3 {
        read_ok(&balancer.url("/live"), Transport::Tcp);
    }
    assert_eq!(
        origins[1].play_count("/live") + origins[2].play_count("/live"),
        3
    );
}

/// SIGHUP with another back-end list: a running session keeps its origin (a
/// keep-alive still reaches it), new viewers go to the back ends the file now lists.
#[test]
fn sighup_swaps_back_ends_without_dropping_a_session() {
    let origins = origins();
    let balancer = Balancer::start(&origins[..1], "relay", "");
    let mut raw = Raw::connect(balancer.port);
    let answer = setup(
        &mut raw,
        &balancer.url("/live"),
        "RTP/AVP/TCP;unicast;interleaved=0-1",
    );
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let id = session_id(&answer);
    let path = balancer._dir.join("mediagate.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        &format!("\"rtsp://127.0.0.1:{}\"", origins[0].port()),
        &format!(
            "\"rtsp://127.0.0.1:{}\", \"rtsp://127.0.0.1:{}\"",
            origins[1].port(),
            origins[2].port()
        ),
    );
    std::fs::write(&path, config).unwrap();
    balancer.peer.signal("HUP");
    balancer
        .peer
        .wait_for_stderr_line("balancer: reloaded", Duration::from_secs(10));
    let mut other = Raw::connect(balancer.port);
    let keepalive = other.ask(&format!(
        "GET_PARAMETER {} RTSP/1.0\r\nCSeq: 9\r\nSession: {id}\r\n\r\n",
        balancer.url("/live")
    ));
    assert!(keepalive.starts_with("RTSP/1.0 200"), "{keepalive}");
    assert!(logged(&origins[..1], |r| r.method == "GET_PARAMETER"));
    for _ in 0..2 {
        read_ok(&balancer.url("/live"), Transport::Tcp);
    }
    assert_eq!(plays(&origins), [0, 1, 1]);
}
