//! `mediagate-loadgen rtp` against both relays it is meant to compare (issue 4 item 9):
//! the `mediagate relay` binary and Debian's `rtpengine` daemon in userspace mode, in
//! one run with the same small load. Checks that both carry every packet both ways and
//! that the report names each with its CPU and memory figures. This is the benchmark's
//! smoke test; the benchmark itself (1,000 calls, 60 s) is run by hand (see the issue
//! note) because the CI machine is shared.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::ports::{free_tcp_port, free_udp_port};
use mediagate_testkit::process::{require_program, Peer};

/// The load generator binary, next to `mediagate`. Always (re)built: cargo does not
/// rebuild another package's binary for this test, and a stale one would test old code;
/// when it is up to date the build is a no-op.
fn loadgen() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_mediagate")).with_file_name("mediagate-loadgen");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "mediagate-loadgen",
            "--bin",
            "mediagate-loadgen",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo to build mediagate-loadgen");
    assert!(status.success(), "building mediagate-loadgen failed");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn wait_for_ng(port: u16, who: &Peer) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        s.send_to(b"w_1 d7:command4:pinge", ("127.0.0.1", port))
            .unwrap();
        if let Ok(n) = s.recv(&mut buf) {
            assert_eq!(&buf[..n], b"w_1 d6:result4:ponge");
            return;
        }
        assert!(who.try_status().is_none(), "{}", who.diagnostics());
    }
    panic!("no ng pong from {}:\n{}", who.name(), who.diagnostics());
}

#[test]
fn loadgen_compares_mediagate_and_rtpengine() {
    let rtpengine = require_program("rtpengine", "rtpengine-daemon").unwrap();
    let work = std::env::temp_dir().join(format!("mg-relay-loadgen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (mg_ng, rtpe_ng) = (free_udp_port().unwrap(), free_udp_port().unwrap());
    let config = work.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[edge]\nenabled = false\n[relay]\nenabled = true\n\
             ng_listen_udp = [\"127.0.0.1:{mg_ng}\"]\n\
             media_address = [{{ address = \"127.0.0.1\" }}]\nports = \"36000-36999\"\n",
            work.join("var")
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.args(["run", "-c", config.to_str().unwrap()]);
    let mediagate = Peer::spawn("mediagate", cmd).unwrap();
    let mut cmd = Command::new(rtpengine);
    cmd.args([
        // Not Debian's /etc/rtpengine/rtpengine.conf: it opens fixed HTTP/CLI ports.
        "--config-file=none",
        "--interface=127.0.0.1",
        &format!("--listen-ng=127.0.0.1:{rtpe_ng}"),
        // Its CLI port would default to 2224, which a running rtpengine may hold.
        &format!("--listen-cli=127.0.0.1:{}", free_tcp_port().unwrap()),
        "--foreground",
        "--log-stderr",
        "--table=-1",
        "--port-min=37000",
        "--port-max=37999",
        "--delete-delay=0",
        "--num-threads=2",
        "--log-level=4",
    ]);
    let rtpe = Peer::spawn("rtpengine", cmd).unwrap();
    wait_for_ng(mg_ng, &mediagate);
    wait_for_ng(rtpe_ng, &rtpe);

    let out = Command::new(loadgen())
        .args([
            "rtp",
            "--target",
            &format!("mediagate,127.0.0.1:{mg_ng},{}", mediagate.pid()),
            "--target",
            &format!("rtpengine,127.0.0.1:{rtpe_ng},{}", rtpe.pid()),
            "--calls",
            "20",
            "--seconds",
            "2",
            "--direct",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadgen exit {:?}\n{stdout}\n{stderr}\n{}\n{}",
        out.status,
        mediagate.diagnostics(),
        rtpe.diagnostics()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    // The baseline: the same load with no relay, so no relay figures.
    let direct = lines[0];
    for field in [
        "\"label\":\"direct\"",
        "\"received\":4000",
        "\"misrouted\":0",
        "\"relay_cpu_s\":null",
    ] {
        assert!(direct.contains(field), "{field} missing in {direct}");
    }
    for (line, label) in lines[1..].iter().zip(["mediagate", "rtpengine"]) {
        // 20 calls, 2 streams each, 50 packets/s for 2 s.
        for field in [
            format!("\"label\":\"{label}\""),
            "\"sent\":4000".to_owned(),
            "\"received\":4000".to_owned(),
            "\"lost\":0".to_owned(),
            "\"misrouted\":0".to_owned(),
        ] {
            assert!(line.contains(&field), "{field} missing in {line}");
        }
        assert!(
            line.contains("\"relay_cpu_s\":") && !line.contains("\"relay_cpu_s\":null"),
            "{line}"
        );
        assert!(!line.contains("\"relay_peak_rss_mib\":null"), "{line}");
    }
    // Every row says how much CPU the host stole while its media flowed, and what
    // the whole machine spent per packet (issue 16).
    for line in &lines {
        for field in [
            "host_steal_percent",
            "machine_us_per_packet",
            "machine_idle_percent",
        ] {
            assert!(
                line.contains(&format!("\"{field}\":"))
                    && !line.contains(&format!("\"{field}\":null")),
                "{field} in {line}"
            );
        }
    }
    // The relays' rows have that net of the direct run's; the direct row has none.
    assert!(
        direct.contains("\"machine_net_us_per_packet\":null"),
        "{direct}"
    );
    for line in &lines[1..] {
        assert!(
            !line.contains("\"machine_net_us_per_packet\":null"),
            "{line}"
        );
    }

    // The highest-rate search, bounded to two short steps: one report per target,
    // whatever this shared host lets it find.
    let out = Command::new(loadgen())
        .args([
            "rtp",
            "--find-max-rate",
            "--target",
            &format!("mediagate,127.0.0.1:{mg_ng},{}", mediagate.pid()),
            "--calls",
            "5",
            "--seconds",
            "1",
            "--max-steps",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "loadgen exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{stdout}");
    let report = &reports[0];
    assert_eq!(report["label"], "mediagate", "{report}");
    assert_eq!(report["mode"], "find_max_rate", "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert!((1..=2).contains(&steps.len()), "{report}");
    // The first step is the --pps default, 50 per stream, 5 calls.
    assert_eq!(steps[0]["pps_per_stream"], 50, "{report}");
    assert_eq!(steps[0]["sent"], 500, "{report}");
    assert!(report["stopped"].is_string(), "{report}");
    // Exit 0 exactly when some rate was carried without loss.
    assert_eq!(
        out.status.code() == Some(0),
        !report["max_zero_loss_pps"].is_null(),
        "{report}"
    );
    drop((mediagate, rtpe));
    let _ = std::fs::remove_dir_all(&work);
}
