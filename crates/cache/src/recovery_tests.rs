//! Crash safety: objects whose files were cut or damaged anywhere, and a fill killed
//! with SIGKILL, reopen without panicking, never serve a packet that was not written
//! for the range, and keep what verifies.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use proptest::prelude::*;

use crate::object::{dir_name, idx_name, log_name};
use crate::tests::*;
use crate::*;

/// Reads every held range from its start and from `probe` inside it. A read error is
/// allowed only as the damage report it is (InvalidData), after which the cache must
/// stop offering the damaged part; the final pass must read every range without error.
/// Returns the ranges of the final pass.
fn check_every_range(c: &mut Cache, k: &ObjectKey) -> Vec<(u64, u64)> {
    for _attempt in 0..8 {
        let Some(info) = c.lookup(k) else {
            return Vec::new();
        };
        let mut clean_pass = true;
        for &(s, e) in &info.ranges {
            assert_eq!(c.covered(k, s), Some((s, e)));
            assert_eq!(c.covered(k, e - 1), Some((s, e)));
            for from in [s, s + (e - s) / 2] {
                let mut r = c.reader(k, from, at(5)).unwrap().expect("covered range");
                assert!(r.start_ms() <= from && r.start_ms() >= s);
                let mut out = Vec::new();
                let res = loop {
                    match r.next_packet() {
                        Ok(Some(p)) => out.push(p),
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                // Whatever came out, error or not, is exactly clip packets.
                assert_clip_sequence(&out);
                if let Err(e) = res {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                    clean_pass = false;
                    break;
                }
                let first = out.first().expect("a held range has packets");
                assert!(first.keyframe && first.track == 0);
                assert_eq!(first.media_ticks / 90, r.start_ms());
                for (t, step) in [(0u8, 40u64), (1, 20)] {
                    let ms: Vec<u64> = out
                        .iter()
                        .filter(|p| p.track == t)
                        .map(|p| {
                            if t == 0 {
                                p.media_ticks / 90
                            } else {
                                p.media_ticks / 8
                            }
                        })
                        .collect();
                    let (lo, hi) = (ms[0], *ms.last().unwrap());
                    assert!(lo < r.start_ms() + step, "track {t} starts late: {lo}");
                    assert!(hi + step >= e, "track {t} ends early: {hi} < {e}");
                }
            }
            if !clean_pass {
                break;
            }
        }
        if clean_pass {
            return info.ranges;
        }
        // The damaged run is left out at once and re-verified (keeping its verified
        // prefix) by the next call that may change the object, such as `reader`.
        drop(c.reader(k, 0, at(5)).unwrap());
    }
    panic!("damage reported again and again");
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    Clean,
    Unclean,
    /// The process died: no commit record, buffered packets lost at a cut.
    Crash,
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate { file: usize, at: f64 },
    Flip { file: usize, at: f64, mask: u8 },
    Delete { file: usize },
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        Just(Ending::Clean),
        Just(Ending::Unclean),
        Just(Ending::Crash)
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0usize..8, 0.0f64..1.0).prop_map(|(file, at)| Damage::Truncate { file, at }),
        (0usize..8, 0.0f64..1.0, 1u8..=255).prop_map(|(file, at, mask)| Damage::Flip {
            file,
            at,
            mask
        }),
        (0usize..8).prop_map(|file| Damage::Delete { file }),
    ]
}

/// The range a single run's log holds when only its first `cut` bytes survive, computed
/// from the packets written, independently of the code under test.
fn model_range(written: &[Pkt], cut: u64) -> Option<(u64, u64)> {
    let mut off = format::LOG_HEADER_LEN;
    let (mut first_key, mut last) = (None, [None, None]);
    for p in written {
        off += (format::RECORD_HEAD_LEN + format::PACKET_FIXED_LEN + p.rtp.len()) as u64;
        if off > cut {
            break;
        }
        if p.track == 0 && p.keyframe && first_key.is_none() {
            first_key = Some(p.ms());
        }
        last[p.track as usize] = Some(p.ms());
    }
    let end = last.iter().flatten().min().copied()?;
    let start = first_key?;
    (end > start).then_some((start, end))
}

