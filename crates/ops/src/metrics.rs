//! The metrics registry every role publishes into, encoded as OpenMetrics text.
//!
//! What it does: the binary creates one [`Metrics`] and hands clones to the roles.
//! A role registers under its own prefix ([`Metrics::register`] gives a
//! [`RoleMetrics`] for `mediagate_<role>_`): counters, gauges and histograms it
//! updates where it already counts, or a [`Collect`] that reads the role's existing
//! counters when scraped, so publishing adds no work to a forwarding path.
//! [`Metrics::encode`] renders everything as OpenMetrics text (what Prometheus
//! scrapes). Names follow Prometheus' conventions: base units in the name
//! (`_seconds`, `_bytes`), counters get `_total` appended by the encoder, and label
//! sets are bounded (never one value per viewer or call).
//!
//! Every registry also carries the standard `process_*` metrics (CPU seconds, resident
//! memory, descriptors, start time, threads; see [`crate::process`]), unprefixed as
//! Prometheus' own client libraries name them, so existing dashboards and alerts fit.
//!
//! What it does not: serve HTTP (the operations API does), or remove a role's metrics
//! when the role stops (a collector over a stopped role just reports nothing).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The prefix of every metric name.
pub(crate) const PREFIX: &str = "mediagate";

/// The process's registry: cheap to clone, shared by every role.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

/// True for `[a-z_][a-z0-9_]*`: what this project allows in metric and role names
/// (Prometheus allows more; lower snake case is the convention).
fn is_snake(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Metrics {
    /// A registry holding only the process metrics.
    pub fn new() -> Self {
        let metrics = Self {
            registry: Arc::new(Mutex::new(Registry::default())),
        };
        metrics
            .lock()
            .register_collector(Box::new(CollectorAdapter(crate::process::ProcessMetrics)));
        metrics
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while registering leaves the registry usable: metrics are kept.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets `role` (`edge`, `relay` ...) register its metrics, all named
    /// `mediagate_<role>_...`.
    ///
    /// # Panics
    /// When `role` is not lower snake case: a programming error.
    pub fn register<T>(&self, role: &str, f: impl FnOnce(&mut RoleMetrics<'_>) -> T) -> T {
        assert!(is_snake(role), "role name {role:?} is not lower snake case");
        let mut registry = self.lock();
        let mut role = RoleMetrics {
            registry: registry
                .sub_registry_with_prefix(PREFIX)
                .sub_registry_with_prefix(role),
        };
        f(&mut role)
    }

    /// Everything registered, as OpenMetrics text (ending with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; a collector's own error ends the text
        // early, which a scraper reports as a bad exposition.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.lock());
        text
    }

    /// The same metrics in the classic Prometheus text format (`text/plain;
    /// version=0.0.4`), for scrapers and tools that do not ask for OpenMetrics
    /// (`promtool check metrics`, older agents). A server serves this unless the
    /// request's `Accept` names `application/openmetrics-text`.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }
}

/// Rewrites OpenMetrics text as the classic Prometheus text format (0.0.4): a
/// counter family's `# HELP` and `# TYPE` carry the `_total` of its samples, and the
/// OpenMetrics-only lines (`# UNIT`, `# EOF`) are left out. Samples are the same.
fn openmetrics_to_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 8 * counters.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(p);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One role's part of the registry.
pub struct RoleMetrics<'a> {
    registry: &'a mut Registry,
}

fn check_name(name: &str) {
    assert!(
        is_snake(name),
        "metric name {name:?} is not lower snake case"
    );
    assert!(
        !name.ends_with("_total"),
        "metric name {name:?}: the encoder appends _total to counters"
    );
}

impl RoleMetrics<'_> {
    /// A counter `mediagate_<role>_<name>_total`, updated by the role.
    pub fn counter(&mut self, name: &str, help: &str) -> Counter {
        check_name(name);
        let counter = Counter::default();
        self.registry.register(name, help, counter.clone());
        counter
    }

    /// A gauge `mediagate_<role>_<name>`, set by the role.
    pub fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        check_name(name);
        let gauge = Gauge::default();
        self.registry.register(name, help, gauge.clone());
        gauge
    }

    /// A histogram `mediagate_<role>_<name>` with these bucket upper bounds.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: impl IntoIterator<Item = f64>,
    ) -> Histogram {
        check_name(name);
        let histogram = Histogram::new(buckets);
        self.registry.register(name, help, histogram.clone());
        histogram
    }

    /// Values read from the role at each scrape.
    pub fn collect(&mut self, collect: impl Collect) {
        self.registry
            .register_collector(Box::new(CollectorAdapter(collect)));
    }
}

