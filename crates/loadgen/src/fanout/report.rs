//! The fan-out run's results: per-viewer figures, the aggregate, and the two ways
//! they are printed (a table for people, one JSON object for scripts).
//!
//! What it does: turns viewer outcomes and per-track counters into [`ViewerReport`]s,
//! sums and summarises them ([`Summary`] percentiles by nearest rank), and divides
//! process CPU time by delivered packets. What it does not: measure anything; every
//! input, including durations, is passed in, so the report is tested on fixed values.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::viewer::ViewerOutcome;
use crate::stats::{millis, nearest_rank, Summary};
use crate::track_stats::TrackStats;

/// What was asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RunInfo {
    pub url: String,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    pub viewers: usize,
    pub seconds: f64,
    pub ramp_per_sec: Option<f64>,
    /// e.g. `video H264/90000, audio MPEG4-GENERIC/48000`.
    pub tracks: String,
}

/// One viewer's figures.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ViewerReport {
    pub id: usize,
    /// `None` when the viewer played to the end and received media.
    pub error: Option<String>,
    /// RTP packets received (duplicates included).
    pub packets: u64,
    pub bytes: u64,
    /// Sequence numbers skipped and never filled in.
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub rtcp: u64,
    /// Datagrams or frames on RTP ports/channels that were not RTP.
    pub invalid: u64,
    /// Connect → PLAY response.
    pub setup: Option<Duration>,
    /// PLAY sent → first packet starting a keyframe.
    pub first_keyframe: Option<Duration>,
    /// How long it was playing (PLAY response → end).
    pub playing: Duration,
    /// Tracks whose first packet did not carry the `RTP-Info` sequence number.
    pub rtp_info_mismatches: u32,
    pub keepalives: u64,
    /// Responses to keep-alives that were not 2xx.
    pub keepalive_failures: u64,
    pub teardown_ok: bool,
    /// The longest wait between two packets of one track.
    pub max_gap: Duration,
}

impl ViewerReport {
    /// Combines a viewer's outcome with its tracks' counters.
    pub(super) fn new(o: &ViewerOutcome, tracks: &[TrackStats]) -> ViewerReport {
        let mut r = ViewerReport {
            id: o.id,
            error: o
                .failure
                .as_ref()
                .map(|f| format!("{}: {}", f.stage.name(), f.reason)),
            packets: 0,
            bytes: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            rtcp: 0,
            invalid: 0,
            setup: o.setup,
            first_keyframe: None,
            playing: match (o.playing_from, o.playing_until) {
                (Some(a), Some(b)) => b.saturating_duration_since(a),
                _ => Duration::ZERO,
            },
            rtp_info_mismatches: 0,
            keepalives: o.keepalives,
            keepalive_failures: o.late_failures,
            teardown_ok: o.teardown_ok,
            max_gap: Duration::ZERO,
        };
        for (i, t) in tracks.iter().enumerate() {
            let c = t.seq_counts();
            r.packets += t.packets;
            r.bytes += t.bytes;
            r.lost += c.lost;
            r.duplicates += c.duplicates;
            r.reordered += c.reordered;
            r.rtcp += t.rtcp;
            r.invalid += t.invalid;
            r.max_gap = r.max_gap.max(t.max_gap);
            if let (Some(want), Some(first)) = (o.expected_seqs.get(i).copied().flatten(), t.first)
            {
                r.rtp_info_mismatches += u32::from(first.seq != want);
            }
            if let (Some(kf), Some(sent)) = (t.first_keyframe, o.play_sent) {
                let d = kf.saturating_duration_since(sent);
                r.first_keyframe = Some(r.first_keyframe.map_or(d, |old| old.min(d)));
            }
        }
        if r.error.is_none() && r.packets == 0 {
            r.error = Some("no media received".to_owned());
        }
        r
    }

    /// Packets per second while playing.
    pub(super) fn rate(&self) -> f64 {
        per_second(self.packets, self.playing)
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "ok": self.error.is_none(),
            "error": self.error,
            "packets": self.packets,
            "bytes": self.bytes,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "rtcp": self.rtcp,
            "setup_ms": self.setup.map(millis),
            "first_keyframe_ms": self.first_keyframe.map(millis),
            "playing_seconds": self.playing.as_secs_f64(),
            "pps": self.rate(),
            "rtp_info_mismatches": self.rtp_info_mismatches,
            "keepalives": self.keepalives,
            "keepalive_failures": self.keepalive_failures,
            "teardown_ok": self.teardown_ok,
            "max_gap_ms": millis(self.max_gap),
        })
    }
}

