//! ffmpeg and ffprobe as RTSP clients (Debian's ffmpeg 5.1).
//!
//! * [`ffprobe`]: which streams a URL has (codec type and name), via `-show_streams` JSON.
//! * [`ffmpeg_read`]: reads a URL for a time or a frame count, decodes everything and
//!   counts decoded video and audio frames from `-f framecrc -` (one line per decoded
//!   frame, with `#media_type` headers naming each stream); errors are ffmpeg's own
//!   `-loglevel error` lines.
//!
//! Both are bounded in time twice: ffmpeg's socket timeout and a harness kill. Neither
//! judges the media; they report counts and errors for the test to assert on.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::{require_program, run};
use crate::transport::Transport;

const FFMPEG_PACKAGE: &str = "ffmpeg";
/// ffmpeg's RTSP socket I/O timeout, in microseconds.
const SOCKET_TIMEOUT_US: &str = "5000000";

/// One stream as ffprobe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStream {
    /// Stream index.
    pub index: u32,
    /// `video`, `audio`, ...
    pub codec_type: String,
    /// `h264`, `aac`, `opus`, ...
    pub codec_name: String,
    /// Video width, if known.
    pub width: Option<u32>,
    /// Video height, if known.
    pub height: Option<u32>,
    /// Audio sample rate, if known.
    pub sample_rate: Option<u32>,
}

/// What ffprobe found at a URL.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The streams, in index order.
    pub streams: Vec<ProbedStream>,
    /// ffprobe's error lines (warnings included when it still succeeded).
    pub stderr: Vec<String>,
}

impl Probe {
    /// True if a stream of `codec_type` with `codec_name` is present.
    pub fn has(&self, codec_type: &str, codec_name: &str) -> bool {
        self.streams
            .iter()
            .any(|s| s.codec_type == codec_type && s.codec_name == codec_name)
    }

    /// `(codec_type, codec_name)` of each stream, e.g. `[("video","h264"),("audio","aac")]`.
    pub fn codecs(&self) -> Vec<(String, String)> {
        self.streams
            .iter()
            .map(|s| (s.codec_type.clone(), s.codec_name.clone()))
            .collect()
    }
}

/// Parses `ffprobe -print_format json -show_streams` output.
pub(crate) fn parse_probe_json(json: &[u8]) -> Result<Vec<ProbedStream>> {
    let bad = |detail: String| Error::BadOutput {
        what: "ffprobe -show_streams".into(),
        detail,
    };
    let v: Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let streams = v
        .get("streams")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"streams\" array".into()))?;
    let num = |s: &Value, k: &str| {
        s.get(k)
            .and_then(|x| {
                x.as_u64()
                    .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
            })
            .and_then(|x| u32::try_from(x).ok())
    };
    let text = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Ok(streams
        .iter()
        .map(|s| ProbedStream {
            index: num(s, "index").unwrap_or(0),
            codec_type: text(s, "codec_type"),
            codec_name: text(s, "codec_name"),
            width: num(s, "width"),
            height: num(s, "height"),
            sample_rate: num(s, "sample_rate"),
        })
        .collect())
}

/// Probes `url` over `transport` (20 s limit).
pub fn ffprobe(url: &str, transport: Transport) -> Result<Probe> {
    ffprobe_with_timeout(url, transport, Duration::from_secs(20))
}

/// Probes `url` over `transport`, killing ffprobe after `timeout`.
pub(crate) fn ffprobe_with_timeout(
    url: &str,
    transport: Transport,
    timeout: Duration,
) -> Result<Probe> {
    let program = require_program("ffprobe", FFMPEG_PACKAGE)?;
    let mut cmd = Command::new(program);
    cmd.args(["-hide_banner", "-loglevel", "error"])
        .args(["-rtsp_transport", transport.ffmpeg_name()])
        .args(["-timeout", SOCKET_TIMEOUT_US])
        .args(["-print_format", "json", "-show_streams"])
        .arg(url);
    let f = run("ffprobe", cmd, timeout)?;
    if f.timed_out {
        return Err(Error::Timeout {
            what: format!("ffprobe {url} over {transport}"),
            after: timeout,
            diagnostics: f.diagnostics,
        });
    }
    if !f.success() {
        return Err(Error::PeerFailed {
            what: format!("ffprobe {url} over {transport}"),
            detail: crate::process::describe_status(f.status),
            diagnostics: f.diagnostics,
        });
    }
    Ok(Probe {
        streams: parse_probe_json(&f.stdout)?,
        stderr: f.stderr,
    })
}

