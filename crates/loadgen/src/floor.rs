//! `mediagate-loadgen floor`: the bare-loop baseline for the fan-out benchmark, and a
//! check that the load generator's UDP receive side keeps up.
//!
//! A sender thread plays the edge with nothing but `sendmmsg`: every frame interval it
//! sends each of N loopback viewers its share of a known packet rate (RTP packets with
//! per-viewer sequence numbers and an H.264 keyframe each second), one message per
//! datagram, or with `--gso` one `UDP_SEGMENT` message per viewer and frame. It sends
//! through `mediagate_udp::BatchSender`, the code the edge sends with, so the floor
//! and the edge pay for the same system calls. The viewers are the very sockets and
//! receiver threads `fanout --transport udp` uses.
//!
//! What it reports: the sender's CPU per packet (the floor an edge cannot beat with the
//! same system calls; on loopback it includes the receive path, which the kernel
//! charges to the sender), the receivers' CPU per packet, and whether every packet
//! arrived (sequence gaps, socket-buffer drops). What it does not: RTSP, or pacing
//! finer than one burst per frame.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mediagate_udp::{BatchSender, GsoMode, KERNEL_MAX_BATCH};
use serde_json::json;

use crate::procfs::Process;
use crate::sys;
use crate::track_stats::Codec;
use crate::udp_rx::DrainReport;
use crate::viewer_udp::{Receivers, ViewerPorts};

/// Options of `mediagate-loadgen floor`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FloorArgs {
    /// Receiving viewers (one UDP port pair each).
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Packets per second to each viewer.
    #[arg(long, default_value_t = 150)]
    pub pps: u32,
    /// Frames per second: packets go out in one burst per frame.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// RTP packet size in bytes, header included.
    #[arg(long, default_value_t = 1200)]
    pub size: usize,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Send each viewer's frame as one UDP GSO message (falls back if refused).
    #[arg(long)]
    pub gso: bool,
    #[command(flatten)]
    pub rx: crate::udp_rx::RxArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl FloorArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.viewers == 0 || self.viewers > crate::fanout::MAX_VIEWERS {
            bail!(
                "--viewers must be between 1 and {}",
                crate::fanout::MAX_VIEWERS
            );
        }
        if self.fps == 0 || self.fps > 1000 || self.pps == 0 || self.pps > 100_000 {
            bail!("--fps must be 1..=1000 and --pps 1..=100000");
        }
        if !(16..=1472).contains(&self.size) {
            bail!("--size must be between 16 and 1472 bytes (one Ethernet-sized datagram)");
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 3600.0) {
            bail!("--seconds must be more than 0 and at most 3600");
        }
        Ok(())
    }
}

/// Packets to send each viewer in frame `k`, so that frames 0..n carry
/// `floor(n * pps / fps)` packets in total: an exact long-run rate without drift.
pub(crate) fn packets_in_frame(k: u64, pps: u32, fps: u32) -> usize {
    let fps = u64::from(fps.max(1));
    let total = |n: u64| n.saturating_mul(u64::from(pps)) / fps;
    usize::try_from(total(k.saturating_add(1)) - total(k)).unwrap_or(0)
}

/// Writes the RTP packet `index` of frame `frame` into `buf` (its whole length is the
/// packet): H.264 FU-A fragments, the first of every `fps`-th frame an IDR start.
fn write_packet(buf: &mut [u8], seq: u16, ts: u32, frame: u64, index: usize, last: bool, fps: u32) {
    let marker = if last { 0x80 } else { 0 };
    let header = [
        0x80,
        marker | 96,
        (seq >> 8) as u8,
        seq as u8,
        (ts >> 24) as u8,
        (ts >> 16) as u8,
        (ts >> 8) as u8,
        ts as u8,
        0x4d,
        0x47,
        0x4c,
        0x47,
    ];
    let fu: [u8; 3] = match (index, frame % u64::from(fps.max(1)) == 0) {
        (0, true) => [0x7c, 0x85, 0x88], // FU-A start of an IDR slice, first_mb 0
        (0, false) => [0x7c, 0x81, 0x9a], // FU-A start of a non-IDR slice
        _ => [0x7c, 0x05, 0x00],         // middle fragment
    };
    for (dst, src) in buf.iter_mut().zip(header.iter().chain(fu.iter())) {
        *dst = *src;
    }
}

