//! The media pump of `mediagate-loadgen rtp`: paced RTP out of every call's sockets,
//! and exact delivery, order and latency accounting of what comes back.
//!
//! Socket `j` (caller `2i`, callee `2i+1`) sends stream `j` and receives stream `j ^ 1`.
//! Each packet is a 12-byte RTP header (SSRC = stream number) and a payload starting
//! with the send time (ns since the pump started) and a per-stream counter, so the
//! receiver needs no shared state with the sender.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Call;
use crate::udp_rx::SocketSet;

/// RTP header plus send time and counter.
pub const MIN_SIZE: usize = 12 + 8 + 4;
/// Latency histogram resolution: 1 µs buckets up to this many µs, then one overflow.
const HIST_US: usize = 200_000;
/// How long to keep receiving after the last send.
const GRACE: Duration = Duration::from_millis(500);

/// How to pump.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub pps: u32,
    pub size: usize,
    pub duration: Duration,
}

/// What the pump measured.
#[derive(Debug, Clone, Default)]
pub struct PumpReport {
    pub seconds: f64,
    pub sent: u64,
    pub send_errors: u64,
    pub received: u64,
    /// Packets that arrived after a later one of the same stream.
    pub reordered: u64,
    /// Packets whose SSRC was not the stream the socket expects (crossed calls).
    pub misrouted: u64,
    /// Latency histogram, 1 µs buckets; the last bucket is everything above.
    pub histogram: Vec<u64>,
    pub latency_max_us: u64,
}

impl PumpReport {
    /// Latency percentile in µs (nearest rank over the histogram).
    pub fn latency_us(&self, pct: f64) -> u64 {
        let total: u64 = self.histogram.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((pct / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (us, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return us as u64;
            }
        }
        self.latency_max_us
    }
}

fn packet(buf: &mut [u8], stream: u32, counter: u32, sent_ns: u64) {
    let seq = (counter & 0xffff) as u16;
    if let Some(h) = buf.get_mut(..MIN_SIZE) {
        h[0] = 0x80;
        h[1] = 8;
        h[2..4].copy_from_slice(&seq.to_be_bytes());
        h[4..8].copy_from_slice(&counter.wrapping_mul(160).to_be_bytes());
        h[8..12].copy_from_slice(&stream.to_be_bytes());
        h[12..20].copy_from_slice(&sent_ns.to_be_bytes());
        h[20..24].copy_from_slice(&counter.to_be_bytes());
    }
}

fn read_packet(data: &[u8]) -> Option<(u32, u64, u32)> {
    let word = |r: std::ops::Range<usize>| data.get(r);
    let stream = u32::from_be_bytes(word(8..12)?.try_into().ok()?);
    let sent_ns = u64::from_be_bytes(word(12..20)?.try_into().ok()?);
    let counter = u32::from_be_bytes(word(20..24)?.try_into().ok()?);
    Some((stream, sent_ns, counter))
}

struct Receiver {
    highest: Vec<Option<u32>>,
    received: u64,
    reordered: u64,
    misrouted: u64,
    histogram: Vec<u64>,
    max_us: u64,
}

/// Pumps media through every call for `plan.duration`.
pub fn run(calls: &[Call], plan: &Plan) -> anyhow::Result<PumpReport> {
    let streams = calls.len() * 2;
    let mut set = SocketSet::new()?;
    for c in calls {
        for s in &c.sockets {
            set.add(s.try_clone()?)?;
        }
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let receiver = {
        let stop = Arc::clone(&stop);
        let progress = Arc::clone(&progress);
        let deadline = start + plan.duration + GRACE + Duration::from_secs(5);
        std::thread::Builder::new().name("rtp-rx".into()).spawn(
            move || -> anyhow::Result<Receiver> {
                let mut r = Receiver {
                    highest: vec![None; streams],
                    received: 0,
                    reordered: 0,
                    misrouted: 0,
                    histogram: vec![0; HIST_US + 1],
                    max_us: 0,
                };
                set.drain_until(&stop, deadline, &progress, |token, data, arrival| {
                    let Some((stream, sent_ns, counter)) = read_packet(data) else {
                        r.misrouted += 1;
                        return false;
                    };
                    if stream as usize != (token ^ 1) {
                        r.misrouted += 1;
                        return false;
                    }
                    r.received += 1;
                    if let Some(h) = r.highest.get_mut(stream as usize) {
                        match h {
                            Some(top) if counter < *top => r.reordered += 1,
                            _ => *h = Some(counter),
                        }
                    }
                    let arrived_ns = arrival.saturating_duration_since(start).as_nanos() as u64;
                    let us = arrived_ns.saturating_sub(sent_ns) / 1000;
                    r.max_us = r.max_us.max(us);
                    let bucket = (us as usize).min(HIST_US);
                    if let Some(b) = r.histogram.get_mut(bucket) {
                        *b += 1;
                    }
                    true
                })?;
                Ok(r)
            },
        )?
    };
    // Sender: every stream once per interval, spread evenly across it.
    let interval = Duration::from_secs(1) / plan.pps;
    let ticks = (plan.duration.as_secs_f64() * f64::from(plan.pps)).round() as u64;
    let mut buf = vec![0x55u8; plan.size];
    let (mut sent, mut send_errors) = (0u64, 0u64);
    let sockets: Vec<(&UdpSocket, std::net::SocketAddr)> = calls
        .iter()
        .flat_map(|c| c.sockets.iter().zip(c.relay_ports))
        .collect();
    const CHUNK: usize = 32;
    for tick in 0..ticks {
        let tick_start = interval * u32::try_from(tick).unwrap_or(u32::MAX);
        for (chunk_no, chunk) in sockets.chunks(CHUNK).enumerate() {
            let offset = interval.mul_f64((chunk_no * CHUNK) as f64 / streams as f64);
            let due = start + tick_start + offset;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            for (k, (socket, dest)) in chunk.iter().enumerate() {
                let stream = (chunk_no * CHUNK + k) as u32;
                let sent_ns = start.elapsed().as_nanos() as u64;
                packet(&mut buf, stream, tick as u32, sent_ns);
                match socket.send_to(&buf, *dest) {
                    Ok(_) => sent += 1,
                    Err(_) => send_errors += 1,
                }
            }
        }
    }
    let pumped = start.elapsed();
    std::thread::sleep(GRACE);
    stop.store(true, Ordering::Relaxed);
    let r = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
    Ok(PumpReport {
        seconds: pumped.as_secs_f64(),
        sent,
        send_errors,
        received: r.received,
        reordered: r.reordered,
        misrouted: r.misrouted,
        histogram: r.histogram,
        latency_max_us: r.max_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_round_trip() {
        let mut b = vec![0u8; 172];
        packet(&mut b, 7, 70_000, 123_456_789);
        assert_eq!(read_packet(&b), Some((7, 123_456_789, 70_000)));
        assert_eq!(&b[2..4], &(70_000u32 as u16).to_be_bytes());
        assert_eq!(read_packet(&b[..10]), None);
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let mut r = PumpReport {
            histogram: vec![0; 10],
            latency_max_us: 9,
            ..PumpReport::default()
        };
        r.histogram[1] = 90;
        r.histogram[5] = 9;
        r.histogram[9] = 1;
        assert_eq!(r.latency_us(50.0), 1);
        assert_eq!(r.latency_us(90.0), 1);
        assert_eq!(r.latency_us(99.0), 5);
        assert_eq!(r.latency_us(100.0), 9);
    }
}