fn per_second(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// CPU and memory of one process over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcessUsage {
    pub pid: u32,
    /// CPU time between the start and the end of the playing window.
    pub cpu: Duration,
    /// `VmHWM` at the end.
    pub peak_rss_kib: Option<u64>,
    /// CPU and packets from the moment every viewer had settled to the end, when that
    /// left at least a second: the steady-state cost without setup work.
    pub steady: Option<Steady>,
}

/// A steady-state window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Steady {
    pub cpu: Duration,
    pub packets: u64,
    pub window: Duration,
}

/// CPU microseconds per packet, if any packet came.
pub(super) fn micros_per_packet(cpu: Duration, packets: u64) -> Option<f64> {
    (packets > 0).then(|| cpu.as_secs_f64() * 1e6 / packets as f64)
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RunReport {
    pub info: RunInfo,
    pub viewers: Vec<ViewerReport>,
    /// Start of the run → end of playing.
    pub window: Duration,
    pub edge: Option<ProcessUsage>,
    pub loadgen: ProcessUsage,
    /// Datagrams the kernel dropped on our UDP sockets (UDP runs): the load generator
    /// did not keep up if this is not zero.
    pub socket_drops: Option<u64>,
    /// Datagrams too large for the receive buffers (UDP runs).
    pub truncated: Option<u64>,
}

/// Sums and percentiles over all viewers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Aggregate {
    pub ok: usize,
    pub failed: usize,
    /// Error text → viewers that failed with it.
    pub failures: BTreeMap<String, usize>,
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub rtcp: u64,
    pub invalid: u64,
    pub rtp_info_mismatches: u64,
    pub teardown_failures: usize,
    pub keepalive_failures: u64,
    pub setup: Option<Summary>,
    pub first_keyframe: Option<Summary>,
    /// Packets per second over the whole window.
    pub rate_pps: f64,
    pub rate_mbps: f64,
    /// Per-viewer packet rates of the viewers that played: min, p50, max.
    pub viewer_pps: Option<(f64, f64, f64)>,
}

impl RunReport {
    pub(super) fn aggregate(&self) -> Aggregate {
        let mut a = Aggregate {
            ok: 0,
            failed: 0,
            failures: BTreeMap::new(),
            packets: 0,
            bytes: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            rtcp: 0,
            invalid: 0,
            rtp_info_mismatches: 0,
            teardown_failures: 0,
            keepalive_failures: 0,
            setup: None,
            first_keyframe: None,
            rate_pps: 0.0,
            rate_mbps: 0.0,
            viewer_pps: None,
        };
        let mut setups = Vec::new();
        let mut keyframes = Vec::new();
        let mut rates = Vec::new();
        for v in &self.viewers {
            match &v.error {
                None => a.ok += 1,
                Some(e) => {
                    a.failed += 1;
                    *a.failures.entry(e.clone()).or_default() += 1;
                }
            }
            a.packets += v.packets;
            a.bytes += v.bytes;
            a.lost += v.lost;
            a.duplicates += v.duplicates;
            a.reordered += v.reordered;
            a.rtcp += v.rtcp;
            a.invalid += v.invalid;
            a.rtp_info_mismatches += u64::from(v.rtp_info_mismatches);
            a.keepalive_failures += v.keepalive_failures;
            if v.setup.is_some() && !v.teardown_ok && v.error.is_none() {
                a.teardown_failures += 1;
            }
            setups.extend(v.setup);
            keyframes.extend(v.first_keyframe);
            if v.playing > Duration::ZERO {
                rates.push(v.rate());
            }
        }
        a.setup = Summary::of(&mut setups);
        a.first_keyframe = Summary::of(&mut keyframes);
        a.rate_pps = per_second(a.packets, self.window);
        a.rate_mbps = per_second(a.bytes.saturating_mul(8), self.window) / 1e6;
        rates.sort_by(f64::total_cmp);
        if let (Some(&min), Some(p50), Some(&max)) =
            (rates.first(), nearest_rank(&rates, 50), rates.last())
        {
            a.viewer_pps = Some((min, p50, max));
        }
        a
    }

