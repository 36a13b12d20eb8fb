//! MediaProxy's SIP-proxy protocol (the `mediaproxy` module of Kamailio and OpenSIPS
//! talking to a dispatcher over a UNIX stream socket), sans-IO: request parsing, the
//! replies, and the translation into the `ng` commands relays run.
//!
//! A request is a command line (`update` or `remove`), `name: value` header lines and
//! an empty line, each ending in CRLF (a bare LF is tolerated). The reply is one line:
//! `ip port…` for `update`, `removed` for `remove`, `error` for anything that failed.
//!
//! Tolerated: a bare LF for CRLF; unknown headers (kept, ignored); a header whose value
//! is empty (`"to_tag: "`) is dropped, as MediaProxy's dispatcher drops lines ending in
//! `": "`, so an empty tag or `media_relay` counts as absent. Rejected, with the byte
//! offset of the fault: a line longer than [`Limits::max_line`], more header lines than
//! [`Limits::max_headers`], more `media:` items than [`Limits::max_media`], an unknown
//! command, a header line without `:`, no `call_id`, an `update` without `type:
//! request|reply`, and a malformed `media:` item.
//!
//! What it does not: sockets (the front door in `front_mediaproxy` does), or
//! MediaProxy's `session_id` (base64 of the Call-ID's MD5, which MediaProxy's relays
//! key sessions by): our relays take the Call-ID itself over `ng`, so the id never
//! reaches the wire.

use std::fmt;
use std::net::IpAddr;

use mediagate_ng::bencode::Value;

/// Size caps for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, without its line end.
    pub max_line: usize,
    /// Most header lines in one request.
    pub max_headers: usize,
    /// Most streams in one `media:` header.
    pub max_media: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A `media:` line of 64 streams with ICE flags is under 4 KiB; the module's
        // own buffer for a whole request is 8 KiB.
        Self {
            max_line: 8192,
            max_headers: 32,
            max_media: 64,
        }
    }
}

/// The two commands a SIP proxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Offer or answer SDP of a dialog.
    Update,
    /// The dialog ended.
    Remove,
}

/// Whether an `update` carries the request's SDP (an offer) or the reply's (answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateType {
    /// `type: request`.
    Request,
    /// `type: reply`.
    Reply,
}

/// One item of `media:`: `type:ip:port:direction[:key=value…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    /// `audio`, `video`, `image`, …
    pub media_type: String,
    /// Where the endpoint wants media.
    pub ip: IpAddr,
    /// Its port; 0 for a rejected or closed stream.
    pub port: u16,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub direction: String,
    /// The trailing `key=value` flags (`ice=yes`), kept for logs.
    pub params: Vec<(String, String)>,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `update` or `remove`.
    pub command: Command,
    /// `type:` of an `update`.
    pub update_type: Option<UpdateType>,
    /// The dialog's Call-ID (always present).
    pub call_id: String,
    /// `from_tag`, when not empty.
    pub from_tag: Option<String>,
    /// `to_tag`, when not empty.
    pub to_tag: Option<String>,
    /// `media_relay`: the relay the proxy prefers, when not empty.
    pub media_relay: Option<String>,
    /// `signaling_ip`, when not empty.
    pub signaling_ip: Option<String>,
    /// `dialog_id`, when not empty (with `engage_media_proxy`; Kamailio writes
    /// `h_entry:h_id`). Kept as text.
    pub dialog_id: Option<String>,
    /// The streams of `media:`, in SDP order; empty without SDP.
    pub media: Vec<MediaItem>,
    /// Every non-empty header in order, including the ones above.
    pub headers: Vec<(String, String)>,
}

/// What [`parse_request`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The request is not complete yet; read more.
    Incomplete,
    /// A request and how many bytes it took.
    Request(Box<Request>, usize),
}

/// Why a request was refused: what and at which byte of the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MediaProxy request at byte {offset}: {reason}")]
pub struct ParseError {
    /// Offset from the start of the request.
    pub offset: usize,
    /// What was wrong.
    pub reason: ErrorReason,
}