/// What the sender thread did.
#[derive(Debug, Clone, Copy, Default)]
struct SendFigures {
    packets: u64,
    syscalls: u64,
    cpu: Duration,
    late_frames: u64,
    gso_used: bool,
}

/// How long the sender waits when its socket buffer is full (never seen on loopback,
/// where the kernel frees a datagram's send-buffer charge as soon as it is delivered).
const WOULD_BLOCK_PAUSE: Duration = Duration::from_micros(100);

fn sender(
    dests: Vec<SocketAddr>,
    args: FloorArgs,
    start: Instant,
    end: Instant,
) -> anyhow::Result<SendFigures> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("sender socket")?;
    let mode = if args.gso {
        GsoMode::Auto
    } else {
        GsoMode::Off
    };
    // As many messages per call as the kernel takes: the floor is the cheapest way to
    // send, so it does not leave system calls on the table.
    let mut out = BatchSender::new(mode).with_max_batch(KERNEL_MAX_BATCH);
    let cpu0 = sys::thread_cpu_time();
    let frame_len = Duration::from_secs(1) / args.fps;
    let per_frame_max = packets_in_frame(0, args.pps, args.fps) + 1;
    let mut buf = vec![0u8; dests.len() * per_frame_max * args.size];
    let mut seqs = vec![0u16; dests.len()];
    let mut f = SendFigures::default();
    let mut frame = 0u64;
    loop {
        // Exact nanoseconds per frame index, so 30 fps for 10 s is 300 frames.
        let due =
            start + Duration::from_nanos(frame.saturating_mul(1_000_000_000) / u64::from(args.fps));
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > frame_len {
            f.late_frames += 1;
        }
        let k = packets_in_frame(frame, args.pps, args.fps);
        if k == 0 {
            frame += 1;
            continue;
        }
        let ts = (frame as u32).wrapping_mul(90_000 / args.fps);
        let used = dests.len() * k * args.size;
        for (v, chunk) in buf[..used].chunks_exact_mut(k * args.size).enumerate() {
            for (i, p) in chunk.chunks_exact_mut(args.size).enumerate() {
                write_packet(p, seqs[v], ts, frame, i, i + 1 == k, args.fps);
                seqs[v] = seqs[v].wrapping_add(1);
            }
        }
        // Each viewer its own numbered packets: one GSO message per viewer and frame,
        // or one message per datagram without GSO (or once the kernel refused it).
        let slices: Vec<&[u8]> = buf[..used].chunks_exact(args.size).collect();
        let items: Vec<(SocketAddr, &[&[u8]])> =
            dests.iter().copied().zip(slices.chunks_exact(k)).collect();
        let mut at = (0, 0);
        while at.0 < items.len() {
            let (report, next) = out.send_each_run(&sock, &items, at).context("sendmmsg")?;
            f.syscalls += report.syscalls as u64;
            f.packets += report.datagrams as u64;
            at = next;
            if report.would_block {
                std::thread::sleep(WOULD_BLOCK_PAUSE);
            }
        }
        frame += 1;
    }
    f.cpu = sys::thread_cpu_time().saturating_sub(cpu0);
    f.gso_used = out.gso_enabled();
    Ok(f)
}

