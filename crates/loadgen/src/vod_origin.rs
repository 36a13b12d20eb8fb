//! `mediagate-loadgen vod-origin`: an on-demand RTSP origin that sends a generated
//! clip as fast as the connection takes it, the origin of the cache's fill-rate
//! benchmark (issue 13: a fill writes at least 200 MB/s when the origin sends faster
//! than real time). gst-rtsp-server cannot be that origin: it answers `Speed` but
//! scales the RTP timestamps, which the edge's prefetch rightly refuses to store.
//!
//! The clip: one H.264 track (90 kHz), `--seconds` long at `--mbps`, 25 frames a
//! second, each frame FU-A packets of `--packet-size` bytes, an IDR frame each second
//! (what the edge's keyframe index looks for), `a=range:npt=0-SECONDS`.
//!
//! It answers OPTIONS, DESCRIBE, SETUP (TCP interleaved only; UDP is 461), PLAY
//! (`Range` from the keyframe at or before its start; `RTP-Info` with the first seq
//! and rtptime), PAUSE, GET_PARAMETER, SET_PARAMETER and TEARDOWN. A PLAY with
//! `Speed` above 1 is answered with that `Speed` and streamed unpaced, timestamps in
//! media time (RFC 7826 §18.50); without, it is paced in real time, so viewers can
//! play it too. The end of the clip is an RTCP BYE on the track's RTCP channel.
//!
//! What it does not: UDP, several tracks, Scale, or checking what it is asked: it is
//! a benchmark peer, not a server to test a client against.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use mediagate_rtsp::headers::Range;
use mediagate_rtsp::parse::{Decoder, Limits};
use mediagate_rtsp::{Item, Method, Request, Response, StatusCode, TypedHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const FPS: u64 = 25;
const CLOCK: u64 = 90_000;
const TICKS_PER_FRAME: u64 = CLOCK / FPS;
const SSRC: u32 = 0x5EED_0001;
/// Bytes written to the socket at once while unpaced.
const WRITE_CHUNK: usize = 256 * 1024;

/// Options of `mediagate-loadgen vod-origin`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct VodOriginArgs {
    /// Address to listen on, IP:PORT.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Length of the clip in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Its bit rate in megabits per second.
    #[arg(long, default_value_t = 20)]
    pub mbps: u64,
    /// RTP packet size in bytes (header included).
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u64).range(64..=65_000))]
    pub packet_size: u64,
}

/// The clip's shape, derived from the options.
#[derive(Debug, Clone, Copy)]
struct Clip {
    frames: u64,
    packets_per_frame: u64,
    packet_size: usize,
}

impl Clip {
    fn new(a: &VodOriginArgs) -> Clip {
        let bytes_per_frame = a.mbps * 1_000_000 / 8 / FPS;
        Clip {
            frames: a.seconds * FPS,
            packets_per_frame: bytes_per_frame.div_ceil(a.packet_size).max(1),
            packet_size: usize::try_from(a.packet_size).unwrap_or(1400),
        }
    }

    fn sdp(&self) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=vod-origin\r\nt=0 0\r\na=control:*\r\n\
             a=range:npt=0-{}\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1;profile-level-id=42c01e;sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==\r\n\
             a=control:trackID=0\r\n",
            self.frames / FPS
        )
    }
}

/// Serves until killed.
pub(crate) fn run(args: VodOriginArgs) -> anyhow::Result<u8> {
    let clip = Clip::new(&args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let l = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!(
            "vod-origin: listening on {} ({} s, {} Mbit/s, {} packets of {} B a frame)",
            args.listen, args.seconds, args.mbps, clip.packets_per_frame, clip.packet_size
        );
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(serve(s, clip));
        }
    })
}

/// What the reading half tells the writing half.
enum Out {
    Reply(Bytes),
    /// Start streaming at `frame`, its first packet numbered `seq`, unpaced when
    /// `fast`, after the reply.
    Play {
        reply: Bytes,
        frame: u64,
        seq: u16,
        fast: bool,
    },
    /// Stop streaming, after the reply.
    Stop(Bytes),
}

