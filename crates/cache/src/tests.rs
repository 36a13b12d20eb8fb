//! Fill → read round trips on a synthetic two-track clip whose every packet can be
//! recomputed from (track, index), so a test can say exactly which packets it expects.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::*;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "mgcache-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

/// The clip: track 0 video at 90 kHz, 25 frames/s, 3 packets a frame, a keyframe each
/// second; track 1 audio at 8 kHz, a packet every 20 ms. Packet `i` of a track carries
/// `i` in its payload.
pub(crate) const FRAME_TICKS: u64 = 3_600;
pub(crate) const AUDIO_TICKS: u64 = 160;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pkt {
    pub(crate) track: u8,
    pub(crate) idx: u64,
    pub(crate) ticks: u64,
    pub(crate) keyframe: bool,
    pub(crate) rtp: Vec<u8>,
}

impl Pkt {
    pub(crate) fn ms(&self) -> u64 {
        if self.track == 0 {
            self.ticks / 90
        } else {
            self.ticks / 8
        }
    }
    pub(crate) fn as_in(&self) -> PacketIn<'_> {
        PacketIn {
            track: self.track,
            media_ticks: self.ticks,
            arrival_unix_ms: 1,
            keyframe: self.keyframe,
            rtp: &self.rtp,
        }
    }
}

pub(crate) fn model(track: u8, idx: u64) -> Pkt {
    let (ticks, keyframe) = if track == 0 {
        let frame = idx / 3;
        (frame * FRAME_TICKS, idx % 3 == 0 && frame % 25 == 0)
    } else {
        (idx * AUDIO_TICKS, true)
    };
    let len = 16 + ((idx * 131 + track as u64 * 17) % 300) as usize;
    let mut rtp = vec![0x80, 96 + track, (idx >> 8) as u8, idx as u8];
    rtp.extend_from_slice(&(ticks as u32).to_be_bytes());
    rtp.extend_from_slice(&[0, 0, 0, track]);
    rtp.extend_from_slice(&(idx as u32).to_be_bytes());
    while rtp.len() < len {
        rtp.push((rtp.len() as u64 ^ idx) as u8);
    }
    Pkt {
        track,
        idx,
        ticks,
        keyframe,
        rtp,
    }
}

/// The clip's packets with media time in [from_ms, to_ms), in the order an origin sends
/// them (media time, then track).
pub(crate) fn clip(from_ms: u64, to_ms: u64) -> Vec<Pkt> {
    let mut v = Vec::new();
    for idx in 0.. {
        let p = model(0, idx);
        if p.ms() >= to_ms {
            break;
        }
        if p.ms() >= from_ms {
            v.push(p);
        }
    }
    for idx in 0.. {
        let p = model(1, idx);
        if p.ms() >= to_ms {
            break;
        }
        if p.ms() >= from_ms {
            v.push(p);
        }
    }
    v.sort_by_key(|p| (p.ms(), p.track, p.idx));
    v
}

pub(crate) fn key(url: &str) -> ObjectKey {
    ObjectKey {
        url: url.to_string(),
        tracks: vec![0, 1],
    }
}

pub(crate) fn meta(etag: &str) -> Meta {
    Meta {
        sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=clip\r\nm=video 0 RTP/AVP 96\r\nm=audio 0 RTP/AVP 97\r\n".into(),
        tracks: vec![
            TrackMeta::video(96),
            TrackMeta::audio(8_000, 97),
        ],
        duration_ms: Some(10_000),
        validators: Validators {
            etag: Some(etag.into()),
            ..Validators::default()
        },
        needed_auth: false,
        fetched_unix_ms: 1,
    }
}

pub(crate) fn fill(
    c: &mut Cache,
    k: &ObjectKey,
    from_ms: u64,
    to_ms: u64,
    clean: bool,
) -> ObjectInfo {
    let mut w = c.begin_fill(k, &meta("v1"), from_ms, at(0)).unwrap();
    for p in clip(from_ms, to_ms) {
        w.push(&p.as_in()).unwrap();
    }
    c.end_fill(w, clean, at(1)).unwrap()
}

