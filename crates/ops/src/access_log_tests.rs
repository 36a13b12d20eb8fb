use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::*;

fn sample() -> AccessLine {
    AccessLine::new()
        .time("time", 1_733_449_353_123)
        .token("client", "192.0.2.7:5004")
        .text("user", None)
        .token("method", "PLAY")
        .text("url", Some("rtsp://edge/cam 1?\"q\"\\"))
        .int("bytes", 12_000)
        .text("user_agent", Some("Lavf/60\n\u{e9}"))
        .token("odd", "a b")
}

#[test]
fn text_lines_quote_free_text_and_leave_tokens_bare() {
    assert_eq!(
        sample().to_text(),
        r#"2024-12-06T01:42:33.123Z 192.0.2.7:5004 - PLAY "rtsp://edge/cam 1?\"q\"\\" 12000 "Lavf/60\x0A\xC3\xA9" "a b""#
    );
}

#[test]
fn json_lines_carry_the_same_fields_by_name() {
    let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
    assert_eq!(v["time"], "2024-12-06T01:42:33.123Z");
    assert_eq!(v["client"], "192.0.2.7:5004");
    assert_eq!(v["user"], serde_json::Value::Null);
    assert_eq!(v["url"], "rtsp://edge/cam 1?\"q\"\\");
    assert_eq!(v["bytes"], 12_000);
    assert_eq!(v["user_agent"], "Lavf/60\n\u{e9}");
    assert_eq!(v.as_object().unwrap().len(), sample().fields().len());
}

#[test]
fn dates_are_utc_across_leap_years_and_epochs() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mediagate-access-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn lines_reach_the_file_and_a_reopen_follows_a_rename() {
    let d = dir();
    let path = d.join("access.log");
    let log = AccessLog::open(&path, AccessLogFormat::Text).unwrap();
    let sink = log.sink();
    assert!(sink.send(AccessLine::new().token("n", "one")));
    wait_for("the first line", || log.written() == 1);
    std::fs::rename(&path, d.join("access.log.1")).unwrap();
    // Until the reopen, lines follow the renamed file.
    assert!(sink.send(AccessLine::new().token("n", "two")));
    wait_for("the second line", || log.written() == 2);
    log.reopen();
    wait_for("the new file", || path.exists());
    assert!(sink.send(AccessLine::new().token("n", "three")));
    log.close();
    assert_eq!(
        std::fs::read_to_string(d.join("access.log.1")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn json_format_writes_one_object_a_line() {
    let d = dir();
    let path = d.join("access.json");
    let log = AccessLog::open(&path, AccessLogFormat::Json).unwrap();
    assert!(log.sink().send(sample()));
    assert!(log.sink().send(sample()));
    log.close();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], sample().to_json());
    let _ = std::fs::remove_dir_all(&d);
}

/// A stalled disk, played by a pipe nobody reads: senders never wait, what does not
/// fit in the queue is dropped and counted, and the rest is written once it moves.
#[test]
fn a_stalled_disk_drops_lines_without_blocking_the_sender() {
    let d = dir();
    let fifo = d.join("stalled");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A reader that does not read yet, so opening for writing does not wait.
    let mut reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let log = AccessLog::with_queue(&fifo, AccessLogFormat::Text, 4).unwrap();
    let metrics = Metrics::new();
    log.publish_metrics(&metrics);
    let sink = log.sink();
    let line = AccessLine::new().text("pad", Some(&"x".repeat(1000)));
    let started = Instant::now();
    let mut refused = 0u64;
    // Far more than a pipe buffer holds.
    let total = 2_000u64;
    for _ in 0..total {
        if !sink.send(line.clone()) {
            refused += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sending waited for the disk: {:?}",
        started.elapsed()
    );
    assert!(refused > 0, "nothing was dropped");
    assert_eq!(log.dropped(), refused);
    assert!(
        metrics
            .encode()
            .contains(&format!("mediagate_access_log_dropped_total {refused}")),
        "{}",
        metrics.encode()
    );
    // Let the disk move again: everything accepted is written.
    let drain = std::thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    log.close();
    let bytes = drain.join().unwrap();
    assert_eq!(
        bytes as u64,
        (total - refused) * (line.to_text().len() as u64 + 1)
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_full_disk_counts_its_lost_lines() {
    let log = AccessLog::open(Path::new("/dev/full"), AccessLogFormat::Text).unwrap();
    assert!(log.sink().send(sample()));
    assert!(log.sink().send(sample()));
    wait_for("the failed write", || log.dropped() == 2);
    assert_eq!(log.written(), 0);
    log.close();
}