/// When [`ffmpeg_read`] stops reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadLimit {
    /// After this much output time (`-t`).
    Duration(Duration),
    /// After this many video frames (`-frames:v`).
    VideoFrames(u32),
    /// At the end of the stream (on-demand content).
    UntilEnd,
}

/// How [`ffmpeg_read`] reads.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Lower transport.
    pub transport: Transport,
    /// When to stop.
    pub limit: ReadLimit,
    /// Start position in seconds (`-ss` before `-i`: a PLAY with `Range: npt=S-`).
    pub seek: Option<f64>,
    /// Harness kill after this long.
    pub timeout: Duration,
    /// Extra input options placed before `-i`.
    pub input_args: Vec<String>,
}

impl ReadOptions {
    /// Read for `seconds` over `transport`; the time limit is the duration plus 20 s.
    pub fn seconds(transport: Transport, seconds: f64) -> Self {
        let d = Duration::from_secs_f64(seconds.max(0.0));
        ReadOptions {
            transport,
            limit: ReadLimit::Duration(d),
            seek: None,
            timeout: d + Duration::from_secs(20),
            input_args: Vec::new(),
        }
    }

    /// Read `frames` video frames over `transport` (time limit 30 s).
    pub fn frames(transport: Transport, frames: u32) -> Self {
        ReadOptions {
            transport,
            limit: ReadLimit::VideoFrames(frames),
            seek: None,
            timeout: Duration::from_secs(30),
            input_args: Vec::new(),
        }
    }

    /// Read to the end of the stream (time limit 60 s).
    pub fn until_end(transport: Transport) -> Self {
        ReadOptions {
            transport,
            limit: ReadLimit::UntilEnd,
            seek: None,
            timeout: Duration::from_secs(60),
            input_args: Vec::new(),
        }
    }

    /// Starts at `seconds` into the stream.
    pub fn seek(mut self, seconds: f64) -> Self {
        self.seek = Some(seconds);
        self
    }

    /// Sets the harness kill time.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The ffmpeg arguments for `url` (everything after the program name).
    pub fn args(&self, url: &str) -> Vec<String> {
        let mut a: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error"]
            .map(String::from)
            .to_vec();
        a.extend([
            "-rtsp_transport".into(),
            self.transport.ffmpeg_name().into(),
        ]);
        a.extend(["-timeout".into(), SOCKET_TIMEOUT_US.into()]);
        if let Some(s) = self.seek {
            a.extend(["-ss".into(), format!("{s:.3}")]);
        }
        a.extend(self.input_args.iter().cloned());
        a.extend(["-i".into(), url.into()]);
        match self.limit {
            ReadLimit::Duration(d) => a.extend(["-t".into(), format!("{:.3}", d.as_secs_f64())]),
            ReadLimit::VideoFrames(n) => a.extend(["-frames:v".into(), n.to_string()]),
            ReadLimit::UntilEnd => {}
        }
        a.extend(["-f", "framecrc", "-"].map(String::from));
        a
    }
}

/// What [`ffmpeg_read`] decoded.
#[derive(Debug, Clone, Default)]
pub struct ReadReport {
    /// Decoded video frames.
    pub video_frames: u64,
    /// Decoded audio frames (framecrc packets of the audio stream).
    pub audio_frames: u64,
    /// Seconds of video covered (last pts + duration − first pts), if any video.
    pub video_seconds: Option<f64>,
    /// ffmpeg's error lines.
    pub errors: Vec<String>,
    /// True if ffmpeg exited by itself with status 0.
    pub success: bool,
    /// True if the harness had to kill it.
    pub timed_out: bool,
    /// Name, status and last output lines, for assertion messages.
    pub diagnostics: String,
}

impl ReadReport {
    /// True if any error line contains `needle` (e.g. `"401"`).
    pub fn error_contains(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.contains(needle))
    }
}

#[derive(Default)]
struct StreamCount {
    frames: u64,
    first_pts: Option<i64>,
    end_pts: Option<i64>,
}

