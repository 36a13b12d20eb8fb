//! A real RTSP origin for tests: `peers/gst_origin.py` (gst-rtsp-server 1.22) on loopback.
//!
//! [`Origin::start`] launches the script with Debian's Python, waits (bounded) for its
//! `ready` line and then keeps every JSON event it prints, so a test can ask the origin
//! what it saw: how many PLAYs a mount got, which sessions, which status codes. All waits
//! take a timeout; the process is killed when the `Origin` is dropped (or, for
//! [`Origin::shared`], when the test process exits).
//!
//! Mounts by default: `/live` (live H.264 + AAC test pattern, shared media), `/vod` (a
//! 10 s H.264 + AAC MP4, seekable, one pipeline per client) and `/secure` (the live feed
//! behind RTSP Digest auth, RFC 2617 as used by RFC 2326 §D.1 — user `user`, password
//! `secret`). On request ([`OriginOptions::vod_auth_mount`]) the on-demand file is also
//! served behind the same Digest auth.
//!
//! What it does not do: check that gst-rtsp-server is right. It is a peer, not a reference.

use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::{python_script, Peer, StdoutHandling};

/// Audio codec of the live mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC-LC, RTP payload `MPEG4-GENERIC` (RFC 3640).
    Aac,
    /// Opus, RTP payload `OPUS` (RFC 7587).
    Opus,
    /// Video only.
    None,
}

impl AudioCodec {
    fn arg(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
            AudioCodec::None => "none",
        }
    }

    /// The codec name ffprobe reports for it (`None` for no audio).
    pub fn ffprobe_name(self) -> Option<&'static str> {
        match self {
            AudioCodec::Aac => Some("aac"),
            AudioCodec::Opus => Some("opus"),
            AudioCodec::None => None,
        }
    }
}

/// How to start an [`Origin`]; `OriginOptions::default()` is a small, cheap origin.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    /// TCP port; 0 lets the origin pick a free one (recommended).
    pub port: u16,
    /// Live mounts (shared media fed by the one encoder).
    pub live_mounts: Vec<String>,
    /// On-demand mount; `None` disables it (and the MP4 generation at start).
    pub vod_mount: Option<String>,
    /// Serve this MP4 (H.264 + AAC) instead of generating one.
    pub vod_file: Option<std::path::PathBuf>,
    /// Length of the generated on-demand file.
    pub vod_seconds: u32,
    /// Digest-protected live mount; `None` disables it.
    pub auth_mount: Option<String>,
    /// Digest-protected on-demand mount serving the same file as `vod_mount` (which
    /// must be set); `None` (the default) disables it.
    pub vod_auth_mount: Option<String>,
    /// Digest user name.
    pub user: String,
    /// Digest password.
    pub password: String,
    /// Video width in pixels.
    pub width: u32,
    /// Video height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Keyframe interval in frames (`None` = one per second).
    pub gop: Option<u32>,
    /// Audio codec.
    pub audio: AudioCodec,
    /// Audio bitrate in kbit/s.
    pub audio_kbps: u32,
    /// gst-rtsp-server client thread pool size.
    pub threads: u32,
    /// Listen backlog.
    pub backlog: u32,
    /// How long [`Origin::start`] waits for the `ready` line.
    pub start_timeout: Duration,
}

