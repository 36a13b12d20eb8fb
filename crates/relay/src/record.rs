//! The record a finished call leaves: who, when, why it ended, and per stream the
//! codecs, addresses and what flowed each way. The fields follow MediaProxy's session
//! statistics (anchors c.3/c.4: caller/callee codec, local and remote addresses,
//! packets and bytes) plus errors, refused packets and RTCP-derived loss and jitter.
//!
//! What it does: holds the values and renders them as one JSON object (the form the
//! accounting store keeps and the access log writes). What it does not: store them
//! ([`crate::store`] does).

use serde_json::{json, Value as Json};

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `delete` from the SIP proxy (BYE, CANCEL, failure).
    Deleted,
    /// No media for the media timeout.
    Timeout,
    /// No media for the on-hold timeout while every stream was on hold.
    HoldTimeout,
    /// Offered but never answered within the offer timeout.
    OfferTimeout,
    /// The relay shut down.
    Shutdown,
}

impl EndReason {
    /// The name stored in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Timeout => "media timeout",
            Self::HoldTimeout => "on hold timeout",
            Self::OfferTimeout => "offer timeout",
            Self::Shutdown => "shutdown",
        }
    }

    /// Whether the SIP proxy should be told (it does not know the call ended).
    pub fn needs_notification(self) -> bool {
        matches!(self, Self::Timeout | Self::HoldTimeout)
    }
}

/// What one party of one stream sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegRecord {
    /// The first codec of the party's SDP.
    pub codec: String,
    /// The relay port the party sent to, `ip:port`.
    pub local: String,
    /// Where the party's media came from (latched), else its signalled endpoint, else
    /// `Unknown`.
    pub remote: String,
    /// RTP packets forwarded from this party.
    pub packets: u64,
    /// RTP bytes forwarded from this party.
    pub bytes: u64,
    /// RTCP packets forwarded from this party.
    pub rtcp_packets: u64,
    /// RTCP bytes forwarded from this party.
    pub rtcp_bytes: u64,
    /// Malformed packets or packets with nowhere to go.
    pub errors: u64,
    /// Packets refused for their source (strangers, RTP bleed attempts).
    pub refused: u64,
    /// From this party's RTCP: cumulative loss of the stream it received.
    pub cumulative_lost: i64,
    /// From this party's RTCP: last fraction lost, 1/256.
    pub fraction_lost: u8,
    /// From this party's RTCP: interarrival jitter, RTP timestamp units.
    pub jitter: u32,
}

/// One stream of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRecord {
    /// Position of the `m=` line.
    pub index: usize,
    /// `audio`, `video`, `image` ...
    pub media_type: String,
    /// `RTP/AVP`, `udptl` ...
    pub proto: String,
    /// The caller (first offerer).
    pub caller: LegRecord,
    /// The callee.
    pub callee: LegRecord,
}

/// A finished call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionRecord {
    /// Call-ID.
    pub call_id: String,
    /// The caller's tag.
    pub from_tag: String,
    /// The callee's tag (empty if never answered).
    pub to_tag: String,
    /// Start, Unix milliseconds.
    pub start_unix_ms: u64,
    /// End, Unix milliseconds.
    pub end_unix_ms: u64,
    /// Why it ended ([`EndReason::as_str`]).
    pub reason: String,
    /// The streams, in `m=` order (closed ones that were never relayed are absent).
    pub streams: Vec<StreamRecord>,
}

impl SessionRecord {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.end_unix_ms.saturating_sub(self.start_unix_ms)
    }

    /// Packets forwarded in both directions, RTP and RTCP.
    pub fn total_packets(&self) -> u64 {
        self.streams
            .iter()
            .flat_map(|s| [&s.caller, &s.callee])
            .map(|l| l.packets + l.rtcp_packets)
            .sum()
    }

    /// The record as a JSON object.
    pub fn to_json(&self) -> Json {
        json!({
            "call_id": self.call_id,
            "from_tag": self.from_tag,
            "to_tag": self.to_tag,
            "start_unix_ms": self.start_unix_ms,
            "end_unix_ms": self.end_unix_ms,
            "duration_ms": self.duration_ms(),
            "reason": self.reason,
            "streams": self.streams.iter().map(|s| json!({
                "index": s.index,
                "media_type": s.media_type,
                "proto": s.proto,
                "caller": leg_json(&s.caller),
                "callee": leg_json(&s.callee),
            })).collect::<Vec<_>>(),
        })
    }
}