/// Start of the record that holds byte `at` of a single run's log (the header is 0).
fn record_start(written: &[Pkt], at: u64) -> u64 {
    let mut off = format::LOG_HEADER_LEN;
    if at < off {
        return 0;
    }
    for p in written {
        let next = off + (format::RECORD_HEAD_LEN + format::PACKET_FIXED_LEN + p.rtp.len()) as u64;
        if at < next {
            return off;
        }
        off = next;
    }
    off
}

fn files_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn damaged_objects_reopen_without_serving_damage(
        runs in prop::collection::vec((0u64..12, 1u64..8, ending()), 1..4),
        damages in prop::collection::vec(damage(), 1..3),
    ) {
        let d = TempDir::new("prop");
        let k = key("rtsp://o/clip");
        let mut written_single = Vec::new();
        {
            let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
            let last = runs.len() - 1;
            for (i, &(start_s, len_s, end)) in runs.iter().enumerate() {
                let (from, to) = (start_s * 1000, (start_s + len_s) * 1000);
                let mut w = c.begin_fill(&k, &meta("v1"), from, at(0)).unwrap();
                let pk = clip(from, to);
                for p in &pk {
                    w.push(&p.as_in()).unwrap();
                }
                written_single = pk;
                match end {
                    Ending::Clean => { c.end_fill(w, true, at(1)).unwrap(); }
                    Ending::Unclean => { c.end_fill(w, false, at(1)).unwrap(); }
                    // Only the last run can die with the process; earlier ones end unclean.
                    Ending::Crash if i == last => drop(w),
                    Ending::Crash => { c.end_fill(w, false, at(1)).unwrap(); }
                }
            }
        }
        let dir = d.path().join(dir_name(&k));
        let before = {
            let (c, _) = Cache::open(d.path(), 1 << 30).unwrap();
            c.lookup(&k).unwrap().ranges
        };
        // The single-run case has an exact model of what must survive.
        let single = runs.len() == 1 && files_of(&dir).iter().filter(|p| p.extension().is_some_and(|e| e == "log")).count() == 1;
        // The earliest damage in the log decides what a single run keeps.
        let mut log_cut = u64::MAX;
        let mut only_aux = true;
        for dmg in &damages {
            let files = files_of(&dir);
            let (Damage::Truncate { file, .. } | Damage::Flip { file, .. } | Damage::Delete { file }) = *dmg;
            let path = &files[file % files.len()];
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let is_log = name.ends_with(".log");
            let is_meta = name == "meta.json";
            if is_log || is_meta {
                only_aux = false;
            }
            let len = fs::metadata(path).unwrap().len();
            match *dmg {
                Damage::Truncate { at, .. } => {
                    let cut = (len as f64 * at) as u64;
                    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(cut).unwrap();
                    if is_log {
                        log_cut = log_cut.min(cut);
                    }
                }
                Damage::Flip { at, mask, .. } if len > 0 => {
                    let mut b = fs::read(path).unwrap();
                    let i = ((len as f64 * at) as usize).min(b.len() - 1);
                    b[i] ^= mask;
                    fs::write(path, &b).unwrap();
                    if is_log {
                        log_cut = log_cut.min(record_start(&written_single, i as u64));
                    }
                }
                Damage::Flip { .. } => {}
                Damage::Delete { .. } => {
                    fs::remove_file(path).unwrap();
                    if is_log {
                        log_cut = 0;
                    }
                }
            }
        }
        let (mut c, rec) = Cache::open(d.path(), 1 << 30).unwrap();
        prop_assert_eq!(rec.objects + rec.dropped_objects, 1);
        let after = check_every_range(&mut c, &k);
        // Nothing is invented: every range after lies inside one from before.
        for &(s, e) in &after {
            prop_assert!(before.iter().any(|&(bs, be)| bs <= s && e <= be), "{:?} not in {:?}", (s, e), before);
        }
        if only_aux {
            // Indexes, the last-used file, temporaries: losing them loses nothing.
            prop_assert_eq!(&after, &before);
        }
        if single && c.lookup(&k).is_some() {
            let expect = model_range(&written_single, log_cut);
            prop_assert_eq!(after, expect.into_iter().collect::<Vec<_>>());
        }
        // A second open of the repaired object finds the same.
        let again = c.lookup(&k).map(|i| i.ranges);
        drop(c);
        let (c, rec) = Cache::open(d.path(), 1 << 30).unwrap();
        prop_assert_eq!(c.lookup(&k).map(|i| i.ranges), again);
        prop_assert_eq!(rec.dropped_bytes, 0);
    }
}