/// Counts framecrc lines per media type. Unknown lines are ignored.
pub fn parse_framecrc(text: &str) -> (u64, u64, Option<f64>) {
    let mut kinds: HashMap<u32, String> = HashMap::new();
    let mut tbs: HashMap<u32, (i64, i64)> = HashMap::new();
    let mut counts: HashMap<u32, StreamCount> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#media_type ") {
            if let Some((idx, kind)) = rest.split_once(':') {
                if let Ok(i) = idx.trim().parse() {
                    kinds.insert(i, kind.trim().to_string());
                }
            }
        } else if let Some(rest) = line.strip_prefix("#tb ") {
            if let Some((idx, tb)) = rest.split_once(':') {
                let tb = tb.trim().split_once('/');
                if let (Ok(i), Some((n, d))) = (idx.trim().parse(), tb) {
                    if let (Ok(n), Ok(d)) = (n.parse(), d.parse()) {
                        tbs.insert(i, (n, d));
                    }
                }
            }
        } else if !line.starts_with('#') {
            let mut fields = line.split(',').map(str::trim);
            let idx = fields.next().and_then(|f| f.parse::<u32>().ok());
            let _dts = fields.next();
            let pts = fields.next().and_then(|f| f.parse::<i64>().ok());
            let dur = fields.next().and_then(|f| f.parse::<i64>().ok());
            if let Some(i) = idx {
                let c = counts.entry(i).or_default();
                c.frames += 1;
                if let Some(p) = pts {
                    c.first_pts = Some(c.first_pts.map_or(p, |f| f.min(p)));
                    let end = p.saturating_add(dur.unwrap_or(0));
                    c.end_pts = Some(c.end_pts.map_or(end, |e| e.max(end)));
                }
            }
        }
    }
    let mut video = 0;
    let mut audio = 0;
    let mut video_seconds = None;
    for (i, c) in &counts {
        match kinds.get(i).map(String::as_str) {
            Some("video") => {
                video += c.frames;
                if let (Some(f), Some(e), Some((n, d))) = (c.first_pts, c.end_pts, tbs.get(i)) {
                    if *d != 0 {
                        video_seconds = Some((e - f) as f64 * *n as f64 / *d as f64);
                    }
                }
            }
            Some("audio") => audio += c.frames,
            _ => {}
        }
    }
    (video, audio, video_seconds)
}

/// Reads `url` with ffmpeg, decoding everything, and counts decoded frames.
/// Returns `Ok` whenever ffmpeg ran, even if it failed: the report carries its errors.
pub fn ffmpeg_read(url: &str, options: &ReadOptions) -> Result<ReadReport> {
    let program = require_program("ffmpeg", FFMPEG_PACKAGE)?;
    let mut cmd = Command::new(program);
    cmd.args(options.args(url));
    let f = run("ffmpeg", cmd, options.timeout)?;
    let (video_frames, audio_frames, video_seconds) =
        parse_framecrc(&String::from_utf8_lossy(&f.stdout));
    let mut errors: Vec<String> = f
        .stderr
        .iter()
        .filter(|l| !l.trim().is_empty())
        .cloned()
        .collect();
    if f.timed_out {
        errors.push(format!(
            "harness: ffmpeg killed after {:.1} s",
            options.timeout.as_secs_f64()
        ));
    }
    Ok(ReadReport {
        video_frames,
        audio_frames,
        video_seconds,
        errors,
        success: f.success(),
        timed_out: f.timed_out,
        diagnostics: f.diagnostics,
    })
}

/// Writes a test clip to `path`: `seconds` of H.264 (640x360, 25 fps, a keyframe
/// every `gop` frames, no B-frames) and AAC (a 1 kHz tone), as an encoder in the field
/// would publish it.
pub fn make_clip(path: &std::path::Path, seconds: u32, gop: u32) -> Result<()> {
    let program = require_program("ffmpeg", FFMPEG_PACKAGE)?;
    let mut cmd = Command::new(program);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=640x360:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=1000:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", &gop.to_string(), "-bf", "0", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-shortest"])
        .arg(path);
    let f = run("ffmpeg (make clip)", cmd, Duration::from_secs(120))?;
    if !f.success() {
        return Err(Error::PeerFailed {
            what: format!("ffmpeg making the clip {}", path.display()),
            detail: crate::process::describe_status(f.status),
            diagnostics: f.diagnostics,
        });
    }
    Ok(())
}

