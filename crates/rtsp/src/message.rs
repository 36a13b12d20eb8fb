//! RTSP message values and their serialisers.
//!
//! What it does: the data model of one item on an RTSP connection, a [`Request`]
//! (RFC 2326 §6, RFC 7826 §7), a [`Response`] (RFC 2326 §7, RFC 7826 §8) or an
//! interleaved binary [`InterleavedFrame`] (RFC 2326 §10.12, RFC 7826 §14), and writes
//! them into a caller's buffer ([`bytes::BufMut`]: `Vec<u8>` or `BytesMut`) without
//! allocating anything but the buffer's own growth. HTTP/1.0 and HTTP/1.1 are valid
//! versions too, because the QuickTime tunnel's GET/POST and its reply use this model
//! (see [`crate::tunnel`]).
//!
//! What it does not: parse (see [`crate::parse`]), interpret headers beyond `CSeq`,
//! `Content-Length` and `Content-Type` (see [`crate::headers`]), or enforce protocol
//! state (which methods are allowed when).
//!
//! Framing guarantee: [`Request::write_to`] and [`Response::write_to`] always emit a
//! `Content-Length` equal to the body they write, and never emit a control character
//! inside a start line or header, so a value copied from an untrusted peer or a config
//! file cannot split one message into two.

use std::fmt;

use bytes::{BufMut, Bytes};

use crate::header_map::Headers;
use crate::status::StatusCode;

/// Protocol version of a start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `RTSP/1.0` (RFC 2326).
    Rtsp1_0,
    /// `RTSP/2.0` (RFC 7826).
    Rtsp2_0,
    /// `HTTP/1.0`: the QuickTime tunnel's GET/POST and the GET reply.
    Http1_0,
    /// `HTTP/1.1`: some tunnel clients send it.
    Http1_1,
}

impl Version {
    /// The wire spelling, e.g. `"RTSP/1.0"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::Rtsp1_0 => "RTSP/1.0",
            Version::Rtsp2_0 => "RTSP/2.0",
            Version::Http1_0 => "HTTP/1.0",
            Version::Http1_1 => "HTTP/1.1",
        }
    }

    /// Parses the exact wire spelling (versions are case-sensitive, RFC 2326 §3.1).
    pub fn from_bytes(b: &[u8]) -> Option<Version> {
        match b {
            b"RTSP/1.0" => Some(Version::Rtsp1_0),
            b"RTSP/2.0" => Some(Version::Rtsp2_0),
            b"HTTP/1.0" => Some(Version::Http1_0),
            b"HTTP/1.1" => Some(Version::Http1_1),
            _ => None,
        }
    }

    /// HTTP/1.0 or HTTP/1.1.
    pub const fn is_http(self) -> bool {
        matches!(self, Version::Http1_0 | Version::Http1_1)
    }

    /// RTSP/1.0 or RTSP/2.0.
    pub const fn is_rtsp(self) -> bool {
        !self.is_http()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request method (RFC 2326 §10, RFC 7826 §13), plus HTTP GET/POST for tunnelling.
///
/// Methods are case-sensitive (RFC 2326 §6.1), so `play` is an [`Method::Extension`].
/// Build values with [`Method::from_token`], which never yields an `Extension` holding
/// a standard name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Options,
    Describe,
    Announce,
    Setup,
    Play,
    Pause,
    Teardown,
    GetParameter,
    SetParameter,
    Redirect,
    Record,
    /// RTSP/2.0 server-to-client notification (RFC 7826 §13.5).
    PlayNotify,
    /// HTTP GET: the tunnel's server-to-client channel.
    Get,
    /// HTTP POST: the tunnel's client-to-server channel.
    Post,
    /// Any other token. The caller must keep it a valid token when building one.
    Extension(String),
}