/// The faults [`ParseError`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorReason {
    /// A line is longer than the limit.
    LineTooLong,
    /// More header lines than the limit.
    TooManyHeaders,
    /// More `media:` items than the limit.
    TooManyStreams,
    /// Not `update` or `remove`.
    UnknownCommand,
    /// A header line without `:`.
    MalformedHeader,
    /// Not UTF-8.
    NotText,
    /// No `call_id` header.
    MissingCallId,
    /// `update` without `type: request` or `type: reply`.
    MissingType,
    /// A `media:` item that is not `type:ip:port:direction[:k=v…]`.
    MalformedMedia,
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LineTooLong => "line too long",
            Self::TooManyHeaders => "too many header lines",
            Self::TooManyStreams => "too many media streams",
            Self::UnknownCommand => "unknown command (want update or remove)",
            Self::MalformedHeader => "header line without ':'",
            Self::NotText => "not UTF-8 text",
            Self::MissingCallId => "no call_id",
            Self::MissingType => "update without type: request or reply",
            Self::MalformedMedia => "malformed media item",
        })
    }
}

fn fault(offset: usize, reason: ErrorReason) -> ParseError {
    ParseError { offset, reason }
}

/// Parses the request at the start of `buf`. Total: never panics, never reads past a
/// line longer than the limit, and says [`Parsed::Incomplete`] for any prefix of a
/// valid request.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let mut at = 0;
    let mut lines: Vec<(usize, &str)> = Vec::new();
    loop {
        let rest = buf.get(at..).unwrap_or_default();
        let window = rest
            .get(..limits.max_line.saturating_add(2))
            .unwrap_or(rest);
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if rest.len() > limits.max_line.saturating_add(1) {
                return Err(fault(at, ErrorReason::LineTooLong));
            }
            return Ok(Parsed::Incomplete);
        };
        let raw = window.get(..lf).unwrap_or_default();
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > limits.max_line {
            return Err(fault(at, ErrorReason::LineTooLong));
        }
        let line = std::str::from_utf8(raw).map_err(|_| fault(at, ErrorReason::NotText))?;
        let start = at;
        at += lf + 1;
        if line.is_empty() {
            if lines.is_empty() {
                // Blank lines between requests are skipped.
                continue;
            }
            let request = interpret(&lines, limits)?;
            return Ok(Parsed::Request(Box::new(request), at));
        }
        if lines.len() > limits.max_headers {
            return Err(fault(start, ErrorReason::TooManyHeaders));
        }
        lines.push((start, line));
    }
}

fn interpret(lines: &[(usize, &str)], limits: &Limits) -> Result<Request, ParseError> {
    let Some(&(command_at, command_line)) = lines.first() else {
        return Err(fault(0, ErrorReason::UnknownCommand));
    };
    let command = match command_line.trim() {
        "update" => Command::Update,
        "remove" => Command::Remove,
        _ => return Err(fault(command_at, ErrorReason::UnknownCommand)),
    };
    let mut request = Request {
        command,
        update_type: None,
        call_id: String::new(),
        from_tag: None,
        to_tag: None,
        media_relay: None,
        signaling_ip: None,
        dialog_id: None,
        media: Vec::new(),
        headers: Vec::new(),
    };
    let mut call_id = None;
    for &(offset, line) in lines.get(1..).unwrap_or_default() {
        let Some((name, value)) = line.split_once(':') else {
            return Err(fault(offset, ErrorReason::MalformedHeader));
        };
        let (name, value) = (name.trim(), value.trim());
        if value.is_empty() {
            continue;
        }
        let owned = Some(value.to_owned());
        match name {
            "call_id" => call_id = owned,
            "from_tag" => request.from_tag = owned,
            "to_tag" => request.to_tag = owned,
            "media_relay" => request.media_relay = owned,
            "signaling_ip" => request.signaling_ip = owned,
            "dialog_id" => request.dialog_id = owned,
            "type" => {
                request.update_type = match value {
                    "request" => Some(UpdateType::Request),
                    "reply" => Some(UpdateType::Reply),
                    _ => None,
                }
            }
            "media" => {
                let value_at = offset + line.len() - line.trim_start_matches(name).len();
                request.media = parse_media(value, value_at, limits)?;
            }
            _ => {}
        }
        request.headers.push((name.to_owned(), value.to_owned()));
    }
    let last = lines.last().map_or(0, |l| l.0);
    request.call_id = call_id.ok_or(fault(last, ErrorReason::MissingCallId))?;
    if command == Command::Update && request.update_type.is_none() {
        return Err(fault(command_at, ErrorReason::MissingType));
    }
    Ok(request)
}

const DIRECTIONS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];

fn parse_media(value: &str, offset: usize, limits: &Limits) -> Result<Vec<MediaItem>, ParseError> {
    let mut items = Vec::new();
    for item in value.split(',') {
        if items.len() >= limits.max_media {
            return Err(fault(offset, ErrorReason::TooManyStreams));
        }
        items
            .push(parse_media_item(item.trim()).ok_or(fault(offset, ErrorReason::MalformedMedia))?);
    }
    Ok(items)
}

