//! `mediagate cache list|pin|unpin|purge`: the on-demand cache of a running edge,
//! through its admin API (`GET /api/v1/cache`, `POST /api/v1/cache/{pin,unpin,purge}`).
//!
//! What it does: one request per command, with the same address, token and TLS
//! options as `mediagate status`, and a line per object on stdout. URLs came from
//! origins or viewers, so they are printed escaped. What it does not: touch the cache
//! directory itself (the running edge owns it), or prefetch.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cli::{CacheCommand, CacheTargetArgs, StatusArgs};
use crate::status::{Api, StatusError, TlsFiles};

/// Runs one `mediagate cache` command: its output on stdout, or why it failed on
/// stderr with status 1.
pub fn run(cmd: CacheCommand) -> ExitCode {
    let (name, result) = match &cmd {
        CacheCommand::List(args) => ("list", list(&args.api)),
        CacheCommand::Pin(args) => ("pin", act(args, "pin")),
        CacheCommand::Unpin(args) => ("unpin", act(args, "unpin")),
        CacheCommand::Purge(args) => ("purge", act(args, "purge")),
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