impl Default for OriginOptions {
    fn default() -> Self {
        OriginOptions {
            port: 0,
            live_mounts: vec!["/live".to_string()],
            vod_mount: Some("/vod".to_string()),
            vod_file: None,
            vod_seconds: 10,
            auth_mount: Some("/secure".to_string()),
            vod_auth_mount: None,
            user: "user".to_string(),
            password: "secret".to_string(),
            width: 320,
            height: 240,
            fps: 15,
            video_kbps: 300,
            gop: None,
            audio: AudioCodec::Aac,
            audio_kbps: 64,
            threads: 16,
            backlog: 128,
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl OriginOptions {
    /// The benchmark profile: about 1 Mbit/s of H.264 plus AAC.
    pub fn benchmark() -> Self {
        OriginOptions {
            width: 640,
            height: 360,
            fps: 25,
            video_kbps: 1000,
            audio_kbps: 96,
            ..OriginOptions::default()
        }
    }

    /// The command line of `gst_origin.py` for these options (without the interpreter).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["--port".into(), self.port.to_string()];
        for m in &self.live_mounts {
            a.push("--live".into());
            a.push(m.clone());
        }
        a.push("--vod".into());
        a.push(self.vod_mount.clone().unwrap_or_default());
        if let Some(f) = &self.vod_file {
            a.push("--vod-file".into());
            a.push(f.display().to_string());
        }
        a.push("--auth".into());
        a.push(self.auth_mount.clone().unwrap_or_default());
        if let Some(m) = &self.vod_auth_mount {
            a.push("--vod-auth".into());
            a.push(m.clone());
        }
        let pairs: [(&str, String); 14] = [
            ("--vod-seconds", self.vod_seconds.to_string()),
            ("--user", self.user.clone()),
            ("--password", self.password.clone()),
            ("--width", self.width.to_string()),
            ("--height", self.height.to_string()),
            ("--fps", self.fps.to_string()),
            ("--bitrate", self.video_kbps.to_string()),
            ("--gop", self.gop.unwrap_or(0).to_string()),
            ("--audio", self.audio.arg().to_string()),
            ("--audio-bitrate", self.audio_kbps.to_string()),
            ("--threads", self.threads.to_string()),
            ("--backlog", self.backlog.to_string()),
            ("--bind", "127.0.0.1".to_string()),
            ("--realm", "mediagate-test".to_string()),
        ];
        for (k, v) in pairs {
            a.push(k.to_string());
            a.push(v);
        }
        a
    }
}

/// One RTSP request the origin answered (printed when the response was sent).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent {
    /// Origin's client number (one per TCP connection; an HTTP tunnel has two).
    pub client: u64,
    /// Method, e.g. `PLAY`.
    pub method: String,
    /// Request URI as sent.
    pub uri: Option<String>,
    /// Which configured mount the URI falls under.
    pub mount: Option<String>,
    /// Response status code.
    pub status: u16,
    /// CSeq of the request.
    pub cseq: Option<String>,
    /// Session id (from the response, else the request), without `;timeout=`.
    pub session: Option<String>,
    /// The request's Range header.
    pub range: Option<String>,
    /// The request's Transport header.
    pub transport: Option<String>,
    /// The request's `X-Forwarded-For` header (an edge's accounting DESCRIBE).
    pub forwarded_for: Option<String>,
}

/// What happened at the origin.
#[derive(Debug, Clone, PartialEq)]
pub enum OriginEventKind {
    /// Listening on `port`.
    Ready {
        /// The bound port.
        port: u16,
    },
    /// A TCP connection was accepted.
    ClientConnected {
        /// Origin's client number.
        client: u64,
        /// `ip:port` of the peer, if known.
        peer: Option<String>,
    },
    /// A client connection closed.
    ClientClosed {
        /// Origin's client number.
        client: u64,
    },
    /// A request was answered.
    Request(RequestEvent),
    /// A media pipeline was built for `mount` (one per shared live media, one per VOD
    /// client).
    MediaConfigured {
        /// The mount.
        mount: String,
    },
    /// A media pipeline was torn down.
    MediaUnprepared {
        /// The mount.
        mount: String,
    },
    /// The origin reported an error.
    Error {
        /// Its message.
        message: String,
    },
    /// An event this version of the harness does not know.
    Other(Value),
}

/// An event with the origin's timestamp (seconds since it started, monotonic).
#[derive(Debug, Clone, PartialEq)]
pub struct OriginEvent {
    /// Seconds since the origin started.
    pub t: f64,
    /// What happened.
    pub kind: OriginEventKind,
}

impl OriginEvent {
    /// Parses one stdout line of `gst_origin.py`.
    pub fn parse(line: &str) -> Option<OriginEvent> {
        let v: Value = serde_json::from_str(line).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let t = v.get("t").and_then(Value::as_f64).unwrap_or(0.0);
        let kind = match v.get("event").and_then(Value::as_str)? {
            "ready" => OriginEventKind::Ready {
                port: u16::try_from(n("port")?).ok()?,
            },
            "client_connected" => OriginEventKind::ClientConnected {
                client: n("client")?,
                peer: s("peer"),
            },
            "client_closed" => OriginEventKind::ClientClosed {
                client: n("client")?,
            },
            "request" => OriginEventKind::Request(RequestEvent {
                client: n("client")?,
                method: s("method")?,
                uri: s("uri"),
                mount: s("mount"),
                status: u16::try_from(n("status")?).ok()?,
                cseq: s("cseq"),
                session: s("session"),
                range: s("range"),
                transport: s("transport"),
                forwarded_for: s("forwarded_for"),
            }),
            "media_configured" => OriginEventKind::MediaConfigured { mount: s("mount")? },
            "media_unprepared" => OriginEventKind::MediaUnprepared { mount: s("mount")? },
            "error" => OriginEventKind::Error {
                message: s("message").unwrap_or_default(),
            },
            _ => OriginEventKind::Other(v.clone()),
        };
        Some(OriginEvent { t, kind })
    }