impl SessionRecord {
    /// Reads back a record written by [`SessionRecord::to_json`] (the store's `info`
    /// column); `None` if a field is missing or has the wrong type.
    pub fn from_json(text: &str) -> Option<Self> {
        let j: Json = serde_json::from_str(text).ok()?;
        let s = |v: &Json| v.as_str().map(str::to_owned);
        let streams = j["streams"]
            .as_array()?
            .iter()
            .map(|st| {
                Some(StreamRecord {
                    index: usize::try_from(st["index"].as_u64()?).ok()?,
                    media_type: s(&st["media_type"])?,
                    proto: s(&st["proto"])?,
                    caller: leg_from_json(&st["caller"])?,
                    callee: leg_from_json(&st["callee"])?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            call_id: s(&j["call_id"])?,
            from_tag: s(&j["from_tag"])?,
            to_tag: s(&j["to_tag"])?,
            start_unix_ms: j["start_unix_ms"].as_u64()?,
            end_unix_ms: j["end_unix_ms"].as_u64()?,
            reason: s(&j["reason"])?,
            streams,
        })
    }
}

fn leg_from_json(j: &Json) -> Option<LegRecord> {
    let n = |k: &str| j[k].as_u64();
    Some(LegRecord {
        codec: j["codec"].as_str()?.to_owned(),
        local: j["local"].as_str()?.to_owned(),
        remote: j["remote"].as_str()?.to_owned(),
        packets: n("packets")?,
        bytes: n("bytes")?,
        rtcp_packets: n("rtcp_packets")?,
        rtcp_bytes: n("rtcp_bytes")?,
        errors: n("errors")?,
        refused: n("refused")?,
        cumulative_lost: j["cumulative_lost"].as_i64()?,
        fraction_lost: u8::try_from(n("fraction_lost")?).ok()?,
        jitter: u32::try_from(n("jitter")?).ok()?,
    })
}

fn leg_json(l: &LegRecord) -> Json {
    json!({
        "codec": l.codec,
        "local": l.local,
        "remote": l.remote,
        "packets": l.packets,
        "bytes": l.bytes,
        "rtcp_packets": l.rtcp_packets,
        "rtcp_bytes": l.rtcp_bytes,
        "errors": l.errors,
        "refused": l.refused,
        "cumulative_lost": l.cumulative_lost,
        "fraction_lost": l.fraction_lost,
        "jitter": l.jitter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let r = SessionRecord {
            call_id: "c1".into(),
            from_tag: "f".into(),
            to_tag: "t".into(),
            start_unix_ms: 1_000,
            end_unix_ms: 61_500,
            reason: EndReason::Timeout.as_str().into(),
            streams: vec![StreamRecord {
                index: 0,
                media_type: "audio".into(),
                proto: "RTP/AVP".into(),
                caller: LegRecord {
                    codec: "PCMA".into(),
                    packets: 10,
                    rtcp_packets: 1,
                    ..LegRecord::default()
                },
                callee: LegRecord {
                    packets: 5,
                    ..LegRecord::default()
                },
            }],
        };
        assert_eq!(r.duration_ms(), 60_500);
        assert_eq!(r.total_packets(), 16);
        let j = r.to_json();
        assert_eq!(j["reason"], "media timeout");
        assert_eq!(j["streams"][0]["caller"]["codec"], "PCMA");
        assert_eq!(j["streams"][0]["callee"]["packets"], 5);
        assert_eq!(SessionRecord::from_json(&j.to_string()), Some(r.clone()));
        assert_eq!(SessionRecord::from_json("{}"), None);
        assert!(EndReason::Timeout.needs_notification());
        assert!(!EndReason::Deleted.needs_notification());
    }
}
