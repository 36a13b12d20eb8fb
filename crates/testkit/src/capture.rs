//! Shrinks a captured RTSP byte stream for `testdata/`: keeps every RTSP/HTTP message,
//! keeps interleaved frames up to a media budget, drops the rest whole.
//!
//! The walk follows RTSP framing just enough to cut on boundaries: a `$` starts an
//! interleaved frame (`$`, channel, 16-bit length, RFC 2326 §10.12); anything else is a
//! message whose head ends at the first empty line and whose body is `Content-Length`
//! bytes (§4.3). An HTTP tunnel GET reply has no Content-Length: the RTSP stream that
//! follows it is walked the same way. Frames on odd channels (RTCP by convention) are
//! always kept, since they are few and worth parsing.
//!
//! What it does not do: validate anything. Whatever it cannot frame (a partial message
//! at the end, base64 tunnel data, garbage) is kept verbatim from there on, so the output
//! is always the input with some whole `$` frames removed.

/// The result of [`thin_rtsp_stream`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thinned {
    /// The stream with late media frames removed.
    pub data: Vec<u8>,
    /// Interleaved frames kept.
    pub kept_frames: usize,
    /// Interleaved frames removed.
    pub dropped_frames: usize,
    /// Bytes removed (whole frames, headers included).
    pub dropped_bytes: usize,
    /// RTSP/HTTP messages seen.
    pub messages: usize,
}

/// Finds the end of a message head (`\r\n\r\n`, or bare `\n\n`) starting at `from`.
fn head_end(data: &[u8], from: usize) -> Option<usize> {
    let rest = data.get(from..)?;
    let crlf = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = rest.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    from.checked_add(end)
}

/// The Content-Length of a message head, 0 if absent or unreadable.
fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Keeps every message and the first `keep_media` bytes of even-channel interleaved
/// frames (whole frames only); removes later even-channel frames.
pub fn thin_rtsp_stream(data: &[u8], keep_media: usize) -> Thinned {
    let mut out = Thinned {
        data: Vec::with_capacity(data.len().min(keep_media.saturating_add(64 * 1024))),
        ..Thinned::default()
    };
    let mut media_kept = 0usize;
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest[0] == b'$' {
            let Some(header) = rest.get(..4) else {
                out.data.extend_from_slice(rest);
                break;
            };
            let channel = header[1];
            let len = 4 + usize::from(u16::from_be_bytes([header[2], header[3]]));
            let Some(frame) = rest.get(..len) else {
                // A frame cut by the end of the capture: keep it only inside the budget.
                if media_kept < keep_media || channel % 2 == 1 {
                    out.data.extend_from_slice(rest);
                } else {
                    out.dropped_frames += 1;
                    out.dropped_bytes += rest.len();
                }
                break;
            };
            if channel % 2 == 1 || media_kept.saturating_add(len) <= keep_media {
                if channel % 2 == 0 {
                    media_kept += len;
                }
                out.data.extend_from_slice(frame);
                out.kept_frames += 1;
            } else {
                // Once over budget, stay over: no later small frame slips in.
                media_kept = keep_media;
                out.dropped_frames += 1;
                out.dropped_bytes += len;
            }
            pos += len;
        } else {
            let Some(end) = head_end(data, pos) else {
                out.data.extend_from_slice(rest);
                break;
            };
            let body = content_length(&data[pos..end]);
            let Some(msg_end) = end.checked_add(body).filter(|&e| e <= data.len()) else {
                out.data.extend_from_slice(rest);
                break;
            };
            out.data.extend_from_slice(&data[pos..msg_end]);
            out.messages += 1;
            pos = msg_end;
        }
    }
    out
}

