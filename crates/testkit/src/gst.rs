//! GStreamer's `rtspsrc` as an RTSP client, via `peers/rtspsrc_client.py`.
//!
//! The script plays the URL through `rtspsrc ! decodebin ! fakesink` for a while and
//! prints one JSON report: decoded video and audio buffer counts, the streams rtspsrc
//! exposed (media and RTP encoding name), GStreamer errors and warnings. Transports: TCP
//! interleaved, UDP, and the HTTP tunnel (`rtsph://`).
//!
//! What it does not do: seek, pause, or check the decoded pictures.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::{python_script, run};
use crate::transport::Transport;

/// How to run [`rtspsrc_with`].
#[derive(Debug, Clone)]
pub struct RtspsrcOptions {
    /// Lower transport.
    pub transport: Transport,
    /// How long to play after start.
    pub duration: Duration,
    /// Credentials for `user-id` / `user-pw`.
    pub credentials: Option<(String, String)>,
    /// Stop as soon as this many (video, audio) buffers were decoded; `duration` is then
    /// only the upper bound. Makes counts robust on a loaded machine.
    pub until_buffers: Option<(u64, u64)>,
    /// Harness kill after this long (default: duration + 20 s).
    pub timeout: Duration,
}

impl RtspsrcOptions {
    /// Play for `duration` over `transport`.
    pub fn new(transport: Transport, duration: Duration) -> Self {
        RtspsrcOptions {
            transport,
            duration,
            credentials: None,
            until_buffers: None,
            timeout: duration + Duration::from_secs(20),
        }
    }

    /// Stop early once `video` video and `audio` audio buffers were decoded.
    pub fn until_buffers(mut self, video: u64, audio: u64) -> Self {
        self.until_buffers = Some((video, audio));
        self
    }

    /// Authenticate as `user` / `password`.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }
}

/// One stream rtspsrc exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspsrcStream {
    /// SDP media type (`video`, `audio`).
    pub media: String,
    /// RTP encoding name (`H264`, `MPEG4-GENERIC`, `OPUS`).
    pub encoding: String,
}

/// What rtspsrc decoded.
#[derive(Debug, Clone, Default)]
pub struct RtspsrcReport {
    /// Decoded video buffers.
    pub video_buffers: u64,
    /// Decoded audio buffers.
    pub audio_buffers: u64,
    /// Streams exposed by rtspsrc.
    pub streams: Vec<RtspsrcStream>,
    /// GStreamer error messages (the run stops at the first).
    pub errors: Vec<String>,
    /// GStreamer warnings.
    pub warnings: Vec<String>,
    /// True if the stream ended (EOS) before the duration.
    pub eos: bool,
    /// Seconds it played.
    pub elapsed: f64,
    /// Name, status and last output lines, for assertion messages.
    pub diagnostics: String,
}

/// Parses the script's JSON report.
pub fn parse_report(json: &str) -> Result<RtspsrcReport> {
    let bad = |detail: String| Error::BadOutput {
        what: "rtspsrc_client.py".into(),
        detail,
    };
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| bad(e.to_string()))?;
    let count = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("no \"{k}\" count")))
    };
    let strings = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let streams = v
        .get("streams")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| RtspsrcStream {
                    media: s.get("media").and_then(Value::as_str).unwrap_or("").into(),
                    encoding: s
                        .get("encoding")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RtspsrcReport {
        video_buffers: count("video_buffers")?,
        audio_buffers: count("audio_buffers")?,
        streams,
        errors: strings("errors"),
        warnings: strings("warnings"),
        eos: v.get("eos").and_then(Value::as_bool).unwrap_or(false),
        elapsed: v.get("elapsed").and_then(Value::as_f64).unwrap_or(0.0),
        diagnostics: String::new(),
    })
}

/// Plays `url` with rtspsrc over `transport` for `duration`.
pub fn rtspsrc(url: &str, transport: Transport, duration: Duration) -> Result<RtspsrcReport> {
    rtspsrc_with(url, &RtspsrcOptions::new(transport, duration))
}

/// Plays `url` with rtspsrc as `options` say. `Ok` whenever the script reported, even if
/// GStreamer failed: the report carries its errors.
pub fn rtspsrc_with(url: &str, options: &RtspsrcOptions) -> Result<RtspsrcReport> {
    let (python, script) = python_script("rtspsrc_client.py")?;
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(url)
        .args(["--protocols", options.transport.rtspsrc_name()])
        .args([
            "--seconds",
            &format!("{:.3}", options.duration.as_secs_f64()),
        ]);
    if let Some((u, p)) = &options.credentials {
        cmd.args(["--user", u, "--password", p]);
    }
    if let Some((v, a)) = options.until_buffers {
        cmd.args([
            "--until-video",
            &v.to_string(),
            "--until-audio",
            &a.to_string(),
        ]);
    }
    let f = run("rtspsrc_client.py", cmd, options.timeout)?;
    let out = String::from_utf8_lossy(&f.stdout);
    let Some(line) = out.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        let what = format!("rtspsrc {url} over {}", options.transport);
        return Err(if f.timed_out {
            Error::Timeout {
                what,
                after: options.timeout,
                diagnostics: f.diagnostics,
            }
        } else {
            Error::PeerFailed {
                what,
                detail: format!("no report ({})", crate::process::describe_status(f.status)),
                diagnostics: f.diagnostics,
            }
        });
    };
    let mut report = parse_report(line)?;
    report.diagnostics = f.diagnostics;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_parsed() {
        let r = parse_report(
            r#"{"video_buffers": 44, "audio_buffers": 139, "streams": [{"media": "video", "encoding": "H264"}, {"media": "audio", "encoding": "MPEG4-GENERIC"}], "errors": ["src: Unauthorized"], "warnings": [], "eos": false, "elapsed": 3.001}"#,
        )
        .unwrap();
        assert_eq!((r.video_buffers, r.audio_buffers), (44, 139));
        assert_eq!(
            r.streams[1],
            RtspsrcStream {
                media: "audio".into(),
                encoding: "MPEG4-GENERIC".into()
            }
        );
        assert_eq!(r.errors, vec!["src: Unauthorized".to_string()]);
        assert!(!r.eos);
        assert_eq!(r.elapsed, 3.001);
    }

    #[test]
    fn report_without_counts_is_rejected() {
        assert!(parse_report(r#"{"audio_buffers": 1}"#).is_err());
        assert!(parse_report("Traceback").is_err());
    }
}
