//! The media pump of `mediagate-loadgen rtp`: paced RTP out of every call's sockets,
//! and exact delivery, order and latency accounting of what comes back.
//!
//! Socket `j` (caller `2i`, callee `2i+1`) sends stream `j` and receives stream `j ^ 1`.
//! Each packet is a 12-byte RTP header (SSRC = stream number) and a payload starting
//! with the send time and a per-stream counter, so the receiver needs no shared state
//! with the sender.
//!
//! Latency is kernel arrival minus send time, both on the wall clock
//! (`CLOCK_REALTIME`, ns since the Unix epoch; the same clock at both ends, since the
//! phones live in this one process): the send time is read right before `send_to`,
//! the arrival is the kernel's receive timestamp (`SO_TIMESTAMPNS`) of that datagram,
//! taken before the receiver thread runs. So the figure is the relay's path (plus the
//! loopback stack's), not the load generator's scheduling, and the receiver may batch
//! its reads ([`RX_COALESCE`]). When the kernel gives no timestamp (it refused the
//! option, or a datagram came without one) that datagram's arrival is the receiver's
//! wake-up time instead, which includes its own delay; [`PumpReport::wakeup_stamped`]
//! counts those and [`PumpReport::kernel_timestamps`] says whether the whole figure
//! is the kernel's. A step of the system clock during a run (NTP) skews the figure.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Call;
use crate::udp_rx::{Arrival, SocketSet};

/// RTP header plus send time and counter.
pub(super) const MIN_SIZE: usize = 12 + 8 + 4;
/// Latency histogram resolution: 1 µs buckets up to this many µs, then one overflow.
const HIST_US: usize = 200_000;
/// How long to keep receiving after the last send once nothing more arrives.
const GRACE: Duration = Duration::from_millis(500);
/// Receiver pause after each wake-up that found datagrams, so that one wake-up reads
/// many sockets' packets and the thread costs less per packet. Safe for the latency
/// figure because arrival is the kernel's receive time, taken before the thread reads;
/// the pause only delays reading. Safe for loss because a socket gets one packet per
/// `1/pps` (20 ms at 50 pps), far more than the pause, so nothing piles up in its
/// receive buffer. Without kernel timestamps the pump does not pause.
pub(super) const RX_COALESCE: Duration = Duration::from_micros(500);

/// How to pump.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub pps: u32,
    pub size: usize,
    pub duration: Duration,
}

/// What the pump measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct PumpReport {
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
    /// Whether every latency sample is kernel arrival minus send time. `false` when
    /// the kernel refused receive timestamps or some datagram came without one.
    pub kernel_timestamps: bool,
    /// Received packets whose arrival is the receiver thread's wake-up time (no
    /// kernel timestamp): their latency includes the load generator's own delay.
    pub wakeup_stamped: u64,
}

