//! MediaProxy's session statistics (anchors c.3) built from a relay's call record: the
//! dictionary the management interface's `sessions` lists, the RADIUS accounting
//! record is made of, and the dispatcher's records keep.
//!
//! What it does: maps a [`SessionRecord`] plus what only the SIP proxy told the
//! dispatcher ([`SipInfo`]: URIs and user agents, which `ng` never carries to a relay)
//! onto MediaProxy's field names, units and status words, and describes a relay as
//! MediaProxy's `summary` does ([`RelaySummary`]).
//!
//! What it does not: keep sessions or talk to relays. The session map (the front
//! doors) implements [`ClusterView`] and hands records in.
//!
//! Field by field, where the relay record has no exact equivalent:
//! * `start_time` is the call's first offer (MediaProxy: the first update), Unix
//!   seconds as a float; `duration` whole seconds.
//! * A stream's `start_time`/`end_time` are seconds from the call's start. The relay
//!   does not keep per-stream times, so every stream reports 0 and the call's
//!   duration: exact for the streams of the first offer, too early a start for a
//!   stream a re-INVITE added.
//! * `post_dial_delay` is offer to first answer (the relay's `answer_unix_ms`) in
//!   seconds, `null` when never answered; MediaProxy measures it per stream from the
//!   same two messages, so every stream carries the call's value.
//! * `status`: `closed` (a port-0 stream, or any stream of a call that ended by a
//!   `delete`, shutdown or operator), `no-traffic timeout` (the relay's media timeout),
//!   `on hold timeout`, `on hold` and `active` (live calls). `conntrack timeout`,
//!   `rejected` and `unselected ICE candidate` never occur: the relay has no kernel
//!   conntrack path and does not take part in ICE.
//! * `timeout_wait` is always 0 (it is the kernel conntrack timeout in MediaProxy).

use mediagate_relay::record::{EndReason, LegRecord, SessionRecord, StreamRecord};
use serde::Serialize;

/// What the dispatcher learned from SIP signalling about a call (MediaProxy's
/// `update` headers), which relays never see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipInfo {
    /// `from_uri` of the requests.
    pub from_uri: String,
    /// `to_uri` of the requests.
    pub to_uri: String,
    /// `user_agent` of the caller's requests (`type: request`).
    pub caller_ua: Option<String>,
    /// `user_agent` of the callee's replies (`type: reply`).
    pub callee_ua: Option<String>,
    /// The SIP proxy's dialog id (`h_entry << 32 | h_id`), to end the dialog.
    pub dialog_id: Option<u64>,
}

/// MediaProxy's session dictionary, fields in MediaProxy's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaProxySession {
    /// Call-ID.
    pub call_id: String,
    /// The caller's tag.
    pub from_tag: String,
    /// From URI (empty when the call came through `ng`).
    pub from_uri: String,
    /// The callee's tag (empty if never answered).
    pub to_tag: String,
    /// To URI (empty when the call came through `ng`).
    pub to_uri: String,
    /// Unix seconds of the first offer.
    pub start_time: f64,
    /// Whole seconds.
    pub duration: u64,
    /// The caller's User-Agent, `Unknown` when not known (as MediaProxy).
    pub caller_ua: String,
    /// The callee's User-Agent, `Unknown` when not known.
    pub callee_ua: String,
    /// Always `null`: MediaProxy fills it only from its own signalling-IP JSON.
    pub username: Option<String>,
    /// The streams in `m=` order.
    pub streams: Vec<MediaProxyStream>,
}

/// One stream of [`MediaProxySession`], fields in MediaProxy's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaProxyStream {
    /// `audio`, `video` ...
    pub media_type: String,
    /// See the module docs.
    pub status: &'static str,
    /// Always 0 (see the module docs).
    pub timeout_wait: u64,
    /// The caller's first codec.
    pub caller_codec: String,
    /// The callee's first codec.
    pub callee_codec: String,
    /// Seconds from the call's start.
    pub start_time: u64,
    /// Seconds from the call's start.
    pub end_time: u64,
    /// Offer to answer, seconds; `null` when never answered.
    pub post_dial_delay: Option<f64>,
    /// RTP bytes the caller sent.
    pub caller_bytes: u64,
    /// RTP bytes the callee sent.
    pub callee_bytes: u64,
    /// RTP packets the caller sent.
    pub caller_packets: u64,
    /// RTP packets the callee sent.
    pub callee_packets: u64,
    /// The relay address the caller sends to, `ip:port`.
    pub caller_local: String,
    /// The relay address the callee sends to, `ip:port`.
    pub callee_local: String,
    /// Where the caller's media came from, `ip:port` or `Unknown`.
    pub caller_remote: String,
    /// Where the callee's media came from, `ip:port` or `Unknown`.
    pub callee_remote: String,
}

const UNKNOWN: &str = "Unknown";

/// MediaProxy's status word for a stream of `record`.
fn stream_status(record: &SessionRecord, stream: &StreamRecord) -> &'static str {
    if stream.closed {
        return "closed";
    }
    if record.reason.is_empty() {
        return if stream.on_hold { "on hold" } else { "active" };
    }
    if record.reason == EndReason::Timeout.as_str() {
        "no-traffic timeout"
    } else if record.reason == EndReason::HoldTimeout.as_str() {
        "on hold timeout"
    } else {
        "closed"
    }
}

