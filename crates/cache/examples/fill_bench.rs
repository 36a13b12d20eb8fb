//! Fill throughput: writes one cache object of 1,200-byte RTP packets on two tracks
//! (video at 90 kHz with a keyframe each second, audio at 8 kHz) as fast as the cache
//! takes them, ends the fill (fsync included), then reads it all back.
//!
//! `cargo run --release -p mediagate-cache --example fill_bench [DIR] [MB]`
//! (default: a directory under the system temp dir, 512 MB). Issue 13 asks for a fill
//! to write at least 200 MB/s.

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use mediagate_cache::{Cache, Meta, ObjectKey, PacketIn, TrackMeta, Validators};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args.next().map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mgcache-bench-{}", std::process::id()))
    });
    let mb: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(512);
    let dir = root.join("cache");
    let _ = std::fs::remove_dir_all(&dir);
    let (mut cache, _) = Cache::open(&dir, u64::MAX)?;
    let key = ObjectKey {
        url: "rtsp://origin/bench".into(),
        tracks: vec![0, 1],
    };
    let meta = Meta {
        sdp: "v=0\r\n".into(),
        tracks: vec![TrackMeta::video(96), TrackMeta::audio(8_000, 97)],
        duration_ms: None,
        validators: Validators::default(),
        needed_auth: false,
        fetched_unix_ms: 0,
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut rtp = vec![0u8; 1_200];
    rtp[0] = 0x80;
    for (i, b) in rtp.iter_mut().enumerate().skip(12) {
        *b = i as u8;
    }
    // A 4 Mbit/s-like mix: 9 video packets per 40 ms frame, one audio packet per 20 ms.
    let target = mb * 1_000_000;
    let t0 = Instant::now();
    let mut w = cache.begin_fill(&key, &meta, 0, now)?;
    let (mut frame, mut packets) = (0u64, 0u64);
    while w.bytes_written() < target {
        for i in 0..9u16 {
            rtp[2..4].copy_from_slice(&(packets as u16).to_be_bytes());
            w.push(&PacketIn {
                track: 0,
                media_ticks: frame * 3_600,
                arrival_unix_ms: 0,
                keyframe: i == 0 && frame % 25 == 0,
                rtp: &rtp,
            })?;
            packets += 1;
        }
        for a in 0..2 {
            w.push(&PacketIn {
                track: 1,
                media_ticks: (frame * 2 + a) * 160,
                arrival_unix_ms: 0,
                keyframe: true,
                rtp: &rtp[..200],
            })?;
            packets += 1;
        }
        frame += 1;
    }
    let written = w.bytes_written();
    let info = cache.end_fill(w, true, now)?;
    let fill = t0.elapsed();
    let t1 = Instant::now();
    let mut r = cache.reader(&key, 0, now)?.expect("the fill is held");
    let (mut read, mut bytes) = (0u64, 0u64);
    while let Some(p) = r.next_packet()? {
        read += 1;
        bytes += p.rtp.len() as u64;
    }
    let back = t1.elapsed();
    println!(
        "fill: {packets} packets, {:.1} MB in {:.2} s = {:.0} MB/s written ({:.0} packets/s), fsync included",
        written as f64 / 1e6,
        fill.as_secs_f64(),
        written as f64 / 1e6 / fill.as_secs_f64(),
        packets as f64 / fill.as_secs_f64()
    );
    println!(
        "read back: {read} packets, {:.1} MB of RTP in {:.2} s = {:.0} packets/s ({:.0} MB/s)",
        bytes as f64 / 1e6,
        back.as_secs_f64(),
        read as f64 / back.as_secs_f64(),
        bytes as f64 / 1e6 / back.as_secs_f64()
    );
    println!(
        "held range {:?}, object {:.1} MB",
        info.ranges,
        info.size_bytes as f64 / 1e6
    );
    assert_eq!(read, packets, "every packet reads back");
    drop(r);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