#[test]
fn a_fill_summary_equals_the_scan_of_its_log() {
    let d = TempDir::new("scan");
    let (mut c, _) = Cache::open(d.path(), 1 << 30).unwrap();
    let k = key("rtsp://o/clip");
    fill(&mut c, &k, 2_000, 9_000, true);
    let o = c.objects.get(&k).unwrap();
    let run = &o.runs[0];
    let mut f = fs::File::open(&run.log).unwrap();
    let scanned = format::scan_log(&mut f, &meta("v1").tracks)
        .unwrap()
        .unwrap();
    assert_eq!(scanned, run.sum);
    let idx = fs::read(o.dir.join(idx_name(1))).unwrap();
    assert_eq!(
        format::decode_index(&idx, &meta("v1").tracks),
        Some(scanned)
    );
    assert!(o.dir.join(log_name(1)).exists());
}

const CHILD_ENV: &str = "MGCACHE_CRASH_CHILD_DIR";
const READY: &str = "crash-child-ready";

/// The child side of `a_fill_killed_with_sigkill_keeps_its_committed_runs`: fills runs
/// forever, printing each committed range, until it is killed.
#[test]
#[ignore = "run as a child process by a_fill_killed_with_sigkill_keeps_its_committed_runs"]
fn crash_child() {
    let dir = std::env::var(CHILD_ENV).expect("run by the crash test");
    let (mut c, _) = Cache::open(Path::new(&dir), 1 << 28).unwrap();
    let k = key("rtsp://o/long");
    let mut m = meta("v1");
    m.duration_ms = Some(200_000);
    let all = clip(0, 200_000);
    println!("{READY}");
    // A bound in case the parent dies without killing us.
    let stop = std::time::Instant::now() + Duration::from_secs(60);
    for i in 0u64.. {
        if std::time::Instant::now() > stop {
            break;
        }
        let start = (i * 37 % 150) * 1000;
        let mut w = c.begin_fill(&k, &m, start, at(i)).unwrap();
        for p in all
            .iter()
            .filter(|p| p.ms() >= start && p.ms() < start + 40_000)
        {
            w.push(&p.as_in()).unwrap();
        }
        let info = c.end_fill(w, i % 3 != 0, at(i)).unwrap();
        let (s, e) = info
            .ranges
            .iter()
            .find(|r| r.0 <= start && start < r.1)
            .copied()
            .unwrap();
        println!("committed {s} {e}");
    }
}

#[test]
fn a_fill_killed_with_sigkill_keeps_its_committed_runs() {
    let d = TempDir::new("sigkill");
    let exe = std::env::current_exe().unwrap();
    let k = key("rtsp://o/long");
    let mut total_committed = 0;
    for delay_ms in [30u64, 120, 350, 700] {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "recovery_tests::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The harness prints its "test ... " line without a newline before our output.
        loop {
            let l = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("child starts");
            if l.ends_with(READY) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        t.join().unwrap();
        let committed: Vec<(u64, u64)> = rx
            .try_iter()
            .filter_map(|l| {
                let mut it = l.strip_prefix("committed ")?.split(' ');
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .collect();
        total_committed += committed.len();
        let (mut c, rec) = Cache::open(d.path(), 1 << 28).unwrap();
        if total_committed > 0 {
            // Killed before the object's first meta.json was renamed into place, the
            // directory is rightly dropped; after a committed run, never.
            assert_eq!(rec.dropped_objects, 0, "{rec:?}");
        }
        let ranges = check_every_range(&mut c, &k);
        for (s, e) in committed {
            assert!(
                ranges.iter().any(|&(rs, re)| rs <= s && e <= re),
                "committed range {s}..{e} lost after kill at {delay_ms} ms: {ranges:?}"
            );
        }
    }
    assert!(
        total_committed > 0,
        "the child never committed a run before being killed"
    );
}