pub(crate) fn read_all(
    c: &mut Cache,
    k: &ObjectKey,
    from_ms: u64,
) -> io::Result<(u64, Vec<PacketOut>)> {
    let mut r = c.reader(k, from_ms, at(2))?.expect("a held range");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet()? {
        out.push(p);
    }
    Ok((r.start_ms(), out))
}

/// Checks that `out` is exactly clip packets: each one equal to the model, each track's
/// indices consecutive, media time never going back across tracks.
pub(crate) fn assert_clip_sequence(out: &[PacketOut]) {
    let mut next: [Option<u64>; 2] = [None, None];
    let mut last_ms = 0;
    for (i, p) in out.iter().enumerate() {
        assert!(p.rtp.len() >= 16, "packet {i} too short");
        let idx = u32::from_be_bytes(p.rtp[12..16].try_into().unwrap()) as u64;
        let m = model(p.track, idx);
        assert_eq!(&p.rtp[..], &m.rtp[..], "packet {i} bytes");
        assert_eq!(
            (p.media_ticks, p.keyframe),
            (m.ticks, m.keyframe),
            "packet {i}"
        );
        let t = p.track as usize;
        if let Some(n) = next[t] {
            assert_eq!(idx, n, "track {t} skips or repeats at packet {i}");
        }
        next[t] = Some(idx + 1);
        assert!(m.ms() >= last_ms, "media time goes back at packet {i}");
        last_ms = m.ms();
    }
}

fn as_pkts(out: &[PacketOut]) -> Vec<(u8, u64)> {
    out.iter()
        .map(|p| {
            (
                p.track,
                u32::from_be_bytes(p.rtp[12..16].try_into().unwrap()) as u64,
            )
        })
        .collect()
}

#[test]
fn one_run_reads_back_exactly_what_was_written() {
    let d = TempDir::new("one");
    let (mut c, rec) = Cache::open(d.path(), 1 << 30).unwrap();
    assert_eq!(rec, Recovery::default());
    let k = key("rtsp://o/clip");
    let info = fill(&mut c, &k, 0, 10_000, true);
    // Last video frame at 9960 ms, last audio packet at 9980 ms.
    assert_eq!(info.ranges, vec![(0, 9_960)]);
    assert!(info.complete);
    assert_eq!(c.covered(&k, 0), Some((0, 9_960)));
    assert_eq!(c.covered(&k, 9_959), Some((0, 9_960)));
    assert_eq!(c.covered(&k, 9_960), None);
    let (start, out) = read_all(&mut c, &k, 0).unwrap();
    assert_eq!(start, 0);
    let written = clip(0, 10_000);
    assert_eq!(
        as_pkts(&out),
        written.iter().map(|p| (p.track, p.idx)).collect::<Vec<_>>()
    );
    assert_clip_sequence(&out);
    assert_eq!(info.size_bytes, c.used_bytes());
}

#[test]
fn a_reader_starts_at_the_keyframe_at_or_before_the_asked_time() {
    let d = TempDir::new("seek");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    fill(&mut c, &k, 0, 10_000, true);
    for (asked, kf) in [
        (3_500, 3_000),
        (3_000, 3_000),
        (2_999, 2_000),
        (9_959, 9_000),
    ] {
        let (start, out) = read_all(&mut c, &k, asked).unwrap();
        assert_eq!(start, kf, "asked {asked}");
        assert!(
            out[0].keyframe && out[0].track == 0,
            "starts with the keyframe"
        );
        let want: Vec<_> = clip(kf, 10_000).iter().map(|p| (p.track, p.idx)).collect();
        assert_eq!(as_pkts(&out), want, "asked {asked}");
    }
}