impl PumpReport {
    /// Latency percentile in µs (nearest rank over the histogram).
    pub(crate) fn latency_us(&self, pct: f64) -> u64 {
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

/// `t` in ns since the Unix epoch; 0 before it, saturating far after it.
fn wall_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Latency in µs of a packet sent at `sent_ns` (wall clock), and whether it was
/// measured from the receiver's wake-up because the kernel gave no timestamp.
fn latency_us(sent_ns: u64, arrival: &Arrival) -> (u64, bool) {
    let arrived_ns = wall_ns(arrival.wall());
    (
        arrived_ns.saturating_sub(sent_ns) / 1000,
        arrival.kernel.is_none(),
    )
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
    wakeup_stamped: u64,
}

/// After the last send: returns once every sent packet has been received, or once
/// `GRACE` has passed with none arriving, or after `cap` at most. A fixed wait would
/// cut off packets still queued on a loaded machine and count them as lost.
fn wait_for_stragglers(received: &AtomicU64, sent: u64, cap: Duration) {
    let begun = Instant::now();
    let mut seen = received.load(Ordering::Relaxed);
    let mut last_change = begun;
    loop {
        let now = Instant::now();
        let count = received.load(Ordering::Relaxed);
        if count >= sent || now - begun >= cap {
            return;
        }
        if count != seen {
            seen = count;
            last_change = now;
        } else if now - last_change >= GRACE {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pumps media through every call for `plan.duration`.
pub(super) fn run(calls: &[Call], plan: &Plan) -> anyhow::Result<PumpReport> {
    let streams = calls.len() * 2;
    let mut set = SocketSet::new()?;
    for c in calls {
        for s in &c.sockets {
            set.add(s.try_clone()?)?;
        }
    }
    // Without kernel timestamps arrival is the wake-up time, which a pause would
    // delay: then read as soon as anything arrives, as before.
    let timestamps = set.enable_kernel_timestamps().is_ok();
    if timestamps {
        set.set_coalesce(RX_COALESCE);
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let receiver = {
        let stop = Arc::clone(&stop);
        let progress = Arc::clone(&progress);
        // Only a backstop: the sender stops the receiver (`wait_for_stragglers`), and
        // on a loaded machine the sender itself may run past `plan.duration`.
        let deadline = start + plan.duration + Duration::from_secs(60);
        std::thread::Builder::new().name("rtp-rx".into()).spawn(
            move || -> anyhow::Result<Receiver> {
                let mut r = Receiver {
                    highest: vec![None; streams],
                    received: 0,
                    reordered: 0,
                    misrouted: 0,
                    histogram: vec![0; HIST_US + 1],
                    max_us: 0,
                    wakeup_stamped: 0,
                };
                set.drain_stamped_until(&stop, deadline, &progress, |token, data, arrival| {
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
                    let (us, woke) = latency_us(sent_ns, &arrival);
                    r.wakeup_stamped += u64::from(woke);
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
                let sent_ns = wall_ns(SystemTime::now());
                packet(&mut buf, stream, tick as u32, sent_ns);
                match socket.send_to(&buf, *dest) {
                    Ok(_) => sent += 1,
                    Err(_) => send_errors += 1,
                }
            }
        }
    }
    let pumped = start.elapsed();
    wait_for_stragglers(&progress, sent, Duration::from_secs(4));
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
        kernel_timestamps: timestamps && r.wakeup_stamped == 0,
        wakeup_stamped: r.wakeup_stamped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stragglers_are_awaited_while_they_arrive_and_not_once_all_are_in() {
        let received = AtomicU64::new(10);
        let t = Instant::now();
        wait_for_stragglers(&received, 10, Duration::from_secs(4));
        assert!(t.elapsed() < Duration::from_millis(100), "all in: no wait");

        let t = Instant::now();
        wait_for_stragglers(&received, 11, Duration::from_secs(4));
        let quiet = t.elapsed();
        assert!(quiet >= GRACE && quiet < GRACE * 3, "{quiet:?}");

        // Packets trickling in for longer than GRACE keep it waiting until the last.
        let received = Arc::new(AtomicU64::new(0));
        let feeder = {
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                for _ in 0..8 {
                    std::thread::sleep(GRACE / 4);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let t = Instant::now();
        wait_for_stragglers(&received, 8, Duration::from_secs(10));
        feeder.join().unwrap();
        assert_eq!(received.load(Ordering::Relaxed), 8);
        assert!(t.elapsed() >= GRACE * 2, "{:?}", t.elapsed());

        let t = Instant::now();
        wait_for_stragglers(&AtomicU64::new(0), 1, GRACE / 2);
        assert!(t.elapsed() < GRACE, "the cap bounds the wait");
    }

    #[test]
    fn packet_round_trip() {
        let mut b = vec![0u8; 172];
        packet(&mut b, 7, 70_000, 123_456_789);
        assert_eq!(read_packet(&b), Some((7, 123_456_789, 70_000)));
        assert_eq!(&b[2..4], &(70_000u32 as u16).to_be_bytes());
        assert_eq!(read_packet(&b[..10]), None);
    }

    #[test]
    fn latency_is_kernel_arrival_minus_send_time() {
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        let sent = 1_700_000_000_000_000_000;
        let kernel = Arrival {
            woke: Instant::now(),
            woke_wall: at(sent + 9_000_000),
            kernel: Some(at(sent + 123_999)),
        };
        // The wake-up 9 ms later does not count; ns are truncated to whole µs.
        assert_eq!(latency_us(sent, &kernel), (123, false));
        let fallback = Arrival {
            kernel: None,
            ..kernel
        };
        assert_eq!(latency_us(sent, &fallback), (9_000, true));
        // Arrival before the send time (a clock step) is 0, not a wrap.
        let early = Arrival {
            kernel: Some(at(sent - 5)),
            ..kernel
        };
        assert_eq!(latency_us(sent, &early), (0, false));
        assert_eq!(wall_ns(at(sent)), sent);
        assert_eq!(wall_ns(UNIX_EPOCH - Duration::from_secs(1)), 0);
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
