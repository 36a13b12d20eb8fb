//! `mediagate-loadgen cache-fill`: how fast the cache crate writes a fill to disk, the
//! ceiling of a fill from an origin that sends faster than real time (issue 13,
//! Performance: at least 200 MB/s).
//!
//! It writes one synthetic two-track object (video 25 frames/s in packets of
//! `--packet-size` bytes with a keyframe a second, audio a packet every 20 ms) through
//! `mediagate_cache`'s `FillWriter`, exactly as the edge's fill thread does, as fast as
//! it can, then ends the fill (the commit and fsync included in the time), and reads
//! the object back once to check it holds the whole range.
//!
//! What it does not: involve the network, the origin or the edge's bounded queue in
//! front of the writer (the edge's own prefetch measures those end to end).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use mediagate_cache::{Cache, Meta, ObjectKey, PacketIn, TrackMeta, Validators};

/// Options of `mediagate-loadgen cache-fill`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CacheFillArgs {
    /// Cache directory to write in (created; the object is purged at the end).
    #[arg(long)]
    pub dir: PathBuf,
    /// Megabytes (10^6 bytes) of RTP to write.
    #[arg(long, default_value_t = 1000)]
    pub megabytes: u64,
    /// Bytes of each video RTP packet (audio packets are 200 bytes).
    #[arg(long, default_value_t = 1200)]
    pub packet_size: usize,
}

/// Video packets a frame of `video_bytes_per_frame` takes.
fn packets_per_frame(video_bytes_per_frame: u64, packet_size: usize) -> u64 {
    video_bytes_per_frame.div_ceil(packet_size as u64).max(1)
}

pub(crate) fn run(args: CacheFillArgs) -> anyhow::Result<u8> {
    if !(100..=65_000).contains(&args.packet_size) {
        bail!("--packet-size must be between 100 and 65000");
    }
    if args.megabytes == 0 || args.megabytes > 100_000 {
        bail!("--megabytes must be between 1 and 100000");
    }
    let (mut cache, _) = Cache::open(&args.dir, u64::MAX)
        .with_context(|| format!("cannot open the cache directory {}", args.dir.display()))?;
    let key = ObjectKey {
        url: "rtsp://loadgen/cache-fill".into(),
        tracks: vec![0, 1],
    };
    let meta = Meta {
        sdp: "v=0\r\n".into(),
        tracks: vec![TrackMeta::video(96), TrackMeta::audio(48_000, 97)],
        duration_ms: None,
        validators: Validators::default(),
        needed_auth: false,
        fetched_unix_ms: 0,
    };
    let _ = cache.purge(&key);
    let total = args.megabytes * 1_000_000;
    // A 4 Mbit/s video track: 20 kB a frame.
    let per_frame = packets_per_frame(20_000, args.packet_size);
    let mut video = vec![0u8; args.packet_size];
    video[0] = 0x80;
    video[1] = 96;
    let mut audio = vec![0u8; 200];
    audio[0] = 0x80;
    audio[1] = 97;
    let started = Instant::now();
    let mut w = cache
        .begin_fill(&key, &meta, 0, SystemTime::now())
        .context("begin_fill")?;
    let (mut written, mut packets, mut frame) = (0u64, 0u64, 0u64);
    while written < total {
        let ms = frame * 40;
        for i in 0..per_frame {
            w.push(&PacketIn {
                track: 0,
                media_ticks: ms * 90,
                arrival_unix_ms: 0,
                keyframe: i == 0 && frame % 25 == 0,
                rtp: &video,
            })?;
            written += video.len() as u64;
            packets += 1;
        }
        for a in 0..2 {
            w.push(&PacketIn {
                track: 1,
                media_ticks: (ms + a * 20) * 48,
                arrival_unix_ms: 0,
                keyframe: true,
                rtp: &audio,
            })?;
            written += audio.len() as u64;
            packets += 1;
        }
        frame += 1;
    }
    let on_disk = w.bytes_written();
    let info = cache
        .end_fill(w, true, SystemTime::now())
        .context("end_fill")?;
    let took = started.elapsed().max(Duration::from_micros(1));
    let media_s = frame as f64 * 0.04;
    println!(
        "cache-fill {} MB of RTP ({} packets, {:.0} s of a 4 Mbit/s clip) in {:.2} s: {:.0} MB/s of RTP, {:.0} MB/s to disk (records included, fsync at the end), {:.0}x real time",
        written / 1_000_000,
        packets,
        media_s,
        took.as_secs_f64(),
        written as f64 / 1e6 / took.as_secs_f64(),
        on_disk as f64 / 1e6 / took.as_secs_f64(),
        media_s / took.as_secs_f64()
    );
    let held = info.ranges.first().copied().unwrap_or((0, 0));
    let _ = cache.purge(&key);
    if held.1 + 1_000 < (frame.saturating_sub(1)) * 40 {
        eprintln!("the object holds only {held:?} ms");
        return Ok(2);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_fill_is_written_and_checked() {
        let dir = std::env::temp_dir().join(format!("mg-loadgen-fill-{}", std::process::id()));
        let code = run(CacheFillArgs {
            dir: dir.clone(),
            megabytes: 2,
            packet_size: 1200,
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(code, 0);
        assert_eq!(packets_per_frame(20_000, 1200), 17);
    }
}