async fn serve(s: TcpStream, clip: Clip) {
    let _ = s.set_nodelay(true);
    let (mut rd, wr) = s.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(wr, rx, clip));
    let mut dec = Decoder::new(Limits::default());
    let mut session = Session::default();
    'conn: loop {
        loop {
            match dec.next_item() {
                Ok(Some(Item::Request(req))) => {
                    if tx.send(session.answer(&req, &clip)).is_err() {
                        break 'conn;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'conn,
            }
        }
        let buf = dec.buffer_mut();
        buf.reserve(16 * 1024);
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    writer.abort();
}

/// Where the connection's one session is.
#[derive(Debug, Default)]
struct Session {
    /// The next RTP sequence number (carried across PLAYs, as a server's would).
    seq: u16,
}

impl Session {
    fn answer(&mut self, req: &Request, clip: &Clip) -> Out {
        let mut r = Response::reply_to(req, StatusCode::OK);
        if let Some(s) = req.headers.get("Session") {
            r.headers.append("Session", s.to_owned());
        }
        match req.method {
            Method::Options => r.headers.append(
                "Public",
                "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
            ),
            Method::Describe => {
                r.headers.append(
                    "Content-Base",
                    format!("{}/", req.uri.trim_end_matches('/')),
                );
                r.set_body("application/sdp", clip.sdp());
            }
            Method::Setup => {
                let t = req.headers.get("Transport").unwrap_or("");
                if !t.contains("interleaved") {
                    r.set_status(StatusCode::UNSUPPORTED_TRANSPORT);
                } else {
                    if req.headers.get("Session").is_none() {
                        r.headers.append("Session", "5eed0001;timeout=60");
                    }
                    r.headers.append("Transport", t.to_owned());
                }
            }
            Method::Play => {
                let from_ms = req
                    .headers
                    .get("Range")
                    .and_then(|v| Range::parse_value(v).ok())
                    .and_then(|r| r.npt_start_millis())
                    .unwrap_or(0);
                // From the keyframe (a whole second) at or before the asked time.
                let frame = (from_ms / 1000 * FPS).min(clip.frames);
                let speed = req
                    .headers
                    .get("Speed")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| *s > 1.0);
                r.headers.append(
                    "Range",
                    format!("npt={}-{}", frame / FPS, clip.frames / FPS),
                );
                if let Some(s) = speed {
                    r.headers.append("Speed", format!("{s:.1}"));
                }
                r.headers.append(
                    "RTP-Info",
                    format!(
                        "url={}/trackID=0;seq={};rtptime={}",
                        req.uri.trim_end_matches('/'),
                        self.seq,
                        rtptime(frame)
                    ),
                );
                let mut reply = BytesMut::new();
                r.write_to(&mut reply);
                // The packets the writer sends for the frames ahead.
                let sent = (clip.frames - frame) * clip.packets_per_frame;
                let first = self.seq;
                self.seq = first.wrapping_add((sent & 0xffff) as u16);
                return Out::Play {
                    reply: reply.freeze(),
                    frame,
                    seq: first,
                    fast: speed.is_some(),
                };
            }
            Method::Pause | Method::Teardown => {
                let mut reply = BytesMut::new();
                r.write_to(&mut reply);
                return Out::Stop(reply.freeze());
            }
            Method::GetParameter | Method::SetParameter => {}
            _ => r.set_status(StatusCode::NOT_IMPLEMENTED),
        }
        let mut reply = BytesMut::new();
        r.write_to(&mut reply);
        Out::Reply(reply.freeze())
    }
}

fn rtptime(frame: u64) -> u32 {
    (frame * TICKS_PER_FRAME) as u32
}