#[test]
fn runs_that_meet_merge_into_one_range_read_across_runs() {
    let d = TempDir::new("runs");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    fill(&mut c, &k, 0, 4_000, true);
    let info = fill(&mut c, &k, 6_000, 10_000, true);
    assert_eq!(info.ranges, vec![(0, 3_960), (6_000, 9_960)]);
    assert!(!info.complete);
    assert_eq!(c.covered(&k, 5_000), None);
    assert!(c.reader(&k, 5_000, at(3)).unwrap().is_none());
    assert_eq!(c.start_of(&k, 5_000, at(3)), None);
    // Where a reader would start, without one: the keyframe at or before.
    assert_eq!(c.start_of(&k, 7_100, at(3)), Some(7_000));
    let (start, out) = read_all(&mut c, &k, 7_100).unwrap();
    assert_eq!(start, 7_000);
    assert_clip_sequence(&out);
    // The gap filled by a third run (starting in the first, ending in the last).
    let info = fill(&mut c, &k, 3_000, 7_000, false);
    assert_eq!(info.ranges, vec![(0, 9_960)]);
    assert!(info.complete);
    let (start, out) = read_all(&mut c, &k, 0).unwrap();
    assert_eq!(start, 0);
    assert_clip_sequence(&out);
    let want: Vec<_> = clip(0, 10_000).iter().map(|p| (p.track, p.idx)).collect();
    assert_eq!(as_pkts(&out), want);
    // From inside the middle run too.
    let (start, out) = read_all(&mut c, &k, 5_500).unwrap();
    assert_eq!(start, 5_000);
    let want: Vec<_> = clip(5_000, 10_000)
        .iter()
        .map(|p| (p.track, p.idx))
        .collect();
    assert_eq!(as_pkts(&out), want);
}

#[test]
fn a_run_inside_another_is_pruned_and_the_object_survives_reopen() {
    let d = TempDir::new("prune");
    let k = key("rtsp://o/clip");
    let before = {
        let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
        fill(&mut c, &k, 2_000, 4_000, true);
        let info = fill(&mut c, &k, 0, 10_000, true);
        assert!(c.pin(&k, true));
        let runs = std::fs::read_dir(d.path().join(object::dir_name(&k)))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .count();
        assert_eq!(runs, 1, "the 2-4 s run is inside the whole-clip run");
        (info.ranges, c.used_bytes())
    };
    let (mut c, rec) = Cache::open(d.path(), 1 << 30).unwrap();
    assert_eq!(rec.objects, 1);
    assert_eq!(rec.kept_bytes, c.used_bytes());
    assert_eq!((rec.dropped_bytes, rec.dropped_objects), (0, 0));
    let info = c.lookup(&k).unwrap();
    assert_eq!((info.ranges, c.used_bytes()), before);
    assert!(info.pinned && info.complete);
    assert_eq!(info.meta, meta("v1"));
    let (_, out) = read_all(&mut c, &k, 0).unwrap();
    assert_eq!(out.len(), clip(0, 10_000).len());
}

