//! One continuous stream per viewer of on-demand content, whichever serves it: the
//! cache player (a hit) or the viewer's own origin session (a miss, a seek past what
//! is held, the end of a held range that is not the end of the clip).
//!
//! The player numbers what it sends with a per-viewer [`Rewriter`] (SSRC, sequence
//! numbers, timestamps from media time). An origin session that serves the same
//! viewer takes that rewriter over ([`OriginSeam`]): each origin packet is placed in
//! media time by the PLAY answer's `Range` and `RTP-Info` (as a fill places it,
//! `cache_fill::RunClock`), then rewritten as a cached packet of that time would be.
//! So the viewer sees one SSRC per track, sequence numbers without a jump and
//! timestamps that go on, and the PLAY answer's `RTP-Info` names the rewritten seq
//! and rtptime (RFC 2326 §12.33). Without that a player that seeks (ffmpeg's `-ss`
//! PLAYs from 0, then from the seek point) saw a second stream start mid-way and
//! placed it seconds away from the first.
//!
//! The origin's RTCP describes the origin's numbering, so it is not forwarded as it
//! came: each origin sender report becomes one in the viewer's numbering (its RTP
//! timestamp placed in media time as the packets are, then numbered as the player
//! numbers that time; the origin's NTP time kept, so tracks stay in sync; the
//! packets and octets the viewer was sent), so a viewer whose session began as a hit
//! keeps getting reports after the seam. An origin BYE becomes the viewer's own BYE
//! on that track, the end of the stream; other RTCP is dropped.
//!
//! A viewer whose stream began at the cache ([`OriginSeam::keep_own_reports`]: the
//! end of a held range, a seek past it) keeps the edge's own reports instead, on the
//! player's timer and clock ([`OriginSeam::own_reports`]: the wall clock, and the
//! media time of the last packet sent plus the time since), and the origin's sender
//! reports are dropped. Chosen so that such a viewer sees one NTP clock for its whole
//! session: a player syncs tracks by each one's latest report, and a video report
//! from the edge's clock next to an audio one from the origin's would put the clocks'
//! offset between the tracks; and an origin that sends no reports no longer leaves
//! the viewer without any. A session that began at the origin keeps the origin's,
//! translated, as a pass-through would.
//!
//! What it does not: send reports of its own for a session that began at the origin.
//! Packets that cannot be placed (an answer without `RTP-Info`) go out unrewritten,
//! as before this module.

use bytes::Bytes;
use mediagate_cache::PacketOut;
use mediagate_rtp::rtcp::build::CompoundWriter;
use mediagate_rtp::rtcp::{RtcpPacket, RtcpPackets};
use mediagate_rtp::Codec;
use mediagate_rtsp::headers::RtpInfo;
use mediagate_rtsp::{Headers, Response, TypedHeader};

use crate::cache_fill::{object_key, object_meta, RunClock};
use crate::cache_play::{media_ms, Rewriter};
use crate::upstream::Described;

/// How long after the last packet passed on the edge still sends its own reports.
const STOPPED: std::time::Duration = std::time::Duration::from_secs(1);

/// How the next origin PLAY joins what the viewer was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joint {
    /// A PLAY with a `Range` is a seek: output time goes on after the last packet
    /// sent; a PLAY without one resumes the origin's own timeline.
    Play,
    /// The origin picks up where a held range ended, `sent_ms` being the media time
    /// of the last packet the player sent: the timeline is the same, so nothing is
    /// shifted, and what the origin sends up to that time was sent already.
    Continue { sent_ms: u64 },
}

/// An origin session's share of a viewer's output numbering.
#[derive(Debug)]
pub(crate) struct OriginSeam {
    rewriter: Rewriter,
    /// Per described track, its slot in the viewer's variant (the object's order).
    slots: Vec<Option<u8>>,
    clocks: Vec<u32>,
    /// Placing the current PLAY's packets; None before a PLAY or without `RTP-Info`.
    clock: Option<RunClock>,
    joint: Joint,
    /// Origin packets up to this media time are dropped (a continuation).
    skip_until_ms: Option<u64>,
    /// The viewer gets the edge's own sender reports, not the origin's.
    own_reports: bool,
    /// The last packet rewritten, for the edge's own reports: its slot and media
    /// time in that slot's ticks (converted only when a report is due).
    last_placed: Option<(usize, u64)>,
    /// The clock of the edge's own reports: media time (µs) `.1` was playing at NTP
    /// time `.0`, and it runs with the wall clock from there. Fixed once set (the
    /// player's, carried over at the end of a held range, or the first report's), so
    /// a stall of the origin (its start after the seam, a slow moment) reads as delay,
    /// not as a jump of the timeline a player syncs its tracks by.
    report_clock: Option<(u64, u64)>,
}

