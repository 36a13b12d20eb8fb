//! The live-splitting core: one upstream stream in, many viewers out.
//!
//! What it does: keeps the current GOP (every packet since the last video keyframe
//! start) so a new viewer starts on a keyframe at once; tells the caller the exact
//! `RTP-Info` (seq, rtptime) of the first packet each of the viewer's tracks gets; hands
//! every packet to every viewer's sink (the packet's `Bytes` is shared, never copied);
//! and when a viewer's sink is full, stops feeding it until the next keyframe and counts
//! what it missed, so one slow viewer never slows the others and memory stays bounded.
//!
//! What it does not: I/O. Sinks are the engine's (a TCP viewer's bounded queue, a UDP
//! destination); the engine passes a `deliver` function that offers a packet to a sink
//! and says whether it was taken.
//!
//! Pure code: no clock, no sockets.

use std::collections::VecDeque;

use bytes::Bytes;

/// RTP or RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Rtp,
    Rtcp,
}

/// One packet of one track, as viewers get it (already rewritten for continuity).
#[derive(Debug, Clone)]
pub struct Packet {
    pub track: usize,
    pub kind: PacketKind,
    pub data: Bytes,
    /// First packet of a keyframe (IDR/IRAP access unit, or its parameter sets).
    pub keyframe_start: bool,
    /// RTP sequence number and timestamp (zero for RTCP).
    pub seq: u16,
    pub ts: u32,
}

/// Bounds on the GOP kept for fast start.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    pub max_packets: usize,
    pub max_bytes: usize,
}

impl Default for RingLimits {
    fn default() -> Self {
        // A 10 s GOP at 8 Mbit/s is ~10 MB; beyond that a new viewer waits for the next
        // keyframe instead of the edge holding an unbounded ring.
        Self {
            max_packets: 16_384,
            max_bytes: 16 << 20,
        }
    }
}

/// Identifies a viewer inside one hub.
pub type SubscriberId = u64;

/// Where the first packet of a viewer's track starts: what `RTP-Info` must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackStart {
    pub track: usize,
    pub seq: u16,
    pub rtptime: u32,
}

/// Counters for one viewer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub delivered: u64,
    /// Payload bytes of the delivered packets.
    pub delivered_bytes: u64,
    /// Packets the viewer did not get because it fell behind (skipped to a keyframe).
    pub skipped: u64,
    /// How many times it fell behind.
    pub lag_events: u64,
}

/// What a hub delivered to all its viewers since it started, counted with the
/// per-viewer figures (plain adds, no atomics), for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub packets: u64,
    pub bytes: u64,
    /// Packets viewers did not get because they fell behind.
    pub skipped: u64,
}

impl Delivery {
    /// What was added since `earlier` (a snapshot of the same hub).
    pub fn since(&self, earlier: &Delivery) -> Delivery {
        Delivery {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            skipped: self.skipped.saturating_sub(earlier.skipped),
        }
    }
}

struct Subscriber<S> {
    id: SubscriberId,
    sink: S,
    /// Bit i set: the viewer set up track i.
    tracks: u64,
    waiting_keyframe: bool,
    stats: SubscriberStats,
}

/// Fan-out state of one upstream stream.
pub struct HubCore<S> {
    video_track: Option<usize>,
    limits: RingLimits,
    /// Every packet since the last keyframe start; empty and invalid until one is seen
    /// or after the GOP outgrew the limits.
    ring: VecDeque<Packet>,
    ring_bytes: usize,
    ring_valid: bool,
    /// Most recent RTP packet per track, to prime tracks that have none in the ring.
    last_rtp: Vec<Option<Packet>>,
    subs: Vec<Subscriber<S>>,
    next_id: SubscriberId,
    delivery: Delivery,
}

impl<S> HubCore<S> {
    /// `tracks` is the number of tracks; `video_track` the one whose keyframes define
    /// join points (`None` for audio-only streams: viewers join live).
    pub fn new(tracks: usize, video_track: Option<usize>, limits: RingLimits) -> Self {
        Self {
            // Tracks are a 64-bit mask; a larger index cannot be selected by anyone.
            video_track: video_track.filter(|&v| v < 64),
            limits,
            ring: VecDeque::new(),
            ring_bytes: 0,
            ring_valid: false,
            last_rtp: vec![None; tracks.min(64)],
            subs: Vec::new(),
            next_id: 1,
            delivery: Delivery::default(),
        }
    }