impl Method {
    /// The method for a request-line token.
    pub fn from_token(token: &str) -> Method {
        match token {
            "OPTIONS" => Method::Options,
            "DESCRIBE" => Method::Describe,
            "ANNOUNCE" => Method::Announce,
            "SETUP" => Method::Setup,
            "PLAY" => Method::Play,
            "PAUSE" => Method::Pause,
            "TEARDOWN" => Method::Teardown,
            "GET_PARAMETER" => Method::GetParameter,
            "SET_PARAMETER" => Method::SetParameter,
            "REDIRECT" => Method::Redirect,
            "RECORD" => Method::Record,
            "PLAY_NOTIFY" => Method::PlayNotify,
            "GET" => Method::Get,
            "POST" => Method::Post,
            other => Method::Extension(other.to_owned()),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Announce => "ANNOUNCE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Pause => "PAUSE",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::SetParameter => "SET_PARAMETER",
            Method::Redirect => "REDIRECT",
            Method::Record => "RECORD",
            Method::PlayNotify => "PLAY_NOTIFY",
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RTSP (or tunnel HTTP) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Request-URI as sent: absolute `rtsp://…`, `*`, or an HTTP path for the tunnel.
    pub uri: String,
    pub version: Version,
    pub headers: Headers,
    pub body: Bytes,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: impl Into<String>, version: Version) -> Request {
        Request {
            method,
            uri: uri.into(),
            version,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// The `CSeq` value; `None` when absent or not a decimal `u32`.
    pub fn cseq(&self) -> Option<u32> {
        cseq_of(&self.headers)
    }

    /// Sets (replaces) `CSeq`.
    pub fn set_cseq(&mut self, cseq: u32) {
        self.headers.set("CSeq", cseq.to_string());
    }

    /// The `Content-Type` value, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("Content-Type")
    }

    /// Replaces the body, setting `Content-Type` and a matching `Content-Length`.
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Bytes>) {
        self.body = body.into();
        set_body_headers(&mut self.headers, content_type, self.body.len());
    }

    /// Writes the request line, the headers exactly as they are, and the blank line;
    /// no body and no `Content-Length` correction. For heads whose body is not
    /// `Content-Length`-delimited, i.e. the tunnel POST (see [`crate::tunnel`]).
    pub fn write_head<B: BufMut>(&self, out: &mut B) {
        self.write_request_line(out);
        write_headers(out, &self.headers, None);
        out.put_slice(b"\r\n");
    }

    /// Writes the whole request; `Content-Length` is made to match the body (replaced in
    /// place when wrong, appended when missing and the body is not empty).
    pub fn write_to<B: BufMut>(&self, out: &mut B) {
        self.write_request_line(out);
        write_headers(out, &self.headers, Some(self.body.len()));
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
    }

    /// The serialised request in a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.size_hint());
        self.write_to(&mut v);
        Bytes::from(v)
    }

    /// Roughly the serialised size, for reserving buffer space.
    pub fn size_hint(&self) -> usize {
        self.method.as_str().len()
            + self.uri.len()
            + 16
            + headers_size_hint(&self.headers)
            + self.body.len()
    }