    /// Process exit status for the run: 0 when every viewer played, 2 otherwise.
    pub(super) fn exit_code(&self) -> u8 {
        if self.viewers.iter().all(|v| v.error.is_none()) {
            0
        } else {
            2
        }
    }

    /// One JSON object with the run, the aggregate and every viewer.
    pub(super) fn to_json(&self) -> Value {
        let a = self.aggregate();
        let summary = |s: &Option<Summary>| match s {
            Some(s) => json!({
                "count": s.count,
                "p50": millis(s.p50),
                "p95": millis(s.p95),
                "max": millis(s.max),
            }),
            None => Value::Null,
        };
        let process = |p: &ProcessUsage| {
            json!({
                "pid": p.pid,
                "cpu_seconds": p.cpu.as_secs_f64(),
                "cpu_us_per_packet": micros_per_packet(p.cpu, a.packets),
                "peak_rss_mib": p.peak_rss_kib.map(|k| k as f64 / 1024.0),
                "steady": p.steady.map(|s| json!({
                    "seconds": s.window.as_secs_f64(),
                    "cpu_seconds": s.cpu.as_secs_f64(),
                    "packets": s.packets,
                    "cpu_us_per_packet": micros_per_packet(s.cpu, s.packets),
                })),
            })
        };
        let per_viewer: Vec<Value> = self.viewers.iter().map(ViewerReport::to_json).collect();
        json!({
            "url": self.info.url,
            "transport": self.info.transport,
            "viewers_requested": self.info.viewers,
            "seconds": self.info.seconds,
            "ramp_per_sec": self.info.ramp_per_sec,
            "tracks": self.info.tracks,
            "window_seconds": self.window.as_secs_f64(),
            "viewers_ok": a.ok,
            "viewers_failed": a.failed,
            "failures": a.failures,
            "packets": a.packets,
            "bytes": a.bytes,
            "lost": a.lost,
            "duplicates": a.duplicates,
            "reordered": a.reordered,
            "rtcp_packets": a.rtcp,
            "invalid_packets": a.invalid,
            "rtp_info_mismatches": a.rtp_info_mismatches,
            "teardown_failures": a.teardown_failures,
            "keepalive_failures": a.keepalive_failures,
            "receive_rate_pps": a.rate_pps,
            "receive_rate_mbps": a.rate_mbps,
            "viewer_pps": a.viewer_pps.map(|(min, p50, max)| json!({"min": min, "p50": p50, "max": max})),
            "setup_ms": summary(&a.setup),
            "first_keyframe_ms": summary(&a.first_keyframe),
            "edge": self.edge.as_ref().map(process),
            "loadgen": process(&self.loadgen),
            "socket_drops": self.socket_drops,
            "truncated": self.truncated,
            "per_viewer": per_viewer,
        })
    }