#[test]
fn a_second_fill_of_one_object_is_refused_until_the_first_ends() {
    let d = TempDir::new("conc");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    let w = c.begin_fill(&k, &meta("v1"), 0, at(0)).unwrap();
    let e = c.begin_fill(&k, &meta("v1"), 5_000, at(0)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    // Another variant of the same URL is another object.
    let mut k2 = k.clone();
    k2.tracks = vec![0];
    let mut m2 = meta("v1");
    m2.tracks.truncate(1);
    let w2 = c.begin_fill(&k2, &m2, 0, at(0)).unwrap();
    c.end_fill(w, true, at(1)).unwrap();
    c.end_fill(w2, true, at(1)).unwrap();
    let w = c.begin_fill(&k, &meta("v1"), 5_000, at(0)).unwrap();
    // A writer dropped without end_fill (its thread died) frees the object and keeps
    // what it wrote.
    let mut w = w;
    for p in clip(5_000, 7_000) {
        w.push(&p.as_in()).unwrap();
    }
    drop(w);
    let w = c.begin_fill(&k, &meta("v1"), 0, at(0)).unwrap();
    assert_eq!(c.lookup(&k).unwrap().ranges, vec![(5_000, 6_960)]);
    c.end_fill(w, true, at(1)).unwrap();
}

#[test]
fn changed_validators_or_sdp_refetch_and_other_headers_do_not() {
    let d = TempDir::new("refetch");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    fill(&mut c, &k, 0, 4_000, true);
    // Same version, new Expires and fetch time: content kept, meta updated.
    let mut m = meta("v1");
    m.validators.expires = Some("Thu, 01 Dec 2026 16:00:00 GMT".into());
    m.fetched_unix_ms = 99;
    let w = c.begin_fill(&k, &m, 6_000, at(0)).unwrap();
    c.end_fill(w, true, at(1)).unwrap();
    let info = c.lookup(&k).unwrap();
    assert_eq!(info.ranges, vec![(0, 3_960)]);
    assert_eq!(info.meta, m);
    // A new ETag: the old content goes before the new run is written.
    let w = c.begin_fill(&k, &meta("v2"), 6_000, at(0)).unwrap();
    assert!(c.lookup(&k).unwrap().ranges.is_empty());
    c.end_fill(w, true, at(1)).unwrap();
    // A changed SDP (other than its o= line) too.
    fill(&mut c, &k, 0, 2_000, true);
    let mut m = meta("v1");
    m.sdp.push_str("a=x-changed\r\n");
    let w = c.begin_fill(&k, &m, 0, at(0)).unwrap();
    assert!(c.lookup(&k).unwrap().ranges.is_empty());
    drop(w);
    // Reopening after a refetch finds only the new generation.
    drop(c);
    let (c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    assert_eq!(c.lookup(&k).unwrap().meta, m);
}

#[test]
fn eviction_drops_least_recently_used_never_pinned_nor_filling() {
    let d = TempDir::new("evict");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let (a, b, f, p) = (
        key("rtsp://o/a"),
        key("rtsp://o/b"),
        key("rtsp://o/f"),
        key("rtsp://o/p"),
    );
    let one = fill(&mut c, &p, 0, 10_000, true).size_bytes;
    assert!(c.pin(&p, true));
    fill(&mut c, &a, 0, 10_000, true);
    fill(&mut c, &b, 0, 10_000, true);
    // `a` used more recently than `b`.
    c.reader(&a, 0, at(50)).unwrap().unwrap();
    c.reader(&b, 0, at(40)).unwrap().unwrap();
    let mut w = c.begin_fill(&f, &meta("v1"), 0, at(60)).unwrap();
    for pk in clip(0, 10_000) {
        w.push(&pk.as_in()).unwrap();
    }
    // The process dies during the fill of `f`.
    drop(w);
    drop(c);
    // Room for three and a half objects: `b` (least recently used) must go; `p` is
    // pinned.
    let limit = one * 3 + one / 2;
    let (mut c, rec) = Cache::open(d.path(), limit).unwrap();
    assert_eq!((rec.objects, rec.dropped_objects), (3, 1), "{rec:?}");
    assert!(c.lookup(&b).is_none());
    assert_eq!(c.evictions(), 1, "b, evicted at open");
    assert!(c.lookup(&a).is_some() && c.lookup(&p).is_some() && c.lookup(&f).is_some());
    assert!(c.used_bytes() <= limit);
    // `f` filled again: while it grows, the next eviction takes `a`, never `p` nor `f`.
    let mut w = c.begin_fill(&f, &meta("v1"), 0, at(60)).unwrap();
    for pk in clip(0, 10_000) {
        w.push(&pk.as_in()).unwrap();
    }
    let g = c
        .begin_fill(&key("rtsp://o/g"), &meta("v1"), 0, at(70))
        .unwrap();
    assert!(c.lookup(&a).is_none(), "a is the least recently used");
    assert!(c.lookup(&p).is_some() && c.lookup(&f).is_some());
    assert_eq!(c.evictions(), 2);
    // Pinned objects stay even when they alone exceed the limit.
    drop(g);
    c.end_fill(w, true, at(80)).unwrap();
    assert!(c.used_bytes() <= limit);
    drop(c);
    let (c, rec) = Cache::open(d.path(), 1).unwrap();
    assert_eq!(rec.objects, 1);
    assert_eq!(c.evictions(), rec.dropped_objects as u64, "{rec:?}");
    assert!(c.lookup(&p).unwrap().pinned);
    assert!(c.used_bytes() > c.limit_bytes());
}

#[test]
fn purge_removes_files_and_a_fill_in_progress_ends_not_found() {
    let d = TempDir::new("purge");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    fill(&mut c, &k, 0, 2_000, true);
    let mut w = c.begin_fill(&k, &meta("v1"), 4_000, at(0)).unwrap();
    assert!(c.purge(&k).unwrap());
    assert!(!c.purge(&k).unwrap());
    assert!(!d.path().join(object::dir_name(&k)).exists());
    for p in clip(4_000, 5_000) {
        w.push(&p.as_in()).unwrap();
    }
    assert_eq!(
        c.end_fill(w, true, at(1)).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert!(c.list().is_empty());
    assert_eq!(c.used_bytes(), 0);
    assert!(!c.pin(&k, true));
    assert_eq!(
        c.refresh(&k, Validators::default(), 5).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn refresh_replaces_validators_and_persists() {
    let d = TempDir::new("refresh");
    let k = key("rtsp://o/clip");
    {
        let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
        fill(&mut c, &k, 0, 2_000, true);
        let v = Validators {
            etag: Some("v1".into()),
            cache_control: Some("max-age=60".into()),
            ..Validators::default()
        };
        c.refresh(&k, v, 777).unwrap();
    }
    let (c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let m = c.lookup(&k).unwrap().meta;
    assert_eq!(m.fetched_unix_ms, 777);
    assert_eq!(m.validators.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(c.lookup(&k).unwrap().ranges, vec![(0, 1_960)]);
}

#[test]
fn an_unclean_run_is_served_only_below_its_last_packet_time() {
    let d = TempDir::new("unclean");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    let info = fill(&mut c, &k, 0, 3_000, false);
    assert_eq!(info.ranges, vec![(0, 2_960)]);
    let (_, out) = read_all(&mut c, &k, 0).unwrap();
    let want: Vec<_> = clip(0, 2_960).iter().map(|p| (p.track, p.idx)).collect();
    assert_eq!(as_pkts(&out), want);
}

#[test]
fn bad_input_is_refused() {
    let d = TempDir::new("bad");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    let mut m = meta("v1");
    m.tracks.pop();
    assert_eq!(
        c.begin_fill(&k, &m, 0, at(0)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let mut m = meta("v1");
    m.tracks[0].clock_rate = 0;
    assert_eq!(
        c.begin_fill(&k, &m, 0, at(0)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let mut m = meta("v1");
    m.sdp = "a".repeat(5 << 20);
    assert_eq!(
        c.begin_fill(&k, &m, 0, at(0)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(c.list().is_empty() && std::fs::read_dir(d.path()).unwrap().next().is_none());
    let mut w = c.begin_fill(&k, &meta("v1"), 0, at(0)).unwrap();
    let p = PacketIn {
        track: 2,
        media_ticks: 0,
        arrival_unix_ms: 0,
        keyframe: true,
        rtp: &[0x80, 96],
    };
    assert_eq!(w.push(&p).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let big = vec![0u8; 70_000];
    let p = PacketIn {
        track: 0,
        rtp: &big,
        ..p
    };
    assert_eq!(w.push(&p).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    c.end_fill(w, true, at(1)).unwrap();
    assert!(c.lookup(&k).unwrap().ranges.is_empty());
}

#[test]
fn the_edge_can_move_writers_and_readers_to_other_threads() {
    fn send<T: Send>() {}
    send::<Cache>();
    send::<FillWriter>();
    send::<Reader>();
    send::<ObjectInfo>();
}

#[test]
fn a_reader_made_before_a_purge_or_refetch_reads_its_range_to_the_end() {
    let d = TempDir::new("unlinked");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    fill(&mut c, &k, 0, 4_000, true);
    fill(&mut c, &k, 3_000, 8_000, true);
    let mut r = c.reader(&k, 0, at(2)).unwrap().unwrap();
    let first = r.next_packet().unwrap().unwrap();
    // A refetch deletes both runs' files; the reader holds them open.
    let w = c.begin_fill(&k, &meta("v2"), 0, at(3)).unwrap();
    assert!(c.lookup(&k).unwrap().ranges.is_empty());
    let mut out = vec![first];
    while let Some(p) = r.next_packet().unwrap() {
        out.push(p);
    }
    assert_clip_sequence(&out);
    assert_eq!(out.len(), clip(0, 8_000).len());
    c.end_fill(w, true, at(4)).unwrap();
    assert!(c.purge(&k).unwrap());
}

#[test]
fn an_audio_only_object_seeks_to_the_100_ms_step_at_or_before() {
    let d = TempDir::new("audio");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = ObjectKey {
        url: "rtsp://o/radio".into(),
        tracks: vec![1],
    };
    let mut m = meta("v1");
    m.tracks.remove(0);
    let mut w = c.begin_fill(&k, &m, 0, at(0)).unwrap();
    let pk: Vec<Pkt> = clip(0, 5_000)
        .into_iter()
        .filter(|p| p.track == 1)
        .collect();
    for p in &pk {
        // The object has one track: index 0.
        w.push(&PacketIn {
            track: 0,
            ..p.as_in()
        })
        .unwrap();
    }
    let info = c.end_fill(w, true, at(1)).unwrap();
    assert_eq!(info.ranges, vec![(0, 4_980)]);
    let mut r = c.reader(&k, 2_345, at(2)).unwrap().unwrap();
    assert_eq!(r.start_ms(), 2_300);
    let mut n = 0;
    while let Some(p) = r.next_packet().unwrap() {
        let want = &pk[2_300 / 20 + n];
        assert_eq!((p.media_ticks, &p.rtp[..]), (want.ticks, &want.rtp[..]));
        n += 1;
    }
    assert_eq!(n, pk.len() - 2_300 / 20);
}

#[test]
fn a_real_time_fill_reaches_the_file_while_it_runs_so_a_killed_process_keeps_it() {
    let d = TempDir::new("slow");
    let k = key("rtsp://o/slow");
    {
        let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
        let mut w = c.begin_fill(&k, &meta("v1"), 0, at(0)).unwrap();
        // 6 s of the clip arriving in real time: far less than a write chunk.
        for p in clip(0, 6_000) {
            let mut pin = p.as_in();
            pin.arrival_unix_ms = 1_700_000_000_000 + p.ms();
            w.push(&pin).unwrap();
        }
        // What a kill -9 leaves: no end_fill, no drop, nothing more written.
        std::mem::forget(w);
    }
    let (c, rec) = Cache::open(d.path(), 1 << 30).unwrap();
    assert_eq!(rec.objects, 1, "{rec:?}");
    let (start, end) = c.covered(&k, 0).expect("the start of the clip is held");
    assert_eq!(start, 0);
    assert!(
        (5_000..6_000).contains(&end),
        "held up to the last half second or so before the kill: {end} ms"
    );
}

#[test]
fn objects_of_lists_every_variant_of_one_url_and_no_other_url() {
    let d = TempDir::new("objects-of");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let both = key("rtsp://o/clip");
    let other_variant = ObjectKey {
        tracks: vec![0, 2],
        ..key("rtsp://o/clip")
    };
    // Sorts between the two variants' URL and a longer one.
    let longer = key("rtsp://o/clip2");
    let before = key("rtsp://o/cli");
    for k in [&both, &other_variant, &longer, &before] {
        fill(&mut c, k, 0, 1_000, true);
    }
    let keys: Vec<ObjectKey> = c
        .objects_of("rtsp://o/clip")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![both, other_variant]);
    assert!(c.objects_of("rtsp://o/none").is_empty());
}