impl OriginSeam {
    /// The seam of `variant` (described track indexes) of `d`, numbering with
    /// `rewriter` (None: a new one, for a session that starts at the origin).
    pub fn new(d: &Described, variant: &[usize], rewriter: Option<Rewriter>) -> Self {
        let key = object_key("", d, variant);
        let clocks: Vec<u32> = object_meta(d, &key)
            .tracks
            .iter()
            .map(|t| t.clock_rate)
            .collect();
        let slots = d
            .tracks
            .iter()
            .map(|t| {
                key.tracks
                    .iter()
                    .position(|mi| *mi == t.media_index)
                    .and_then(|p| u8::try_from(p).ok())
            })
            .collect();
        let mut rewriter = rewriter.unwrap_or_else(|| Rewriter::new(&clocks, random_u32));
        let report_clock = rewriter.take_pace();
        Self {
            rewriter,
            slots,
            clocks,
            clock: None,
            joint: Joint::Play,
            skip_until_ms: None,
            own_reports: false,
            last_placed: None,
            report_clock,
        }
    }

    /// The viewer's stream began at the cache: it keeps the edge's own sender reports
    /// ([`OriginSeam::own_reports`]) and the origin's are dropped (see the module docs).
    pub fn keep_own_reports(&mut self) {
        self.own_reports = true;
    }

    pub fn keeps_own_reports(&self) -> bool {
        self.own_reports
    }

