//! QuickTime RTSP-over-HTTP tunnelling (Apple, "Tunneling RTSP and RTP Over HTTP";
//! what live555, ffmpeg `-rtsp_transport http`, VLC and Axis cameras speak).
//!
//! The client opens two HTTP connections tied by the same `x-sessioncookie`:
//! * a **GET** (`Accept: application/x-rtsp-tunnelled`): the server's reply head is
//!   `HTTP/1.0 200 OK` with no `Content-Length`, after which the connection carries
//!   plain RTSP responses and `$` frames from server to client;
//! * a **POST** (`Content-Type: application/x-rtsp-tunnelled`, a placeholder
//!   `Content-Length: 32767`): its body is base64 of RTSP requests, usually each request
//!   encoded (and `=`-padded) on its own, so padding appears mid-stream. The server never
//!   replies to the POST.
//!
//! Server flow with this crate: read the head with [`crate::parse::Decoder::next_head`],
//! [`classify`] it, answer a GET with [`get_response`]; for a POST, take the bytes after
//! the head with [`crate::parse::Decoder::take_buffered`], feed them and everything that
//! follows through a [`PostBodyDecoder`] into a second `Decoder`, and send replies on
//! the GET connection with the same cookie. Never frame the POST body by its
//! `Content-Length`.
//!
//! Client flow: [`get_request`] and [`post_request`] (serialise the POST with
//! [`Request::write_head`], not `write_to`, which would fix `Content-Length` to 0), then
//! [`encode_request`] for each RTSP request sent on the POST connection.
//!
//! What it does not do: pair GET and POST connections (the engine keeps the cookie
//! table), generate randomness (the caller supplies it to [`cookie_from_random`]), or
//! WebSocket tunnelling.

use base64::Engine as _;
use bytes::BufMut;

use crate::message::{Method, Request, Response, Version};
use crate::status::StatusCode;

/// Media type of both tunnel channels.
pub const TUNNEL_CONTENT_TYPE: &str = "application/x-rtsp-tunnelled";
/// Header tying the GET and POST together.
pub const SESSION_COOKIE_HEADER: &str = "x-sessioncookie";
/// Longest cookie accepted. live555 uses 22 characters, QuickTime about as many; the cap
/// bounds the engine's cookie table keys.
pub const MAX_COOKIE_LEN: usize = 128;
/// The `Content-Length` clients put on the POST (a placeholder, not a length).
pub const POST_PLACEHOLDER_LENGTH: &str = "32767";

/// Which half of a tunnel a request opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelChannel {
    /// Server-to-client: the server replies and keeps the connection for RTSP output.
    Get,
    /// Client-to-server: base64 RTSP requests; never replied to.
    Post,
}

/// A request recognised as one half of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequest {
    pub channel: TunnelChannel,
    /// The `x-sessioncookie` value pairing this connection with its other half.
    pub cookie: String,
}

/// Errors specific to the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The `x-sessioncookie` value cannot be used as a pairing key.
    #[error("invalid x-sessioncookie: {reason}")]
    BadCookie { reason: &'static str },
    /// The POST body is not base64.
    #[error("invalid base64 in the tunnel POST body at byte {offset}: {reason}")]
    Base64 { offset: u64, reason: &'static str },
}

/// Recognises a parsed HTTP request as a tunnel GET or POST.
///
/// `Ok(None)` for anything else: RTSP requests, other methods, HTTP requests without a
/// cookie, a GET whose `Accept` names other types, a POST with another `Content-Type`.
/// A missing `Accept`/`Content-Type` is tolerated (the cookie is what live555 keys on).
/// `Err` when the request is a tunnel attempt whose cookie is unusable.
pub fn classify(req: &Request) -> Result<Option<TunnelRequest>, TunnelError> {
    if !req.version.is_http() {
        return Ok(None);
    }
    let channel = match req.method {
        Method::Get => TunnelChannel::Get,
        Method::Post => TunnelChannel::Post,
        _ => return Ok(None),
    };
    let Some(cookie) = req.headers.get(SESSION_COOKIE_HEADER) else {
        return Ok(None);
    };
    let type_ok = match channel {
        TunnelChannel::Get => req
            .headers
            .get("Accept")
            .is_none_or(|accept| accept.split(',').any(media_type_is_tunnel)),
        TunnelChannel::Post => req
            .headers
            .get("Content-Type")
            .is_none_or(media_type_is_tunnel),
    };
    if !type_ok {
        return Ok(None);
    }
    check_cookie(cookie)?;
    Ok(Some(TunnelRequest {
        channel,
        cookie: cookie.to_owned(),
    }))
}

fn media_type_is_tunnel(t: &str) -> bool {
    let essence = t.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(TUNNEL_CONTENT_TYPE)
}

fn check_cookie(cookie: &str) -> Result<(), TunnelError> {
    if cookie.is_empty() {
        return Err(TunnelError::BadCookie {
            reason: "it is empty",
        });
    }
    if cookie.len() > MAX_COOKIE_LEN {
        return Err(TunnelError::BadCookie {
            reason: "it is longer than 128 bytes",
        });
    }
    if !cookie.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TunnelError::BadCookie {
            reason: "it must be printable ASCII without spaces",
        });
    }
    Ok(())
}