    fn write_request_line<B: BufMut>(&self, out: &mut B) {
        put_field(out, self.method.as_str().as_bytes());
        out.put_u8(b' ');
        put_field(out, self.uri.as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.version.as_str().as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// An RTSP (or tunnel HTTP) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: StatusCode,
    /// Reason phrase as sent (may be empty; receivers must not rely on it).
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

impl Response {
    /// A response with the standard reason phrase for `version` (the RTSP/2.0 phrase for
    /// RTSP/2.0, else the RTSP/1.0 one; see [`crate::StatusCode`]), no headers, no body.
    pub fn new(version: Version, status: StatusCode) -> Response {
        Response {
            version,
            status,
            reason: standard_reason(version, status).to_owned(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req`: same version, and its `CSeq` copied (RFC 2326 §12.17 and
    /// RFC 7826 §18.20 require the reply to echo it).
    pub fn reply_to(req: &Request, status: StatusCode) -> Response {
        let mut resp = Response::new(req.version, status);
        if let Some(cseq) = req.headers.get("CSeq") {
            resp.headers.append("CSeq", cseq);
        }
        resp
    }

    /// Changes the status and resets the reason to the standard phrase.
    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status;
        self.reason = standard_reason(self.version, status).to_owned();
    }

    /// The `CSeq` value; `None` when absent or not a decimal `u32`.
    pub fn cseq(&self) -> Option<u32> {
        cseq_of(&self.headers)
    }

    /// Sets (replaces) `CSeq`.
    pub fn set_cseq(&mut self, cseq: u32) {
        self.headers.set("CSeq", cseq.to_string());
    }

    /// The `Content-Type` value, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("Content-Type")
    }

    /// Replaces the body, setting `Content-Type` and a matching `Content-Length`.
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Bytes>) {
        self.body = body.into();
        set_body_headers(&mut self.headers, content_type, self.body.len());
    }

    /// Writes the status line, the headers exactly as they are, and the blank line; no
    /// body and no `Content-Length` correction (the tunnel GET reply streams forever).
    pub fn write_head<B: BufMut>(&self, out: &mut B) {
        self.write_status_line(out);
        write_headers(out, &self.headers, None);
        out.put_slice(b"\r\n");
    }

    /// Writes the whole response; `Content-Length` is made to match the body.
    pub fn write_to<B: BufMut>(&self, out: &mut B) {
        self.write_status_line(out);
        write_headers(out, &self.headers, Some(self.body.len()));
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
    }

    /// The serialised response in a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.size_hint());
        self.write_to(&mut v);
        Bytes::from(v)
    }

    /// Roughly the serialised size, for reserving buffer space.
    pub fn size_hint(&self) -> usize {
        self.reason.len() + 16 + headers_size_hint(&self.headers) + self.body.len()
    }

    fn write_status_line<B: BufMut>(&self, out: &mut B) {
        out.put_slice(self.version.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(&self.status.digits());
        out.put_u8(b' ');
        put_field(out, self.reason.as_bytes());
        out.put_slice(b"\r\n");
    }
}

fn standard_reason(version: Version, status: StatusCode) -> &'static str {
    match version {
        Version::Rtsp2_0 => status.rtsp2_reason(),
        _ => status.reason(),
    }
}

/// The payload did not fit the 16-bit length of an interleaved frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "interleaved frame payload of {len} bytes exceeds the 65535-byte limit of RTSP `$` framing \
     (RFC 7826 §14); send it over UDP or split it at the RTP layer"
)]
pub struct FrameTooLarge {
    pub len: usize,
}

/// One `$`-framed binary packet on the RTSP connection (RFC 2326 §10.12, RFC 7826 §14):
/// `'$'`, channel, 16-bit big-endian length, payload (one RTP or RTCP packet).
///
/// The payload is at most [`InterleavedFrame::MAX_PAYLOAD`] bytes; the constructor
/// enforces it so serialising cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterleavedFrame {
    channel: u8,
    payload: Bytes,
}

impl InterleavedFrame {
    /// The largest payload a 16-bit length can describe.
    pub const MAX_PAYLOAD: usize = u16::MAX as usize;

    /// A frame, or an error when the payload exceeds [`Self::MAX_PAYLOAD`].
    pub fn new(channel: u8, payload: Bytes) -> Result<InterleavedFrame, FrameTooLarge> {
        if payload.len() > Self::MAX_PAYLOAD {
            return Err(FrameTooLarge { len: payload.len() });
        }
        Ok(InterleavedFrame { channel, payload })
    }

    /// The channel id (by convention even for RTP, odd for RTCP; not enforced).
    pub fn channel(&self) -> u8 {
        self.channel
    }

    /// The payload (shares the receive buffer when it came from [`crate::parse::Decoder`]).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The 4-byte frame header, for vectored writes that send the payload without
    /// copying it.
    pub fn header(&self) -> [u8; 4] {
        // Lossless: the constructor bounds the length to u16.
        let len = u16::try_from(self.payload.len()).unwrap_or(u16::MAX);
        let [hi, lo] = len.to_be_bytes();
        [b'$', self.channel, hi, lo]
    }

    /// Writes header and payload.
    pub fn write_to<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.header());
        out.put_slice(&self.payload);
    }

    /// The serialised frame in a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(4 + self.payload.len());
        self.write_to(&mut v);
        Bytes::from(v)
    }
}

/// One item of an RTSP byte stream: requests and responses flow both ways (servers send
/// requests too, RFC 2326 §9), interleaved with binary frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Request(Request),
    Response(Response),
    Frame(InterleavedFrame),
}

impl Item {
    /// Writes the item (messages through their framing-safe `write_to`).
    pub fn write_to<B: BufMut>(&self, out: &mut B) {
        match self {
            Item::Request(r) => r.write_to(out),
            Item::Response(r) => r.write_to(out),
            Item::Frame(f) => f.write_to(out),
        }
    }

    /// The serialised item in a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Item::Request(r) => r.to_bytes(),
            Item::Response(r) => r.to_bytes(),
            Item::Frame(f) => f.to_bytes(),
        }
    }
}

impl From<Request> for Item {
    fn from(r: Request) -> Item {
        Item::Request(r)
    }
}

impl From<Response> for Item {
    fn from(r: Response) -> Item {
        Item::Response(r)
    }
}

impl From<InterleavedFrame> for Item {
    fn from(f: InterleavedFrame) -> Item {
        Item::Frame(f)
    }
}

fn cseq_of(headers: &Headers) -> Option<u32> {
    let v = headers.get("CSeq")?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn set_body_headers(headers: &mut Headers, content_type: &str, len: usize) {
    headers.set("Content-Type", content_type);
    headers.set("Content-Length", len.to_string());
}

/// Parses a strict decimal `Content-Length` value (digits only).
pub(crate) fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn headers_size_hint(headers: &Headers) -> usize {
    headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum::<usize>()
        + 24
}

/// Writes `Name: value\r\n` lines. With `body_len`, every `Content-Length` is made to
/// say `body_len`, and one is appended when none exists and the body is not empty.
fn write_headers<B: BufMut>(out: &mut B, headers: &Headers, body_len: Option<usize>) {
    let mut saw_length = false;
    for h in headers {
        put_field(out, h.name.as_bytes());
        out.put_slice(b": ");
        match body_len {
            Some(len) if h.name.eq_ignore_ascii_case("Content-Length") => {
                saw_length = true;
                let correct = parse_decimal(h.value.as_bytes()) == u64::try_from(len).ok();
                if correct {
                    put_field(out, h.value.as_bytes());
                } else {
                    put_decimal(out, len);
                }
            }
            _ => put_field(out, h.value.as_bytes()),
        }
        out.put_slice(b"\r\n");
    }
    if let Some(len) = body_len {
        if !saw_length && len > 0 {
            out.put_slice(b"Content-Length: ");
            put_decimal(out, len);
            out.put_slice(b"\r\n");
        }
    }
}

/// Writes a field, turning control characters (other than tab) into spaces so no line
/// break can be injected.
fn put_field<B: BufMut>(out: &mut B, s: &[u8]) {
    let is_bad = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if !s.iter().any(|&b| is_bad(b)) {
        out.put_slice(s);
        return;
    }
    for &b in s {
        out.put_u8(if is_bad(b) { b' ' } else { b });
    }
}

fn put_decimal<B: BufMut>(out: &mut B, mut n: usize) {
    // 20 digits hold any u64.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn request_serialises_exactly() {
        let mut req = Request::new(
            Method::Describe,
            "rtsp://cam.example/live",
            Version::Rtsp1_0,
        );
        req.set_cseq(2);
        req.headers.append("Accept", "application/sdp");
        assert_eq!(
            &req.to_bytes()[..],
            b"DESCRIBE rtsp://cam.example/live RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"
        );
        assert_eq!(req.cseq(), Some(2));
    }

    #[test]
    fn response_new_uses_standard_reason_per_version() {
        let r = Response::new(Version::Rtsp1_0, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(&r.to_bytes()[..], b"RTSP/1.0 408 Request Time-out\r\n\r\n");
        let r = Response::new(Version::Rtsp2_0, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(&r.to_bytes()[..], b"RTSP/2.0 408 Request Timeout\r\n\r\n");
    }

    #[test]
    fn reply_to_copies_version_and_cseq() {
        let mut req = Request::new(Method::Options, "*", Version::Rtsp2_0);
        req.headers.append("cseq", "17");
        let mut resp = Response::reply_to(&req, StatusCode::OK);
        assert_eq!(resp.version, Version::Rtsp2_0);
        assert_eq!(resp.cseq(), Some(17));
        resp.set_status(StatusCode::NOT_FOUND);
        assert_eq!(resp.reason, "Not Found");
        assert_eq!(
            &resp.to_bytes()[..],
            b"RTSP/2.0 404 Not Found\r\nCSeq: 17\r\n\r\n"
        );
    }

    #[test]
    fn set_body_keeps_content_length_right() {
        let mut resp = Response::new(Version::Rtsp1_0, StatusCode::OK);
        resp.headers.append("CSeq", "3");
        resp.set_body("application/sdp", &b"v=0\r\n"[..]);
        assert_eq!(
            &resp.to_bytes()[..],
            b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        );
        resp.set_body("text/parameters", Bytes::new());
        assert_eq!(resp.headers.get("content-length"), Some("0"));
        assert_eq!(resp.content_type(), Some("text/parameters"));
    }

    #[test]
    fn write_to_repairs_content_length_but_write_head_does_not() {
        let mut req = Request::new(Method::SetParameter, "rtsp://h/s", Version::Rtsp1_0);
        req.headers.append("Content-Length", "99");
        req.headers.append("CSeq", "1");
        req.body = Bytes::from_static(b"a: b\r\n");
        assert_eq!(
            &req.to_bytes()[..],
            b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nContent-Length: 6\r\nCSeq: 1\r\n\r\na: b\r\n"
        );
        let mut head = Vec::new();
        req.write_head(&mut head);
        assert_eq!(
            &head[..],
            b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nContent-Length: 99\r\nCSeq: 1\r\n\r\n"
        );
        // Missing Content-Length is appended; an equal but odd spelling is kept.
        let mut req = Request::new(Method::Announce, "rtsp://h/s", Version::Rtsp1_0);
        req.body = Bytes::from_static(b"xy");
        assert_eq!(
            &req.to_bytes()[..],
            b"ANNOUNCE rtsp://h/s RTSP/1.0\r\nContent-Length: 2\r\n\r\nxy"
        );
        req.headers.append("content-length", "002");
        assert_eq!(
            &req.to_bytes()[..],
            b"ANNOUNCE rtsp://h/s RTSP/1.0\r\ncontent-length: 002\r\n\r\nxy"
        );
    }

    #[test]
    fn control_characters_cannot_split_a_message() {
        let mut req = Request::new(Method::Play, "rtsp://h/s\r\nX: 1", Version::Rtsp1_0);
        req.headers
            .append("User-Agent", "evil\r\n\r\nTEARDOWN * RTSP/1.0\0");
        assert_eq!(
            &req.to_bytes()[..],
            b"PLAY rtsp://h/s  X: 1 RTSP/1.0\r\nUser-Agent: evil    TEARDOWN * RTSP/1.0 \r\n\r\n"
        );
    }

    #[test]
    fn frames_serialise_with_big_endian_length() {
        let f = InterleavedFrame::new(1, Bytes::from_static(&[0x80, 0x60, 0x00])).expect("small");
        assert_eq!(f.header(), [b'$', 1, 0, 3]);
        let mut out = BytesMut::new();
        Item::from(f.clone()).write_to(&mut out);
        assert_eq!(&out[..], &[b'$', 1, 0, 3, 0x80, 0x60, 0x00]);
        assert_eq!(f.channel(), 1);
        assert_eq!(f.into_payload().len(), 3);
        let big = Bytes::from(vec![0u8; 65_536]);
        assert_eq!(
            InterleavedFrame::new(0, big),
            Err(FrameTooLarge { len: 65_536 })
        );
        let max = InterleavedFrame::new(0, Bytes::from(vec![0u8; 65_535])).expect("fits");
        assert_eq!(max.header(), [b'$', 0, 0xff, 0xff]);
    }

    #[test]
    fn methods_and_versions_round_trip_their_tokens() {
        for token in [
            "OPTIONS",
            "DESCRIBE",
            "ANNOUNCE",
            "SETUP",
            "PLAY",
            "PAUSE",
            "TEARDOWN",
            "GET_PARAMETER",
            "SET_PARAMETER",
            "REDIRECT",
            "RECORD",
            "PLAY_NOTIFY",
            "GET",
            "POST",
            "REGISTER",
        ] {
            assert_eq!(Method::from_token(token).as_str(), token);
        }
        assert_eq!(Method::from_token("PLAY_NOTIFY"), Method::PlayNotify);
        assert_eq!(Method::from_token("play"), Method::Extension("play".into()));
        for v in [
            Version::Rtsp1_0,
            Version::Rtsp2_0,
            Version::Http1_0,
            Version::Http1_1,
        ] {
            assert_eq!(Version::from_bytes(v.as_str().as_bytes()), Some(v));
        }
        assert_eq!(Version::from_bytes(b"rtsp/1.0"), None);
        assert!(Version::Http1_1.is_http());
        assert!(Version::Rtsp2_0.is_rtsp());
    }

    #[test]
    fn cseq_rejects_non_numbers() {
        let mut req = Request::new(Method::Options, "*", Version::Rtsp1_0);
        assert_eq!(req.cseq(), None);
        req.headers.append("CSeq", "+5");
        assert_eq!(req.cseq(), None);
        req.headers.set("CSeq", "4294967296");
        assert_eq!(req.cseq(), None);
        req.headers.set("CSeq", "4294967295");
        assert_eq!(req.cseq(), Some(u32::MAX));
    }

    #[test]
    fn decimals() {
        let mut v = Vec::new();
        put_decimal(&mut v, 0);
        put_decimal(&mut v, 1_048_576);
        assert_eq!(&v[..], b"01048576");
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1 2"), None);
    }
}