    /// The edge's own sender report for each described track that was sent
    /// something, on the report clock (see `report_clock`; the first report without
    /// one sets it: the last packet's media time plus `since_last`, the time since it
    /// was passed on), at NTP time `ntp` (the wall clock now). Empty unless
    /// [`OriginSeam::keep_own_reports`] was called, and while nothing was passed on
    /// for [`STOPPED`] (the origin's stream ended or stalls: only a sender reports,
    /// RFC 3550 §6.4).
    pub fn own_reports(
        &mut self,
        since_last: std::time::Duration,
        ntp: u64,
    ) -> Vec<(usize, Bytes)> {
        let Some((slot, ticks)) = self.last_placed.filter(|_| self.own_reports) else {
            return Vec::new();
        };
        if since_last > STOPPED {
            return Vec::new();
        }
        let (ntp0, us0) = *self.report_clock.get_or_insert_with(|| {
            let clock_rate = self.clocks.get(slot).copied().unwrap_or(90_000).max(1);
            let last_us = u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(clock_rate))
                .unwrap_or(u64::MAX);
            (
                ntp,
                last_us.saturating_add(u64::try_from(since_last.as_micros()).unwrap_or(u64::MAX)),
            )
        });
        // NTP timestamps are 32.32 fixed point seconds.
        let elapsed_us = u64::try_from((u128::from(ntp.saturating_sub(ntp0)) * 1_000_000) >> 32)
            .unwrap_or(u64::MAX);
        let media_us = us0.saturating_add(elapsed_us);
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(track, slot)| {
                let sr = self
                    .rewriter
                    .sender_report(usize::from((*slot)?), media_us, ntp)?;
                Some((track, sr))
            })
            .collect()
    }

    /// How the next PLAY joins (set by whoever hands the viewer over).
    pub fn set_joint(&mut self, joint: Joint) {
        self.joint = joint;
    }

    /// Gives the numbering back (the cache player goes on with it).
    pub fn into_rewriter(self) -> Rewriter {
        self.rewriter
    }

    /// The origin answered a PLAY (`asked`: the viewer's request headers). Places
    /// the coming packets and rewrites the answer's `RTP-Info` to what the viewer
    /// will be sent.
    pub fn on_play(&mut self, d: &Described, asked: Option<&Headers>, resp: &mut Response) {
        let codecs = vec![Codec::Other; d.tracks.len()];
        self.clock = RunClock::from_answer(&self.slots, &codecs, d, resp);
        let Some(clock) = &self.clock else {
            tracing::debug!(
                "origin PLAY answer without Range/RTP-Info: its packets go out as sent"
            );
            return;
        };
        let start_ms = clock.start_ms();
        match std::mem::replace(&mut self.joint, Joint::Play) {
            // The same timeline: the report clock (the player's) goes on.
            Joint::Continue { sent_ms } => self.skip_until_ms = Some(sent_ms),
            Joint::Play => {
                // A seek or a resume after a pause: the media time no longer runs
                // with the wall clock from before, so the next report sets the clock.
                self.report_clock = None;
                self.skip_until_ms = None;
                if asked.is_some_and(|h| h.get("Range").is_some()) {
                    self.rewriter.seek_to(start_ms);
                }
            }
        }
        let Some(mut info) = resp
            .headers
            .get("RTP-Info")
            .and_then(|v| RtpInfo::parse_value(v).ok())
        else {
            return;
        };
        for e in &mut info.0 {
            let slot = d
                .tracks
                .iter()
                .position(|t| {
                    t.control_url == e.url
                        || t.control_url.ends_with(&e.url)
                        || e.url.ends_with(&t.control_url)
                })
                .and_then(|i| self.slots.get(i).copied().flatten());
            if let Some(slot) = slot.map(usize::from) {
                e.seq = self.rewriter.next_seq(slot);
                e.rtptime = self.rewriter.rtptime_at(slot, start_ms);
            }
        }
        resp.headers.set("RTP-Info", info.to_value());
    }

    /// The viewer's copy of origin RTP packet `rtp` of described track `track`:
    /// `Some(None)` to drop it, None to send it as it came (it cannot be placed).
    pub fn rewrite_rtp(&mut self, track: usize, rtp: &Bytes) -> Option<Option<Bytes>> {
        let clock = self.clock.as_mut()?;
        let Some(placed) = clock.place(track, rtp) else {
            // Before the range start, or a track the viewer did not set up.
            return Some(None);
        };
        let slot = usize::from(placed.slot);
        if let Some(until) = self.skip_until_ms {
            let clock_rate = self.clocks.get(slot).copied().unwrap_or(90_000);
            if media_ms(placed.media_ticks, clock_rate) <= until {
                return Some(None);
            }
        }
        let p = PacketOut {
            track: placed.slot,
            media_ticks: placed.media_ticks,
            keyframe: placed.keyframe,
            rtp: rtp.clone(),
        };
        let out = self.rewriter.rewrite(&p);
        if out.is_some() {
            self.last_placed = Some((slot, placed.media_ticks));
        }
        Some(out)
    }

    /// The viewer's copy of origin RTCP `data` of described track `track`: the
    /// viewer's own BYE when it holds one, else the viewer's own sender report when
    /// it holds one that can be placed (and the viewer does not keep the edge's own
    /// reports), else nothing (`Some(None)`); None when this seam does not rewrite
    /// (the packet goes out as it came).
    pub fn rewrite_rtcp(&self, track: usize, data: &[u8]) -> Option<Option<Bytes>> {
        let clock = self.clock.as_ref()?;
        let slot = self.slots.get(track).copied().flatten()?;
        let mut report = None;
        for p in RtcpPackets::new(data) {
            match p {
                Ok(RtcpPacket::Goodbye(_)) => {
                    return Some(bye(&self.rewriter, usize::from(slot), b"end of stream"));
                }
                Ok(RtcpPacket::SenderReport(sr)) if report.is_none() => {
                    report = Some(sr.sender_info());
                }
                _ => {}
            }
        }
        let Some(info) = report.filter(|_| !self.own_reports) else {
            return Some(None);
        };
        let Some((placed_slot, media_us)) = clock.media_us_at(track, info.rtp_timestamp) else {
            return Some(None);
        };
        Some(
            self.rewriter
                .sender_report(usize::from(placed_slot), media_us, info.ntp_timestamp),
        )
    }
}

/// An RTCP BYE (RFC 3550 §6.6) for slot `slot` of `rewriter`'s output.
pub(crate) fn bye(rewriter: &Rewriter, slot: usize, reason: &[u8]) -> Option<Bytes> {
    let ssrc = rewriter.ssrc(slot)?;
    let mut buf = [0u8; 96];
    let mut w = CompoundWriter::new(&mut buf);
    w.receiver_report(ssrc, &[])
        .and_then(|w| w.bye(&[ssrc], Some(reason)))
        .ok()?;
    let n = w.finish().ok()?;
    Some(Bytes::copy_from_slice(&buf[..n]))
}

