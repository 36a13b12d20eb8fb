//! The live dashboard in a real headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol (issue 11): the page loads with no console error, shows an ffmpeg
//! viewer and a relayed call as they run, updates when the viewer leaves, and shows every
//! string a client chose (user agent, SIP call id and tags) as text, running nothing.
//! Screenshots go to `target/test-artifacts/`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{ffmpeg_viewer, ng_offer_answer, EdgeProc};
use mediagate_testkit::ports::{free_tcp_port, free_udp_port};
use mediagate_testkit::process::{require_program, Peer};
use mediagate_testkit::{Origin, OriginOptions};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

const TOKEN: &str = "dashboard-token-0123456789";

/// What a client can put in a string that a careless page would run.
const HOSTILE: &str = "<img src=x onerror=\"window.__pwned=1\">";

/// A headless Chromium and a DevTools session on its one page.
struct Browser {
    peer: Peer,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Console errors, uncaught exceptions and error log entries (CSP violations, failed
    /// loads) seen so far.
    errors: Vec<String>,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    fn start(name: &str) -> Browser {
        let chromium = require_program("chromium", "chromium").unwrap_or_else(|e| {
            panic!("{e}: the dashboard test needs a real Chromium (scripts/test.sh installs the Debian package)")
        });
        let profile =
            std::env::temp_dir().join(format!("mg-dashboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox", // tests run as root in containers
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank");
        let peer = Peer::spawn("chromium", cmd).expect("chromium starts");
        // Chromium writes the port it picked into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break port;
            }
            assert!(
                Instant::now() < deadline && peer.try_status().is_none(),
                "chromium did not open its DevTools port: {}",
                peer.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The port file is written when the DevTools server listens, which may be
        // before the first tab's page target exists: asked again until it does.
        let page_ws = loop {
            let targets: Value = serde_json::from_str(&http_get(port, "/json/list", None).1)
                .expect("DevTools lists its targets");
            if let Some(ws) = targets
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break ws.to_owned();
            }
            assert!(
                Instant::now() < deadline && peer.try_status().is_none(),
                "no page target: {targets}\n{}",
                peer.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (ws, _) = tungstenite::client(page_ws.as_str(), stream).expect("DevTools WebSocket");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut browser = Browser {
            peer,
            ws,
            next_id: 1,
            errors: Vec::new(),
            _profile: TempDir(profile),
        };
        browser.call("Runtime.enable", json!({}));
        browser.call("Log.enable", json!({}));
        browser.call("Page.enable", json!({}));
        browser
    }

    /// Sends a DevTools command and waits for its result, noting events meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("DevTools accepts a command");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "DevTools did not answer {method}: {}",
                self.peer.diagnostics()
            );
            if let Some(msg) = self.read() {
                if msg["id"] == id {
                    if let Some(err) = msg.get("error") {
                        panic!("DevTools {method} failed: {err}");
                    }
                    return msg["result"].clone();
                }
            }
        }
    }

    /// One message, or `None` after a short wait; events are noted on the way.
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(text)) => {
                let msg: Value = serde_json::from_str(text.as_str()).expect("DevTools sends JSON");
                self.note(&msg);
                Some(msg)
            }
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!(
                "DevTools connection failed: {e}: {}",
                self.peer.diagnostics()
            ),
        }
    }

    fn note(&mut self, msg: &Value) {
        let p = &msg["params"];
        match msg["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.{}: {}", p["type"], p["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", p["exceptionDetails"]));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "log ({}): {} {}",
                    p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]
                ));
            }
            _ => {}
        }
    }

    fn open(&mut self, url: &str) {
        let nav = self.call("Page.navigate", json!({ "url": url }));
        assert!(nav.get("errorText").is_none(), "navigation failed: {nav}");
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating in the page failed: {e}");
        }
        r["result"]["value"].clone()
    }

    /// What the page shows, as data.
    fn look(&mut self) -> Value {
        self.eval(
            r#"(() => {
                const rows = (id) => [...document.querySelectorAll('#' + id + ' tr')]
                    .map((tr) => [...tr.children].map((c) => c.textContent));
                // Still loading (or not our page yet).
                if (!document.getElementById('relay-rate')) return { pictures: 0 };
                return {
                    pictures: Number(document.body.dataset.pictures || 0),
                    link: document.getElementById('link').textContent,
                    roles: Object.fromEntries([...document.querySelectorAll('.card')].map((c) => [
                        c.querySelector('.name').textContent,
                        { state: c.querySelector('.state').textContent,
                          sessions: c.querySelector('.big').textContent }])),
                    streams: rows('streams'),
                    viewers: rows('viewers'),
                    calls: rows('calls'),
                    relayRate: document.getElementById('relay-rate').textContent,
                    injected: document.querySelectorAll('main img, main script').length,
                    pwned: window.__pwned === undefined ? null : String(window.__pwned),
                };
            })()"#,
        )
    }

    /// Waits until what the page shows passes `check`; returns it.
    fn until(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.look();
            if check(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {what}; it shows {seen:#}\nerrors: {:?}",
                self.errors
            );
            // Lets events arrive between looks.
            let _ = self.read();
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the page, saved under `target/test-artifacts/`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target dir")
            .join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    fn assert_no_errors(&mut self) {
        while self.read().is_some() {}
        assert!(
            self.errors.is_empty(),
            "the page logged errors: {:#?}",
            self.errors
        );
    }
}

/// A GET on its own connection: (status, body).
fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    // Chromium's DevTools server keeps the connection open: read by Content-Length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = conn.read(&mut buf).expect("an HTTP answer in time");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                return (head[9..12].parse().unwrap(), body.to_owned());
            }
        }
        assert!(n > 0, "the connection closed mid-answer");
    }
}

