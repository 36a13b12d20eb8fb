//! A finished viewer session as an access log line: the fields, their order and their
//! names, shared by the text and the JSON formats (`mediagate_ops::access_log` writes
//! them). The order follows Squid's native format where the two overlap (time,
//! duration, client, result, bytes, method, URL, user) and adds what a streaming edge
//! knows: the status, remap rule, transport, packets, the loss the viewer reported,
//! why it ended, the user agent and the origin.
//!
//! What it does not: write anything, or decide whether a session is logged (every
//! ended session is).

use mediagate_ops::access_log::AccessLine;

use crate::session::EndedSession;

/// The access log line of one finished viewer session. `time` is when it ended.
pub fn access_line(ended: &EndedSession) -> AccessLine {
    let duration_ms = u64::try_from(ended.duration.as_millis()).unwrap_or(u64::MAX);
    AccessLine::new()
        .time("time", ended.started_unix_ms.saturating_add(duration_ms))
        .int("duration_ms", duration_ms)
        .token("client", ended.viewer.to_string())
        .text("user", ended.user.as_deref())
        .token("method", ended.method.clone())
        .text("url", Some(&ended.url))
        .int("status", u64::from(ended.status))
        .token("cache", ended.cache.as_str())
        .text("rule", ended.rule.as_deref())
        .token("transport", ended.transport.as_str())
        .int("bytes", ended.counts.bytes)
        .int("packets", ended.counts.packets)
        .int("lost", ended.reported_lost)
        .int("skipped", ended.counts.lost)
        .token("reason", ended.reason.as_str())
        .token("session", ended.session.clone())
        .text("user_agent", ended.user_agent.as_deref())
        .text("origin", ended.origin.as_deref())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::{CacheResult, EndReason, ViewerTransport};
    use crate::sink::Counts;

    fn ended() -> EndedSession {
        EndedSession {
            session: "a1b2".into(),
            viewer: "192.0.2.7:5004".parse().unwrap(),
            url: "rtsp://edge:8554/cams/front".into(),
            transport: ViewerTransport::Udp,
            started_unix_ms: 1_733_449_353_000,
            duration: Duration::from_millis(2_500),
            reason: EndReason::Teardown,
            counts: Counts {
                packets: 10,
                bytes: 12_000,
                lost: 2,
            },
            user: None,
            method: "PLAY".into(),
            status: 200,
            rule: Some("/cams".into()),
            origin: Some("rtsp://192.0.2.10/front".into()),
            cache: CacheResult::Split,
            user_agent: Some("Lavf60.16.100".into()),
            reported_lost: 3,
        }
    }

    #[test]
    fn the_text_line_has_every_field_in_order() {
        assert_eq!(
            access_line(&ended()).to_text(),
            "2024-12-06T01:42:35.500Z 2500 192.0.2.7:5004 - PLAY \"rtsp://edge:8554/cams/front\" 200 SPLIT \"/cams\" udp 12000 10 3 2 teardown a1b2 \"Lavf60.16.100\" \"rtsp://192.0.2.10/front\""
        );
    }

    #[test]
    fn the_json_line_names_the_same_fields() {
        let mut e = ended();
        e.user = Some("alice".into());
        let v: serde_json::Value = serde_json::from_str(&access_line(&e).to_json()).unwrap();
        assert_eq!(v["user"], "alice");
        assert_eq!(v["cache"], "SPLIT");
        assert_eq!(v["lost"], 3);
        assert_eq!(v["skipped"], 2);
        assert_eq!(v["origin"], "rtsp://192.0.2.10/front");
        assert_eq!(v.as_object().unwrap().len(), 18);
    }
}