/// Runs the measurement and prints it. Exit status 0 when every packet arrived, 2
/// otherwise.
pub(crate) fn run(args: FloorArgs) -> anyhow::Result<u8> {
    args.validate()?;
    let nofile = mediagate_udp::raise_nofile_limit().unwrap_or(1024);
    let needed = (args.viewers * 2 + 64) as u64;
    if nofile < needed {
        bail!("{needed} open files needed, the limit is {nofile}; raise it with `ulimit -n`");
    }
    let ports = ViewerPorts::bind(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        args.viewers,
        1,
        args.rx.rcvbuf,
    )
    .context("cannot bind the viewers' UDP ports")?;
    let all_ports = ports.all_ports()?;
    let dests: Vec<SocketAddr> = ports
        .rtp_addrs()?
        .into_iter()
        .filter_map(|v| v.first().copied())
        .collect();
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(args.seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let rx = Receivers::spawn(
        ports,
        &[Codec::H264],
        args.rx.rx_threads,
        Duration::from_micros(args.rx.rx_coalesce_us),
        end + Duration::from_secs(5),
        counter,
    )?;
    let sender_args = args.clone();
    let sent = std::thread::Builder::new()
        .name("floor-tx".into())
        .spawn(move || sender(dests, sender_args, start, end))?
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    // Let the last burst land before counting.
    std::thread::sleep(Duration::from_millis(200));
    let drops = Process::new(std::process::id()).udp_drops(&all_ports);
    let got = rx.finish()?;
    let (mut received, mut lost) = (0u64, 0u64);
    for t in got.viewers.iter().flatten() {
        received += t.packets;
        lost += t.seq_counts().lost;
    }
    let out = FloorReport {
        args,
        sent,
        received,
        lost,
        drops,
        drain: got.drain,
    };
    if out.args.json {
        println!("{}", out.to_json());
    } else {
        print!("{}", out.to_text());
    }
    Ok(if out.kept_up() { 0 } else { 2 })
}

struct FloorReport {
    args: FloorArgs,
    sent: SendFigures,
    received: u64,
    lost: u64,
    drops: u64,
    drain: DrainReport,
}

fn us_per(d: Duration, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        d.as_secs_f64() * 1e6 / n as f64
    }
}