/// A cookie from caller-supplied random bytes (hex, 32 characters).
pub fn cookie_from_random(random: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in random {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// The server's reply to a tunnel GET: `HTTP/1.0 200 OK` with the tunnel content type,
/// caching disabled and no `Content-Length` (the body is the RTSP stream that follows).
pub fn get_response() -> Response {
    let mut r = Response::new(Version::Http1_0, StatusCode::OK);
    r.headers.append("Content-Type", TUNNEL_CONTENT_TYPE);
    r.headers.append("Cache-Control", "no-cache");
    r.headers.append("Pragma", "no-cache");
    r.headers.append("Connection", "close");
    r
}

/// The client's GET (server-to-client channel) for `path` (e.g. `/live/cam1`). Add
/// `Host`, `User-Agent` or `Authorization` to its headers as needed.
pub fn get_request(path: &str, cookie: &str) -> Result<Request, TunnelError> {
    check_cookie(cookie)?;
    let mut r = Request::new(Method::Get, path, Version::Http1_0);
    r.headers.append(SESSION_COOKIE_HEADER, cookie);
    r.headers.append("Accept", TUNNEL_CONTENT_TYPE);
    r.headers.append("Pragma", "no-cache");
    r.headers.append("Cache-Control", "no-cache");
    Ok(r)
}

/// The client's POST (client-to-server channel) head. Serialise it with
/// [`Request::write_head`]: its `Content-Length` is the conventional placeholder and its
/// body is written afterwards, chunk by chunk, with [`encode_request`].
pub fn post_request(path: &str, cookie: &str) -> Result<Request, TunnelError> {
    check_cookie(cookie)?;
    let mut r = Request::new(Method::Post, path, Version::Http1_0);
    r.headers.append(SESSION_COOKIE_HEADER, cookie);
    r.headers.append("Content-Type", TUNNEL_CONTENT_TYPE);
    r.headers.append("Pragma", "no-cache");
    r.headers.append("Cache-Control", "no-cache");
    r.headers.append("Content-Length", POST_PLACEHOLDER_LENGTH);
    // Apple's documented value: a date in the past so no proxy caches the POST.
    r.headers.append("Expires", "Sun, 9 Jan 1972 00:00:00 GMT");
    Ok(r)
}

/// Appends `raw` to `out` as standard, padded base64: one POST body chunk.
pub fn encode_post_chunk(raw: &[u8], out: &mut Vec<u8>) {
    let Some(n) = base64::encoded_len(raw.len(), true) else {
        return;
    };
    let start = out.len();
    out.resize(start + n, 0);
    let written = out.get_mut(start..).and_then(|dst| {
        base64::engine::general_purpose::STANDARD
            .encode_slice(raw, dst)
            .ok()
    });
    if written != Some(n) {
        out.truncate(start);
    }
}

/// Appends one RTSP request, serialised and base64-encoded on its own (so padding ends
/// it, as QuickTime and live555 do), to `out`.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    let mut raw = Vec::with_capacity(req.size_hint());
    req.write_to(&mut raw);
    encode_post_chunk(&raw, out);
}

/// Streaming base64 decoder for the POST body.
///
/// Copes with any chunking, whitespace and line breaks anywhere, and `=` padding in
/// the middle of the stream (after padding, decoding restarts with a fresh group). It
/// keeps at most three pending characters, so memory is constant; output is at most
/// three quarters of the input. Errors carry the offset in the body stream (or from
/// [`PostBodyDecoder::starting_at`]) and are sticky.
#[derive(Debug, Clone, Default)]
pub struct PostBodyDecoder {
    /// Sextets of the current group, most recent in the low bits.
    acc: u32,
    /// Sextets in the current group (0..=3).
    have: u8,
    /// `=` seen in the current group (0 or 1; a second one completes it).
    pad: u8,
    offset: u64,
    error: Option<TunnelError>,
}

const B64_INVALID: u8 = 0xff;
const B64_SPACE: u8 = 0xfe;
const B64_PAD: u8 = 0xfd;

const fn b64_table() -> [u8; 256] {
    let mut t = [B64_INVALID; 256];
    let mut i = 0u8;
    while i < 26 {
        t[(b'A' + i) as usize] = i;
        t[(b'a' + i) as usize] = 26 + i;
        i += 1;
    }
    let mut d = 0u8;
    while d < 10 {
        t[(b'0' + d) as usize] = 52 + d;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'=' as usize] = B64_PAD;
    t[b' ' as usize] = B64_SPACE;
    t[b'\t' as usize] = B64_SPACE;
    t[b'\r' as usize] = B64_SPACE;
    t[b'\n' as usize] = B64_SPACE;
    t
}

static B64: [u8; 256] = b64_table();

impl PostBodyDecoder {
    /// A decoder at body offset 0.
    pub fn new() -> PostBodyDecoder {
        PostBodyDecoder::default()
    }

    /// A decoder whose first input byte is at `offset` (e.g. the POST head length, so
    /// errors point into the connection's byte stream).
    pub fn starting_at(offset: u64) -> PostBodyDecoder {
        PostBodyDecoder {
            offset,
            ..PostBodyDecoder::default()
        }
    }

    /// Offset of the next input byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True when no partial group is pending, i.e. the input so far decodes completely.
    pub fn is_at_boundary(&self) -> bool {
        self.have == 0 && self.pad == 0
    }

    /// Decodes `input`, appending the bytes to `out`.
    pub fn decode<B: BufMut>(&mut self, input: &[u8], out: &mut B) -> Result<(), TunnelError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        for (i, &c) in input.iter().enumerate() {
            if let Err(reason) = self.push(c, out) {
                let e = TunnelError::Base64 {
                    offset: self
                        .offset
                        .saturating_add(u64::try_from(i).unwrap_or(u64::MAX)),
                    reason,
                };
                self.error = Some(e.clone());
                return Err(e);
            }
        }
        self.offset = self
            .offset
            .saturating_add(u64::try_from(input.len()).unwrap_or(u64::MAX));
        Ok(())
    }

    fn push<B: BufMut>(&mut self, c: u8, out: &mut B) -> Result<(), &'static str> {
        match B64[usize::from(c)] {
            B64_SPACE => {}
            B64_INVALID => return Err("not a base64 character"),
            B64_PAD => match (self.have, self.pad) {
                (2, 0) => self.pad = 1,
                (2, 1) => {
                    out.put_u8((self.acc >> 4) as u8);
                    self.reset();
                }
                (3, _) => {
                    out.put_slice(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]);
                    self.reset();
                }
                _ => return Err("'=' padding must follow at least two base64 characters"),
            },
            sextet => {
                if self.pad != 0 {
                    return Err("expected a second '=' to finish the padded group");
                }
                self.acc = (self.acc << 6) | u32::from(sextet);
                self.have += 1;
                if self.have == 4 {
                    out.put_slice(&[
                        (self.acc >> 16) as u8,
                        (self.acc >> 8) as u8,
                        self.acc as u8,
                    ]);
                    self.reset();
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.acc = 0;
        self.have = 0;
        self.pad = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Item;
    use crate::parse::{Decoder, Limits};
    use proptest::prelude::*;

    /// A QuickTime-style GET (HTTP/1.0, 22-character cookie).
    const QT_GET: &[u8] = b"GET /sample_100kbit.mp4 HTTP/1.0\r\n\
User-Agent: QTS (qtver=7.6.6;os=Windows NT 6.1)\r\n\
x-sessioncookie: u4Yq8yBEbXQ3o7Sh0nVakw\r\n\
Accept: application/x-rtsp-tunnelled\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
\r\n";

    /// The matching POST, with the first request already in the same segment.
    const QT_POST_HEAD: &[u8] = b"POST /sample_100kbit.mp4 HTTP/1.0\r\n\
User-Agent: QTS (qtver=7.6.6;os=Windows NT 6.1)\r\n\
x-sessioncookie: u4Yq8yBEbXQ3o7Sh0nVakw\r\n\
Content-Type: application/x-rtsp-tunnelled\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Content-Length: 32767\r\n\
Expires: Sun, 9 Jan 1972 00:00:00 GMT\r\n\
\r\n";

    fn head(raw: &[u8]) -> Request {
        let mut d = Decoder::default();
        d.extend_from_slice(raw);
        match d.next_head() {
            Ok(Some(crate::parse::Head::Request(r))) => r,
            other => panic!("{other:?}"),
        }
    }

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<u8>, TunnelError> {
        let mut d = PostBodyDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.decode(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn classifies_quicktime_get_and_post() {
        assert_eq!(
            classify(&head(QT_GET)),
            Ok(Some(TunnelRequest {
                channel: TunnelChannel::Get,
                cookie: "u4Yq8yBEbXQ3o7Sh0nVakw".to_owned()
            }))
        );
        assert_eq!(
            classify(&head(QT_POST_HEAD)),
            Ok(Some(TunnelRequest {
                channel: TunnelChannel::Post,
                cookie: "u4Yq8yBEbXQ3o7Sh0nVakw".to_owned()
            }))
        );
    }

    #[test]
    fn other_requests_are_not_tunnels() {
        let rtsp = Request::new(Method::Options, "*", Version::Rtsp1_0);
        assert_eq!(classify(&rtsp), Ok(None));
        let plain_get = Request::new(Method::Get, "/index.html", Version::Http1_1);
        assert_eq!(classify(&plain_get), Ok(None));
        let mut html = Request::new(Method::Get, "/", Version::Http1_1);
        html.headers.append(SESSION_COOKIE_HEADER, "abc");
        html.headers
            .append("Accept", "text/html, application/xhtml+xml");
        assert_eq!(classify(&html), Ok(None));
        let mut form = Request::new(Method::Post, "/", Version::Http1_1);
        form.headers.append(SESSION_COOKIE_HEADER, "abc");
        form.headers
            .append("Content-Type", "application/x-www-form-urlencoded");
        assert_eq!(classify(&form), Ok(None));
        // Cookie over RTSP is not a tunnel either.
        let mut rtsp_get = Request::new(Method::Get, "/", Version::Rtsp1_0);
        rtsp_get.headers.append(SESSION_COOKIE_HEADER, "abc");
        assert_eq!(classify(&rtsp_get), Ok(None));
    }

    #[test]
    fn lenient_about_type_headers_strict_about_cookies() {
        let mut get = Request::new(Method::Get, "/s", Version::Http1_1);
        get.headers.append(SESSION_COOKIE_HEADER, "c1");
        assert_eq!(
            classify(&get).map(|t| t.map(|t| t.channel)),
            Ok(Some(TunnelChannel::Get))
        );
        get.headers
            .append("Accept", "text/plain, Application/X-RTSP-Tunnelled; q=1");
        assert_eq!(
            classify(&get).map(|t| t.map(|t| t.channel)),
            Ok(Some(TunnelChannel::Get))
        );
        get.headers.set(SESSION_COOKIE_HEADER, "");
        assert_eq!(
            classify(&get),
            Err(TunnelError::BadCookie {
                reason: "it is empty"
            })
        );
        get.headers.set(SESSION_COOKIE_HEADER, "a b");
        assert_eq!(
            classify(&get),
            Err(TunnelError::BadCookie {
                reason: "it must be printable ASCII without spaces"
            })
        );
        get.headers.set(SESSION_COOKIE_HEADER, "x".repeat(129));
        assert_eq!(
            classify(&get),
            Err(TunnelError::BadCookie {
                reason: "it is longer than 128 bytes"
            })
        );
        get.headers.set(SESSION_COOKIE_HEADER, "x".repeat(128));
        assert!(matches!(classify(&get), Ok(Some(_))));
    }

    #[test]
    fn server_get_reply_is_exact() {
        assert_eq!(
            &get_response().to_bytes()[..],
            b"HTTP/1.0 200 OK\r\n\
Content-Type: application/x-rtsp-tunnelled\r\n\
Cache-Control: no-cache\r\n\
Pragma: no-cache\r\n\
Connection: close\r\n\
\r\n"
        );
    }

    #[test]
    fn client_heads_are_exact_and_classify_back() {
        let get = get_request("/live", "0123456789abcdef").expect("valid cookie");
        assert_eq!(
            &get.to_bytes()[..],
            b"GET /live HTTP/1.0\r\n\
x-sessioncookie: 0123456789abcdef\r\n\
Accept: application/x-rtsp-tunnelled\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
\r\n"
        );
        let post = post_request("/live", "0123456789abcdef").expect("valid cookie");
        let mut raw = Vec::new();
        post.write_head(&mut raw);
        assert_eq!(
            &raw[..],
            b"POST /live HTTP/1.0\r\n\
x-sessioncookie: 0123456789abcdef\r\n\
Content-Type: application/x-rtsp-tunnelled\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Content-Length: 32767\r\n\
Expires: Sun, 9 Jan 1972 00:00:00 GMT\r\n\
\r\n"
        );
        assert_eq!(
            classify(&head(&raw)).map(|t| t.map(|t| t.channel)),
            Ok(Some(TunnelChannel::Post))
        );
        assert!(get_request("/live", "bad cookie").is_err());
        assert_eq!(
            cookie_from_random([0x00, 0x01, 0xab, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]),
            "0001abff000000000000000000000010"
        );
    }

    #[test]
    fn encodes_each_request_with_its_own_padding() {
        let mut req = Request::new(Method::Options, "*", Version::Rtsp1_0);
        req.set_cseq(1);
        let mut out = Vec::new();
        encode_request(&req, &mut out);
        // base64("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"): 31 bytes, so two '='.
        assert_eq!(
            &out[..],
            b"T1BUSU9OUyAqIFJUU1AvMS4wDQpDU2VxOiAxDQoNCg==".as_slice()
        );
        let mut chunk = Vec::new();
        encode_post_chunk(b"ab", &mut chunk);
        encode_post_chunk(b"", &mut chunk);
        encode_post_chunk(b"cde", &mut chunk);
        assert_eq!(&chunk[..], b"YWI=Y2Rl");
    }

    #[test]
    fn decodes_padding_mid_stream_whitespace_and_any_split() {
        let stream: &[u8] = b"YWI=\r\nYw==  Y2Rl\nZg=\r\n=";
        let expected = b"abccdef".to_vec();
        assert_eq!(decode_all(&[stream]), Ok(expected.clone()));
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(decode_all(&[a, b]), Ok(expected.clone()), "split {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&bytes), Ok(expected));
    }

    #[test]
    fn boundary_tracking() {
        let mut d = PostBodyDecoder::new();
        let mut out = Vec::new();
        assert!(d.is_at_boundary());
        d.decode(b"YW", &mut out).expect("valid");
        assert!(!d.is_at_boundary());
        d.decode(b"I=", &mut out).expect("valid");
        assert!(d.is_at_boundary());
        d.decode(b"Yw=", &mut out).expect("valid");
        assert!(!d.is_at_boundary());
        assert_eq!(&out[..], b"ab");
        assert_eq!(d.offset(), 7);
    }

    #[test]
    fn base64_errors_carry_stream_offsets_and_stick() {
        let bad = |offset, reason| TunnelError::Base64 { offset, reason };
        assert_eq!(
            decode_all(&[b"YWI=", b"Y*"]),
            Err(bad(5, "not a base64 character"))
        );
        assert_eq!(
            decode_all(&[b"Y="]),
            Err(bad(
                1,
                "'=' padding must follow at least two base64 characters"
            ))
        );
        assert_eq!(
            decode_all(&[b"="]),
            Err(bad(
                0,
                "'=' padding must follow at least two base64 characters"
            ))
        );
        assert_eq!(
            decode_all(&[b"YW=", b" I"]),
            Err(bad(4, "expected a second '=' to finish the padded group"))
        );
        let mut d = PostBodyDecoder::starting_at(100);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"YWJj\0", &mut out),
            Err(bad(104, "not a base64 character"))
        );
        assert_eq!(&out[..], b"abc");
        assert_eq!(
            d.decode(b"YWJj", &mut out),
            Err(bad(104, "not a base64 character"))
        );
        assert_eq!(
            bad(7, "not a base64 character").to_string(),
            "invalid base64 in the tunnel POST body at byte 7: not a base64 character"
        );
    }

    #[test]
    fn server_side_end_to_end() {
        let mut describe = Request::new(
            Method::Describe,
            "rtsp://example.com/sample_100kbit.mp4",
            Version::Rtsp1_0,
        );
        describe.set_cseq(2);
        describe.headers.append("Accept", "application/sdp");
        let mut options = Request::new(Method::Options, "*", Version::Rtsp1_0);
        options.set_cseq(1);
        let mut wire = QT_POST_HEAD.to_vec();
        encode_request(&options, &mut wire);
        wire.extend_from_slice(b"\r\n");
        encode_request(&describe, &mut wire);

        // Connection bytes arrive in two reads; the first holds head and some body.
        let (first, second) = wire.split_at(QT_POST_HEAD.len() + 10);
        let mut http = Decoder::default();
        http.extend_from_slice(first);
        let post = match http.next_head() {
            Ok(Some(crate::parse::Head::Request(r))) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            classify(&post).map(|t| t.map(|t| t.channel)),
            Ok(Some(TunnelChannel::Post))
        );
        let mut b64 = PostBodyDecoder::starting_at(http.stream_offset());
        let mut rtsp = Decoder::new(Limits::default());
        let early = http.take_buffered();
        b64.decode(&early, rtsp.buffer_mut()).expect("valid base64");
        b64.decode(second, rtsp.buffer_mut()).expect("valid base64");
        assert_eq!(rtsp.next_item(), Ok(Some(Item::Request(options))));
        assert_eq!(rtsp.next_item(), Ok(Some(Item::Request(describe))));
        assert_eq!(rtsp.next_item(), Ok(None));
        assert!(b64.is_at_boundary());
    }

    #[test]
    fn client_reads_the_get_reply_then_plain_rtsp() {
        let mut wire = get_response().to_bytes().to_vec();
        let mut options_reply = Response::new(Version::Rtsp1_0, StatusCode::OK);
        options_reply.set_cseq(1);
        options_reply
            .headers
            .append("Public", "DESCRIBE, SETUP, PLAY");
        options_reply.write_to(&mut wire);
        let mut d = Decoder::default();
        d.extend_from_slice(&wire);
        match d.next_item() {
            Ok(Some(Item::Response(r))) => {
                assert_eq!((r.version, r.status), (Version::Http1_0, StatusCode::OK));
                assert_eq!(r.content_type(), Some(TUNNEL_CONTENT_TYPE));
                assert!(r.body.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.next_item(), Ok(Some(Item::Response(options_reply))));
    }

    proptest! {
        #[test]
        fn separately_padded_chunks_decode_to_their_concatenation(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            gaps in proptest::collection::vec(prop_oneof![Just(""), Just("\r\n"), Just(" "), Just("\n\t")], 6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut wire = Vec::new();
            for (part, gap) in parts.iter().zip(gaps.iter().cycle()) {
                encode_post_chunk(part, &mut wire);
                wire.extend_from_slice(gap.as_bytes());
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([wire.len()]) {
                chunks.push(&wire[prev..c]);
                prev = c;
            }
            prop_assert_eq!(decode_all(&chunks), Ok(parts.concat()));
        }

        #[test]
        fn arbitrary_input_never_panics_and_output_is_bounded(
            input in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut d = PostBodyDecoder::new();
            let mut out = Vec::new();
            let _ = d.decode(&input, &mut out);
            prop_assert!(out.len() * 4 <= input.len() * 3);
        }
    }
}
