//! Cache objects: arbitrary bytes as an object's files (the packet log, its index, its
//! metadata), or a fill of arbitrary packets cut and flipped anywhere. Opening the
//! cache and reading every held range from its start and its middle must not panic,
//! must not allocate without bound (record lengths are capped before allocating), and
//! must hand out only packets that were pushed.
#![no_main]
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mediagate_cache::{Cache, Meta, ObjectKey, PacketIn, TrackMeta, Validators};

fn dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("mgcache-fuzz-{}", std::process::id()))
}

fn key() -> ObjectKey {
    ObjectKey {
        url: "rtsp://origin/clip".into(),
        tracks: vec![0, 1],
    }
}

fn meta() -> Meta {
    Meta {
        sdp: "v=0\r\n".into(),
        tracks: vec![TrackMeta::video(96), TrackMeta::audio(8_000, 0)],
        duration_ms: Some(10_000),
        validators: Validators::default(),
        needed_auth: false,
        fetched_unix_ms: 0,
    }
}

/// Packets from bytes: [track, flags, ticks (3 bytes), len, payload...]. Each payload
/// starts with its sequence number so a read-back can be checked against the pushes.
fn packets(data: &[u8]) -> Vec<(u8, u64, bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut d = data;
    let mut ticks = [0u64; 2];
    while d.len() >= 6 && out.len() < 2_000 {
        let track = d[0] & 1;
        let keyframe = d[1] & 1 != 0;
        let step = u64::from(d[2]) | u64::from(d[3]) << 8 | u64::from(d[4] & 0x3f) << 16;
        ticks[track as usize] += step;
        let len = usize::from(d[5]).min(d.len() - 6);
        let mut rtp = (out.len() as u32).to_be_bytes().to_vec();
        rtp.extend_from_slice(&d[6..6 + len]);
        out.push((track, ticks[track as usize], keyframe, rtp));
        d = &d[6 + len..];
    }
    out
}

fn object_dir(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

fn read_everything(root: &Path, pushed: Option<&[(u8, u64, bool, Vec<u8>)]>) {
    let Ok((mut c, _)) = Cache::open(root, 1 << 30) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1);
    for info in c.list() {
        for (s, e) in info.ranges.clone() {
            for from in [s, s + (e - s) / 2] {
                let Ok(Some(mut r)) = c.reader(&info.key, from, now) else {
                    continue;
                };
                let mut n = 0;
                while let Ok(Some(p)) = r.next_packet() {
                    if let Some(pushed) = pushed {
                        let seq = u32::from_be_bytes(p.rtp[..4].try_into().unwrap()) as usize;
                        let (t, ticks, kf, ref rtp) = pushed[seq];
                        assert_eq!((p.track, p.media_ticks, p.keyframe), (t, ticks, kf));
                        assert_eq!(&p.rtp[..], &rtp[..]);
                    }
                    n += 1;
                    assert!(n <= 1_000_000);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let root = dir();
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    let now = UNIX_EPOCH;
    let (mut c, _) = Cache::open(&root, 1 << 30).unwrap();
    let k = key();
    match mode % 4 {
        // A fill of arbitrary packets, then cut and one byte flipped.
        0 | 1 => {
            let (ctl, body) = rest.split_at(rest.len().min(5));
            let pushed = packets(body);
            let mut w = c.begin_fill(&k, &meta(), 0, now).unwrap();
            for (track, ticks, keyframe, rtp) in &pushed {
                let p = PacketIn {
                    track: *track,
                    media_ticks: *ticks,
                    arrival_unix_ms: 0,
                    keyframe: *keyframe,
                    rtp,
                };
                w.push(&p).unwrap();
            }
            if mode % 4 == 0 {
                c.end_fill(w, mode & 4 != 0, now).unwrap();
            } else {
                drop(w);
            }
            drop(c);
            let ctl: Vec<u8> = ctl.iter().copied().chain([0; 5]).take(5).collect();
            if let Some(obj) = object_dir(&root) {
                let log = obj.join("run-00000001.log");
                if let Ok(mut b) = fs::read(&log) {
                    let cut = usize::from(u16::from_le_bytes([ctl[0], ctl[1]]));
                    if cut != 0 && cut < b.len() {
                        b.truncate(cut);
                    }
                    let at = usize::from(u16::from_le_bytes([ctl[2], ctl[3]]));
                    if !b.is_empty() && ctl[4] != 0 {
                        let i = at % b.len();
                        b[i] ^= ctl[4];
                    }
                    fs::write(&log, &b).unwrap();
                }
            }
            read_everything(&root, Some(&pushed));
        }
        // Arbitrary bytes as one of the files.
        _ => {
            let mut w = c.begin_fill(&k, &meta(), 0, now).unwrap();
            for i in 0..200u64 {
                let rtp = [0x80, 96, 0, i as u8];
                let p = PacketIn {
                    track: (i % 2) as u8,
                    media_ticks: if i % 2 == 0 { i * 1_800 } else { i * 160 },
                    arrival_unix_ms: 0,
                    keyframe: i % 20 == 0 || i % 2 == 1,
                    rtp: &rtp,
                };
                w.push(&p).unwrap();
            }
            c.end_fill(w, true, now).unwrap();
            drop(c);
            let obj = object_dir(&root).unwrap();
            let name = match rest.first().map(|b| b % 3) {
                Some(0) => "run-00000001.log",
                Some(1) => "run-00000001.idx",
                _ => "meta.json",
            };
            fs::write(obj.join(name), rest.get(1..).unwrap_or_default()).unwrap();
            read_everything(&root, None);
        }
    }
    let _ = fs::remove_dir_all(&root);
});