fn random_u32() -> u32 {
    getrandom::u32().unwrap_or_else(|e| panic!("getrandom failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtsp::{StatusCode, Version};

    use crate::upstream::TrackInfo;

    fn described() -> Described {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=clip\r\nt=0 0\r\na=range:npt=0-30\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:stream=1\r\n";
        let track = |i: usize, is_video, clock_rate| TrackInfo {
            media_index: i,
            control_url: format!("rtsp://o/vod/stream={i}"),
            is_video,
            codec: Codec::Other,
            clock_rate,
            channel: u8::try_from(i * 2).unwrap(),
        };
        Described {
            sdp: mediagate_sdp::SessionDescription::parse(sdp.as_bytes()).unwrap(),
            tracks: vec![track(0, true, 90_000), track(1, false, 48_000)],
            live: false,
            session_timeout: 60,
            aggregate_url: "rtsp://o/vod".into(),
            caching: Default::default(),
            needed_auth: false,
        }
    }

    fn answer(range: &str, video_rtptime: u32, audio_rtptime: u32) -> Response {
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers.append("Range", range);
        r.headers.append(
            "RTP-Info",
            format!(
                "url=rtsp://o/vod/stream=0;seq=100;rtptime={video_rtptime},url=rtsp://o/vod/stream=1;seq=200;rtptime={audio_rtptime}"
            ),
        );
        r
    }

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Bytes {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.push(0xAA);
        Bytes::from(p)
    }

    /// An origin's goodbye: `ssrc`'s empty receiver report and BYE.
    fn rr_bye(ssrc: u32) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut w = CompoundWriter::new(&mut buf);
        w.receiver_report(ssrc, &[])
            .and_then(|w| w.bye(&[ssrc], None))
            .unwrap();
        let n = w.finish().unwrap();
        buf[..n].to_vec()
    }

    fn fields(b: &[u8]) -> (u16, u32, u32) {
        let p = mediagate_rtp::RtpPacket::parse(b).unwrap();
        (p.sequence_number(), p.timestamp(), p.ssrc())
    }

    fn counter() -> impl FnMut() -> u32 {
        let mut n = 0u32;
        move || {
            n += 7_000;
            n
        }
    }

    #[test]
    fn origin_packets_carry_the_viewers_numbering_and_rtp_info_says_so() {
        let d = described();
        let mut numbering = Rewriter::new(&[90_000, 48_000], counter());
        // The cache player sent npt 0..2 s of video.
        let cached = PacketOut {
            track: 0,
            media_ticks: 180_000,
            keyframe: true,
            rtp: rtp(1, 1, 1),
        };
        let last = fields(&numbering.rewrite(&cached).unwrap());
        let mut seam = OriginSeam::new(&d, &[0, 1], Some(numbering));
        // A seek to 10 s: the origin's own numbering in its answer and packets.
        let mut asked = Headers::new();
        asked.append("Range", "npt=10-");
        let mut resp = answer("npt=10-30", 5_000_000, 9_000);
        seam.on_play(&d, Some(&asked), &mut resp);
        let info = RtpInfo::parse_value(resp.headers.get("RTP-Info").unwrap()).unwrap();
        let video = info.find_by_url_suffix("stream=0").unwrap().clone();
        let first = seam
            .rewrite_rtp(0, &rtp(4242, 5_000_000, 0xdead))
            .unwrap()
            .unwrap();
        let first = fields(&first);
        assert_eq!((Some(first.0), Some(first.1)), (video.seq, video.rtptime));
        assert_eq!(first.0, last.0.wrapping_add(1), "no sequence gap");
        assert_eq!(first.2, last.2, "one SSRC");
        // 40 ms after the last packet sent, in output time.
        assert_eq!(first.1.wrapping_sub(last.1), 40 * 90);
        // An origin sender report becomes the viewer's: its SSRC, the timestamp of
        // the same media time in the viewer's numbering, the origin's NTP time, what
        // the viewer was sent (two packets: the cached one and the origin's).
        let ntp = 0x1234_5678_9abc_def0;
        let mut sr_in = [0u8; 64];
        let mut w = CompoundWriter::new(&mut sr_in);
        w.sender_report(
            &mediagate_rtp::rtcp::SenderInfo {
                ssrc: 0xdead,
                ntp_timestamp: ntp,
                // Half a second after the first origin packet.
                rtp_timestamp: 5_000_000 + 45_000,
                packet_count: 99,
                octet_count: 9_999,
            },
            &[],
        )
        .unwrap();
        let n = w.finish().unwrap();
        let out = seam.rewrite_rtcp(0, &sr_in[..n]).unwrap().unwrap();
        let compound = mediagate_rtp::rtcp::RtcpPackets::new(&out)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let RtcpPacket::SenderReport(sr) = &compound[0] else {
            panic!("not an SR: {compound:?}");
        };
        let info = sr.sender_info();
        assert_eq!(info.ssrc, first.2);
        assert_eq!(info.ntp_timestamp, ntp);
        assert_eq!(info.rtp_timestamp, first.1.wrapping_add(45_000));
        assert_eq!(info.packet_count, 2);
        // Other origin RTCP is not passed on; its BYE becomes the viewer's.
        assert_eq!(
            seam.rewrite_rtcp(0, &[0x80, 200, 0, 1, 0, 0, 0, 1]),
            Some(None)
        );
        let out = seam.rewrite_rtcp(0, &rr_bye(0xdead)).unwrap().unwrap();
        let ours = RtcpPackets::new(&out)
            .any(|p| matches!(p, Ok(RtcpPacket::Goodbye(b)) if b.ssrcs().eq([first.2])));
        assert!(ours, "{out:?}");
    }

    /// A player's numbering that sent video up to 5 s, and that last packet's fields.
    fn numbering_at_5s() -> (Rewriter, (u16, u32, u32)) {
        let mut numbering = Rewriter::new(&[90_000, 48_000], counter());
        let cached = PacketOut {
            track: 0,
            media_ticks: 5 * 90_000,
            keyframe: false,
            rtp: rtp(1, 1, 1),
        };
        let last = fields(&numbering.rewrite(&cached).unwrap());
        (numbering, last)
    }

    /// A seam that continues, at the origin, a viewer the cache sent video up to 5 s:
    /// the seam, and that last packet's fields.
    fn continued_at_5s(d: &Described) -> (OriginSeam, (u16, u32, u32)) {
        let (numbering, last) = numbering_at_5s();
        let mut seam = OriginSeam::new(d, &[0, 1], Some(numbering));
        seam.set_joint(Joint::Continue { sent_ms: 5_000 });
        (seam, last)
    }

    #[test]
    fn a_continuation_keeps_the_timeline_and_drops_what_was_sent() {
        let d = described();
        let (mut seam, last) = continued_at_5s(&d);
        let mut asked = Headers::new();
        asked.append("Range", "npt=5-");
        // The origin starts at the keyframe of 4 s.
        let mut resp = answer("npt=4-30", 1_000, 2_000);
        seam.on_play(&d, Some(&asked), &mut resp);
        assert_eq!(seam.rewrite_rtp(0, &rtp(7, 1_000, 9)), Some(None));
        assert_eq!(seam.rewrite_rtp(0, &rtp(8, 1_000 + 90_000, 9)), Some(None));
        let next = seam
            .rewrite_rtp(0, &rtp(9, 1_000 + 90_000 + 3_600, 9))
            .unwrap()
            .unwrap();
        let next = fields(&next);
        assert_eq!(next.0, last.0.wrapping_add(1));
        // Same timeline: 40 ms after the last packet sent, no seek gap added.
        assert_eq!(next.1.wrapping_sub(last.1), 3_600);
    }

    /// The report clock is the player's, carried over at the end of the held range: an
    /// origin that starts late (or stalls) does not move the timeline a player syncs
    /// by. A PLAY that is not a continuation (a resume, a seek) starts a new clock.
    #[test]
    fn own_reports_keep_the_players_clock_through_an_origin_stall() {
        let d = described();
        let (mut numbering, last) = numbering_at_5s();
        // The player handed over with 5.0 s playing at NTP time n0.
        let n0: u64 = 0x0102_0304_0000_0000;
        let second: u64 = 1 << 32;
        numbering.set_pace(n0, 5_000_000);
        let mut seam = OriginSeam::new(&d, &[0, 1], Some(numbering));
        seam.set_joint(Joint::Continue { sent_ms: 5_000 });
        seam.keep_own_reports();
        let mut asked = Headers::new();
        asked.append("Range", "npt=5-");
        let mut resp = answer("npt=5-30", 1_000, 2_000);
        seam.on_play(&d, Some(&asked), &mut resp);
        // The origin's first packet (5.04 s) comes 2 s late; a report 0.5 s after it.
        seam.rewrite_rtp(0, &rtp(9, 1_000 + 3_600, 9))
            .unwrap()
            .unwrap();
        let rtp_of = |reports: Vec<(usize, Bytes)>| {
            let (_, sr) = &reports[0];
            let Some(Ok(RtcpPacket::SenderReport(sr))) = RtcpPackets::new(sr).next() else {
                panic!("not an SR");
            };
            sr.sender_info().rtp_timestamp
        };
        let at = |ms: u64| n0 + second * ms / 1000;
        let r = rtp_of(seam.own_reports(std::time::Duration::from_millis(500), at(2_500)));
        // The player's clock: 7.5 s plays then (5.0 s + 2.5 s), not 5.54 s.
        assert_eq!(r, last.1.wrapping_add(225_000));
        let r = rtp_of(seam.own_reports(std::time::Duration::from_millis(100), at(7_500)));
        assert_eq!(r, last.1.wrapping_add(675_000));
        // A resume (a PLAY that is no continuation) sets the clock at the next report.
        let mut resp = answer("npt=6-30", 91_000, 2_000);
        seam.on_play(&d, None, &mut resp);
        seam.rewrite_rtp(0, &rtp(10, 91_000, 9)).unwrap().unwrap();
        let r = rtp_of(seam.own_reports(std::time::Duration::ZERO, at(60_000)));
        let r2 = rtp_of(seam.own_reports(std::time::Duration::ZERO, at(61_000)));
        assert_eq!(
            r2.wrapping_sub(r),
            90_000,
            "then it runs with the wall clock"
        );
        assert_ne!(
            r,
            last.1.wrapping_add(90_000 * 60),
            "not the player's clock any more"
        );
    }

    #[test]
    fn a_viewer_that_began_at_the_cache_keeps_the_edges_own_reports() {
        let d = described();
        let (mut seam, last) = continued_at_5s(&d);
        seam.keep_own_reports();
        let mut asked = Headers::new();
        asked.append("Range", "npt=5-");
        let mut resp = answer("npt=5-30", 1_000, 2_000);
        seam.on_play(&d, Some(&asked), &mut resp);
        let ntp = 0x0102_0304_0506_0708;
        assert!(
            seam.own_reports(std::time::Duration::ZERO, ntp).is_empty(),
            "nothing passed on from the origin yet"
        );
        // The origin's first packet after the seam, 40 ms on.
        let next = seam
            .rewrite_rtp(0, &rtp(9, 1_000 + 3_600, 9))
            .unwrap()
            .unwrap();
        let next = fields(&next);
        // Its own report, half a second after that packet: its SSRC, the timestamp
        // of that media time in its numbering, the NTP time given, what it was sent.
        let reports = seam.own_reports(std::time::Duration::from_millis(500), ntp);
        assert_eq!(reports.len(), 1, "video only: audio was sent nothing");
        let (track, sr) = &reports[0];
        assert_eq!(*track, 0);
        let Some(Ok(RtcpPacket::SenderReport(sr))) = RtcpPackets::new(sr).next() else {
            panic!("not an SR");
        };
        let info = sr.sender_info();
        assert_eq!(info.ssrc, last.2);
        assert_eq!(info.ssrc, next.2);
        assert_eq!(info.ntp_timestamp, ntp);
        assert_eq!(info.rtp_timestamp, next.1.wrapping_add(45_000));
        assert_eq!(info.packet_count, 2);
        // None once the origin has sent nothing for a while (its stream ended).
        assert!(seam
            .own_reports(std::time::Duration::from_secs(2), ntp)
            .is_empty());
        // The origin's reports are dropped; its BYE is still the viewer's.
        let mut sr_in = [0u8; 64];
        let mut w = CompoundWriter::new(&mut sr_in);
        w.sender_report(
            &mediagate_rtp::rtcp::SenderInfo {
                ssrc: 9,
                ntp_timestamp: 1,
                rtp_timestamp: 1_000 + 3_600,
                packet_count: 1,
                octet_count: 1,
            },
            &[],
        )
        .unwrap();
        let n = w.finish().unwrap();
        assert_eq!(seam.rewrite_rtcp(0, &sr_in[..n]), Some(None));
        let out = seam.rewrite_rtcp(0, &rr_bye(9)).unwrap().unwrap();
        assert!(RtcpPackets::new(&out)
            .any(|p| matches!(p, Ok(RtcpPacket::Goodbye(b)) if b.ssrcs().eq([next.2]))));
        // A session that began at the origin sends none of its own.
        let mut origin_only = OriginSeam::new(&d, &[0, 1], None);
        assert!(origin_only
            .own_reports(std::time::Duration::ZERO, ntp)
            .is_empty());
    }
}