impl FloorReport {
    fn kept_up(&self) -> bool {
        self.received == self.sent.packets && self.drops == 0
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "viewers": self.args.viewers,
            "pps_per_viewer": self.args.pps,
            "fps": self.args.fps,
            "size": self.args.size,
            "seconds": self.args.seconds,
            "gso_requested": self.args.gso,
            "gso_used": self.sent.gso_used,
            "sent": self.sent.packets,
            "sendmmsg_calls": self.sent.syscalls,
            "late_frames": self.sent.late_frames,
            "sender_cpu_seconds": self.sent.cpu.as_secs_f64(),
            "sender_us_per_packet": us_per(self.sent.cpu, self.sent.packets),
            "received": self.received,
            "lost": self.lost,
            "socket_drops": self.drops,
            "truncated": self.drain.truncated,
            "recvmmsg_calls": self.drain.recv_calls,
            "wakeups": self.drain.wakeups,
            "receiver_cpu_seconds": self.drain.cpu.as_secs_f64(),
            "receiver_us_per_packet": us_per(self.drain.cpu, self.received),
            "kept_up": self.kept_up(),
        })
    }

    fn to_text(&self) -> String {
        let s = &self.sent;
        let mode = match (self.args.gso, s.gso_used) {
            (false, _) => "sendmmsg, one message per datagram",
            (true, true) => "sendmmsg with UDP GSO, one message per viewer and frame",
            (true, false) => "sendmmsg (GSO refused by the kernel: one message per datagram)",
        };
        format!(
            "floor: {} loopback viewers x {} packets/s of {} bytes, {} frames/s, {:.1} s\n\
             sender    {mode}: {} packets in {} calls, CPU {:.2} s = {:.2} us/packet{}\n\
             receivers {} packets, {} lost, {} socket drops, {} truncated; CPU {:.2} s = {:.2} us/packet \
             ({:.1} packets per recvmmsg)\n\
             verdict   {}\n",
            self.args.viewers,
            self.args.pps,
            self.args.size,
            self.args.fps,
            self.args.seconds,
            s.packets,
            s.syscalls,
            s.cpu.as_secs_f64(),
            us_per(s.cpu, s.packets),
            if s.late_frames > 0 {
                format!(" ({} frames sent late)", s.late_frames)
            } else {
                String::new()
            },
            self.received,
            self.lost,
            self.drops,
            self.drain.truncated,
            self.drain.cpu.as_secs_f64(),
            us_per(self.drain.cpu, self.received),
            self.received as f64 / self.drain.recv_calls.max(1) as f64,
            if self.kept_up() {
                "the receive side kept up: every packet sent arrived"
            } else {
                "packets missing: the receive side (or the sender) did not keep up"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtp::{h264, RtpPacket};

    #[test]
    fn frames_carry_the_exact_rate() {
        let per: Vec<usize> = (0..30).map(|k| packets_in_frame(k, 150, 30)).collect();
        assert!(per.iter().all(|&n| n == 5));
        let total: usize = (0..30).map(|k| packets_in_frame(k, 100, 30)).sum();
        assert_eq!(total, 100);
        let total: usize = (0..60).map(|k| packets_in_frame(k, 7, 30)).sum();
        assert_eq!(total, 14);
        assert_eq!(packets_in_frame(u64::MAX, 150, 30), 0, "no overflow panic");
    }

    #[test]
    fn packets_are_rtp_with_a_keyframe_each_second() {
        let mut b = [0u8; 40];
        write_packet(&mut b, 513, 90_000, 30, 0, false, 30);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(
            (p.sequence_number(), p.timestamp(), p.marker()),
            (513, 90_000, false)
        );
        assert!(h264::is_keyframe_start(p.payload()));
        write_packet(&mut b, 514, 93_000, 31, 0, true, 30);
        let p = RtpPacket::parse(&b).unwrap();
        assert!(p.marker());
        assert!(!h264::is_keyframe_start(p.payload()));
    }

    /// 20 viewers, 2 packets of 200 bytes per frame, 15 frames.
    fn small_run(gso: bool) -> FloorArgs {
        FloorArgs {
            viewers: 20,
            pps: 60,
            fps: 30,
            size: 200,
            seconds: 0.5,
            gso,
            rx: crate::udp_rx::RxArgs {
                rx_threads: 1,
                rcvbuf: 1 << 20,
                rx_coalesce_us: 0,
            },
            json: true,
        }
    }

    /// Runs the sender alone for 15 frames of 2 packets to 20 bound sockets.
    fn send_fifteen_frames(gso: bool) -> (SendFigures, Vec<UdpSocket>) {
        let rx: Vec<UdpSocket> = (0..20)
            .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
            .collect();
        let dests = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let args = small_run(gso);
        let start = Instant::now();
        // Frames are due every 1/30 s from `start`; the 16th would be due at `end`.
        let end = start + Duration::from_millis(500);
        (sender(dests, args, start, end).unwrap(), rx)
    }

    #[test]
    fn the_sender_sends_each_viewer_its_numbered_packets_in_one_call_per_frame() {
        for gso in [false, true] {
            let (f, rx) = send_fifteen_frames(gso);
            let gso_here = BatchSender::new(GsoMode::Auto).gso_enabled();
            assert_eq!(
                (f.packets, f.syscalls, f.gso_used),
                (600, 15, gso && gso_here),
                "gso {gso}"
            );
            for s in &rx {
                s.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 300];
                let mut seqs = Vec::new();
                while let Ok(n) = s.recv(&mut buf) {
                    assert_eq!(n, 200);
                    seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
                }
                assert_eq!(seqs, (0..30).collect::<Vec<u16>>(), "gso {gso}");
            }
        }
    }

    #[test]
    fn a_small_floor_run_delivers_everything() {
        assert_eq!(run(small_run(true)).unwrap(), 0);
    }
}