    /// The human-readable report. Per-viewer rows: all of them when `all_viewers` or
    /// when there are at most 50; otherwise the failed ones and those with the most
    /// loss or the slowest first keyframe.
    pub(super) fn to_text(&self, all_viewers: bool) -> String {
        let a = self.aggregate();
        let mut s = String::new();
        let i = &self.info;
        let _ = writeln!(
            s,
            "fanout {} | {} viewers over {} for {:.1} s{} | {}",
            i.url,
            i.viewers,
            i.transport.to_uppercase(),
            i.seconds,
            i.ramp_per_sec
                .map(|r| format!(", ramp {r}/s"))
                .unwrap_or_default(),
            i.tracks
        );
        let _ = writeln!(s, "viewers         {} ok, {} failed", a.ok, a.failed);
        for (reason, n) in &a.failures {
            let _ = writeln!(s, "  {n:>5} x {reason}");
        }
        let _ = writeln!(
            s,
            "packets         {} received, {} lost, {} duplicates, {} reordered, {} not RTP",
            a.packets, a.lost, a.duplicates, a.reordered, a.invalid
        );
        let _ = writeln!(
            s,
            "receive rate    {:.0} packets/s, {:.2} Mbit/s over {:.1} s",
            a.rate_pps,
            a.rate_mbps,
            self.window.as_secs_f64()
        );
        if let Some((min, p50, max)) = a.viewer_pps {
            let _ = writeln!(
                s,
                "per viewer      {p50:.1} packets/s p50 (min {min:.1}, max {max:.1})"
            );
        }
        let line = |name: &str, sum: &Option<Summary>, what: &str| match sum {
            Some(x) => format!(
                "{name:<16}p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms  ({what}, {} viewers)\n",
                millis(x.p50),
                millis(x.p95),
                millis(x.max),
                x.count
            ),
            None => format!("{name:<16}n/a  ({what})\n"),
        };
        s.push_str(&line("setup", &a.setup, "connect to PLAY response"));
        s.push_str(&line(
            "first keyframe",
            &a.first_keyframe,
            "PLAY sent to first keyframe packet",
        ));
        let _ = writeln!(
            s,
            "checks          {} RTP-Info mismatches, {} RTCP packets, {} keep-alive and {} TEARDOWN failures",
            a.rtp_info_mismatches, a.rtcp, a.keepalive_failures, a.teardown_failures
        );
        let proc_line = |name: &str, p: &ProcessUsage| {
            let mut l = format!(
                "{name:<16}pid {}, CPU {:.2} s ({:.1}% of a core)",
                p.pid,
                p.cpu.as_secs_f64(),
                100.0 * p.cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
            );
            if let Some(us) = micros_per_packet(p.cpu, a.packets) {
                let _ = write!(l, ", {us:.2} us/packet");
            }
            if let Some(st) = p.steady {
                if let Some(us) = micros_per_packet(st.cpu, st.packets) {
                    let _ = write!(
                        l,
                        ", steady {us:.2} us/packet over the last {:.1} s",
                        st.window.as_secs_f64()
                    );
                }
            }
            if let Some(k) = p.peak_rss_kib {
                let _ = write!(l, ", peak RSS {:.1} MiB", k as f64 / 1024.0);
            }
            l.push('\n');
            l
        };
        if let Some(e) = &self.edge {
            s.push_str(&proc_line("edge", e));
        }
        s.push_str(&proc_line("loadgen", &self.loadgen));
        if let Some(d) = self.socket_drops {
            let _ = writeln!(
                s,
                "udp sockets     {d} datagrams dropped by our receive buffers{}, {} truncated",
                if d == 0 {
                    ""
                } else {
                    " (the load generator fell behind)"
                },
                self.truncated.unwrap_or(0)
            );
        }
        s.push('\n');
        s.push_str(&self.viewer_table(all_viewers));
        s
    }