    /// The request, if this is a request event.
    pub fn request(&self) -> Option<&RequestEvent> {
        match &self.kind {
            OriginEventKind::Request(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Default)]
struct EventLog {
    events: Vec<OriginEvent>,
    /// stdout lines that were not events (kept for diagnostics).
    unparsed: usize,
    closed: bool,
    /// CSeqs of the harness's own barrier requests ([`Origin::settle`]); their
    /// connections are hidden from every accessor.
    barrier_cseqs: Vec<String>,
}

impl EventLog {
    /// The events a test sees: everything but the harness's barrier connections.
    fn visible(&self) -> Vec<OriginEvent> {
        if self.barrier_cseqs.is_empty() {
            return self.events.clone();
        }
        let barrier_clients: Vec<u64> = self
            .events
            .iter()
            .filter_map(OriginEvent::request)
            .filter(|r| {
                r.cseq
                    .as_ref()
                    .is_some_and(|c| self.barrier_cseqs.contains(c))
            })
            .map(|r| r.client)
            .collect();
        self.events
            .iter()
            .filter(|e| match &e.kind {
                OriginEventKind::ClientConnected { client, .. }
                | OriginEventKind::ClientClosed { client } => !barrier_clients.contains(client),
                OriginEventKind::Request(r) => !barrier_clients.contains(&r.client),
                _ => true,
            })
            .cloned()
            .collect()
    }
}

/// First CSeq of barrier requests: far above anything a test's client reaches.
const BARRIER_CSEQ_BASE: u64 = 3_000_000_000;
static NEXT_BARRIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

type Shared = Arc<(Mutex<EventLog>, Condvar)>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, EventLog> {
    s.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running gst-rtsp-server origin. Killed on drop.
pub struct Origin {
    peer: Peer,
    port: u16,
    log: Shared,
    options: OriginOptions,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("port", &self.port)
            .field("pid", &self.peer.pid())
            .finish()
    }
}

impl Origin {
    /// Starts the origin and waits for it to listen (bounded by `options.start_timeout`).
    pub fn start(options: OriginOptions) -> Result<Origin> {
        let (python, script) = python_script("gst_origin.py")?;
        let mut cmd = Command::new(python);
        // Unbuffered, so events arrive as they happen even if the script forgets to flush.
        cmd.arg("-u").arg(script).args(options.args());
        let log: Shared = Arc::default();
        let sink = log.clone();
        let on_line = move |line: &str| {
            let mut l = lock(&sink);
            match OriginEvent::parse(line) {
                Some(e) => l.events.push(e),
                None => l.unparsed += 1,
            }
            drop(l);
            sink.1.notify_all();
        };
        let peer = Peer::spawn_with(
            "gst_origin",
            cmd,
            StdoutHandling {
                on_line: Some(Box::new(on_line)),
                keep_all: false,
            },
        )?;
        let mut origin = Origin {
            peer,
            port: 0,
            log,
            options,
        };
        let port = origin.wait_ready()?;
        origin.port = port;
        Ok(origin)
    }

    /// One origin with default options for the whole test binary, started on first use.
    /// It is never dropped; the parent-death signal stops it when the test process exits.
    /// Counters are shared by all tests: compare before/after or use your own mount.
    pub fn shared() -> &'static Origin {
        static SHARED: OnceLock<std::result::Result<Origin, String>> = OnceLock::new();
        match SHARED
            .get_or_init(|| Origin::start(OriginOptions::default()).map_err(|e| e.to_string()))
        {
            Ok(o) => o,
            Err(e) => panic!("cannot start the shared gst-rtsp-server origin: {e}"),
        }
    }

    fn wait_ready(&self) -> Result<u16> {
        let timeout = self.options.start_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            {
                let l = lock(&self.log);
                for e in &l.events {
                    match &e.kind {
                        OriginEventKind::Ready { port } => return Ok(*port),
                        OriginEventKind::Error { message } => {
                            return Err(Error::PeerFailed {
                                what: "starting gst_origin.py".into(),
                                detail: message.clone(),
                                diagnostics: self.diagnostics_with_hint(),
                            })
                        }
                        _ => {}
                    }
                }
            }
            if let Some(status) = self.peer.try_status() {
                self.peer.wait_output_closed(Duration::from_secs(1));
                return Err(Error::PeerFailed {
                    what: "starting gst_origin.py".into(),
                    detail: format!(
                        "it exited ({}) before listening",
                        crate::process::describe_status(Some(status))
                    ),
                    diagnostics: self.diagnostics_with_hint(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: "gst_origin.py to print its ready line".into(),
                    after: timeout,
                    diagnostics: self.diagnostics_with_hint(),
                });
            }
            let guard = lock(&self.log);
            let _ = self
                .log
                .1
                .wait_timeout(guard, left.min(Duration::from_millis(100)));
        }
    }

    fn diagnostics_with_hint(&self) -> String {
        let mut d = self.peer.diagnostics();
        if d.contains("ModuleNotFoundError") || d.contains("ValueError: Namespace") {
            d.push_str(
                "hint: the GStreamer Python bindings are missing; install the Debian packages \
                 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 \
                 gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav\n",
            );
        }
        d
    }

    /// The TCP port the origin listens on (loopback).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` of the origin.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `rtsp://127.0.0.1:PORT/mount` (a missing leading `/` is added).
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}{}", self.port, slash(mount))
    }

