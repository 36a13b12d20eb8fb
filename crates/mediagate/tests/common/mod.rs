//! Starting the real `mediagate` binary as an edge for interop tests, and the checks
//! those tests share. Every process is a `testkit::process::Peer`: its own process
//! group, killed on drop, its last output kept for failure messages.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::ffmpeg::parse_framecrc;
use mediagate_testkit::ports::free_tcp_port;
use mediagate_testkit::process::{run, Peer};
use mediagate_testkit::Transport;

pub mod admin;

/// A running `mediagate run --config …` with an edge on a free loopback port.
pub struct EdgeProc {
    pub peer: Peer,
    pub port: u16,
    dir: PathBuf,
    /// The admin API's address, when the config has an `[admin]` table.
    admin: Option<String>,
}

impl EdgeProc {
    /// Starts an edge on 127.0.0.1 with `extra` appended to its config (routes,
    /// forward rules, …). Quick timings so tests stay short.
    pub fn start(extra: &str) -> EdgeProc {
        Self::start_on("127.0.0.1", extra)
    }

    /// [`EdgeProc::start`] with extra environment variables for the process.
    pub fn start_with_env(extra: &str, env: &[(&str, &std::path::Path)]) -> EdgeProc {
        let (port, dir, path) = write_config("127.0.0.1", extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
        cmd.arg("run").arg("--config").arg(&path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, port, dir)
    }

    pub fn start_on(ip: &str, extra: &str) -> EdgeProc {
        let (port, dir, path) = write_config(ip, extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
        cmd.arg("run").arg("--config").arg(&path);
        Self::spawn(cmd, port, dir)
    }

    /// Starts it through a wrapper (e.g. `ip netns exec NS`).
    pub fn start_in(wrapper: &[&str], ip: &str, extra: &str) -> EdgeProc {
        let (port, dir, path) = write_config(ip, extra);
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(env!("CARGO_BIN_EXE_mediagate"))
            .arg("run")
            .arg("--config")
            .arg(&path);
        Self::spawn(cmd, port, dir)
    }

    fn spawn(cmd: Command, port: u16, dir: PathBuf) -> EdgeProc {
        let peer = Peer::spawn("mediagate", cmd).expect("mediagate starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !peer
            .stderr_tail()
            .iter()
            .any(|l| l.contains("listening for RTSP"))
        {
            assert!(
                Instant::now() < deadline && peer.try_status().is_none(),
                "edge did not start: {}",
                peer.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let config = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap_or_default();
        let admin = admin_listen(&config);
        if let Some(api) = &admin {
            wait_admin_listening(&peer, api);
        }
        EdgeProc {
            peer,
            port,
            dir,
            admin,
        }
    }

    /// The port of the admin API its config's `[admin]` table listens on.
    pub fn admin_port(&self) -> u16 {
        self.admin
            .as_deref()
            .and_then(|a| a.rsplit(':').next()?.parse().ok())
            .expect("an [admin] listen address in the edge's config")
    }

    /// The config file it was started with (`mediagate run --config` this).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }

    /// The SQLite records store under the edge's `state_dir`.
    pub fn records_path(&self) -> PathBuf {
        self.dir.join("var").join("accounting.sqlite")
    }

    /// Resident set size of the edge process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.peer.pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The first address an `[admin]` table written as `listen = ["ADDR", ...]` names.
fn admin_listen(config: &str) -> Option<String> {
    let table = &config[config.find("[admin]\n")?..];
    let list = table.lines().nth(1)?.strip_prefix("listen = [\"")?;
    Some(list.split('"').next()?.to_owned())
}

/// Waits (up to 20 s) until `peer` logs that its admin API listens on `addr`. The
/// binary starts its roles first and the API after them, so a test that talks to the
/// API as soon as the edge listens for RTSP can find nothing there yet.
pub fn wait_admin_listening(peer: &Peer, addr: &str) {
    peer.wait_for_stderr_line(
        &format!("admin API: listening on {addr}"),
        Duration::from_secs(20),
    );
}

/// The config file's name in the test's directory.
const CONFIG_FILE: &str = "mediagate.toml";

/// Writes a config with an edge on `ip` and a free port, plus `extra`; returns the
/// port, the test's directory and the config's path.
fn write_config(ip: &str, extra: &str) -> (u16, PathBuf, PathBuf) {
    let port = free_tcp_port().expect("free port");
    let dir = std::env::temp_dir().join(format!("mediagate-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // `extra` goes on in the `[edge]` table: one starting with its own `linger`
    // replaces the tests' short default.
    let linger = if extra.starts_with("linger = ") {
        ""
    } else {
        "linger = \"2s\"\n"
    };
    let config = format!(
        "state_dir = {var:?}\n[edge]\nlisten = [\"{ip}:{port}\"]\n{linger}{extra}\n",
        var = dir.join("var").display().to_string(),
    );
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, config).unwrap();
    (port, dir, path)
}

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a gap-checking ffmpeg read saw.
#[derive(Debug)]
pub struct GapReport {
    pub video: u64,
    pub audio: u64,
    /// ffmpeg's own warnings about lost RTP packets (`RTP: missed N packets`) and
    /// decode errors: a real peer telling us about sequence gaps.
    pub gap_warnings: Vec<String>,
    pub diagnostics: String,
}

/// Reads `url` with ffmpeg for `seconds` at warning level, so its RTP depacketizer's
/// reports of missed packets are visible.
pub fn ffmpeg_gapless(url: &str, transport: Transport, seconds: f64) -> GapReport {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "warning",
        "-rtsp_transport",
    ])
    .arg(match transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
        Transport::HttpTunnel => "http",
    })
    .args(["-timeout", "10000000", "-i", url, "-t"])
    .arg(format!("{seconds:.1}"))
    .args(["-f", "framecrc", "-"]);
    let limit = Duration::from_secs_f64(seconds + 30.0);
    let out = run("ffmpeg", cmd, limit).expect("ffmpeg runs");
    let (video, audio, _) = parse_framecrc(&String::from_utf8_lossy(&out.stdout));
    let gap_warnings = out
        .stderr
        .iter()
        .filter(|l| {
            l.contains("missed") || l.contains("error while decoding") || l.contains("concealing")
        })
        .cloned()
        .collect();
    GapReport {
        video,
        audio,
        gap_warnings,
        diagnostics: out.diagnostics,
    }
}

/// A long-running ffmpeg viewer over TCP with a telling user agent, stopping after
/// `seconds`.
pub fn ffmpeg_viewer(url: &str, user_agent: &str, seconds: u32) -> Peer {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning"])
        .args(["-rtsp_transport", "tcp", "-user_agent", user_agent])
        .args(["-i", url, "-t", &seconds.to_string(), "-f", "null", "-"]);
    Peer::spawn("ffmpeg", cmd).expect("ffmpeg starts")
}

/// A bencode string: its length, a colon, the bytes.
pub fn bencode_str(s: &str) -> String {
    format!("{}:{s}", s.len())
}

/// Sends one `ng` datagram (`cookie`, a space, `body`) and returns the reply as text.
pub fn ng_ask(socket: &UdpSocket, port: u16, cookie: &str, body: impl AsRef<[u8]>) -> String {
    let mut dg = format!("{cookie} ").into_bytes();
    dg.extend_from_slice(body.as_ref());
    socket.send_to(&dg, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 65_536];
    // A reply with another cookie answers an earlier datagram, such as a readiness
    // ping answered after its wait gave up (which failed a suite run of a test with
    // its own copy of this loop): ng clients tell replies apart by cookie, so it is
    // skipped.
    let mine = format!("{cookie} ");
    loop {
        let n = socket.recv(&mut buf).expect("an ng reply");
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        if reply.starts_with(&mine) {
            return reply;
        }
    }
}

/// An SDP offering one PCMU audio stream on 127.0.0.1:`port`.
pub fn sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
}

/// The audio port of the first `m=audio` line in an `ng` reply's SDP.
pub fn audio_port(reply: &str) -> u16 {
    let at = reply.find("m=audio ").expect("an SDP in the reply") + 8;
    reply[at..]
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// Sets up a call through the relay's `ng` port: an offer from the caller (`tags[1]`)
/// then an answer from the callee (`tags[2]`) for call-id `tags[0]`, each with an audio
/// SDP on its local port. Returns the relay port the caller is to send its media to.
pub fn ng_offer_answer(
    control: &UdpSocket,
    ng_port: u16,
    [call_id, from_tag, to_tag]: [&str; 3],
    (caller_port, callee_port): (u16, u16),
) -> u16 {
    let offer = ng_ask(
        control,
        ng_port,
        "o1",
        format!(
            "d7:command5:offer7:call-id{}8:from-tag{}3:sdp{}e",
            bencode_str(call_id),
            bencode_str(from_tag),
            bencode_str(&sdp(caller_port))
        ),
    );
    assert!(offer.starts_with("o1 d"), "{offer}");
    let answer = ng_ask(
        control,
        ng_port,
        "a1",
        format!(
            "d7:command6:answer7:call-id{}8:from-tag{}6:to-tag{}3:sdp{}e",
            bencode_str(call_id),
            bencode_str(from_tag),
            bencode_str(to_tag),
            bencode_str(&sdp(callee_port))
        ),
    );
    audio_port(&answer)
}

/// A bare RTSP client for checking the edge's answers to requests real players do not
/// send (error paths). Interop is what the tests above use ffmpeg and GStreamer for.
pub struct RawRtsp {
    s: TcpStream,
    dec: mediagate_rtsp::parse::Decoder,
    cseq: u32,
    /// Interleaved frames that arrived while a response was awaited (the latest
    /// [`RawRtsp::MAX_KEPT`]), as (channel, payload).
    pub skipped: Vec<(u8, Vec<u8>)>,
    /// Interleaved frames seen while waiting for responses, with their arrival time,
    /// once [`RawRtsp::record_frames`] asked for them (off by default: unbounded).
    frames: Option<Vec<Frame>>,
}

/// One interleaved frame and when the client read it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub at: Instant,
    pub channel: u8,
    pub payload: Vec<u8>,
}

impl RawRtsp {
    pub fn connect(port: u16) -> RawRtsp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawRtsp {
            s,
            dec: mediagate_rtsp::parse::Decoder::default(),
            cseq: 0,
            skipped: Vec::new(),
            frames: None,
        }
    }

    const MAX_KEPT: usize = 4096;

    /// The next interleaved frame, as (channel, payload).
    pub fn next_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            match self.dec.next_item().unwrap() {
                Some(mediagate_rtsp::Item::Frame(f)) => return (f.channel(), f.payload().to_vec()),
                Some(_) => continue,
                None => {
                    let mut buf = [0u8; 8192];
                    let n = self.s.read(&mut buf).expect("a frame");
                    assert!(n > 0, "connection closed while waiting for media");
                    self.dec.extend_from_slice(&buf[..n]);
                }
            }
        }
    }