/// An edge (one route to `origin`) and a relay in one process, with the API on a free
/// port and a token.
fn mediagate(origin: &Origin, relay_ports: &str) -> (EdgeProc, u16, u16) {
    let (api, ng_port) = (free_tcp_port().unwrap(), free_udp_port().unwrap());
    let extra = format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n\
         [relay]\nenabled = true\nng_listen_udp = [\"127.0.0.1:{ng_port}\"]\n\
         media_address = [{{ address = \"127.0.0.1\" }}]\nports = \"{relay_ports}\"\n\
         [admin]\nlisten = [\"127.0.0.1:{api}\"]\ntoken = \"{TOKEN}\"\n",
        origin.url("/live"),
    );
    let mg = EdgeProc::start(&extra);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", api)).is_err() {
        assert!(
            Instant::now() < deadline,
            "no API: {}",
            mg.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (mg, api, ng_port)
}

/// A call set up through `ng` whose caller sends 50 RTP packets a second until dropped.
struct Call {
    running: Arc<AtomicBool>,
}

impl Call {
    fn start(ng_port: u16, call_id: &str, from_tag: &str, to_tag: &str) -> Call {
        let control = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A bound on the relay's answer, not an expectation of its speed: a loaded
        // machine can take seconds.
        control
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
        let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (caller_port, callee_port) = (
            caller.local_addr().unwrap().port(),
            callee.local_addr().unwrap().port(),
        );
        let relay_port = ng_offer_answer(
            &control,
            ng_port,
            [call_id, from_tag, to_tag],
            (caller_port, callee_port),
        );
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        std::thread::spawn(move || {
            let _callee = callee;
            let mut seq = 0u16;
            while flag.load(Ordering::Relaxed) {
                let mut p = vec![0x80, 0x00];
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                p.extend([0xffu8; 160]);
                let _ = caller.send_to(&p, ("127.0.0.1", relay_port));
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Call { running }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// The first row of a table whose cells include `text`.
fn row_with<'a>(rows: &'a Value, text: &str) -> Option<&'a Value> {
    rows.as_array()?
        .iter()
        .find(|r| r.as_array().is_some_and(|c| c.iter().any(|c| c == text)))
}

#[test]
fn the_dashboard_shows_a_viewer_and_a_call_live_in_chromium() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (mg, api, ng_port) = mediagate(&origin, "38600-38649");
    let mut browser = Browser::start("live");
    // Without the token the page is refused, as the API is.
    assert_eq!(http_get(api, "/", None).0, 401);
    browser.open(&format!("http://127.0.0.1:{api}/?token={TOKEN}"));
    let first = browser.until("its first picture", |s| s["pictures"].as_u64() >= Some(1));
    assert_eq!(first["link"], "live", "{first}");
    assert_eq!(
        browser.eval("location.search"),
        "",
        "the token leaves the address bar"
    );
    assert_eq!(first["roles"]["edge"]["state"], "running", "{first}");
    assert_eq!(first["roles"]["relay"]["state"], "running", "{first}");

    let viewer = ffmpeg_viewer(&mg.url("/cam"), "dashboard-probe/1.0", 120);
    let _call = Call::start(ng_port, "dash-call-1", "alice", "bob");
    let seen = browser.until("the ffmpeg viewer, its stream and the call", |s| {
        row_with(&s["viewers"], "dashboard-probe/1.0")
            .is_some_and(|r| r[4].as_str().is_some_and(|rate| rate.ends_with("bit/s")))
            && row_with(&s["calls"], "dash-call-1").is_some()
            && s["relayRate"]
                .as_str()
                .is_some_and(|r| r.starts_with('(') && !r.starts_with("(0 "))
            && s["streams"][0][2]
                .as_str()
                .is_some_and(|r| r.ends_with("bit/s"))
    });
    let row = row_with(&seen["viewers"], "dashboard-probe/1.0").unwrap();
    assert!(row[0].as_str().unwrap().starts_with("127.0.0.1:"), "{row}");
    assert_eq!(row[1], "tcp");
    assert_eq!(row[2], mg.url("/cam"));
    assert_eq!(seen["streams"][0][0], origin.url("/live"), "{seen}");
    assert_eq!(seen["streams"][0][1], "1");
    let call = row_with(&seen["calls"], "dash-call-1").unwrap();
    assert_eq!(
        (&call[1], &call[2], &call[3]),
        (&json!("alice"), &json!("bob"), &json!("answered"))
    );
    // Let the plots gather a few points for the picture.
    std::thread::sleep(Duration::from_secs(4));
    let shot = browser.screenshot("dashboard.png");
    eprintln!("dashboard screenshot: {}", shot.display());

    viewer.kill();
    browser.until("the viewer gone", |s| {
        s["viewers"] == json!([["no viewers"]])
    });
    let after = browser.until("the edge's viewer count back to 0", |s| {
        s["roles"]["edge"]["sessions"] == "0"
    });
    assert_eq!(after["streams"][0][1], "0", "{after}");
    browser.assert_no_errors();
    drop(mg);
}

#[test]
fn strings_from_clients_show_as_text_and_run_nothing() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (mg, api, ng_port) = mediagate(&origin, "38650-38699");
    let mut browser = Browser::start("xss");
    let agent = format!("probe {HOSTILE}");
    let _viewer = ffmpeg_viewer(&mg.url("/cam"), &agent, 120);
    let call_id = format!("call {HOSTILE}");
    let _call = Call::start(
        ng_port,
        &call_id,
        "<b>alice</b>",
        "<script>window.__pwned=2</script>",
    );
    browser.open(&format!("http://127.0.0.1:{api}/?token={TOKEN}"));
    let seen = browser.until("the hostile viewer and call", |s| {
        row_with(&s["viewers"], &agent).is_some() && row_with(&s["calls"], &call_id).is_some()
    });
    let call = row_with(&seen["calls"], &call_id).unwrap();
    assert_eq!(call[1], "<b>alice</b>");
    assert_eq!(call[2], "<script>window.__pwned=2</script>");
    assert_eq!(seen["injected"], 0, "no element came from a client: {seen}");
    // A few more pictures: an image's onerror would have fired by now.
    let pictures = seen["pictures"].as_u64().unwrap();
    let later = browser.until("three more pictures", |s| {
        s["pictures"].as_u64() >= Some(pictures + 3)
    });
    assert_eq!(
        later["pwned"],
        Value::Null,
        "a client's string ran as script"
    );
    assert_eq!(later["injected"], 0);
    browser.screenshot("dashboard-hostile-strings.png");
    browser.assert_no_errors();
    drop(mg);
}