    /// The URL with the Digest credentials in it (`rtsp://user:secret@...`), the form
    /// ffmpeg and ffprobe accept.
    pub fn url_with_credentials(&self, mount: &str) -> String {
        format!(
            "rtsp://{}:{}@127.0.0.1:{}{}",
            self.options.user,
            self.options.password,
            self.port,
            slash(mount)
        )
    }

    /// The options it was started with (port 0 stays 0; see [`Origin::port`]).
    pub fn options(&self) -> &OriginOptions {
        &self.options
    }

    /// Digest user and password.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.options.user, &self.options.password)
    }

    /// Every event so far, in order, as of this call (see [`Origin::settle`]).
    pub fn events(&self) -> Vec<OriginEvent> {
        self.settle();
        lock(&self.log).visible()
    }

    /// Every answered request so far, in order, as of this call (see
    /// [`Origin::settle`]).
    pub fn requests(&self) -> Vec<RequestEvent> {
        self.settle();
        self.logged_requests()
    }

    /// The requests logged so far, without waiting for lines still in the pipe.
    fn logged_requests(&self) -> Vec<RequestEvent> {
        lock(&self.log)
            .visible()
            .iter()
            .filter_map(|e| e.request().cloned())
            .collect()
    }

    /// Makes the log complete up to now. The origin prints a request's event before it
    /// sends the answer, but the harness reads that line on another thread, so a test
    /// that has just had an answer (through the edge) may read the log before the line
    /// arrives. The barrier: an `OPTIONS *` of our own, whose event comes after every
    /// line printed before it. Its connection is hidden from every accessor. If the
    /// origin does not answer (it was killed), the log is left as it is.
    pub fn settle(&self) {
        let cseq = (BARRIER_CSEQ_BASE
            + NEXT_BARRIER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        .to_string();
        lock(&self.log).barrier_cseqs.push(cseq.clone());
        if let Err(e) = self.barrier_request(&cseq) {
            eprintln!("testkit origin: barrier request failed ({e}); the log may lag");
            return;
        }
        let seen = self.wait_log(Duration::from_secs(10), |log| {
            log.events
                .iter()
                .filter_map(OriginEvent::request)
                .any(|r| r.cseq.as_deref() == Some(cseq.as_str()))
        });
        if !seen {
            eprintln!("testkit origin: barrier CSeq {cseq} never logged; the log may lag");
        }
    }

    fn barrier_request(&self, cseq: &str) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let timeout = Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&self.addr(), timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(format!("OPTIONS * RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n").as_bytes())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 16 * 1024 {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Waits (bounded) until `done` holds over the log (barrier events included); false
    /// once `timeout` has passed or the origin has exited and its output ended.
    fn wait_log(&self, timeout: Duration, mut done: impl FnMut(&EventLog) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.log);
        loop {
            if done(&guard) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || guard.closed {
                return false;
            }
            // Re-check the process now and then: a dead origin prints nothing more.
            let (g, _) = self
                .log
                .1
                .wait_timeout(guard, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner());
            guard = g;
            if self.peer.try_status().is_some() {
                guard.closed = true;
            }
        }
    }

    /// Waits up to `timeout` for an answered request that `want` accepts (the origin
    /// logs a request a moment after answering it, so a test that just got the edge's
    /// answer may not see the origin's event yet).
    pub fn wait_for_request(
        &self,
        timeout: std::time::Duration,
        want: impl Fn(&RequestEvent) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.logged_requests().iter().any(&want) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How many `method` requests on `mount` were answered with `status`.
    pub fn request_count(&self, method: &str, mount: &str, status: u16) -> usize {
        let mount = slash(mount);
        self.requests()
            .iter()
            .filter(|r| {
                r.method.eq_ignore_ascii_case(method)
                    && r.mount.as_deref() == Some(mount.as_str())
                    && r.status == status
            })
            .count()
    }

    /// Successful (200) PLAY requests on `mount`.
    pub fn play_count(&self, mount: &str) -> usize {
        self.request_count("PLAY", mount, 200)
    }

    /// Distinct sessions that got a successful PLAY on `mount`.
    pub fn play_sessions(&self, mount: &str) -> Vec<String> {
        let mount = slash(mount);
        let mut out: Vec<String> = Vec::new();
        for r in self.requests() {
            if r.method == "PLAY" && r.status == 200 && r.mount.as_deref() == Some(&mount) {
                if let Some(s) = r.session {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    /// Connections accepted minus connections closed.
    pub fn open_connections(&self) -> usize {
        let mut open: i64 = 0;
        for e in &self.events() {
            match e.kind {
                OriginEventKind::ClientConnected { .. } => open += 1,
                OriginEventKind::ClientClosed { .. } => open -= 1,
                _ => {}
            }
        }
        usize::try_from(open).unwrap_or(0)
    }

    /// Waits until `done(events)` is true, up to `timeout`. `what` names the condition in
    /// the timeout error.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[OriginEvent]) -> bool,
    ) -> Result<()> {
        if self.wait_log(timeout, |log| done(&log.visible())) {
            return Ok(());
        }
        Err(Error::Timeout {
            what: format!("origin: {what}"),
            after: timeout,
            diagnostics: self.diagnostics(),
        })
    }

    /// Waits until `mount` has had at least `n` successful PLAYs.
    pub fn wait_play_count(&self, mount: &str, n: usize, timeout: Duration) -> Result<()> {
        let m = slash(mount);
        self.wait_until(&format!("{n} PLAY(s) on {m}"), timeout, |events| {
            events
                .iter()
                .filter_map(OriginEvent::request)
                .filter(|r| r.method == "PLAY" && r.status == 200 && r.mount.as_deref() == Some(&m))
                .count()
                >= n
        })
    }

    /// Waits until no client connection is open.
    pub fn wait_no_connections(&self, timeout: Duration) -> Result<()> {
        self.wait_until("all client connections closed", timeout, |events| {
            let mut open: i64 = 0;
            for e in events {
                match e.kind {
                    OriginEventKind::ClientConnected { .. } => open += 1,
                    OriginEventKind::ClientClosed { .. } => open -= 1,
                    _ => {}
                }
            }
            open <= 0
        })
    }

    /// Name, pid, status and the last output lines of the origin process.
    pub fn diagnostics(&self) -> String {
        self.peer.diagnostics()
    }

    /// The origin process (e.g. to kill it in a failover test).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

fn slash(mount: &str) -> String {
    if mount.starts_with('/') {
        mount.to_string()
    } else {
        format!("/{mount}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_event() {
        let e = OriginEvent::parse(
            r#"{"event": "request", "t": 2.6025, "client": 1, "method": "PLAY", "uri": "rtsp://127.0.0.1:1/live/", "mount": "/live", "status": 200, "cseq": "5", "session": "w.x62y", "range": "npt=0.000-", "transport": null}"#,
        )
        .unwrap();
        assert_eq!(e.t, 2.6025);
        assert_eq!(
            e.kind,
            OriginEventKind::Request(RequestEvent {
                client: 1,
                method: "PLAY".into(),
                uri: Some("rtsp://127.0.0.1:1/live/".into()),
                mount: Some("/live".into()),
                status: 200,
                cseq: Some("5".into()),
                session: Some("w.x62y".into()),
                range: Some("npt=0.000-".into()),
                transport: None,
                forwarded_for: None,
            })
        );
    }

    #[test]
    fn parses_other_events() {
        assert_eq!(
            OriginEvent::parse(r#"{"event":"ready","t":0.5,"port":8554,"live":["/live"]}"#)
                .unwrap()
                .kind,
            OriginEventKind::Ready { port: 8554 }
        );
        assert_eq!(
            OriginEvent::parse(r#"{"event":"client_connected","t":1,"client":3,"peer":null}"#)
                .unwrap()
                .kind,
            OriginEventKind::ClientConnected {
                client: 3,
                peer: None
            }
        );
        assert!(matches!(
            OriginEvent::parse(r#"{"event":"future_thing","t":1}"#)
                .unwrap()
                .kind,
            OriginEventKind::Other(_)
        ));
        assert_eq!(OriginEvent::parse("not json"), None);
        assert_eq!(
            OriginEvent::parse(r#"{"event":"ready","port":70000}"#),
            None
        );
        assert_eq!(OriginEvent::parse(r#"{"no":"event"}"#), None);
    }

    #[test]
    fn args_name_every_option() {
        let a = OriginOptions::default().args();
        let joined = a.join(" ");
        assert!(joined.starts_with("--port 0 --live /live --vod /vod --auth /secure "));
        assert!(joined.contains("--bitrate 300"));
        assert!(joined.contains("--audio aac"));
        let none = OriginOptions {
            vod_mount: None,
            auth_mount: None,
            live_mounts: vec!["/a".into(), "/b".into()],
            ..OriginOptions::default()
        }
        .args()
        .join(" ");
        assert!(none.starts_with("--port 0 --live /a --live /b --vod  --auth  "));
    }
}