fn or_unknown(text: &str) -> String {
    if text.is_empty() {
        UNKNOWN.to_owned()
    } else {
        text.to_owned()
    }
}

fn remote(leg: &LegRecord) -> String {
    or_unknown(&leg.remote)
}

impl MediaProxySession {
    /// The statistics of `record` (finished, or live with an empty reason) as
    /// MediaProxy reports them.
    pub fn from_record(record: &SessionRecord, sip: &SipInfo) -> Self {
        let duration = record.duration_ms() / 1000;
        // f64 holds every millisecond count up to 2^53 exactly (year 285,000).
        #[allow(clippy::cast_precision_loss)]
        let seconds = |ms: u64| ms as f64 / 1000.0;
        let post_dial_delay = record.post_dial_delay_ms().map(seconds);
        let ua = |ua: &Option<String>| or_unknown(ua.as_deref().unwrap_or_default());
        Self {
            call_id: record.call_id.clone(),
            from_tag: record.from_tag.clone(),
            from_uri: sip.from_uri.clone(),
            to_tag: record.to_tag.clone(),
            to_uri: sip.to_uri.clone(),
            start_time: seconds(record.start_unix_ms),
            duration,
            caller_ua: ua(&sip.caller_ua),
            callee_ua: ua(&sip.callee_ua),
            username: None,
            streams: record
                .streams
                .iter()
                .map(|s| MediaProxyStream {
                    media_type: s.media_type.clone(),
                    status: stream_status(record, s),
                    timeout_wait: 0,
                    caller_codec: or_unknown(&s.caller.codec),
                    callee_codec: or_unknown(&s.callee.codec),
                    start_time: 0,
                    end_time: duration,
                    post_dial_delay,
                    caller_bytes: s.caller.bytes,
                    callee_bytes: s.callee.bytes,
                    caller_packets: s.caller.packets,
                    callee_packets: s.callee.packets,
                    caller_local: s.caller.local.clone(),
                    callee_local: s.callee.local.clone(),
                    caller_remote: remote(&s.caller),
                    callee_remote: remote(&s.callee),
                })
                .collect(),
        }
    }

    /// Whether the call ended because its media stopped (MediaProxy's `timed_out`).
    pub fn timed_out(&self) -> bool {
        self.streams
            .iter()
            .any(|s| matches!(s.status, "no-traffic timeout" | "on hold timeout"))
    }
}

/// One relay as MediaProxy's `summary` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RelaySummary {
    /// A relay that answered.
    Up {
        /// The relay's media address.
        ip: String,
        /// Its software version.
        version: String,
        /// `active` or `halting`.
        status: String,
        /// Seconds since it started.
        uptime: u64,
        /// Calls it holds.
        session_count: u64,
        /// Streams it relays, by media type.
        stream_count: std::collections::BTreeMap<String, u64>,
        /// Bits per second it relays.
        bps_relayed: u64,
    },
    /// A relay that did not answer: MediaProxy substitutes `{"status":"error","ip":..}`.
    Error {
        /// Always `error`.
        status: &'static str,
        /// The relay's address.
        ip: String,
    },
}

impl RelaySummary {
    /// The stand-in for a relay that did not answer.
    pub fn error(ip: impl Into<String>) -> Self {
        Self::Error {
            status: "error",
            ip: ip.into(),
        }
    }
}