/// Starts ffmpeg publishing `clip` in real time (`-re`, looped `loops` extra times)
/// to `url` with RTSP `ANNOUNCE` + `RECORD` over `transport` (TCP or UDP). The
/// process is killed when the returned peer is dropped.
pub fn ffmpeg_publish(
    clip: &std::path::Path,
    url: &str,
    transport: Transport,
    loops: u32,
) -> Result<crate::process::Peer> {
    let program = require_program("ffmpeg", FFMPEG_PACKAGE)?;
    let rtsp_transport = match transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
        other => {
            return Err(Error::BadOutput {
                what: "ffmpeg_publish's transport".into(),
                detail: format!("ffmpeg publishes over tcp or udp, not {other:?}"),
            })
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
        .args(["-stream_loop", &loops.to_string(), "-i"])
        .arg(clip)
        .args([
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            rtsp_transport,
        ])
        .arg(url);
    crate::process::Peer::spawn("ffmpeg (publisher)", cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMECRC: &str = "#software: Lavf59.27.100
#tb 0: 1/15
#media_type 0: video
#codec_id 0: rawvideo
#dimensions 0: 320x240
#sar 0: 1/1
#tb 1: 1/48000
#media_type 1: audio
#codec_id 1: pcm_s16le
#sample_rate 1: 48000
#channel_layout_name 1: stereo
1,          0,          0,     1024,     4096, 0x7dc2f747
0,          0,          0,        1,   115200, 0xb63b6c64
1,       1024,       1024,     1024,     4096, 0xe3afd541
0,          1,          1,        1,   115200, 0xdf178a32
0,          2,          2,        1,   115200, 0xdf178a32
";

    #[test]
    fn framecrc_counts_per_media_type() {
        let (v, a, secs) = parse_framecrc(FRAMECRC);
        assert_eq!((v, a), (3, 2));
        assert_eq!(secs, Some(0.2));
    }

    #[test]
    fn framecrc_without_headers_counts_nothing() {
        assert_eq!(parse_framecrc("0, 0, 0, 1, 10, 0x0\n"), (0, 0, None));
        assert_eq!(parse_framecrc(""), (0, 0, None));
        assert_eq!(
            parse_framecrc("#media_type x: video\ngarbage\n"),
            (0, 0, None)
        );
    }

    #[test]
    fn probe_json_is_parsed() {
        let json = br#"{"streams":[
            {"index":0,"codec_name":"h264","codec_type":"video","width":320,"height":240},
            {"index":1,"codec_name":"aac","codec_type":"audio","sample_rate":"48000"}]}"#;
        let streams = parse_probe_json(json).unwrap();
        let probe = Probe {
            streams,
            stderr: vec![],
        };
        assert_eq!(
            probe.codecs(),
            vec![
                ("video".to_string(), "h264".to_string()),
                ("audio".to_string(), "aac".to_string())
            ]
        );
        assert_eq!(probe.streams[0].width, Some(320));
        assert_eq!(probe.streams[1].sample_rate, Some(48000));
        assert!(probe.has("audio", "aac"));
        assert!(!probe.has("audio", "opus"));
        assert!(parse_probe_json(b"{}").is_err());
        assert!(parse_probe_json(b"nope").is_err());
    }

    #[test]
    fn read_args() {
        let a = ReadOptions::seconds(Transport::Udp, 2.0)
            .seek(5.0)
            .args("rtsp://h/x");
        assert_eq!(
            a.join(" "),
            "-nostdin -hide_banner -loglevel error -rtsp_transport udp -timeout 5000000 \
             -ss 5.000 -i rtsp://h/x -t 2.000 -f framecrc -"
        );
        let a = ReadOptions::frames(Transport::HttpTunnel, 30).args("u");
        assert!(a.join(" ").contains("-rtsp_transport http"));
        assert!(a.join(" ").ends_with("-i u -frames:v 30 -f framecrc -"));
        let a = ReadOptions::until_end(Transport::Tcp).args("u");
        assert!(a.join(" ").ends_with("-i u -f framecrc -"));
    }
}
