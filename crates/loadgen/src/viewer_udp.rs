//! The UDP receive side of many simulated RTSP viewers: an RTP/RTCP port pair per
//! viewer and track (RFC 3550 §11: RTP on an even port, RTCP on the next), and a few
//! receiver threads that drain them all into per-track [`TrackStats`].
//!
//! What it does not: RTSP (the viewer tasks do that and announce these ports in
//! `client_port`), or sending RTCP receiver reports (viewers keep their sessions
//! alive with RTSP keep-alives instead, which is enough for a benchmark).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::track_stats::{Codec, TrackStats};
use crate::udp_rx::{DrainReport, SocketSet};

/// Attempts at finding an even port whose successor is also free.
const PAIR_ATTEMPTS: usize = 200;

/// An RTP socket on an even port and the RTCP socket on the port after it.
#[derive(Debug)]
pub(crate) struct PortPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl PortPair {
    /// Binds a pair on `ip`, with a receive buffer of `rcvbuf` bytes on the RTP socket.
    pub(crate) fn bind(ip: IpAddr, rcvbuf: usize) -> io::Result<PortPair> {
        for _ in 0..PAIR_ATTEMPTS {
            let first = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            let port = first.local_addr()?.port();
            // Pair the ephemeral port with its even/odd neighbour, whichever it lacks.
            let pair = if port % 2 == 0 {
                port.checked_add(1)
                    .and_then(|p| UdpSocket::bind(SocketAddr::new(ip, p)).ok())
                    .map(|rtcp| (first, rtcp))
            } else {
                UdpSocket::bind(SocketAddr::new(ip, port - 1))
                    .ok()
                    .map(|rtp| (rtp, first))
            };
            if let Some((rtp, rtcp)) = pair {
                mediagate_udp::set_recv_buffer(&rtp, rcvbuf)?;
                return Ok(PortPair { rtp, rtcp });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free even/odd UDP port pair on {ip} after {PAIR_ATTEMPTS} attempts"),
        ))
    }

    /// The RTP port (the RTCP port is one more).
    pub(crate) fn rtp_port(&self) -> io::Result<u16> {
        Ok(self.rtp.local_addr()?.port())
    }
}

/// Port pairs for every viewer, `tracks` per viewer.
#[derive(Debug)]
pub(crate) struct ViewerPorts {
    pairs: Vec<Vec<PortPair>>,
}

impl ViewerPorts {
    /// Binds `viewers` × `tracks` pairs on `ip`.
    pub(crate) fn bind(
        ip: IpAddr,
        viewers: usize,
        tracks: usize,
        rcvbuf: usize,
    ) -> io::Result<Self> {
        let mut pairs = Vec::with_capacity(viewers);
        for _ in 0..viewers {
            let mut v = Vec::with_capacity(tracks);
            for _ in 0..tracks {
                v.push(PortPair::bind(ip, rcvbuf)?);
            }
            pairs.push(v);
        }
        Ok(Self { pairs })
    }

    /// RTP port of each track, per viewer.
    pub(crate) fn rtp_ports(&self) -> io::Result<Vec<Vec<u16>>> {
        self.pairs
            .iter()
            .map(|v| v.iter().map(PortPair::rtp_port).collect())
            .collect()
    }

    /// Every local port (RTP and RTCP), to find our sockets in `/proc/net/udp`.
    pub(crate) fn all_ports(&self) -> io::Result<HashSet<u16>> {
        let mut set = HashSet::new();
        for p in self.pairs.iter().flatten() {
            set.insert(p.rtp.local_addr()?.port());
            set.insert(p.rtcp.local_addr()?.port());
        }
        Ok(set)
    }

    /// The destinations a sender would use: each viewer's RTP address per track.
    pub(crate) fn rtp_addrs(&self) -> io::Result<Vec<Vec<SocketAddr>>> {
        self.pairs
            .iter()
            .map(|v| v.iter().map(|p| p.rtp.local_addr()).collect())
            .collect()
    }
}

/// What the receiver threads return: stats per viewer (indexed by viewer) and track,
/// and the threads' combined drain figures.
#[derive(Debug)]
pub(crate) struct Received {
    pub viewers: Vec<Vec<TrackStats>>,
    pub drain: DrainReport,
}

type ThreadResult = io::Result<(Vec<(usize, Vec<TrackStats>)>, DrainReport)>;

/// Running receiver threads.
#[derive(Debug)]
pub(crate) struct Receivers {
    handles: Vec<JoinHandle<ThreadResult>>,
    stop: Arc<AtomicBool>,
    viewers: usize,
    codecs: Vec<Codec>,
}

/// Which socket of which viewer and track a token names.
#[derive(Debug, Clone, Copy)]
struct Slot {
    local_viewer: usize,
    track: usize,
    rtcp: bool,
}

