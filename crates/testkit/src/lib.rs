//! mediagate-testkit: starts and always stops real third-party peers for integration
//! tests, on loopback.
//!
//! * [`Origin`]: gst-rtsp-server 1.22 (`peers/gst_origin.py`) with live, on-demand and
//!   Digest-protected mounts, reporting every request it answers as an event.
//! * [`ffprobe`], [`ffmpeg_read`]: ffmpeg 5.1 as an RTSP client (streams seen, decoded
//!   frame counts, errors), over TCP, UDP or the HTTP tunnel.
//! * [`rtspsrc`]: GStreamer's rtspsrc as an RTSP client (`peers/rtspsrc_client.py`).
//! * [`Tap`]: a transparent TCP tap recording both directions with timestamps.
//! * [`postgres::PostgresServer`]: a throwaway PostgreSQL server (Debian's
//!   `postgresql`) that can be stopped and started again to simulate an outage.
//! * [`promtool::check_metrics`]: Prometheus' `promtool` on a metrics exposition.
//! * [`slapd::Slapd`]: a throwaway OpenLDAP server (Debian's `slapd`) loaded from an LDIF.
//! * [`ports`]: free loopback TCP/UDP ports and RTP/RTCP pairs.
//! * [`process::Peer`]: the child-process wrapper under all of them: own process group,
//!   parent-death signal, killed on drop, last output lines kept for failure messages.
//!
//! ```no_run
//! use std::time::Duration;
//! use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};
//!
//! let origin = Origin::start(OriginOptions::default())?;
//! let report = ffmpeg_read(&origin.url("/live"), &ReadOptions::seconds(Transport::Udp, 2.0))?;
//! assert!(report.video_frames > 10, "{report:#?}");
//! origin.wait_play_count("/live", 1, Duration::from_secs(5))?;
//! # Ok::<(), mediagate_testkit::Error>(())
//! ```
//!
//! Every wait is bounded. A missing program is an [`Error::MissingProgram`] naming the
//! Debian package, never a silent skip. Not a protocol implementation: nothing here parses
//! RTSP beyond what [`capture`] needs to cut test data on frame boundaries.

#![warn(unreachable_pub)]

pub mod capture;
mod error;
pub mod ffmpeg;
pub mod freeradius;
pub mod gst;
mod origin;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod promtool;
pub mod slapd;
mod tap;
mod temp_dir;
mod transport;

pub use error::{Error, Result};
pub use ffmpeg::{ffmpeg_publish, ffmpeg_read, ffprobe, make_clip, Probe, ReadOptions, ReadReport};
pub use gst::{rtspsrc, rtspsrc_with, RtspsrcOptions, RtspsrcReport};
pub use origin::{AudioCodec, Origin, OriginEvent, OriginEventKind, OriginOptions, RequestEvent};
pub use tap::{Tap, TapConnection, TapOptions};
pub use temp_dir::TempDir;
pub use transport::Transport;
