//! Prometheus metrics after real activity (issue 11, item 2): an ffmpeg viewer through
//! the edge library in process shows in the edge's metrics while it watches and after
//! it leaves; the exposition passes `promtool check metrics`; and every metric the
//! Grafana dashboard in `config/` queries exists in a registry holding the edge, the
//! relay and the process metrics.
//!
//! Through the library's registry ([`Metrics::encode`]), the same text the operations
//! API serves at `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mediagate_edge::Edge;
use mediagate_ops::metrics::Metrics;
use mediagate_relay::engine::ForwardIo;
use mediagate_relay::engine::RelayOptions;
use mediagate_relay::engine::{EngineConfig, Relay};
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

/// `series` (name with labels, as encoded) to value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn sample(text: &str, series: &str) -> Option<f64> {
    samples(text).get(series).copied()
}

/// Encodes until `series` has `want`, or panics with the last text after `within`.
async fn wait_for(metrics: &Metrics, series: &str, want: f64, within: Duration) -> String {
    wait_until(metrics, &format!("{series} {want}"), within, |text| {
        sample(text, series) == Some(want)
    })
    .await
}

/// Encodes until `done` holds for the text, or panics naming `what` with the last text
/// after `within`.
async fn wait_until(
    metrics: &Metrics,
    what: &str,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + within;
    loop {
        let text = metrics.encode();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < until, "never {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of every `mediagate_edge_sessions_ended_total` series (all reasons).
fn sessions_ended(text: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|(k, _)| k.starts_with("mediagate_edge_sessions_ended_total{"))
        .map(|(_, v)| v)
        .sum()
}

async fn edge_for(origin: &Origin, metrics: &Metrics) -> (Edge, String) {
    let toml = format!(
        "[edge]\nlisten = [\"127.0.0.1:0\"]\nlinger = \"1s\"\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url("/live")
    );
    let config = mediagate_config::parse_config(&toml).expect("test config is valid");
    let edge = Edge::new(&config.edge, "test-edge");
    edge.publish_metrics(metrics);
    let bound = edge
        .bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .expect("edge binds");
    let url = format!("rtsp://{}/cam", bound[0]);
    (edge, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ffmpeg_viewer_shows_in_the_edge_metrics_while_it_watches_and_after() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let metrics = Metrics::new();
    let (_edge, url) = edge_for(&origin, &metrics).await;
    let stream = format!("stream=\"{}\"", origin.url("/live"));

    let before = metrics.encode();
    assert_eq!(
        sample(&before, "mediagate_edge_viewers{transport=\"tcp\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "mediagate_edge_first_keyframe_seconds_count"),
        Some(0.0)
    );

    let viewer = tokio::task::spawn_blocking(move || {
        ffmpeg_read(&url, &ReadOptions::seconds(Transport::Tcp, 4.0))
    });
    let watching = wait_for(
        &metrics,
        "mediagate_edge_viewers{transport=\"tcp\"}",
        1.0,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(sample(&watching, "mediagate_edge_live_streams"), Some(1.0));
    assert_eq!(
        sample(&watching, "mediagate_edge_sessions_started_total"),
        Some(1.0)
    );

    let report = viewer.await.unwrap().expect("ffmpeg runs");
    assert!(report.video_frames > 20, "{report:#?}");
    // The session leaves the viewers gauge a moment before it is counted as ended
    // (another thread may encode in between): the snapshot waits for both.
    let after = wait_until(
        &metrics,
        "the viewer gone and its session counted as ended",
        Duration::from_secs(10),
        |text| {
            sample(text, "mediagate_edge_viewers{transport=\"tcp\"}") == Some(0.0)
                && sessions_ended(text) >= 1.0
        },
    )
    .await;
    let get =
        |series: &str| sample(&after, series).unwrap_or_else(|| panic!("no {series} in\n{after}"));
    assert_eq!(get("mediagate_edge_viewers{transport=\"udp\"}"), 0.0);
    assert_eq!(get("mediagate_edge_first_keyframe_seconds_count"), 1.0);
    let ttfk = get("mediagate_edge_first_keyframe_seconds_sum");
    assert!(
        ttfk > 0.0 && ttfk < 5.0,
        "first keyframe after {ttfk} s (the origin's GOP is 1 s)"
    );
    assert_eq!(
        sessions_ended(&after),
        1.0,
        "one session ended, whatever the reason"
    );
    let received = get(&format!(
        "mediagate_edge_stream_received_packets_total{{{stream}}}"
    ));
    let delivered = get(&format!(
        "mediagate_edge_stream_delivered_packets_total{{{stream}}}"
    ));
    // 4 s of 15 fps video and AAC: hundreds of packets, and one viewer cannot get more
    // than the origin sent (plus the start burst, which is part of what was received).
    assert!(received > 200.0, "{received} packets from the origin");
    assert!(
        delivered > 100.0 && delivered <= received,
        "{delivered} delivered of {received}"
    );
    assert!(
        get(&format!(
            "mediagate_edge_stream_delivered_bytes_total{{{stream}}}"
        )) > 10_000.0
    );
    assert_eq!(
        get(&format!(
            "mediagate_edge_stream_viewer_skipped_packets_total{{{stream}}}"
        )),
        0.0
    );
    assert_eq!(
        get(&format!(
            "mediagate_edge_stream_upstream_failures_total{{{stream}}}"
        )),
        0.0
    );
    assert!(get("process_resident_memory_bytes") > 0.0);
    mediagate_testkit::promtool::check_metrics(&metrics.encode_text());
}

/// The metric names a PromQL expression uses (ours and the process ones).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if starts_word && (rest.starts_with("mediagate_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// Every series name an exposition can have: sample names, and per `# TYPE` family
/// the names its samples take (a labelled family may have no samples yet).
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = samples(text)
        .keys()
        .map(|s| s.split('{').next().unwrap().to_owned())
        .collect();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, ty) = rest.split_once(' ').unwrap();
        match ty {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(serde_json::Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_exists() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/grafana-mediagate.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard is in config/");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        dashboard["templating"]["list"][0]["type"], "datasource",
        "the Prometheus data source is a variable, so the file imports anywhere"
    );
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");

    let metrics = Metrics::new();
    let config = mediagate_config::parse_config("[edge]\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
    let edge = Edge::new(&config.edge, "test-edge");
    edge.publish_metrics(&metrics);
    let relay = Relay::start(EngineConfig {
        ng_udp: vec!["127.0.0.1:0".parse().unwrap()],
        ng_tcp: vec![],
        media: vec![("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap())],
        ports: (46_900, 46_919),
        port_quarantine: Duration::from_secs(10),
        options: RelayOptions::default(),
        records: None,
        notify_url: None,
        tick: Duration::from_millis(50),
        forward_threads: 1,
        forward_coalesce: Duration::ZERO,
        forward_io: ForwardIo::IoUring,
        forward_scheduling: Default::default(),
    })
    .await
    .expect("relay starts");
    relay.publish_metrics(&metrics);
    let exposed = exposed_names(&metrics.encode());
    let mut missing = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "a query without a metric: {q}");
        for n in names {
            if !exposed.contains(&n) {
                missing.insert(n);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nobody exposes: {missing:?}\nexposed: {exposed:?}"
    );
    drop(relay);
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.9, sum by (le) (rate(mediagate_edge_first_keyframe_seconds_bucket{instance=~\"$instance\"}[5m]))) / process_max_fds"
        ),
        ["mediagate_edge_first_keyframe_seconds_bucket", "process_max_fds"]
    );
    assert!(metric_names("sum(rate(xmediagate_y[1m]))").is_empty());
}

/// Every `mediagate_edge_` family an edge exposes has its row in docs/metrics.md (by
/// its name without the prefix, counters with `_total`), so a new metric cannot ship
/// undocumented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edge_metric_is_documented() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .expect("docs/metrics.md");
    let metrics = Metrics::new();
    let config = mediagate_config::parse_config("[edge]\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
    let edge = Edge::new(&config.edge, "test-edge");
    edge.publish_metrics(&metrics);
    let text = metrics.encode_text();
    let mut families = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE mediagate_edge_") else {
            continue;
        };
        let (name, ty) = rest.split_once(' ').unwrap();
        let name = name.trim_end_matches("_total");
        families.push(if ty == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        });
    }
    assert!(families.len() >= 15, "{text}");
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| !docs.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "edge metrics missing from docs/metrics.md: {missing:?}"
    );
    drop(edge);
}

/// Accounting connections in the metrics: an ffmpeg viewer on an `authorize` route
/// holds one while it watches and none after; a DESCRIBE the origin refuses (its
/// Digest mount, no credentials) is counted by status and as a denied request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_connections_and_refusals_show_in_the_metrics() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let metrics = Metrics::new();
    let toml = format!(
        "[edge]\nlisten = [\"127.0.0.1:0\"]\nlinger = \"1s\"\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\naccounting = \"authorize\"\n\
         [[edge.route]]\nadvertised = \"/sec\"\norigin = \"{}\"\naccounting = \"authorize\"\n",
        origin.url("/live"),
        origin.url("/secure")
    );
    let config = mediagate_config::parse_config(&toml).expect("test config is valid");
    let edge = Edge::new(&config.edge, "test-edge");
    edge.publish_metrics(&metrics);
    let bound = edge
        .bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .expect("edge binds");
    let url = format!("rtsp://{}/cam", bound[0]);
    let viewer = tokio::task::spawn_blocking(move || {
        ffmpeg_read(&url, &ReadOptions::seconds(Transport::Tcp, 4.0))
    });
    wait_for(
        &metrics,
        "mediagate_edge_accounting_connections",
        1.0,
        Duration::from_secs(15),
    )
    .await;
    let report = viewer.await.unwrap().expect("ffmpeg runs");
    assert!(report.video_frames > 20, "{report:#?}");
    wait_for(
        &metrics,
        "mediagate_edge_accounting_connections",
        0.0,
        Duration::from_secs(5),
    )
    .await;

    let secure = format!("rtsp://{}/sec", bound[0]);
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(bound[0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "DESCRIBE {secure} RTSP/1.0\r\nCSeq: 1\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("RTSP/1.0 401"), "{answer:?}");
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "mediagate_edge_accounting_refused_total{status=\"401\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mediagate_edge_requests_denied_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mediagate_edge_accounting_connections"),
        Some(0.0)
    );
    let closed: f64 = samples(&text)
        .iter()
        .filter(|(k, _)| k.starts_with("mediagate_edge_accounting_closed_by_origin_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(closed, 0.0, "the origin ended none");
    mediagate_testkit::promtool::check_metrics(&metrics.encode_text());
    drop(edge);
}
