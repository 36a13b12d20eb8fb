//! Runs the real `mediagate` binary: `check-config` output and exit status, `run
//! --config` on a bad file, `--version`, `--help`, and command-line value errors. None of
//! these start a role, so they do not depend on the engines.

use std::path::PathBuf;
use std::process::{Command, Output};

fn mediagate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(args)
        .output()
        .expect("the mediagate binary runs")
}

/// Writes `text` to a file named `name` in this test target's scratch directory.
fn config_file(name: &str, text: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("scratch file is writable");
    path.to_str().expect("scratch path is UTF-8").to_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example_path() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/mediagate.example.toml"
    )
    .to_owned()
}

#[test]
fn unknown_key_is_reported_at_its_line_and_column() {
    let file = config_file(
        "unknown-key.toml",
        "state_dir = \"./var\"\n\n[edge]\nlisten = [\"0.0.0.0:8554\"]\n  lingr = \"5s\"\n",
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "{file}:5:3: unknown field `lingr`, expected one of `enabled`, `listen`"
        )),
        "{err}"
    );
}

#[test]
fn every_bad_value_is_reported_at_its_position() {
    let file = config_file(
        "bad-values.toml",
        r#"[edge]
linger = "ten"
udp_ports = "40000-30000"

[edge.client_acl]
allow = ["10.0.0.0/8", "192.168.1.1/16"]

[log]
format = "xml"
"#,
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(
        lines[0],
        format!("{file}:2:10: invalid duration \"ten\": expected a number; write a whole number followed by a unit (h, m, s or ms), for example \"10s\", \"250ms\" or \"1m30s\"")
    );
    assert_eq!(
        lines[1],
        format!("{file}:3:13: invalid port range 40000-30000: the low end 40000 is above the high end 30000; write LOW-HIGH with ports from 1 to 65535, for example \"30000-40000\"")
    );
    assert_eq!(
        lines[2],
        format!("{file}:6:24: invalid network 192.168.1.1/16: bits are set after the /16 prefix; did you mean \"192.168.0.0/16\"?")
    );
    assert_eq!(
        lines[3],
        format!("{file}:9:10: unknown variant `xml`, expected `text` or `json`")
    );
}

#[test]
fn cache_values_are_checked_at_their_position() {
    let file = config_file(
        "bad-cache.toml",
        r#"[edge.cache]
size = "2GB5"

[[edge.route]]
advertised = "/vod"
origin = "rtsp://192.0.2.10/vod"
cache_max_object = "0B"
"#,
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.lines().next(),
        Some(format!("{file}:2:8: invalid size \"2GB5\": unknown unit \"GB5\"; write a whole number followed by a unit (B, KiB, MiB, GiB, TiB, kB, MB, GB or TB), for example \"2GiB\" or \"500MiB\"").as_str()),
        "{err}"
    );
    let file = config_file(
        "zero-cache.toml",
        "[edge.cache]\nsize = \"0B\"\n[[edge.route]]\nadvertised = \"/vod\"\norigin = \"rtsp://192.0.2.10/vod\"\ncache_max_object = \"0B\"\n",
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("{file}:2:8: edge.cache.size is 0B")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{file}:6:20: route \"/vod\" has cache_max_object = \"0B\""
        )),
        "{err}"
    );
    // default_ttl: 0s to 720h.
    let file = config_file("ttl-cache.toml", "[edge.cache]\ndefault_ttl = \"800h\"\n");
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.lines()
            .next()
            .is_some_and(|l| l.starts_with(&format!("{file}:2:15: ")) && l.contains("800h")),
        "{err}"
    );
    let file = config_file("ttl-ok.toml", "[edge.cache]\ndefault_ttl = \"0s\"\n");
    assert_eq!(mediagate(&["check-config", &file]).status.code(), Some(0));
}

#[test]
fn cross_field_errors_point_at_the_value_to_change() {
    let file = config_file(
        "cross-field.toml",
        "[relay]\nenabled = true\nports = \"16384-16999\"\nmedia_address = [{ address = \"192.0.2.20\" }]\n",
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("{file}:3:9: relay.ports (16384-16999) overlaps edge.udp_ports (16384-24575); give the two roles separate ranges\n")
    );
}

#[test]
fn check_config_refuses_an_https_notify_url_the_relay_could_not_use() {
    let file = config_file(
        "notify-https.toml",
        "[relay]\nteardown_notify_url = \"https://sip.example/RPC\"\n",
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("{file}:2:23: invalid HTTP URL \"https://sip.example/RPC\": https:// (HTTP over TLS) is not supported yet; use http://, as in http://127.0.0.1:5060/RPC\n")
    );
}