    pub fn req(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> mediagate_rtsp::Response {
        self.req_with_body(method, url, headers, b"")
    }

    /// Sends one interleaved frame (`$`, channel, length, payload).
    pub fn send_frame(&mut self, channel: u8, payload: &[u8]) {
        let mut f = vec![b'$', channel];
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        self.s.write_all(&f).unwrap();
    }

    /// [`RawRtsp::req`] with a body (its `Content-Length` is added).
    pub fn req_with_body(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> mediagate_rtsp::Response {
        self.cseq += 1;
        let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body);
        self.s.write_all(&bytes).unwrap();
        loop {
            match self.dec.next_item().unwrap() {
                Some(mediagate_rtsp::Item::Response(r)) => return r,
                Some(mediagate_rtsp::Item::Frame(f)) => {
                    if self.skipped.len() >= Self::MAX_KEPT {
                        self.skipped.remove(0);
                    }
                    self.skipped.push((f.channel(), f.payload().to_vec()));
                    self.keep(f);
                }
                Some(_) => continue,
                None => {
                    let mut buf = [0u8; 8192];
                    let n = self.s.read(&mut buf).expect("a response");
                    assert!(n > 0, "connection closed before the response to {method}");
                    self.dec.extend_from_slice(&buf[..n]);
                }
            }
        }
    }

    /// From now on, keeps the interleaved frames that arrive while a response is
    /// awaited, for [`RawRtsp::take_frames`].
    pub fn record_frames(&mut self) {
        self.frames.get_or_insert_with(Vec::new);
    }

    /// The frames kept so far (emptying the record).
    pub fn take_frames(&mut self) -> Vec<Frame> {
        self.frames.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn keep(&mut self, f: mediagate_rtsp::InterleavedFrame) {
        if let Some(v) = &mut self.frames {
            v.push(Frame {
                at: Instant::now(),
                channel: f.channel(),
                payload: f.payload().to_vec(),
            });
        }
    }

    /// Reads interleaved frames for `d` and returns them (and any kept before).
    pub fn read_frames_for(&mut self, d: Duration) -> Vec<Frame> {
        self.record_frames();
        let deadline = Instant::now() + d;
        let mut buf = [0u8; 65536];
        loop {
            while let Some(item) = self.dec.next_item().unwrap() {
                if let mediagate_rtsp::Item::Frame(f) = item {
                    self.keep(f);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.dec.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading frames: {e}"),
            }
        }
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        self.take_frames()
    }

    /// True when the edge closes the connection within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.s.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // media or RTCP still arriving
                Err(_) => return false,
            }
        }
        false
    }
}