/// The bodies of the messages in `data` whose Content-Type is `content_type` (e.g. the
/// SDP of a DESCRIBE reply or an ANNOUNCE), in stream order. Interleaved frames are
/// skipped; the walk stops where framing is lost.
pub fn message_bodies(data: &[u8], content_type: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest[0] == b'$' {
            let Some(header) = rest.get(..4) else { break };
            pos += 4 + usize::from(u16::from_be_bytes([header[2], header[3]]));
            continue;
        }
        let Some(end) = head_end(data, pos) else {
            break;
        };
        let head = &data[pos..end];
        let body = content_length(head);
        let Some(msg_end) = end.checked_add(body).filter(|&e| e <= data.len()) else {
            break;
        };
        let text = String::from_utf8_lossy(head);
        let matches = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("content-type")
                    && v.trim()
                        .to_ascii_lowercase()
                        .starts_with(&content_type.to_ascii_lowercase())
            });
        if matches && body > 0 {
            out.push(data[end..msg_end].to_vec());
        }
        pos = msg_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(channel: u8, len: usize) -> Vec<u8> {
        let mut f = vec![b'$', channel];
        f.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        f.extend(std::iter::repeat_n(channel, len));
        f
    }

    const PLAY_OK: &[u8] = b"RTSP/1.0 200 OK\r\nCSeq: 5\r\nSession: abc\r\n\r\n";
    const DESCRIBE_OK: &[u8] = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 5\r\n\r\nv=0\r\n";

    #[test]
    fn keeps_messages_and_budgeted_frames() {
        let mut s = Vec::new();
        s.extend_from_slice(DESCRIBE_OK);
        s.extend_from_slice(PLAY_OK);
        s.extend(frame(0, 100));
        s.extend(frame(2, 100));
        s.extend(frame(1, 30)); // RTCP: always kept
        s.extend(frame(0, 100)); // over a 250-byte budget
        s.extend(frame(2, 10)); // small, but after the budget ran out
        s.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 6\r\n\r\n");
        let t = thin_rtsp_stream(&s, 250);
        let mut want = Vec::new();
        want.extend_from_slice(DESCRIBE_OK);
        want.extend_from_slice(PLAY_OK);
        want.extend(frame(0, 100));
        want.extend(frame(2, 100));
        want.extend(frame(1, 30));
        want.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 6\r\n\r\n");
        assert_eq!(t.data, want);
        assert_eq!(t.kept_frames, 3);
        assert_eq!(t.dropped_frames, 2);
        assert_eq!(t.dropped_bytes, 104 + 14);
        assert_eq!(t.messages, 3);
    }

    #[test]
    fn big_budget_is_identity() {
        let mut s = Vec::new();
        s.extend_from_slice(PLAY_OK);
        s.extend(frame(0, 1000));
        s.extend(frame(1, 10));
        let t = thin_rtsp_stream(&s, usize::MAX);
        assert_eq!(t.data, s);
        assert_eq!(t.dropped_frames, 0);
    }

    #[test]
    fn http_tunnel_reply_then_rtsp_stream() {
        let mut s =
            b"HTTP/1.0 200 OK\r\nContent-Type: application/x-rtsp-tunnelled\r\n\r\n".to_vec();
        s.extend_from_slice(PLAY_OK);
        s.extend(frame(0, 50));
        s.extend(frame(0, 50));
        let t = thin_rtsp_stream(&s, 54);
        assert_eq!(t.messages, 2);
        assert_eq!(t.kept_frames, 1);
        assert_eq!(t.data.len(), s.len() - 54);
    }

    #[test]
    fn unframeable_tail_is_kept_verbatim() {
        // POST tunnel body: a head claiming a huge body, then base64.
        let s = b"POST /x HTTP/1.0\r\nContent-Length: 32767\r\n\r\nT1BUSU9OUyBydHNwOi8v".to_vec();
        assert_eq!(thin_rtsp_stream(&s, 0).data, s);
        // A partial head.
        let s = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n".to_vec();
        assert_eq!(thin_rtsp_stream(&s, 0).data, s);
        // A frame cut short inside the budget.
        let mut s = frame(0, 100);
        s.truncate(60);
        assert_eq!(thin_rtsp_stream(&s, 1000).data, s);
        // ... and outside it.
        let t = thin_rtsp_stream(&s, 0);
        assert!(t.data.is_empty());
        assert_eq!(t.dropped_bytes, 60);
        // A lone '$'.
        assert_eq!(thin_rtsp_stream(b"$\x00", 0).data, b"$\x00");
    }

    #[test]
    fn finds_sdp_bodies_between_frames() {
        let mut s = Vec::new();
        s.extend_from_slice(PLAY_OK);
        s.extend(frame(0, 10));
        s.extend_from_slice(
            b"RTSP/1.0 200 OK\r\nCSeq: 2\r\ncontent-type: application/sdp\r\n\
              Content-Length: 5\r\n\r\nv=0\r\n",
        );
        s.extend_from_slice(DESCRIBE_OK); // no Content-Type: not SDP
        assert_eq!(
            message_bodies(&s, "application/sdp"),
            vec![b"v=0\r\n".to_vec()]
        );
        assert!(message_bodies(&s[..20], "application/sdp").is_empty());
    }

    #[test]
    fn output_is_input_minus_whole_frames_for_any_prefix() {
        let mut s = Vec::new();
        s.extend_from_slice(DESCRIBE_OK);
        for i in 0..6u8 {
            s.extend(frame(i % 3, 20 + usize::from(i)));
        }
        s.extend_from_slice(PLAY_OK);
        for cut in 0..=s.len() {
            let t = thin_rtsp_stream(&s[..cut], 40);
            assert_eq!(t.data.len() + t.dropped_bytes, cut, "cut at {cut}");
        }
    }

    mod properties {
        use super::super::*;
        use super::frame;
        use proptest::prelude::*;

        /// A stream piece: an RTSP message with a body, or an interleaved frame.
        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                (0u8..4, 0usize..300).prop_map(|(ch, len)| frame(ch, len)),
                proptest::collection::vec(b'a'..=b'z', 0..40).prop_map(|body| {
                    let mut m = format!(
                        "RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    m.extend(body);
                    m
                }),
            ]
        }

        /// The RTSP messages of a well-framed stream, concatenated (frames skipped).
        fn messages_of(stream: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < stream.len() {
                if stream[pos] == b'$' {
                    pos += 4 + usize::from(u16::from_be_bytes([stream[pos + 2], stream[pos + 3]]));
                } else {
                    let head = head_end(stream, pos).expect("well-framed message");
                    let end = head + content_length(&stream[pos..head]);
                    out.extend_from_slice(&stream[pos..end]);
                    pos = end;
                }
            }
            out
        }

        proptest! {
            #[test]
            fn any_bytes_never_panic_and_only_whole_frames_go(
                data in proptest::collection::vec(any::<u8>(), 0..2000),
                keep in 0usize..3000,
            ) {
                let t = thin_rtsp_stream(&data, keep);
                prop_assert_eq!(t.data.len() + t.dropped_bytes, data.len());
                let _ = message_bodies(&data, "application/sdp");
            }

            #[test]
            fn framed_streams_keep_every_message_in_order(
                pieces in proptest::collection::vec(piece(), 0..30),
                keep in 0usize..2000,
            ) {
                let data: Vec<u8> = pieces.concat();
                let t = thin_rtsp_stream(&data, keep);
                let expected: Vec<u8> = pieces
                    .iter()
                    .filter(|p| p[0] != b'$')
                    .flatten()
                    .copied()
                    .collect();
                let messages_only = messages_of(&t.data);
                prop_assert_eq!(messages_only, expected);
                prop_assert_eq!(t.messages, pieces.iter().filter(|p| p[0] != b'$').count());
                prop_assert_eq!(thin_rtsp_stream(&data, usize::MAX).data, data);
            }
        }
    }
}