/// Writes replies and, between them, the clip's packets.
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    clip: Clip,
) {
    // (next frame, seq of its first packet, unpaced, wall time of `start_frame`, start_frame)
    let mut playing: Option<(u64, u16, bool, Instant, u64)> = None;
    let mut buf = BytesMut::with_capacity(WRITE_CHUNK + 2 * clip.packet_size);
    loop {
        let msg = if playing.is_some() {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv().await {
                Some(m) => Some(m),
                None => return,
            }
        };
        if let Some(m) = msg {
            let reply = match m {
                Out::Reply(r) => r,
                Out::Stop(r) => {
                    playing = None;
                    r
                }
                Out::Play {
                    reply,
                    frame,
                    seq,
                    fast,
                } => {
                    playing = Some((frame, seq, fast, Instant::now(), frame));
                    reply
                }
            };
            if wr.write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        let Some((frame, seq, fast, wall0, start)) = playing.as_mut() else {
            continue;
        };
        if *frame >= clip.frames {
            bye(&mut buf);
            let _ = wr.write_all(&buf).await;
            buf.clear();
            playing = None;
            continue;
        }
        if !*fast {
            let due = *wall0 + Duration::from_millis((*frame - *start) * 1000 / FPS);
            tokio::time::sleep_until(due).await;
        }
        while *frame < clip.frames && buf.len() < WRITE_CHUNK {
            frame_packets(&clip, *frame, seq, &mut buf);
            *frame += 1;
            if !*fast {
                break;
            }
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

/// Appends frame `frame`'s packets, interleaved on channel 0, numbered from `seq`.
fn frame_packets(clip: &Clip, frame: u64, seq: &mut u16, out: &mut BytesMut) {
    let idr = frame % FPS == 0;
    let nal_type: u8 = if idr { 5 } else { 1 };
    let n = clip.packets_per_frame;
    for i in 0..n {
        let len = clip.packet_size;
        out.put_u8(b'$');
        out.put_u8(0);
        out.put_u16(len as u16);
        let last = i + 1 == n;
        out.put_u8(0x80);
        out.put_u8(96 | if last { 0x80 } else { 0 });
        out.put_u16(*seq);
        out.put_u32(rtptime(frame));
        out.put_u32(SSRC);
        // FU-A (RFC 6184 §5.8): indicator NRI 3 type 28; header S/E bits and the
        // NAL type, so the first packet of an IDR frame is a keyframe start.
        out.put_u8(0x7c);
        let start = if i == 0 { 0x80 } else { 0 };
        let end = if last { 0x40 } else { 0 };
        out.put_u8(start | end | nal_type);
        out.put_bytes(0xab, len - 14);
        *seq = seq.wrapping_add(1);
    }
}

/// Appends an RTCP receiver report and BYE on channel 1: the end of the clip.
fn bye(out: &mut BytesMut) {
    let mut b = [0u8; 64];
    let mut w = mediagate_rtp::rtcp::build::CompoundWriter::new(&mut b);
    let built = w
        .receiver_report(SSRC, &[])
        .and_then(|w| w.bye(&[SSRC], Some(b"end of clip")))
        .is_ok();
    let n = if built { w.finish().unwrap_or(0) } else { 0 };
    out.put_u8(b'$');
    out.put_u8(1);
    out.put_u16(n as u16);
    out.put_slice(&b[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtsp::Version;

    fn args() -> VodOriginArgs {
        VodOriginArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            seconds: 4,
            mbps: 2,
            packet_size: 1000,
        }
    }

    #[test]
    fn frames_are_fu_a_packets_with_an_idr_each_second() {
        let clip = Clip::new(&args());
        // 2 Mbit/s at 25 frames/s: 10,000 B a frame, 10 packets of 1,000 B.
        assert_eq!(clip.packets_per_frame, 10);
        let mut seq = 65_530;
        let mut out = BytesMut::new();
        frame_packets(&clip, 25, &mut seq, &mut out);
        assert_eq!(out.len(), 10 * 1004);
        assert_eq!(seq, 4, "wraps");
        let first = &out[4..1004];
        let p = mediagate_rtp::RtpPacket::parse(first).unwrap();
        assert_eq!((p.sequence_number(), p.timestamp()), (65_530, 90_000));
        assert!(mediagate_rtp::Codec::H264.is_keyframe_start_packet(first));
        let last = &out[9 * 1004 + 4..];
        assert!(mediagate_rtp::RtpPacket::parse(last).unwrap().marker());
        let mut out = BytesMut::new();
        frame_packets(&clip, 26, &mut seq, &mut out);
        assert!(!mediagate_rtp::Codec::H264.is_keyframe_start_packet(&out[4..1004]));
    }

    #[test]
    fn play_answers_from_the_second_before_with_speed_and_rtp_info() {
        let clip = Clip::new(&args());
        let mut s = Session::default();
        let mut req = Request::new(Method::Play, "rtsp://o/clip", Version::Rtsp1_0);
        req.headers.append("CSeq", "3");
        req.headers.append("Range", "npt=2.5-");
        req.headers.append("Speed", "50");
        let Out::Play {
            reply,
            frame,
            seq,
            fast,
        } = s.answer(&req, &clip)
        else {
            panic!("not a PLAY");
        };
        assert!(fast);
        assert_eq!((frame, seq), (50, 0));
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("Range: npt=2-4\r\n"), "{text}");
        assert!(text.contains("Speed: 50.0\r\n"), "{text}");
        assert!(
            text.contains("RTP-Info: url=rtsp://o/clip/trackID=0;seq=0;rtptime=180000\r\n"),
            "{text}"
        );
        let mut udp = Request::new(Method::Setup, "rtsp://o/clip/trackID=0", Version::Rtsp1_0);
        udp.headers.append("CSeq", "4");
        udp.headers
            .append("Transport", "RTP/AVP;unicast;client_port=5000-5001");
        let Out::Reply(r) = s.answer(&udp, &clip) else {
            panic!("not a reply");
        };
        assert!(r.starts_with(b"RTSP/1.0 461"), "{r:?}");
    }
}