    /// Totals over every viewer this hub has had.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    pub fn subscriber_count(&self) -> usize {
        self.subs.len()
    }

    /// True when a viewer joining now would start on a keyframe (or the stream has no
    /// video, so any packet will do once each track has been seen).
    pub fn ready_for_join(&self) -> bool {
        match self.video_track {
            Some(_) => self.ring_valid,
            None => self.last_rtp.iter().any(Option::is_some),
        }
    }

    /// Bytes held for fast start.
    #[cfg(test)]
    pub fn ring_bytes(&self) -> usize {
        self.ring_bytes
    }

    /// Adds a viewer of the given tracks and hands it its start burst (the current GOP,
    /// preceded by the latest packet of any selected track absent from the GOP).
    /// Returns its id and, per selected track that has a first packet, the `RTP-Info`
    /// values. A viewer whose sink cannot take the burst waits for the next keyframe.
    pub fn join(
        &mut self,
        sink: S,
        tracks: &[usize],
        mut deliver: impl FnMut(&mut S, &Packet) -> bool,
    ) -> (SubscriberId, Vec<TrackStart>) {
        let mask = tracks
            .iter()
            .filter(|&&t| t < 64)
            .fold(0u64, |m, &t| m | (1 << t));
        let id = self.next_id;
        self.next_id += 1;
        let mut sub = Subscriber {
            id,
            sink,
            tracks: mask,
            waiting_keyframe: false,
            stats: SubscriberStats::default(),
        };
        let wants_video = self.video_track.is_some_and(|v| mask & (1 << v) != 0);
        let mut starts: Vec<TrackStart> = Vec::new();
        if wants_video && !self.ring_valid {
            sub.waiting_keyframe = true;
        } else {
            let burst = self.start_burst(mask, wants_video);
            for p in burst {
                if !starts.iter().any(|s| s.track == p.track) {
                    starts.push(TrackStart {
                        track: p.track,
                        seq: p.seq,
                        rtptime: p.ts,
                    });
                }
                if deliver(&mut sub.sink, p) {
                    sub.stats.delivered += 1;
                    sub.stats.delivered_bytes += p.data.len() as u64;
                } else {
                    sub.waiting_keyframe = wants_video;
                    sub.stats.lag_events += 1;
                    break;
                }
            }
        }
        starts.sort_by_key(|s| s.track);
        // A new viewer's counters are its start burst.
        self.delivery.packets += sub.stats.delivered;
        self.delivery.bytes += sub.stats.delivered_bytes;
        self.subs.push(sub);
        (id, starts)
    }

    /// Removes a viewer; returns its sink and counters.
    pub fn leave(&mut self, id: SubscriberId) -> Option<(S, SubscriberStats)> {
        let i = self.subs.iter().position(|s| s.id == id)?;
        let s = self.subs.swap_remove(i);
        Some((s.sink, s.stats))
    }

    /// Makes a viewer wait for the next keyframe (its sink could not take what it was
    /// given outside [`HubCore::on_packet`], e.g. a held start burst).
    pub fn mark_lagging(&mut self, id: SubscriberId) {
        let video_bit = self.video_track.map_or(0, |v| 1u64 << v);
        if let Some(s) = self.subs.iter_mut().find(|s| s.id == id) {
            s.stats.lag_events += 1;
            s.waiting_keyframe = s.tracks & video_bit != 0;
        }
    }

    /// Removes every viewer, returning their sinks and counters.
    pub fn drain(&mut self) -> Vec<(S, SubscriberStats)> {
        self.subs.drain(..).map(|s| (s.sink, s.stats)).collect()
    }

    /// Every viewer's sink with its counters so far (the admin API's live picture).
    pub fn subscribers(&self) -> impl Iterator<Item = (&S, &SubscriberStats)> {
        self.subs.iter().map(|s| (&s.sink, &s.stats))
    }

    /// Every viewer's sink.
    pub fn sinks(&self) -> impl Iterator<Item = &S> {
        self.subs.iter().map(|s| &s.sink)
    }

    /// Mutable access to a viewer's sink (e.g. to update its destination).
    pub fn sink_mut(&mut self, id: SubscriberId) -> Option<&mut S> {
        self.subs
            .iter_mut()
            .find(|s| s.id == id)
            .map(|s| &mut s.sink)
    }

    /// Call when the upstream session restarts: the old GOP is no join point for the
    /// new one (viewers already attached keep going; numbering is kept continuous by
    /// the rewriter before packets get here).
    pub fn upstream_restarted(&mut self) {
        self.clear_ring();
    }

    /// Feeds one upstream packet to the ring and to every viewer of its track.
    pub fn on_packet(&mut self, pkt: Packet, mut deliver: impl FnMut(&mut S, &Packet) -> bool) {
        let is_rtp = pkt.kind == PacketKind::Rtp;
        let is_join_point = is_rtp && pkt.keyframe_start && self.video_track == Some(pkt.track);
        if is_rtp {
            if is_join_point {
                self.clear_ring();
                self.ring_valid = true;
            }
            if self.ring_valid {
                self.ring_bytes += pkt.data.len();
                self.ring.push_back(pkt.clone());
                if self.ring.len() > self.limits.max_packets
                    || self.ring_bytes > self.limits.max_bytes
                {
                    self.clear_ring();
                }
            }
            if let Some(slot) = self.last_rtp.get_mut(pkt.track) {
                *slot = Some(pkt.clone());
            }
        }
        let bit = if pkt.track < 64 { 1u64 << pkt.track } else { 0 };
        let video_bit = self.video_track.map_or(0, |v| 1u64 << v);
        let (mut delivered, mut skipped) = (0u64, 0u64);
        for sub in &mut self.subs {
            if sub.tracks & bit == 0 {
                continue;
            }
            if sub.waiting_keyframe {
                if is_join_point {
                    sub.waiting_keyframe = false;
                } else {
                    sub.stats.skipped += 1;
                    skipped += 1;
                    continue;
                }
            }
            if deliver(&mut sub.sink, &pkt) {
                sub.stats.delivered += 1;
                sub.stats.delivered_bytes += pkt.data.len() as u64;
                delivered += 1;
            } else {
                sub.stats.skipped += 1;
                skipped += 1;
                sub.stats.lag_events += 1;
                // Without video there is no better resume point than the next packet.
                sub.waiting_keyframe = sub.tracks & video_bit != 0;
            }
        }
        self.delivery.packets += delivered;
        self.delivery.bytes += delivered * pkt.data.len() as u64;
        self.delivery.skipped += skipped;
    }

    fn clear_ring(&mut self) {
        self.ring.clear();
        self.ring_bytes = 0;
        self.ring_valid = false;
    }

    fn start_burst(&self, mask: u64, wants_video: bool) -> Vec<&Packet> {
        let in_ring = |t: usize| self.ring.iter().any(|p| p.track == t);
        let mut burst: Vec<&Packet> = self
            .last_rtp
            .iter()
            .enumerate()
            .filter(|(t, p)| p.is_some() && mask & (1 << t) != 0 && !(wants_video && in_ring(*t)))
            .filter_map(|(_, p)| p.as_ref())
            .collect();
        if wants_video {
            burst.extend(self.ring.iter().filter(|p| mask & (1 << p.track) != 0));
        }
        burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes up to `cap` packets and records (track, seq).
    #[derive(Default)]
    struct VecSink {
        cap: usize,
        got: Vec<(usize, u16)>,
    }

    fn sink(cap: usize) -> VecSink {
        VecSink {
            cap,
            got: Vec::new(),
        }
    }

    fn offer(s: &mut VecSink, p: &Packet) -> bool {
        if s.got.len() >= s.cap {
            return false;
        }
        s.got.push((p.track, p.seq));
        true
    }

    fn rtp(track: usize, seq: u16, key: bool) -> Packet {
        Packet {
            track,
            kind: PacketKind::Rtp,
            data: Bytes::from(vec![0u8; 100]),
            keyframe_start: key,
            seq,
            ts: u32::from(seq) * 10,
        }
    }

    #[test]
    fn joiner_starts_at_the_last_keyframe_with_exact_rtp_info() {
        let mut hub = HubCore::new(2, Some(0), RingLimits::default());
        hub.on_packet(rtp(0, 1, true), offer);
        hub.on_packet(rtp(1, 500, false), offer);
        hub.on_packet(rtp(0, 2, false), offer);
        hub.on_packet(rtp(0, 3, true), offer); // new GOP
        hub.on_packet(rtp(0, 4, false), offer);
        hub.on_packet(rtp(1, 501, false), offer);
        let (id, starts) = hub.join(sink(100), &[0, 1], offer);
        assert_eq!(
            starts,
            vec![
                TrackStart {
                    track: 0,
                    seq: 3,
                    rtptime: 30
                },
                TrackStart {
                    track: 1,
                    seq: 501,
                    rtptime: 5010
                },
            ]
        );
        let (s, st) = hub.leave(id).unwrap();
        assert_eq!(s.got, vec![(0, 3), (0, 4), (1, 501)]);
        assert_eq!(st.delivered, 3);
        assert_eq!(st.delivered_bytes, 300, "three 100-byte packets");
    }

    #[test]
    fn track_missing_from_gop_is_primed_with_its_latest_packet() {
        let mut hub = HubCore::new(2, Some(0), RingLimits::default());
        hub.on_packet(rtp(1, 700, false), offer);
        hub.on_packet(rtp(0, 10, true), offer);
        hub.on_packet(rtp(0, 11, false), offer);
        let (id, starts) = hub.join(sink(100), &[0, 1], offer);
        assert_eq!(
            starts[1],
            TrackStart {
                track: 1,
                seq: 700,
                rtptime: 7000
            }
        );
        assert_eq!(
            hub.leave(id).unwrap().0.got,
            vec![(1, 700), (0, 10), (0, 11)]
        );
    }

    #[test]
    fn joiner_before_first_keyframe_waits_for_it() {
        let mut hub = HubCore::new(1, Some(0), RingLimits::default());
        hub.on_packet(rtp(0, 1, false), offer);
        assert!(!hub.ready_for_join());
        let (id, starts) = hub.join(sink(100), &[0], offer);
        assert!(starts.is_empty());
        hub.on_packet(rtp(0, 2, false), offer);
        hub.on_packet(rtp(0, 3, true), offer);
        hub.on_packet(rtp(0, 4, false), offer);
        let (s, st) = hub.leave(id).unwrap();
        assert_eq!(s.got, vec![(0, 3), (0, 4)]);
        assert_eq!(st.skipped, 1);
    }

    #[test]
    fn slow_viewer_skips_to_next_keyframe_and_others_lose_nothing() {
        let mut hub = HubCore::new(1, Some(0), RingLimits::default());
        hub.on_packet(rtp(0, 0, true), offer);
        let (fast, _) = hub.join(sink(1000), &[0], offer);
        let (slow, _) = hub.join(sink(3), &[0], offer); // takes seq 0, then 2 more
        for seq in 1..=9u16 {
            hub.on_packet(rtp(0, seq, seq == 6), offer);
        }
        // The slow sink "drains" (the engine's writer caught up): let it take more.
        hub.sink_mut(slow).unwrap().cap = 1000;
        hub.on_packet(rtp(0, 10, false), offer);
        hub.on_packet(rtp(0, 11, true), offer);
        hub.on_packet(rtp(0, 12, false), offer);
        let (f, fst) = hub.leave(fast).unwrap();
        assert_eq!(f.got.len(), 13);
        assert_eq!(fst.skipped, 0);
        let (s, sst) = hub.leave(slow).unwrap();
        // Got 0,1,2; seq 3 refused; waits: 4,5 skipped; still full at 6 (keyframe) so
        // refused again; resumes at the keyframe 11.
        assert_eq!(s.got, vec![(0, 0), (0, 1), (0, 2), (0, 11), (0, 12)]);
        assert_eq!(sst.lag_events, 2);
        assert_eq!(sst.skipped, 8);
        // The hub's totals are the sum over its viewers, kept after they leave.
        assert_eq!(
            hub.delivery(),
            Delivery {
                packets: 13 + 5,
                bytes: 18 * 100,
                skipped: 8,
            }
        );
    }

    #[test]
    fn ring_is_bounded() {
        let limits = RingLimits {
            max_packets: 4,
            max_bytes: 1 << 20,
        };
        let mut hub: HubCore<VecSink> = HubCore::new(1, Some(0), limits);
        hub.on_packet(rtp(0, 0, true), offer);
        for seq in 1..10 {
            hub.on_packet(rtp(0, seq, false), offer);
        }
        assert!(!hub.ready_for_join());
        assert_eq!(hub.ring_bytes(), 0);
        hub.on_packet(rtp(0, 10, true), offer);
        assert!(hub.ready_for_join());
        assert_eq!(hub.ring_bytes(), 100);
    }

    #[test]
    fn audio_only_stream_joins_live() {
        let mut hub = HubCore::new(1, None, RingLimits::default());
        hub.on_packet(rtp(0, 40, false), offer);
        let (id, starts) = hub.join(sink(10), &[0], offer);
        assert_eq!(
            starts,
            vec![TrackStart {
                track: 0,
                seq: 40,
                rtptime: 400
            }]
        );
        hub.on_packet(rtp(0, 41, false), offer);
        assert_eq!(hub.leave(id).unwrap().0.got, vec![(0, 40), (0, 41)]);
    }

    #[test]
    fn viewer_gets_only_its_tracks_and_rtcp_passes() {
        let mut hub = HubCore::new(2, Some(0), RingLimits::default());
        hub.on_packet(rtp(0, 1, true), offer);
        let (id, _) = hub.join(sink(10), &[1], offer);
        hub.on_packet(rtp(0, 2, false), offer);
        hub.on_packet(rtp(1, 9, false), offer);
        let mut sr = rtp(1, 0, false);
        sr.kind = PacketKind::Rtcp;
        hub.on_packet(sr, offer);
        assert_eq!(hub.leave(id).unwrap().0.got, vec![(1, 9), (1, 0)]);
    }
}