impl Receivers {
    /// Starts `threads` receivers (viewer `v` goes to thread `v % threads`) that run
    /// until [`Self::finish`] or `deadline`. `codecs` gives each track's codec;
    /// `counter` counts RTP datagrams as they arrive; `coalesce` is the pause after
    /// each busy wake-up (see [`SocketSet::set_coalesce`]).
    pub(crate) fn spawn(
        ports: ViewerPorts,
        codecs: &[Codec],
        threads: usize,
        coalesce: Duration,
        deadline: Instant,
        counter: Arc<AtomicU64>,
    ) -> io::Result<Receivers> {
        let threads = threads.clamp(1, 64);
        let viewers = ports.pairs.len();
        let stop = Arc::new(AtomicBool::new(false));
        let mut sets: Vec<(SocketSet, Vec<Slot>, Vec<usize>)> = Vec::new();
        for _ in 0..threads {
            let mut set = SocketSet::new()?;
            set.set_coalesce(coalesce);
            sets.push((set, Vec::new(), Vec::new()));
        }
        for (v, pairs) in ports.pairs.into_iter().enumerate() {
            let Some((set, slots, ids)) = sets.get_mut(v % threads) else {
                continue;
            };
            let local_viewer = ids.len();
            ids.push(v);
            for (track, pair) in pairs.into_iter().enumerate() {
                set.add(pair.rtp)?;
                slots.push(Slot {
                    local_viewer,
                    track,
                    rtcp: false,
                });
                set.add(pair.rtcp)?;
                slots.push(Slot {
                    local_viewer,
                    track,
                    rtcp: true,
                });
            }
        }
        let mut handles = Vec::new();
        for (i, (set, slots, ids)) in sets.into_iter().enumerate() {
            let stop = stop.clone();
            let counter = counter.clone();
            let codecs = codecs.to_vec();
            let h = std::thread::Builder::new().name(format!("rx-{i}")).spawn(
                move || -> ThreadResult {
                    let mut stats: Vec<Vec<TrackStats>> = ids
                        .iter()
                        .map(|_| codecs.iter().map(|&c| TrackStats::new(c)).collect())
                        .collect();
                    let report =
                        set.drain_until(&stop, deadline, &counter, |token, bytes, at| {
                            let Some(slot) = slots.get(token) else {
                                return false;
                            };
                            let Some(t) = stats
                                .get_mut(slot.local_viewer)
                                .and_then(|v| v.get_mut(slot.track))
                            else {
                                return false;
                            };
                            if slot.rtcp {
                                t.record_rtcp();
                                false
                            } else {
                                t.record_rtp(bytes, at);
                                true
                            }
                        })?;
                    Ok((ids.into_iter().zip(stats).collect(), report))
                },
            )?;
            handles.push(h);
        }
        Ok(Receivers {
            handles,
            stop,
            viewers,
            codecs: codecs.to_vec(),
        })
    }

    /// Tells the threads to stop counting; they exit within one poll interval.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the threads and collects their figures.
    pub(crate) fn finish(self) -> io::Result<Received> {
        self.stop.store(true, Ordering::Relaxed);
        let mut viewers: Vec<Vec<TrackStats>> = (0..self.viewers)
            .map(|_| self.codecs.iter().map(|&c| TrackStats::new(c)).collect())
            .collect();
        let mut drain = DrainReport::default();
        for h in self.handles {
            let (per_viewer, report) = h
                .join()
                .map_err(|_| io::Error::other("a receiver thread panicked"))??;
            drain.merge(&report);
            for (v, stats) in per_viewer {
                if let Some(slot) = viewers.get_mut(v) {
                    *slot = stats;
                }
            }
        }
        Ok(Received { viewers, drain })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track_stats::tests::{rtp, H264_IDR_START};
    use std::net::Ipv4Addr;

    #[test]
    fn pairs_are_even_and_adjacent() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..20 {
            let p = PortPair::bind(ip, 1 << 16).unwrap();
            let rtp = p.rtp.local_addr().unwrap().port();
            assert_eq!(rtp % 2, 0);
            assert_eq!(p.rtcp.local_addr().unwrap().port(), rtp + 1);
        }
    }

    #[test]
    fn receivers_account_each_viewer_and_track_separately() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ports = ViewerPorts::bind(ip, 3, 2, 1 << 16).unwrap();
        let addrs = ports.rtp_addrs().unwrap();
        assert_eq!(ports.all_ports().unwrap().len(), 12);
        let counter = Arc::new(AtomicU64::new(0));
        let rx = Receivers::spawn(
            ports,
            &[Codec::H264, Codec::Other],
            2,
            Duration::from_millis(1),
            Instant::now() + Duration::from_secs(10),
            counter.clone(),
        )
        .unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        // Viewer v, track t gets v + 1 + t packets; viewer 1's video has a keyframe.
        for (v, tracks) in addrs.iter().enumerate() {
            for (t, addr) in tracks.iter().enumerate() {
                for seq in 0..(v + 1 + t) as u16 {
                    let payload: &[u8] = if v == 1 && t == 0 {
                        &H264_IDR_START
                    } else {
                        b"x"
                    };
                    tx.send_to(&rtp(seq, 0, payload), addr).unwrap();
                }
            }
        }
        // And one RTCP datagram to viewer 2, track 1.
        let rtcp = SocketAddr::new(ip, addrs[2][1].port() + 1);
        tx.send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], rtcp).unwrap();
        let t0 = Instant::now();
        // 15 RTP datagrams count; the RTCP one does not.
        while counter.load(Ordering::Relaxed) < 15 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let got = rx.finish().unwrap();
        assert_eq!(got.drain.datagrams, 16);
        let packets: Vec<Vec<u64>> = got
            .viewers
            .iter()
            .map(|v| v.iter().map(|t| t.packets).collect())
            .collect();
        assert_eq!(packets, vec![vec![1, 2], vec![2, 3], vec![3, 4]]);
        assert!(got.viewers[1][0].first_keyframe.is_some());
        assert!(got.viewers[0][0].first_keyframe.is_none());
        assert_eq!(got.viewers[2][1].rtcp, 1);
    }
}
