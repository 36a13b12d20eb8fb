//! mediagate-tap: capture the TCP byte streams of one client run through a [`Tap`].
//!
//! ```text
//! mediagate-tap --target 127.0.0.1:8554 --out testdata/rtsp/x/tcp \
//!     [--keep-media 8192] [--timeout 30] [--settle 3] [--sdp-out file.sdp] \
//!     -- ffmpeg -rtsp_transport tcp -i rtsp://127.0.0.1:{tap}/live -t 2 -f null -
//! ```
//!
//! Starts a tap on a free loopback port, runs the command with every `{tap}` replaced by
//! that port (killed after `--timeout` seconds), waits up to `--settle` seconds for the
//! connections to close, and writes for each connection `OUT.c2s` and `OUT.s2c` (several
//! connections: `OUT.get.*` / `OUT.post.*` for an HTTP tunnel, else `OUT.N.*`). Media
//! frames past `--keep-media` bytes per direction are dropped whole (see
//! `mediagate_testkit::capture`); every RTSP message is kept. With `--sdp-out`, the first
//! `application/sdp` body seen (DESCRIBE reply or ANNOUNCE) is written there too.
//! Prints one summary line per file. Exit status: 0 if files were written (whatever the
//! command's own status, which is printed), 2 on usage or I/O errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mediagate_testkit::capture::{message_bodies, thin_rtsp_stream};
use mediagate_testkit::process::{describe_status, run};
use mediagate_testkit::{Tap, TapConnection, TapOptions};

struct Args {
    target: SocketAddr,
    out: PathBuf,
    keep_media: usize,
    timeout: Duration,
    settle: Duration,
    sdp_out: Option<PathBuf>,
    command: Vec<String>,
}

const USAGE: &str = "usage: mediagate-tap --target HOST:PORT --out PREFIX [--keep-media BYTES] \
                     [--timeout SECS] [--settle SECS] [--sdp-out FILE] -- COMMAND [ARGS...]\n\
                     every {tap} in COMMAND and ARGS becomes the tap's port";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut target = None;
    let mut out = None;
    let mut keep_media = 8192usize;
    let mut timeout = 30.0f64;
    let mut settle = 3.0f64;
    let mut sdp_out = None;
    let mut it = argv.iter();
    let mut command = Vec::new();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--target" => {
                let v = value("--target")?;
                target = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--target {v}: {e} (want IP:PORT)"))?,
                );
            }
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--keep-media" => {
                let v = value("--keep-media")?;
                keep_media = v
                    .parse()
                    .map_err(|e| format!("--keep-media {v}: {e} (want a byte count)"))?;
            }
            "--timeout" | "--settle" => {
                let name = a.clone();
                let v = value(&name)?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| format!("{name} {v}: want seconds"))?;
                if name == "--timeout" {
                    timeout = secs;
                } else {
                    settle = secs;
                }
            }
            "--sdp-out" => sdp_out = Some(PathBuf::from(value("--sdp-out")?)),
            "--" => {
                command = it.cloned().collect();
                break;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if command.is_empty() {
        return Err("no command given after --".into());
    }
    Ok(Args {
        target: target.ok_or("--target is required")?,
        out: out.ok_or("--out is required")?,
        keep_media,
        timeout: Duration::from_secs_f64(timeout),
        settle: Duration::from_secs_f64(settle),
        sdp_out,
        command,
    })
}

/// File name suffix per connection: the tunnel's two halves by their HTTP method, else
/// the accept order.
fn suffixes(conns: &[TapConnection]) -> Vec<String> {
    if conns.len() == 1 {
        return vec![String::new()];
    }
    let mut used: Vec<String> = Vec::new();
    conns
        .iter()
        .map(|c| {
            let head = c.c2s();
            let name = if head.starts_with(b"GET ") {
                "get".to_string()
            } else if head.starts_with(b"POST ") {
                "post".to_string()
            } else {
                c.id.to_string()
            };
            let name = if used.contains(&name) {
                format!("{name}{}", c.id)
            } else {
                name
            };
            used.push(name.clone());
            format!(".{name}")
        })
        .collect()
}

fn write(path: &Path, data: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))
}

fn capture(args: Args) -> Result<(), String> {
    let tap = Tap::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        args.target,
        TapOptions::default(),
    )
    .map_err(|e| format!("cannot start the tap: {e}"))?;
    let port = tap.port().to_string();
    let argv: Vec<String> = args
        .command
        .iter()
        .map(|a| a.replace("{tap}", &port))
        .collect();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let finished = run(&argv[0], cmd, args.timeout).map_err(|e| e.to_string())?;
    println!(
        "command: {}{}",
        describe_status(finished.status),
        if finished.timed_out {
            " (killed at the time limit)"
        } else {
            ""
        }
    );
    if !finished.success() {
        for line in finished.stderr.iter().rev().take(5).rev() {
            println!("  stderr: {line}");
        }
    }
    tap.wait_all_closed(args.settle);
    let all = tap.stop();
    // Retries that found the server gone carry no bytes: not worth a file.
    let skipped = all
        .iter()
        .filter(|c| c.c2s_bytes == 0 && c.s2c_bytes == 0)
        .count();
    if skipped > 0 {
        println!("skipped {skipped} connection(s) that carried no bytes");
    }
    let conns: Vec<TapConnection> = all
        .into_iter()
        .filter(|c| c.c2s_bytes > 0 || c.s2c_bytes > 0)
        .collect();
    if conns.is_empty() {
        return Err("the command made no connection (with data) through the tap".into());
    }
    let mut sdp_written = false;
    for (conn, suffix) in conns.iter().zip(suffixes(&conns)) {
        for (dir, raw) in [("c2s", conn.c2s()), ("s2c", conn.s2c())] {
            let thinned = thin_rtsp_stream(&raw, args.keep_media);
            let mut path = args.out.clone().into_os_string();
            path.push(format!("{suffix}.{dir}"));
            let path = PathBuf::from(path);
            write(&path, &thinned.data)?;
            println!(
                "{}: {} bytes ({} captured; {} messages, {} frames kept, {} frames / {} bytes \
                 of later media dropped){}",
                path.display(),
                thinned.data.len(),
                raw.len(),
                thinned.messages,
                thinned.kept_frames,
                thinned.dropped_frames,
                thinned.dropped_bytes,
                if conn.closed {
                    ""
                } else {
                    " [connection still open at stop]"
                }
            );
            if let (Some(sdp_path), false) = (&args.sdp_out, sdp_written) {
                if let Some(sdp) = message_bodies(&raw, "application/sdp").into_iter().next() {
                    write(sdp_path, &sdp)?;
                    println!("{}: {} bytes of SDP", sdp_path.display(), sdp.len());
                    sdp_written = true;
                }
            }
        }
    }
    if args.sdp_out.is_some() && !sdp_written {
        return Err("--sdp-out given but no application/sdp body was captured".into());
    }
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("mediagate-tap: {msg}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(msg) = capture(args) {
        eprintln!("mediagate-tap: {msg}");
        std::process::exit(2);
    }
}