#[test]
fn check_config_reads_route_accounting_and_points_at_a_bad_mode() {
    let route = "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"rtsp://192.0.2.1/x\"\n";
    for mode in ["off", "authorize", "session"] {
        let file = config_file(
            &format!("accounting-{mode}.toml"),
            &format!("{route}accounting = \"{mode}\"\n"),
        );
        let out = mediagate(&["check-config", &file]);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
    }
    let file = config_file(
        "accounting-bad.toml",
        &format!("{route}accounting = \"always\"\n"),
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!("{file}:4:14: ")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn syntax_error_is_reported_with_position() {
    let file = config_file("syntax.toml", "[edge]\nlinger = \"10s\nlisten = []\n");
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("{file}:2:")), "{err}");
}

#[test]
fn valid_files_are_ok() {
    let file = config_file(
        "valid.toml",
        r#"state_dir = "/var/lib/mediagate"

[log]
level = "debug"
format = "json"

[edge]
listen = ["0.0.0.0:8554", "[::]:8554"]
linger = "1m30s"

[[edge.route]]
advertised = "/cam1"
origin = "rtsp://192.0.2.10:554/Streaming/Channels/101"
credentials = { username = "viewer", password = "secret", scheme = "digest" }
upstream_transport = "udp"

[relay]
enabled = true
ports = "30000-31999"

[[relay.media_address]]
address = "192.0.2.20"
"#,
    );
    let out = mediagate(&["check-config", &file]);
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out), format!("{file}: ok\n"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn the_example_file_is_ok() {
    let file = example_path();
    let out = mediagate(&["check-config", &file]);
    assert_eq!(stdout(&out), format!("{file}: ok\n"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn unreadable_file_is_an_error() {
    let file = format!("{}/does-not-exist.toml", env!("CARGO_TARGET_TMPDIR"));
    let out = mediagate(&["check-config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!("{file}: cannot read the file: ")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_refuses_a_bad_config_before_starting() {
    let file = config_file("run-bad.toml", "[edge]\nmax_viewers = 0\n");
    let out = mediagate(&["run", "--config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("{file}:2:15: 0 is out of range: it must be from 1 to 1000000\n")
    );
}

#[test]
fn version_and_help() {
    let out = mediagate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!("mediagate {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = mediagate(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for word in ["run", "check-config", "edge", "relay", "--version"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }

    let out = mediagate(&["edge", "--help"]);
    let help = stdout(&out);
    assert!(help.contains("--map <ADVERTISED=ORIGIN>"), "{help}");
    assert!(help.contains("--listen <IP:PORT>"), "{help}");
}

#[test]
fn bad_command_line_values_are_explained() {
    let out = mediagate(&["edge", "--map", "/cam1=rtsp://cam:0/x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value '/cam1=rtsp://cam:0/x' for '--map <ADVERTISED=ORIGIN>'"),
        "{err}"
    );
    assert!(err.contains("\"0\" is not a port from 1 to 65535"), "{err}");

    let out = mediagate(&[
        "relay",
        "--ng",
        "127.0.0.1:2223",
        "--address",
        "192.0.2.20",
        "--ports",
        "40000-30000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the low end 40000 is above the high end 30000"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn quick_start_settings_are_validated_before_starting() {
    let out = mediagate(&["relay", "--ng", "127.0.0.1:2223", "--address", "0.0.0.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("mediagate: media address 0.0.0.0 is a wildcard"),
        "{}",
        stderr(&out)
    );

    let out = mediagate(&["edge", "--map", "/a=rtsp://h/x", "--map", "/a=rtsp://h/y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the advertised prefix \"/a\" is already used"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn user_add_list_del_keep_the_password_off_the_command_line() {
    use std::io::Write;
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-users");
    let _ = std::fs::remove_file(&file);
    let path = file.to_str().expect("UTF-8 path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args([
            "user", "add", "--file", path, "--group", "staff", "--group", "night",
        ])
        .args(["--digest-realm", "mediagate", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    writeln!(child.stdin.take().unwrap(), "open sesame").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$argon2id$"), "{text}");
    assert!(!text.contains("open sesame"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = mediagate(&["user", "list", "--file", path]);
    assert_eq!(stdout(&out), "alice\tstaff,night\tdigest\n");
    // There is no way to give the password as an argument.
    let out = mediagate(&["user", "add", "--file", path, "--password", "x", "bob"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = mediagate(&["user", "del", "--file", path, "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&mediagate(&["user", "list", "--file", path])), "");
    let out = mediagate(&["user", "del", "--file", path, "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no user alice"), "{}", stderr(&out));
}