/// Reads a role's own counters when the registry is encoded.
pub trait Collect: Send + Sync + 'static {
    /// Writes the current values; names get the role's prefix.
    fn collect(&self, scrape: &mut Scrape<'_>) -> fmt::Result;
}

struct CollectorAdapter<C>(C);

impl<C> fmt::Debug for CollectorAdapter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collect")
    }
}

impl<C: Collect> Collector for CollectorAdapter<C> {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.collect(&mut Scrape { encoder })
    }
}

/// What a [`Collect`] writes into during one scrape.
pub struct Scrape<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Scrape<'_> {
    /// A counter `<name>_total` with this value.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.one(name, help, &ConstCounter::new(value))
    }

    /// A counter of a fractional quantity (seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, value: f64) -> fmt::Result {
        self.one(name, help, &ConstCounter::new(value))
    }

    /// A gauge with this value.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        self.one(name, help, &ConstGauge::new(value))
    }

    /// A histogram the role keeps itself (observed where the event happens).
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) -> fmt::Result {
        self.one(name, help, histogram)
    }

    /// Histograms the role keeps itself, one per value of one label (a bounded set).
    pub fn histogram_by(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, &Histogram)],
    ) -> fmt::Result {
        self.by(name, help, label, MetricType::Histogram, values, |h, m| {
            h.encode(m)
        })
    }

    /// A gauge with one label, one sample per `(label value, value)`. The label values
    /// must come from a bounded set.
    pub fn gauge_by(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, i64)],
    ) -> fmt::Result {
        self.by(name, help, label, MetricType::Gauge, values, |&n, m| {
            ConstGauge::new(n).encode(m)
        })
    }

    /// A counter with one label, one sample per `(label value, count)`. The label
    /// values must come from a bounded set.
    pub fn counter_by(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) -> fmt::Result {
        self.by(name, help, label, MetricType::Counter, values, |&n, m| {
            ConstCounter::new(n).encode(m)
        })
    }

    fn one(&mut self, name: &str, help: &str, metric: &impl EncodeMetric) -> fmt::Result {
        check_name(name);
        let m = self
            .encoder
            .encode_descriptor(name, help, None, metric.metric_type())?;
        metric.encode(m)
    }

    /// One descriptor of type `kind` (written even when `values` is empty), then a
    /// labelled sample per value, which `encode` writes.
    fn by<T>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        kind: MetricType,
        values: &[(&str, T)],
        encode: impl Fn(&T, MetricEncoder<'_>) -> fmt::Result,
    ) -> fmt::Result {
        check_name(name);
        let mut m = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (value, n) in values {
            let labels = [(label, *value)];
            encode(n, m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The samples of an OpenMetrics text: `name{labels}` to value, and each metric's
    /// `# TYPE`. Checks the shape as it goes, so a malformed line fails the test.
    pub(crate) fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
                types.insert(name.to_owned(), ty.to_owned());
            } else if line.starts_with("# HELP ") || line == "# EOF" || line.starts_with("# UNIT ")
            {
            } else {
                let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
                let name = series.split('{').next().unwrap_or(series);
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
                    "{line}"
                );
                samples.insert(series.to_owned(), value.parse().expect("a number"));
            }
        }
        (samples, types)
    }

    struct Fixed;

    impl Collect for Fixed {
        fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
            s.gauge("calls", "Calls now.", 3)?;
            s.counter("forwarded_packets", "Datagrams forwarded.", 42)?;
            s.counter_f64("call_duration_seconds", "Time in calls.", 1.5)?;
            s.counter_by(
                "calls_ended",
                "Calls ended, by reason.",
                "reason",
                &[("deleted", 2), ("timeout", 1)],
            )
        }
    }

    #[test]
    fn roles_publish_under_their_prefix_and_encode_as_openmetrics() {
        let metrics = Metrics::new();
        let (viewers, setup) = metrics.register("edge", |r| {
            (
                r.gauge("viewers", "Viewers now."),
                r.histogram(
                    "first_keyframe_seconds",
                    "Time to first keyframe.",
                    [0.1, 1.0],
                ),
            )
        });
        let sessions = metrics.register("edge", |r| r.counter("sessions", "Sessions ended."));
        metrics.register("relay", |r| r.collect(Fixed));
        viewers.set(7);
        sessions.inc_by(2);
        setup.observe(0.5);
        let (samples, types) = parse(&metrics.encode());
        assert_eq!(samples["mediagate_edge_viewers"], 7.0);
        assert_eq!(types["mediagate_edge_viewers"], "gauge");
        assert_eq!(samples["mediagate_edge_sessions_total"], 2.0);
        assert_eq!(types["mediagate_edge_sessions"], "counter");
        assert_eq!(
            samples["mediagate_edge_first_keyframe_seconds_bucket{le=\"1.0\"}"],
            1.0
        );
        assert_eq!(samples["mediagate_edge_first_keyframe_seconds_count"], 1.0);
        assert_eq!(samples["mediagate_relay_calls"], 3.0);
        assert_eq!(samples["mediagate_relay_forwarded_packets_total"], 42.0);
        assert_eq!(samples["mediagate_relay_call_duration_seconds_total"], 1.5);
        assert_eq!(
            samples["mediagate_relay_calls_ended_total{reason=\"deleted\"}"],
            2.0
        );
        assert_eq!(
            samples["mediagate_relay_calls_ended_total{reason=\"timeout\"}"],
            1.0
        );
        assert_eq!(types["mediagate_relay_calls_ended"], "counter");
    }

    /// Every kind of metric a role can publish, with the process metrics, as a real
    /// scraper's parser and linter see it.
    #[test]
    fn the_exposition_passes_promtool() {
        let metrics = Metrics::new();
        let h = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        h.observe(0.003);
        let (viewers, setup) = metrics.register("edge", |r| {
            (
                r.gauge("viewers", "Viewers now."),
                r.histogram("setup_seconds", "Setup time.", [0.1, 1.0]),
            )
        });
        viewers.set(2);
        setup.observe(0.2);
        let by_way = [0.5, 2.0].map(|v| {
            let h = Histogram::new([1.0]);
            h.observe(v);
            h
        });
        struct Kept(Histogram, [Histogram; 2]);
        impl Collect for Kept {
            fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
                s.histogram("latency_seconds", "Latency.", &self.0)?;
                s.histogram_by(
                    "hop_seconds",
                    "Hop time, by way.",
                    "way",
                    &[("in", &self.1[0]), ("out", &self.1[1])],
                )?;
                s.gauge_by("peers", "Peers, by kind.", "kind", &[("a", 1), ("b", 0)])
            }
        }
        metrics.register("relay", |r| {
            r.collect(Fixed);
            r.collect(Kept(h, by_way));
        });
        let text = metrics.encode();
        mediagate_testkit::promtool::check_metrics(&metrics.encode_text());
        let (samples, _) = parse(&text);
        assert_eq!(samples["mediagate_relay_latency_seconds_count"], 1.0);
        assert_eq!(samples["mediagate_relay_peers{kind=\"a\"}"], 1.0);
        assert_eq!(
            samples["mediagate_relay_hop_seconds_bucket{le=\"1.0\",way=\"in\"}"],
            1.0
        );
        assert_eq!(
            samples["mediagate_relay_hop_seconds_bucket{le=\"1.0\",way=\"out\"}"],
            0.0
        );
        assert_eq!(
            samples["mediagate_relay_hop_seconds_count{way=\"out\"}"],
            1.0
        );
        assert!(samples.contains_key("process_cpu_seconds_total"));
    }

    #[test]
    #[should_panic(expected = "the encoder appends _total")]
    fn counter_names_leave_total_to_the_encoder() {
        Metrics::new().register("edge", |r| r.counter("sessions_total", "x"));
    }

    #[test]
    fn the_classic_text_names_counter_families_with_their_total() {
        let open = "# HELP a Things.\n# TYPE a counter\n# UNIT a seconds\na_total 1\n\
                    # HELP b Now.\n# TYPE b gauge\nb{x=\"y z\"} 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(open),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total 1\n\
             # HELP b Now.\n# TYPE b gauge\nb{x=\"y z\"} 2\n"
        );
    }

    #[test]
    fn names_are_lower_snake_case() {
        assert!(is_snake("relay"));
        assert!(is_snake("calls_ended_2"));
        assert!(!is_snake("Relay"));
        assert!(!is_snake("2calls"));
        assert!(!is_snake("calls-ended"));
        assert!(!is_snake(""));
    }
}
