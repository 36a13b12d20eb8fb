//! `mediagate cache list|pin|unpin|purge|prefetch`: the on-demand cache of a running
//! edge, through its admin API (`GET /api/v1/cache`,
//! `POST /api/v1/cache/{pin,unpin,purge}`, `GET|POST /api/v1/cache/prefetch`,
//! `POST /api/v1/cache/prefetch/cancel`).
//!
//! What it does: one request per command (a prefetch then polls its progress twice a
//! second until it ends), with the same address, token and TLS options as
//! `mediagate status`, and a line per object on stdout; a prefetch's progress is a bar
//! redrawn in place on a terminal, a line per 10% otherwise. URLs came from origins or
//! viewers, so they are printed escaped. What it does not: touch the cache directory
//! itself (the running edge owns it).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cli::{CacheCommand, CachePrefetchArgs, CacheTargetArgs, StatusArgs};
use crate::status::{Api, StatusError, TlsFiles};

/// Runs one `mediagate cache` command: its output on stdout, or why it failed on
/// stderr with status 1.
pub fn run(cmd: CacheCommand) -> ExitCode {
    let (name, result) = match &cmd {
        CacheCommand::List(args) => ("list", list(&args.api)),
        CacheCommand::Pin(args) => ("pin", act(args, "pin")),
        CacheCommand::Unpin(args) => ("unpin", act(args, "unpin")),
        CacheCommand::Purge(args) => ("purge", act(args, "purge")),
        CacheCommand::Prefetch(args) => ("prefetch", prefetch(args)),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediagate cache {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The API the arguments name, with the token read from its file.
fn api(args: &StatusArgs) -> Result<Api, String> {
    let token = crate::status::token_of(args.token.clone(), args.token_file.as_deref())?;
    let tls = TlsFiles {
        ca: args.cacert.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
    };
    Api::new(&args.admin, token, &tls).map_err(|e| e.to_string())
}

fn list(args: &StatusArgs) -> Result<String, String> {
    let objects = api(args)?.get("/api/v1/cache").map_err(|e| e.to_string())?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(render_list(&objects, now_ms))
}

fn act(args: &CacheTargetArgs, action: &str) -> Result<String, String> {
    let mut body = json!({ "url": args.url });
    if let Some(tracks) = &args.tracks {
        body["tracks"] = json!(tracks);
    }
    let answer = api(&args.api)?
        .post(&format!("/api/v1/cache/{action}"), &body)
        .map_err(|e: StatusError| e.to_string())?;
    Ok(render_action(&answer, action))
}

/// How often a running prefetch is polled.
const POLL: Duration = Duration::from_millis(500);

fn prefetch(args: &CachePrefetchArgs) -> Result<String, String> {
    let api = api(&args.api)?;
    let mut body = json!({ "url": args.url });
    if let Some(tracks) = &args.tracks {
        body["tracks"] = json!(tracks);
    }
    if args.cancel {
        let answer = api
            .post("/api/v1/cache/prefetch/cancel", &body)
            .map_err(|e| e.to_string())?;
        let jobs = answer["cancelled"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        return Ok(jobs.iter().map(|j| outcome_line(j) + "\n").collect());
    }
    if let Some(speed) = args.speed {
        body["speed"] = json!(speed);
    }
    let started = api
        .post("/api/v1/cache/prefetch", &body)
        .map_err(|e| e.to_string())?;
    if args.detach || started["state"] != "running" {
        return finished(&started);
    }
    let terminal = std::io::stdout().is_terminal();
    let mut shown = Shown::default();
    let mut job = started.clone();
    loop {
        shown.show(&job, terminal);
        if job["state"] != "running" {
            break;
        }
        std::thread::sleep(POLL);
        let list = api
            .get("/api/v1/cache/prefetch")
            .map_err(|e| e.to_string())?;
        job = list
            .as_array()
            .and_then(|l| l.iter().find(|j| same_job(j, &started)).cloned())
            .ok_or("the prefetch is no longer listed by the edge (restarted?)")?;
    }
    if terminal {
        println!();
    }
    finished(&job)
}

/// The final line, or why it did not complete (an error: exit status 1).
fn finished(job: &Value) -> Result<String, String> {
    let line = outcome_line(job);
    match job["state"].as_str() {
        Some("complete" | "running") => Ok(line + "\n"),
        _ => Err(line),
    }
}

fn same_job(a: &Value, b: &Value) -> bool {
    a["url"] == b["url"]
        && a["tracks"] == b["tracks"]
        && a["started_unix_ms"] == b["started_unix_ms"]
}

/// What was drawn so far: a terminal's bar is redrawn in place; plain output gets a
/// line at each 10% step.
#[derive(Default)]
struct Shown {
    step: Option<u64>,
}

impl Shown {
    fn show(&mut self, job: &Value, terminal: bool) {
        let mut out = std::io::stdout().lock();
        if terminal {
            // Trailing blanks wipe what a longer previous line left.
            let _ = write!(out, "\r{}   ", progress_bar(job, 30));
        } else {
            let step = (job["percent"].as_f64().unwrap_or(0.0) / 10.0).floor() as u64;
            if self.step == Some(step) {
                return;
            }
            self.step = Some(step);
            let _ = writeln!(out, "{}", progress_line(job));
        }
        let _ = out.flush();
    }
}

/// `[#######.......]  45%  4.5/10.0 s  1.2 MB  3.4 Mbit/s`
fn progress_bar(job: &Value, width: usize) -> String {
    let percent = job["percent"].as_f64().unwrap_or(0.0).clamp(0.0, 100.0);
    let filled = ((percent / 100.0) * width as f64).floor() as usize;
    format!(
        "[{}{}] {}",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width)),
        progress_line(job)
    )
}

/// `45%  4.5/10.0 s  1.2 MB  3.4 Mbit/s`
fn progress_line(job: &Value) -> String {
    let percent = job["percent"].as_f64().unwrap_or(0.0);
    let held = secs(&job["held_ms"]);
    let of = match job["duration_ms"].as_u64() {
        Some(_) => format!("/{}", secs(&job["duration_ms"])),
        None => String::new(),
    };
    format!(
        "{percent:3.0}%  {held}{of}  {}  {:.1} Mbit/s",
        size_text(job["bytes"].as_u64().unwrap_or(0)),
        job["rate_bps"].as_u64().unwrap_or(0) as f64 / 1e6
    )
}

/// `complete "rtsp://o/a.mp4"  tracks 0,1  10.0s  3.4 MB in 2.1 s (Speed: 8.000)`
fn outcome_line(job: &Value) -> String {
    let state = job["state"].as_str().unwrap_or("unknown");
    let mut line = format!(
        "{state} {}  tracks {}  {}  {} in {}",
        escaped(&job["url"]),
        tracks(&job["tracks"]),
        secs(&job["held_ms"]),
        size_text(job["bytes"].as_u64().unwrap_or(0)),
        secs(&job["elapsed_ms"]),
    );
    if let Some(d) = job["delivery"].as_str() {
        line.push_str(&format!(" ({d:?})"));
    }
    if let Some(e) = job["error"].as_str() {
        line.push_str(&format!(": {e:?}"));
    }
    line
}

/// One line per object: URL, tracks, complete or the held ranges, size, pinned, when
/// last used; then the total.
fn render_list(objects: &Value, now_ms: u64) -> String {
    let objects = objects.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    let mut total = 0;
    for o in objects {
        let size = o["size_bytes"].as_u64().unwrap_or(0);
        total += size;
        let held = if o["complete"] == true {
            "complete".to_owned()
        } else {
            let ranges: Vec<String> = o["ranges"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|r| format!("{}-{}", secs(&r[0]), secs(&r[1])))
                .collect();
            if ranges.is_empty() {
                "partial, nothing complete yet".to_owned()
            } else {
                format!("partial {}", ranges.join(","))
            }
        };
        let ago = now_ms
            .saturating_sub(o["last_used_unix_ms"].as_u64().unwrap_or(0))
            .div_ceil(1000);
        out.push_str(&format!(
            "{}  tracks {}  {held}  {}{}  used {ago} s ago\n",
            escaped(&o["url"]),
            tracks(&o["tracks"]),
            size_text(size),
            if o["pinned"] == true { "  pinned" } else { "" },
        ));
    }
    out.push_str(&format!(
        "{} object(s), {}\n",
        objects.len(),
        size_text(total)
    ));
    out
}

/// What a pin, unpin or purge applied to, one line per variant.
fn render_action(answer: &Value, action: &str) -> String {
    let done = match action {
        "pin" => "pinned",
        "unpin" => "unpinned",
        _ => "purged",
    };
    let objects = answer["objects"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = String::new();
    for o in objects {
        out.push_str(&format!(
            "{done} {}  tracks {}  {}\n",
            escaped(&answer["url"]),
            tracks(&o["tracks"]),
            size_text(o["size_bytes"].as_u64().unwrap_or(0))
        ));
    }
    if objects.is_empty() {
        out.push_str(&format!(
            "nothing to do: {} was {done} already\n",
            escaped(&answer["url"])
        ));
    }
    out
}

fn escaped(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => "-".to_owned(),
    }
}

fn tracks(v: &Value) -> String {
    let list: Vec<String> = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(Value::to_string)
        .collect();
    list.join(",")
}

fn secs(ms: &Value) -> String {
    format!("{:.1}s", ms.as_u64().unwrap_or(0) as f64 / 1000.0)
}

fn size_text(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.0} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_what_is_held() {
        let objects = json!([
            { "url": "rtsp://o/a.mp4", "tracks": [0, 1], "complete": true, "ranges": [[0, 10005]],
              "size_bytes": 25_000_000, "pinned": true, "last_used_unix_ms": 95_000 },
            { "url": "rtsp://o/b\u{1b}[2J.mp4", "tracks": [0], "complete": false,
              "ranges": [[0, 3000], [5000, 7500]], "size_bytes": 900, "pinned": false,
              "last_used_unix_ms": 40_000 },
        ]);
        assert_eq!(
            render_list(&objects, 100_000),
            "\"rtsp://o/a.mp4\"  tracks 0,1  complete  25.0 MB  pinned  used 5 s ago\n\
             \"rtsp://o/b\\u{1b}[2J.mp4\"  tracks 0  partial 0.0s-3.0s,5.0s-7.5s  900 B  used 60 s ago\n\
             2 object(s), 25.0 MB\n"
        );
        assert_eq!(render_list(&json!([]), 0), "0 object(s), 0 B\n");
    }

    #[test]
    fn prefetch_progress_reads_as_a_bar_or_a_line() {
        let job = json!({ "url": "rtsp://o/a.mp4", "tracks": [0, 1], "state": "running",
            "percent": 45.0, "held_ms": 4500, "duration_ms": 10_000, "bytes": 1_200_000,
            "rate_bps": 3_400_000, "elapsed_ms": 2000, "delivery": "Speed: 8.000" });
        assert_eq!(
            progress_bar(&job, 10),
            "[####......]  45%  4.5s/10.0s  1200 kB  3.4 Mbit/s"
        );
        let done = json!({ "url": "rtsp://o/a.mp4", "tracks": [0, 1], "state": "complete",
            "percent": 100.0, "held_ms": 9967, "duration_ms": 10_000, "bytes": 2_000_000,
            "elapsed_ms": 2100, "delivery": "Speed: 8.000" });
        assert_eq!(
            finished(&done).unwrap(),
            "complete \"rtsp://o/a.mp4\"  tracks 0,1  10.0s  2000 kB in 2.1s (\"Speed: 8.000\")\n"
        );
        let cancelled = json!({ "url": "rtsp://o/a.mp4", "tracks": [0], "state": "cancelled",
            "held_ms": 3000, "bytes": 500, "elapsed_ms": 3000, "delivery": null });
        assert_eq!(
            finished(&cancelled).unwrap_err(),
            "cancelled \"rtsp://o/a.mp4\"  tracks 0  3.0s  500 B in 3.0s"
        );
    }

    #[test]
    fn actions_say_what_they_did() {
        let answer = json!({ "url": "rtsp://o/a.mp4", "action": "purge",
            "objects": [{ "tracks": [0, 1], "size_bytes": 12_000 }] });
        assert_eq!(
            render_action(&answer, "purge"),
            "purged \"rtsp://o/a.mp4\"  tracks 0,1  12 kB\n"
        );
        let none = json!({ "url": "rtsp://o/a.mp4", "objects": [] });
        assert_eq!(
            render_action(&none, "pin"),
            "nothing to do: \"rtsp://o/a.mp4\" was pinned already\n"
        );
    }
}