/// What the management interface (and the accounting of live data) needs from the
/// dispatcher's session map. The front doors implement it. Answers may ask relays,
/// so they are futures; an implementation bounds how long they take.
pub trait ClusterView: Send + Sync + 'static {
    /// Every relay, in a stable order.
    fn summary(&self) -> crate::pool::PoolFuture<'_, Vec<RelaySummary>>;
    /// Every call across the relays, flattened.
    fn sessions(&self) -> crate::pool::PoolFuture<'_, Vec<MediaProxySession>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(codec: &str, local: &str, remote: &str, packets: u64) -> LegRecord {
        LegRecord {
            codec: codec.into(),
            local: local.into(),
            remote: remote.into(),
            packets,
            bytes: packets * 172,
            ..LegRecord::default()
        }
    }

    fn record(reason: &str) -> SessionRecord {
        SessionRecord {
            call_id: "c1@host".into(),
            from_tag: "ft".into(),
            to_tag: "tt".into(),
            start_unix_ms: 1_700_000_000_100,
            answer_unix_ms: 1_700_000_001_300,
            end_unix_ms: 1_700_000_042_900,
            reason: reason.into(),
            streams: vec![
                StreamRecord {
                    index: 0,
                    media_type: "audio".into(),
                    proto: "RTP/AVP".into(),
                    caller: leg("PCMA", "192.0.2.1:30000", "198.51.100.7:4000", 10),
                    callee: leg("PCMA", "192.0.2.1:30002", "Unknown", 0),
                    ..StreamRecord::default()
                },
                StreamRecord {
                    index: 1,
                    media_type: "video".into(),
                    proto: "RTP/AVP".into(),
                    caller: leg("H264", "192.0.2.1:30004", "", 3),
                    callee: leg("", "192.0.2.1:30006", "203.0.113.9:5002", 4),
                    closed: true,
                    ..StreamRecord::default()
                },
            ],
        }
    }

    #[test]
    fn a_finished_call_reads_as_mediaproxy_writes_it() {
        let sip = SipInfo {
            from_uri: "sip:alice@example.org".into(),
            to_uri: "sip:bob@example.org".into(),
            caller_ua: Some("SIPp".into()),
            callee_ua: None,
            dialog_id: Some(7),
        };
        let s = MediaProxySession::from_record(&record("deleted"), &sip);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"call_id":"c1@host","from_tag":"ft","from_uri":"sip:alice@example.org","#,
                r#""to_tag":"tt","to_uri":"sip:bob@example.org","start_time":1700000000.1,"#,
                r#""duration":42,"caller_ua":"SIPp","callee_ua":"Unknown","username":null,"#,
                r#""streams":[{"media_type":"audio","status":"closed","timeout_wait":0,"#,
                r#""caller_codec":"PCMA","callee_codec":"PCMA","start_time":0,"end_time":42,"#,
                r#""post_dial_delay":1.2,"caller_bytes":1720,"callee_bytes":0,"#,
                r#""caller_packets":10,"callee_packets":0,"caller_local":"192.0.2.1:30000","#,
                r#""callee_local":"192.0.2.1:30002","caller_remote":"198.51.100.7:4000","#,
                r#""callee_remote":"Unknown"},"#,
                r#"{"media_type":"video","status":"closed","timeout_wait":0,"#,
                r#""caller_codec":"H264","callee_codec":"Unknown","start_time":0,"end_time":42,"#,
                r#""post_dial_delay":1.2,"caller_bytes":516,"callee_bytes":688,"#,
                r#""caller_packets":3,"callee_packets":4,"caller_local":"192.0.2.1:30004","#,
                r#""callee_local":"192.0.2.1:30006","caller_remote":"Unknown","#,
                r#""callee_remote":"203.0.113.9:5002"}]}"#
            )
        );
        assert!(!s.timed_out());
    }

    #[test]
    fn statuses_follow_the_end_reason_and_the_stream() {
        let status = |reason: &str| {
            let s = MediaProxySession::from_record(&record(reason), &SipInfo::default());
            (s.streams[0].status, s.streams[1].status, s.timed_out())
        };
        assert_eq!(
            status("media timeout"),
            ("no-traffic timeout", "closed", true)
        );
        assert_eq!(
            status("on hold timeout"),
            ("on hold timeout", "closed", true)
        );
        assert_eq!(status("shutdown"), ("closed", "closed", false));
        assert_eq!(status(""), ("active", "closed", false), "live");
        let mut held = record("");
        held.streams[0].on_hold = true;
        let s = MediaProxySession::from_record(&held, &SipInfo::default());
        assert_eq!(s.streams[0].status, "on hold");
    }

    #[test]
    fn an_unanswered_call_has_no_post_dial_delay() {
        let mut r = record("offer timeout");
        r.answer_unix_ms = 0;
        let s = MediaProxySession::from_record(&r, &SipInfo::default());
        assert_eq!(s.streams[0].post_dial_delay, None);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["streams"][0]["post_dial_delay"],
            serde_json::Value::Null
        );
        assert_eq!((s.caller_ua.as_str(), s.from_uri.as_str()), ("Unknown", ""));
    }

    #[test]
    fn a_relay_report_in_the_records_json_reads_back() {
        // The pool's `Ended` event carries the relay's record as JSON.
        let json = record("media timeout").to_json();
        let back = SessionRecord::from_json_value(&json).unwrap();
        let s = MediaProxySession::from_record(&back, &SipInfo::default());
        assert!(s.timed_out());
        // A record from before answer/hold/closed existed still reads.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("answer_unix_ms");
        for st in old["streams"].as_array_mut().unwrap() {
            st.as_object_mut().unwrap().remove("closed");
        }
        let back = SessionRecord::from_json_value(&old).unwrap();
        assert_eq!(back.answer_unix_ms, 0);
        assert!(!back.streams[1].closed);
    }

    #[test]
    fn relay_summaries_in_both_shapes() {
        let up = RelaySummary::Up {
            ip: "192.0.2.1".into(),
            version: "0.1.0".into(),
            status: "active".into(),
            uptime: 12,
            session_count: 1,
            stream_count: [("audio".to_owned(), 1)].into_iter().collect(),
            bps_relayed: 64_000,
        };
        assert_eq!(
            serde_json::to_string(&[up, RelaySummary::error("192.0.2.2")]).unwrap(),
            r#"[{"ip":"192.0.2.1","version":"0.1.0","status":"active","uptime":12,"session_count":1,"stream_count":{"audio":1},"bps_relayed":64000},{"status":"error","ip":"192.0.2.2"}]"#
        );
    }
}