    fn viewer_table(&self, all: bool) -> String {
        let mut rows: Vec<&ViewerReport> = self.viewers.iter().collect();
        let mut note = String::new();
        if !all && rows.len() > 50 {
            let mut shown: Vec<&ViewerReport> = rows
                .iter()
                .copied()
                .filter(|v| v.error.is_some())
                .take(20)
                .collect();
            let mut by_loss = rows.clone();
            by_loss.sort_by_key(|v| std::cmp::Reverse(v.lost));
            shown.extend(by_loss.into_iter().take(5));
            let mut by_kf = rows.clone();
            by_kf.sort_by_key(|v| std::cmp::Reverse(v.first_keyframe));
            shown.extend(by_kf.into_iter().take(5));
            shown.sort_by_key(|v| v.id);
            shown.dedup_by_key(|v| v.id);
            note = format!(
                "({} of {} viewers: failed, most loss, slowest keyframe; --all-viewers or --json for all)\n",
                shown.len(),
                rows.len()
            );
            rows = shown;
        }
        let mut s = format!(
            "{:>5}  {:>9} {:>12} {:>6} {:>4} {:>8} {:>9} {:>7}  {}\n",
            "id", "packets", "bytes", "lost", "dup", "setup", "keyframe", "pkt/s", "result"
        );
        let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", millis(d)));
        for v in rows {
            let _ = writeln!(
                s,
                "{:>5}  {:>9} {:>12} {:>6} {:>4} {:>8} {:>9} {:>7.1}  {}",
                v.id,
                v.packets,
                v.bytes,
                v.lost,
                v.duplicates,
                ms(v.setup),
                ms(v.first_keyframe),
                v.rate(),
                v.error.as_deref().unwrap_or("ok")
            );
        }
        s.push_str(&note);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::viewer::{Failure, Stage};
    use crate::track_stats::tests::{rtp, H264_IDR_START};
    use crate::track_stats::Codec;
    use std::time::Instant;

    fn outcome(id: usize, t0: Instant) -> ViewerOutcome {
        let ms = Duration::from_millis;
        ViewerOutcome {
            id,
            failure: None,
            setup: Some(ms(10 + id as u64)),
            play_sent: Some(t0),
            playing_from: Some(t0 + ms(5)),
            playing_until: Some(t0 + ms(2005)),
            expected_seqs: vec![Some(100), Some(7)],
            tcp_tracks: None,
            keepalives: 1,
            late_failures: 0,
            teardown_ok: true,
            stray_frames: 0,
        }
    }

    fn tracks(t0: Instant, keyframe_after: Duration, video_first_seq: u16) -> Vec<TrackStats> {
        let mut v = TrackStats::new(Codec::H264);
        v.record_rtp(
            &rtp(video_first_seq, 0, b"p"),
            t0 + Duration::from_millis(1),
        );
        v.record_rtp(
            &rtp(video_first_seq + 2, 0, &H264_IDR_START),
            t0 + keyframe_after,
        );
        let mut a = TrackStats::new(Codec::Other);
        a.record_rtp(&rtp(7, 0, b"a"), t0);
        a.record_rtcp();
        vec![v, a]
    }

    #[test]
    fn viewer_report_sums_tracks_and_times_the_first_keyframe() {
        let t0 = Instant::now();
        let r = ViewerReport::new(&outcome(3, t0), &tracks(t0, Duration::from_millis(40), 100));
        assert_eq!(
            r,
            ViewerReport {
                id: 3,
                error: None,
                packets: 3,
                bytes: 3 * 12 + 1 + 4 + 1,
                lost: 1,
                duplicates: 0,
                reordered: 0,
                rtcp: 1,
                invalid: 0,
                setup: Some(Duration::from_millis(13)),
                first_keyframe: Some(Duration::from_millis(40)),
                playing: Duration::from_secs(2),
                rtp_info_mismatches: 0,
                keepalives: 1,
                keepalive_failures: 0,
                teardown_ok: true,
                // Video: packets at 1, 1 and 40 ms.
                max_gap: Duration::from_millis(39),
            }
        );
        assert_eq!(r.rate(), 1.5);
        // A first packet that is not the announced one is a mismatch.
        let r = ViewerReport::new(&outcome(3, t0), &tracks(t0, Duration::from_millis(40), 101));
        assert_eq!(r.rtp_info_mismatches, 1);
    }

    #[test]
    fn viewers_without_media_or_with_a_failure_are_failed() {
        let t0 = Instant::now();
        let r = ViewerReport::new(&outcome(0, t0), &[TrackStats::new(Codec::H264)]);
        assert_eq!(r.error.as_deref(), Some("no media received"));
        let mut o = outcome(1, t0);
        o.failure = Some(Failure {
            stage: Stage::Setup,
            reason: "the server answered 461 Unsupported Transport".into(),
        });
        let r = ViewerReport::new(&o, &[]);
        assert_eq!(
            r.error.as_deref(),
            Some("SETUP: the server answered 461 Unsupported Transport")
        );
    }

    fn run(viewers: Vec<ViewerReport>) -> RunReport {
        RunReport {
            info: RunInfo {
                url: "rtsp://127.0.0.1:8554/cam".into(),
                transport: "udp",
                viewers: viewers.len(),
                seconds: 2.0,
                ramp_per_sec: None,
                tracks: "video H264/90000, audio MPEG4-GENERIC/48000".into(),
            },
            viewers,
            window: Duration::from_secs(2),
            edge: Some(ProcessUsage {
                pid: 42,
                cpu: Duration::from_millis(30),
                peak_rss_kib: Some(20480),
                steady: Some(Steady {
                    cpu: Duration::from_millis(10),
                    packets: 4,
                    window: Duration::from_secs(1),
                }),
            }),
            loadgen: ProcessUsage {
                pid: 1,
                cpu: Duration::from_millis(6),
                peak_rss_kib: None,
                steady: None,
            },
            socket_drops: Some(0),
            truncated: Some(0),
        }
    }

    #[test]
    fn aggregate_sums_counts_and_summarises_times() {
        let t0 = Instant::now();
        let good: Vec<ViewerReport> = (0..4)
            .map(|i| {
                ViewerReport::new(
                    &outcome(i, t0),
                    &tracks(t0, Duration::from_millis(10 * (i as u64 + 1)), 100),
                )
            })
            .collect();
        let mut all = good.clone();
        let mut o = outcome(4, t0);
        o.failure = Some(Failure {
            stage: Stage::Connect,
            reason: "I/O error: refused".into(),
        });
        o.setup = None;
        o.playing_from = None;
        all.push(ViewerReport::new(&o, &[]));
        let rep = run(all);
        let a = rep.aggregate();
        assert_eq!((a.ok, a.failed), (4, 1));
        assert_eq!(
            a.failures,
            BTreeMap::from([("connect: I/O error: refused".to_owned(), 1)])
        );
        assert_eq!(a.packets, 12);
        assert_eq!(a.lost, 4);
        assert_eq!(a.rate_pps, 6.0);
        let ms = Duration::from_millis;
        assert_eq!(
            a.first_keyframe,
            Some(Summary {
                count: 4,
                p50: ms(20),
                p95: ms(40),
                max: ms(40)
            })
        );
        assert_eq!(a.setup.map(|s| (s.p50, s.max)), Some((ms(11), ms(13))));
        assert_eq!(a.viewer_pps, Some((1.5, 1.5, 1.5)));
        assert_eq!(rep.exit_code(), 2);
        assert_eq!(run(good).exit_code(), 0);
        assert_eq!(
            micros_per_packet(Duration::from_millis(30), 12),
            Some(2500.0)
        );
        assert_eq!(micros_per_packet(Duration::from_millis(30), 0), None);
    }

    #[test]
    fn json_and_text_carry_the_headline_figures() {
        let t0 = Instant::now();
        let v = ViewerReport::new(&outcome(0, t0), &tracks(t0, Duration::from_millis(40), 100));
        let rep = run(vec![v]);
        let j = rep.to_json();
        assert_eq!(j["viewers_ok"], 1);
        assert_eq!(j["packets"], 3);
        assert_eq!(j["lost"], 1);
        assert_eq!(j["first_keyframe_ms"]["p95"], 40.0);
        assert_eq!(j["edge"]["cpu_us_per_packet"], 10_000.0);
        assert_eq!(j["edge"]["steady"]["cpu_us_per_packet"], 2500.0);
        assert_eq!(j["edge"]["peak_rss_mib"], 20.0);
        assert_eq!(j["per_viewer"][0]["setup_ms"], 10.0);
        assert_eq!(j["socket_drops"], 0);
        let t = rep.to_text(false);
        assert!(t.contains("viewers         1 ok, 0 failed"), "{t}");
        assert!(
            t.contains("first keyframe  p50 40.0 ms, p95 40.0 ms, max 40.0 ms"),
            "{t}"
        );
        assert!(
            t.contains("edge            pid 42, CPU 0.03 s (1.5% of a core), 10000.00 us/packet, steady 2500.00 us/packet over the last 1.0 s, peak RSS 20.0 MiB"),
            "{t}"
        );
        assert!(t.contains("    0          3"), "{t}");
    }

    #[test]
    fn big_runs_show_only_the_interesting_viewers() {
        let t0 = Instant::now();
        let mut vs: Vec<ViewerReport> = (0..60)
            .map(|i| ViewerReport::new(&outcome(i, t0), &tracks(t0, Duration::from_millis(5), 100)))
            .collect();
        vs[17].lost = 99;
        vs[33].error = Some("streaming: the server closed the connection".into());
        let t = run(vs).to_text(false);
        assert!(t.contains("   17  "), "{t}");
        assert!(t.contains("   33  "), "{t}");
        assert!(
            t.contains("of 60 viewers: failed, most loss, slowest keyframe"),
            "{t}"
        );
        let rows = t.lines().filter(|l| l.ends_with(" ok")).count();
        assert!(rows < 15, "{rows} rows shown:\n{t}");
    }
}