/// `type:ip:port:direction[:k=v…]`; an IPv6 address keeps its colons, since the
/// direction word is what ends it and the port.
fn parse_media_item(item: &str) -> Option<MediaItem> {
    let fields: Vec<&str> = item.split(':').collect();
    let dir_at = fields
        .iter()
        .enumerate()
        .skip(3)
        .find(|(_, f)| DIRECTIONS.contains(f))
        .map(|(i, _)| i)?;
    let media_type = fields.first().filter(|t| !t.is_empty())?;
    let port = fields.get(dir_at - 1)?.parse().ok()?;
    let ip = fields.get(1..dir_at - 1)?.join(":").parse().ok()?;
    let params = fields
        .get(dir_at + 1..)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Some(MediaItem {
        media_type: (*media_type).to_owned(),
        ip,
        port,
        direction: fields.get(dir_at)?.to_string(),
        params,
    })
}

/// The reply to `remove`.
pub const REMOVED: &[u8] = b"removed\r\n";
/// The reply to anything that failed.
pub const ERROR: &[u8] = b"error\r\n";

/// The reply to `update`: the relay's address and one port per stream.
pub fn update_reply(ip: IpAddr, ports: &[u16]) -> Vec<u8> {
    let mut out = ip.to_string();
    for port in ports {
        out.push(' ');
        out.push_str(&port.to_string());
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The SDP an `update`'s `media:` stands for: one `m=` line per stream with its own
/// `c=`, so the relay sees each stream's address and direction. Payload types are
/// not in the request; the relay does not look at them for forwarding.
pub fn sdp_from_media(media: &[MediaItem]) -> Vec<u8> {
    let origin = media.first().map_or(IpAddr::from([0, 0, 0, 0]), |m| m.ip);
    let family = |ip: &IpAddr| if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut sdp = format!(
        "v=0\r\no=- 1 1 IN {} {origin}\r\ns=-\r\nt=0 0\r\n",
        family(&origin)
    );
    for m in media {
        let pt = if m.media_type == "audio" { "0" } else { "96" };
        sdp.push_str(&format!(
            "m={} {} RTP/AVP {pt}\r\nc=IN {} {}\r\na={}\r\n",
            m.media_type,
            m.port,
            family(&m.ip),
            m.ip,
            m.direction
        ));
    }
    sdp.into_bytes()
}

/// The `ng` command an `update` or `remove` becomes.
pub fn to_ng(request: &Request) -> Value {
    let mut dict: Vec<(Vec<u8>, Value)> = Vec::new();
    let mut put = |k: &str, v: Value| dict.push((k.as_bytes().to_vec(), v));
    let command = match (request.command, request.update_type) {
        (Command::Remove, _) => "delete",
        (Command::Update, Some(UpdateType::Reply)) => "answer",
        (Command::Update, _) => "offer",
    };
    put("command", Value::str(command));
    put("call-id", Value::str(&request.call_id));
    if let Some(tag) = &request.from_tag {
        put("from-tag", Value::str(tag));
    }
    if let Some(tag) = &request.to_tag {
        put("to-tag", Value::str(tag));
    }
    if request.command == Command::Update {
        put("sdp", Value::Bytes(sdp_from_media(&request.media)));
        if let Some(ip) = request
            .signaling_ip
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
            put(
                "received-from",
                Value::List(vec![Value::str(family), Value::str(&ip.to_string())]),
            );
        }
    }
    // Sorted keys: a bencode dictionary's canonical form.
    dict.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Dict(dict)
}

/// The `ip port…` reply from the relay's rewritten SDP: the first connection address
/// and each `m=` line's port, in order. `None` when the SDP says neither.
pub fn reply_from_sdp(sdp: &[u8], streams: usize) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(sdp).ok()?;
    let mut ip = None;
    let mut ports = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(c) = line.strip_prefix("c=") {
            if ip.is_none() {
                ip = c.split_whitespace().nth(2).and_then(|a| a.parse().ok());
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            ports.push(m.split_whitespace().nth(1)?.parse::<u16>().ok()?);
        }
    }
    ports.resize(streams.max(ports.len()), 0);
    Some(update_reply(ip?, &ports))
}

#[cfg(test)]
#[path = "mediaproxy_tests.rs"]
mod tests;
