//! `Transport` (RFC 2326 §12.39, RFC 7826 §18.54): the list of transport alternatives a
//! client offers in SETUP and the one the server picked, with every parameter of both
//! RFCs: `unicast|multicast`, `destination[=addr]`, `source`, `interleaved`, `append`,
//! `ttl`, `layers`, `port`, `client_port`, `server_port`, `ssrc` (a `/` list in 2.0),
//! `mode`, `dest_addr`, `src_addr`, `setup`, `connection`, `RTCP-mux` and `MIKEY`.
//! Unknown parameters are kept, in order, and written back after the known ones.
//!
//! Tolerance: tokens are case-insensitive (RealPlayer sends `rtp/avp/tcp`), LWS around
//! `;`, `=`, `,` and `-` is ignored, `mode` may be quoted or not, an SSRC may have fewer
//! than 8 hex digits. Strictness: numbers are range-checked (ports `u16`, channels and
//! TTL `u8`), a known parameter may not repeat, at most 16 alternatives.
//!
//! Writing normalises spelling (upper-case protocol, `mode="PLAY"` quoted as both RFCs'
//! grammars require, 8-digit upper-case SSRC) and orders known parameters canonically;
//! the meaning is unchanged. What it does not: choose among alternatives or allocate
//! ports; the engines do.

use super::param::ExtensionParam;
use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

const H: &str = "Transport";
/// Most alternatives accepted in one Transport header.
pub const MAX_TRANSPORT_SPECS: usize = 16;
/// Most entries in an `ssrc`, `mode`, `dest_addr` or `src_addr` list.
const MAX_SUBLIST: usize = 16;

/// RTP profile (RFC 3551 AVP, RFC 3711 SAVP, RFC 4585 AVPF, RFC 5124 SAVPF).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RtpProfile {
    /// `AVP`.
    Avp,
    /// `SAVP`.
    Savp,
    /// `AVPF`.
    Avpf,
    /// `SAVPF`.
    Savpf,
    /// Any other profile token, as received.
    Other(String),
}

impl RtpProfile {
    fn from_token(t: &str) -> Self {
        let is = |k: &str| t.eq_ignore_ascii_case(k);
        if is("AVP") {
            RtpProfile::Avp
        } else if is("SAVP") {
            RtpProfile::Savp
        } else if is("AVPF") {
            RtpProfile::Avpf
        } else if is("SAVPF") {
            RtpProfile::Savpf
        } else {
            RtpProfile::Other(t.to_owned())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            RtpProfile::Avp => "AVP",
            RtpProfile::Savp => "SAVP",
            RtpProfile::Avpf => "AVPF",
            RtpProfile::Savpf => "SAVPF",
            RtpProfile::Other(s) => s,
        }
    }
}

/// Lower transport of an RTP transport-id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LowerTransport {
    /// `TCP`: interleaved on the RTSP connection (or a separate TCP connection when
    /// `dest_addr` is given, RTSP 2.0).
    Tcp,
    /// `UDP` (the default when absent).
    Udp,
    /// Any other token, as received.
    Other(String),
}

impl LowerTransport {
    fn from_token(t: &str) -> Self {
        if t.eq_ignore_ascii_case("TCP") {
            LowerTransport::Tcp
        } else if t.eq_ignore_ascii_case("UDP") {
            LowerTransport::Udp
        } else {
            LowerTransport::Other(t.to_owned())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            LowerTransport::Tcp => "TCP",
            LowerTransport::Udp => "UDP",
            LowerTransport::Other(s) => s,
        }
    }
}

/// The transport-id at the start of each alternative.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// `RTP/profile[/lower]`.
    Rtp {
        /// Profile, e.g. AVP.
        profile: RtpProfile,
        /// Lower transport; `None` when not written (means UDP).
        lower: Option<LowerTransport>,
    },
    /// Any other `token *("/" token)` (e.g. `RAW/RAW/UDP`, `x-pn-tng/tcp`), verbatim.
    Other(String),
}

impl TransportProtocol {
    /// `RTP/AVP` (UDP).
    pub fn rtp_avp() -> Self {
        TransportProtocol::Rtp {
            profile: RtpProfile::Avp,
            lower: None,
        }
    }

    /// `RTP/AVP/TCP` (interleaved).
    pub fn rtp_avp_tcp() -> Self {
        TransportProtocol::Rtp {
            profile: RtpProfile::Avp,
            lower: Some(LowerTransport::Tcp),
        }
    }

    /// Whether the lower transport is TCP (for other protocols: the last `/` part is
    /// `tcp`).
    pub fn is_tcp(&self) -> bool {
        match self {
            TransportProtocol::Rtp { lower, .. } => lower == &Some(LowerTransport::Tcp),
            TransportProtocol::Other(s) => s
                .rsplit('/')
                .next()
                .is_some_and(|l| l.eq_ignore_ascii_case("tcp")),
        }
    }

    /// Whether this is RTP.
    pub fn is_rtp(&self) -> bool {
        matches!(self, TransportProtocol::Rtp { .. })
    }

    fn parse_in(span: Span<'_>) -> Result<Self, HeaderError> {
        let mut parts = Vec::with_capacity(3);
        let mut rest = span;
        loop {
            let (part, tail) = match rest.split_once(b'/') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            syntax::expect_token(H, part, "transport protocol")?;
            if parts.len() >= 4 {
                return Err(syntax::err(
                    H,
                    part.offset,
                    "transport protocol has too many '/' parts",
                ));
            }
            parts.push(part.text);
            match tail {
                Some(t) => rest = t,
                None => break,
            }
        }
        match parts.as_slice() {
            [rtp, profile] if rtp.eq_ignore_ascii_case("RTP") => Ok(TransportProtocol::Rtp {
                profile: RtpProfile::from_token(profile),
                lower: None,
            }),
            [rtp, profile, lower] if rtp.eq_ignore_ascii_case("RTP") => {
                Ok(TransportProtocol::Rtp {
                    profile: RtpProfile::from_token(profile),
                    lower: Some(LowerTransport::from_token(lower)),
                })
            }
            _ => Ok(TransportProtocol::Other(span.text.to_owned())),
        }
    }

    fn write_to(&self, out: &mut String) {
        match self {
            TransportProtocol::Rtp { profile, lower } => {
                out.push_str("RTP/");
                out.push_str(profile.as_str());
                if let Some(l) = lower {
                    out.push('/');
                    out.push_str(l.as_str());
                }
            }
            TransportProtocol::Other(s) => out.push_str(s),
        }
    }
}

/// `unicast` or `multicast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// `unicast`.
    Unicast,
    /// `multicast`.
    Multicast,
}

/// The RFC 2326 `destination` parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Bare `destination`: send to the address the request came from.
    Implicit,
    /// `destination=addr`.
    Address(String),
}

/// `port[-port]`: an RTP port and, usually, the RTCP port after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First (RTP) port.
    pub start: u16,
    /// Second (RTCP) port, if written.
    pub end: Option<u16>,
}

impl PortRange {
    /// A single port.
    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: None,
        }
    }

    /// `rtp-(rtp+1)`; `None` if `rtp` is 65535.
    pub fn pair(rtp: u16) -> Option<Self> {
        Some(Self {
            start: rtp,
            end: Some(rtp.checked_add(1)?),
        })
    }

    /// The RTCP port: the second port, or the next one up by RFC 3550 convention.
    pub fn rtcp_port(&self) -> Option<u16> {
        self.end.or_else(|| self.start.checked_add(1))
    }

    fn parse_in(span: Span<'_>, what: &str) -> Result<Self, HeaderError> {
        match span.split_once(b'-') {
            Some((a, b)) => Ok(Self {
                start: syntax::parse_uint(H, a.trim(), what)?,
                end: Some(syntax::parse_uint(H, b.trim(), what)?),
            }),
            None => Ok(Self::single(syntax::parse_uint(H, span, what)?)),
        }
    }

    fn write_to(&self, out: &mut String) {
        out.push_str(&self.start.to_string());
        if let Some(e) = self.end {
            out.push('-');
            out.push_str(&e.to_string());
        }
    }
}

/// `interleaved=channel[-channel]` (RFC 2326 §10.12 `$` channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRange {
    /// RTP channel.
    pub start: u8,
    /// RTCP channel, if written.
    pub end: Option<u8>,
}

impl ChannelRange {
    /// `rtp-(rtp+1)`; `None` if `rtp` is 255.
    pub fn pair(rtp: u8) -> Option<Self> {
        Some(Self {
            start: rtp,
            end: Some(rtp.checked_add(1)?),
        })
    }

    /// The RTCP channel: the second one, or the next one up (RFC 2326 §10.12).
    pub fn rtcp_channel(&self) -> Option<u8> {
        self.end.or_else(|| self.start.checked_add(1))
    }

    fn parse_in(span: Span<'_>) -> Result<Self, HeaderError> {
        match span.split_once(b'-') {
            Some((a, b)) => Ok(Self {
                start: syntax::parse_uint(H, a.trim(), "interleaved channel")?,
                end: Some(syntax::parse_uint(H, b.trim(), "interleaved channel")?),
            }),
            None => Ok(Self {
                start: syntax::parse_uint(H, span, "interleaved channel")?,
                end: None,
            }),
        }
    }
}

/// A method named in `mode`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportMode {
    /// `PLAY`.
    Play,
    /// `RECORD`.
    Record,
    /// Any other token (e.g. the obsolete `receive`), as received.
    Other(String),
}

impl TransportMode {
    fn from_token(t: &str) -> Self {
        if t.eq_ignore_ascii_case("PLAY") {
            TransportMode::Play
        } else if t.eq_ignore_ascii_case("RECORD") {
            TransportMode::Record
        } else {
            TransportMode::Other(t.to_owned())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            TransportMode::Play => "PLAY",
            TransportMode::Record => "RECORD",
            TransportMode::Other(s) => s,
        }
    }
}

/// RFC 7826 `setup` (TCP connection role, RFC 4145).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetupRole {
    /// `active`.
    Active,
    /// `passive`.
    Passive,
    /// `actpass`.
    ActPass,
    /// Other token.
    Other(String),
}

/// RFC 7826 `connection` (reuse of a TCP connection, RFC 4145).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConnectionReuse {
    /// `new`.
    New,
    /// `existing`.
    Existing,
    /// Other token.
    Other(String),
}

/// One transport alternative.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportSpec {
    /// Transport-id, e.g. `RTP/AVP/TCP`.
    pub protocol: TransportProtocol,
    /// `unicast` or `multicast`, if stated (RFC 2326 default: multicast).
    pub delivery: Option<Delivery>,
    /// RFC 2326 `destination`.
    pub destination: Option<Destination>,
    /// RFC 2326 `source`.
    pub source: Option<String>,
    /// RFC 7826 `dest_addr` list (each `host:port` or other address, unquoted here).
    pub dest_addr: Vec<String>,
    /// RFC 7826 `src_addr` list.
    pub src_addr: Vec<String>,
    /// `interleaved` channels.
    pub interleaved: Option<ChannelRange>,
    /// `append` (RECORD into an existing presentation).
    pub append: bool,
    /// Multicast `ttl`.
    pub ttl: Option<u8>,
    /// Multicast `layers`.
    pub layers: Option<u32>,
    /// Multicast `port`.
    pub port: Option<PortRange>,
    /// `client_port`.
    pub client_port: Option<PortRange>,
    /// `server_port`.
    pub server_port: Option<PortRange>,
    /// `ssrc` values (one in RTSP 1.0).
    pub ssrc: Vec<u32>,
    /// `mode` methods.
    pub mode: Vec<TransportMode>,
    /// RFC 7826 `setup`.
    pub setup: Option<SetupRole>,
    /// RFC 7826 `connection`.
    pub connection: Option<ConnectionReuse>,
    /// RFC 7826 `RTCP-mux`.
    pub rtcp_mux: bool,
    /// RFC 7826 `MIKEY` key-management message (base64, verbatim).
    pub mikey: Option<String>,
    /// Unknown parameters, in order.
    pub extensions: Vec<ExtensionParam>,
}

impl TransportSpec {
    /// An alternative with just a transport-id.
    pub fn new(protocol: TransportProtocol) -> Self {
        Self {
            protocol,
            delivery: None,
            destination: None,
            source: None,
            dest_addr: Vec::new(),
            src_addr: Vec::new(),
            interleaved: None,
            append: false,
            ttl: None,
            layers: None,
            port: None,
            client_port: None,
            server_port: None,
            ssrc: Vec::new(),
            mode: Vec::new(),
            setup: None,
            connection: None,
            rtcp_mux: false,
            mikey: None,
            extensions: Vec::new(),
        }
    }

    /// Whether the lower transport is TCP.
    pub fn is_tcp(&self) -> bool {
        self.protocol.is_tcp()
    }

    /// Whether media travels interleaved on the RTSP connection: an `interleaved`
    /// parameter, or TCP without a separate `dest_addr` connection (RFC 7826 §18.54).
    pub fn is_interleaved(&self) -> bool {
        self.interleaved.is_some() || (self.is_tcp() && self.dest_addr.is_empty())
    }

    /// Whether delivery is multicast.
    pub fn is_multicast(&self) -> bool {
        self.delivery == Some(Delivery::Multicast)
    }

    /// The client's RTP/RTCP ports.
    pub fn client_ports(&self) -> Option<PortRange> {
        self.client_port
    }

    /// The server's RTP/RTCP ports.
    pub fn server_ports(&self) -> Option<PortRange> {
        self.server_port
    }

    /// Same alternative with another transport-id (e.g. UDP to TCP towards an origin).
    pub fn with_protocol(mut self, protocol: TransportProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Same alternative with `client_port` replaced (or removed with `None`).
    pub fn with_client_ports(mut self, ports: Option<PortRange>) -> Self {
        self.client_port = ports;
        self
    }

    /// Same alternative with `server_port` replaced (or removed).
    pub fn with_server_ports(mut self, ports: Option<PortRange>) -> Self {
        self.server_port = ports;
        self
    }

    /// Same alternative with `destination` replaced (or removed).
    pub fn with_destination(mut self, destination: Option<Destination>) -> Self {
        self.destination = destination;
        self
    }

    /// Same alternative with `source` replaced (or removed).
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }

    /// Same alternative with `interleaved` replaced (or removed).
    pub fn with_interleaved(mut self, channels: Option<ChannelRange>) -> Self {
        self.interleaved = channels;
        self
    }

    /// Same alternative with `ssrc` replaced (empty removes it).
    pub fn with_ssrc(mut self, ssrc: Vec<u32>) -> Self {
        self.ssrc = ssrc;
        self
    }

    fn write_to(&self, out: &mut String) {
        self.protocol.write_to(out);
        match self.delivery {
            Some(Delivery::Unicast) => out.push_str(";unicast"),
            Some(Delivery::Multicast) => out.push_str(";multicast"),
            None => {}
        }
        match &self.destination {
            Some(Destination::Implicit) => out.push_str(";destination"),
            Some(Destination::Address(a)) => {
                out.push_str(";destination=");
                out.push_str(a);
            }
            None => {}
        }
        if let Some(s) = &self.source {
            out.push_str(";source=");
            out.push_str(s);
        }
        for (name, list) in [("dest_addr", &self.dest_addr), ("src_addr", &self.src_addr)] {
            if !list.is_empty() {
                out.push(';');
                out.push_str(name);
                out.push('=');
                let quoted: Vec<String> = list.iter().map(|a| syntax::quote(a)).collect();
                out.push_str(&quoted.join("/"));
            }
        }
        if let Some(c) = &self.interleaved {
            out.push_str(&format!(";interleaved={}", c.start));
            if let Some(e) = c.end {
                out.push_str(&format!("-{e}"));
            }
        }
        if self.append {
            out.push_str(";append");
        }
        if let Some(t) = self.ttl {
            out.push_str(&format!(";ttl={t}"));
        }
        if let Some(l) = self.layers {
            out.push_str(&format!(";layers={l}"));
        }
        for (name, ports) in [
            ("port", &self.port),
            ("client_port", &self.client_port),
            ("server_port", &self.server_port),
        ] {
            if let Some(p) = ports {
                out.push(';');
                out.push_str(name);
                out.push('=');
                p.write_to(out);
            }
        }
        if !self.ssrc.is_empty() {
            let list: Vec<String> = self.ssrc.iter().map(|s| format!("{s:08X}")).collect();
            out.push_str(";ssrc=");
            out.push_str(&list.join("/"));
        }
        if !self.mode.is_empty() {
            let list: Vec<&str> = self.mode.iter().map(TransportMode::as_str).collect();
            out.push_str(";mode=\"");
            out.push_str(&list.join(","));
            out.push('"');
        }
        match &self.setup {
            Some(SetupRole::Active) => out.push_str(";setup=active"),
            Some(SetupRole::Passive) => out.push_str(";setup=passive"),
            Some(SetupRole::ActPass) => out.push_str(";setup=actpass"),
            Some(SetupRole::Other(s)) => out.push_str(&format!(";setup={s}")),
            None => {}
        }
        match &self.connection {
            Some(ConnectionReuse::New) => out.push_str(";connection=new"),
            Some(ConnectionReuse::Existing) => out.push_str(";connection=existing"),
            Some(ConnectionReuse::Other(s)) => out.push_str(&format!(";connection={s}")),
            None => {}
        }
        if self.rtcp_mux {
            out.push_str(";RTCP-mux");
        }
        if let Some(m) = &self.mikey {
            out.push_str(";MIKEY=");
            out.push_str(m);
        }
        for e in &self.extensions {
            e.write_to(out);
        }
    }
}

/// Addresses: visible ASCII except the delimiters of the Transport grammar.
fn is_addr_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')
}

/// An address value, quoted or not; the decoded text must be a plain address.
fn address(span: Span<'_>, what: &str) -> Result<String, HeaderError> {
    let text = syntax::maybe_unquote(H, span)?;
    if text.is_empty() {
        return Err(syntax::err(H, span.offset, format!("empty {what}")));
    }
    if let Some(i) = text.bytes().position(|b| !is_addr_byte(b)) {
        // Offset within a quoted value is shifted by the opening quote.
        let shift = usize::from(span.text.starts_with('"'));
        return Err(syntax::err(
            H,
            span.offset.saturating_add(shift).saturating_add(i),
            format!("invalid character in {what}"),
        ));
    }
    Ok(text)
}

fn parse_spec(item: Span<'_>) -> Result<TransportSpec, HeaderError> {
    let parts = syntax::split_list(
        H,
        item,
        b';',
        syntax::MAX_PARAMS,
        Nesting::Quotes,
        "transport parameters",
    )?;
    let mut parts = parts.into_iter();
    let id = parts
        .next()
        .filter(|p| p.offset == item.offset)
        .ok_or_else(|| syntax::err(H, item.offset, "missing transport protocol such as RTP/AVP"))?;
    let mut spec = TransportSpec::new(TransportProtocol::parse_in(id)?);
    let mut seen: Vec<&'static str> = Vec::new();
    for part in parts {
        let (name, value) = syntax::split_param(part);
        let n = name.text;
        let key: Option<&'static str> = [
            "unicast",
            "multicast",
            "destination",
            "source",
            "dest_addr",
            "src_addr",
            "interleaved",
            "append",
            "ttl",
            "layers",
            "port",
            "client_port",
            "server_port",
            "ssrc",
            "mode",
            "setup",
            "connection",
            "RTCP-mux",
            "MIKEY",
        ]
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(n));
        let Some(key) = key else {
            spec.extensions.push(ExtensionParam::parse(H, part)?);
            continue;
        };
        // unicast and multicast are one setting.
        let slot = if key == "multicast" { "unicast" } else { key };
        if seen.contains(&slot) {
            return Err(syntax::err(
                H,
                name.offset,
                format!("{n} repeats or conflicts with an earlier parameter"),
            ));
        }
        seen.push(slot);
        let need = || value.ok_or_else(|| syntax::err(H, name.end(), format!("{n} needs a value")));
        let no_value = || match value {
            Some(v) => Err(syntax::err(H, v.offset, format!("{n} takes no value"))),
            None => Ok(()),
        };
        match key {
            "unicast" => {
                no_value()?;
                spec.delivery = Some(Delivery::Unicast);
            }
            "multicast" => {
                no_value()?;
                spec.delivery = Some(Delivery::Multicast);
            }
            "destination" => {
                spec.destination = Some(match value {
                    None => Destination::Implicit,
                    Some(v) => Destination::Address(address(v, "destination")?),
                });
            }
            "source" => spec.source = Some(address(need()?, "source")?),
            "dest_addr" | "src_addr" => {
                let v = need()?;
                let list =
                    syntax::split_list(H, v, b'/', MAX_SUBLIST, Nesting::Quotes, "addresses")?;
                if list.is_empty() {
                    return Err(syntax::err(H, v.offset, format!("empty {n}")));
                }
                let addrs = list
                    .into_iter()
                    .map(|a| address(a, n))
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "dest_addr" {
                    spec.dest_addr = addrs;
                } else {
                    spec.src_addr = addrs;
                }
            }
            "interleaved" => spec.interleaved = Some(ChannelRange::parse_in(need()?)?),
            "append" => {
                no_value()?;
                spec.append = true;
            }
            "ttl" => spec.ttl = Some(syntax::parse_uint(H, need()?, "ttl")?),
            "layers" => spec.layers = Some(syntax::parse_uint(H, need()?, "layers")?),
            "port" => spec.port = Some(PortRange::parse_in(need()?, "port")?),
            "client_port" => spec.client_port = Some(PortRange::parse_in(need()?, "client_port")?),
            "server_port" => spec.server_port = Some(PortRange::parse_in(need()?, "server_port")?),
            "ssrc" => {
                let v = need()?;
                let list =
                    syntax::split_list(H, v, b'/', MAX_SUBLIST, Nesting::Quotes, "ssrc values")?;
                if list.is_empty() {
                    return Err(syntax::err(H, v.offset, "empty ssrc"));
                }
                spec.ssrc = list
                    .into_iter()
                    .map(|s| syntax::parse_ssrc(H, s))
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "mode" => {
                let v = need()?;
                let inner = if v.text.starts_with('"') {
                    syntax::unquote(H, v)?;
                    v.slice(1, v.text.len().saturating_sub(1)).unwrap_or(v)
                } else {
                    v
                };
                let list =
                    syntax::split_list(H, inner, b',', MAX_SUBLIST, Nesting::Quotes, "modes")?;
                if list.is_empty() {
                    return Err(syntax::err(H, v.offset, "empty mode"));
                }
                spec.mode = list
                    .into_iter()
                    .map(|m| syntax::expect_token(H, m, "mode").map(TransportMode::from_token))
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "setup" => {
                let t = syntax::expect_token(H, need()?, "setup role")?;
                spec.setup = Some(match t.to_ascii_lowercase().as_str() {
                    "active" => SetupRole::Active,
                    "passive" => SetupRole::Passive,
                    "actpass" => SetupRole::ActPass,
                    _ => SetupRole::Other(t.to_owned()),
                });
            }
            "connection" => {
                let t = syntax::expect_token(H, need()?, "connection")?;
                spec.connection = Some(match t.to_ascii_lowercase().as_str() {
                    "new" => ConnectionReuse::New,
                    "existing" => ConnectionReuse::Existing,
                    _ => ConnectionReuse::Other(t.to_owned()),
                });
            }
            "RTCP-mux" => {
                no_value()?;
                spec.rtcp_mux = true;
            }
            _ => {
                // MIKEY: base64, kept verbatim.
                let v = need()?;
                if let Some(at) =
                    v.first_bad(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    return Err(syntax::err(H, at, "MIKEY must be base64"));
                }
                spec.mikey = Some(v.text.to_owned());
            }
        }
    }
    Ok(spec)
}

/// `Transport: transport-spec *(COMMA transport-spec)`, alternatives in preference
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport(pub Vec<TransportSpec>);

impl Transport {
    /// The first (preferred, or in a response the chosen) alternative.
    pub fn first(&self) -> Option<&TransportSpec> {
        self.0.first()
    }

    /// The first alternative `accept` takes.
    pub fn find(&self, accept: impl Fn(&TransportSpec) -> bool) -> Option<&TransportSpec> {
        self.0.iter().find(|s| accept(s))
    }
}

impl TypedHeader for Transport {
    const NAME: &'static str = H;

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(H, value, "a transport such as RTP/AVP;unicast")?;
        let items = syntax::split_list(
            H,
            span,
            b',',
            MAX_TRANSPORT_SPECS,
            Nesting::Quotes,
            "transport alternatives",
        )?;
        if items.is_empty() {
            return Err(syntax::err(
                H,
                span.offset,
                "expected a transport such as RTP/AVP;unicast",
            ));
        }
        items
            .into_iter()
            .map(parse_spec)
            .collect::<Result<Vec<_>, _>>()
            .map(Transport)
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            s.write_to(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(v: &str) -> Transport {
        Transport::parse_value(v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    #[test]
    fn ffmpeg_and_live555_udp_setup() {
        // ffmpeg client request
        let tr = t("RTP/AVP/UDP;unicast;client_port=5000-5001");
        let s = tr.first().unwrap();
        assert_eq!(
            s.protocol,
            TransportProtocol::Rtp {
                profile: RtpProfile::Avp,
                lower: Some(LowerTransport::Udp)
            }
        );
        assert_eq!(s.delivery, Some(Delivery::Unicast));
        assert_eq!(s.client_ports(), PortRange::pair(5000));
        assert!(!s.is_interleaved());
        assert_eq!(tr.to_value(), "RTP/AVP/UDP;unicast;client_port=5000-5001");
        // live555 response
        let tr = t("RTP/AVP;unicast;destination=192.168.1.5;source=192.168.1.10;client_port=5000-5001;server_port=6970-6971");
        let s = tr.first().unwrap();
        assert_eq!(
            s.destination,
            Some(Destination::Address("192.168.1.5".into()))
        );
        assert_eq!(s.source.as_deref(), Some("192.168.1.10"));
        assert_eq!(
            s.server_ports(),
            Some(PortRange {
                start: 6970,
                end: Some(6971)
            })
        );
        assert_eq!(
            tr.to_value(),
            "RTP/AVP;unicast;destination=192.168.1.5;source=192.168.1.10;client_port=5000-5001;server_port=6970-6971"
        );
    }

    #[test]
    fn gstreamer_tcp_interleaved_with_ssrc_and_mode() {
        let tr = t("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=7F3A1B2C;mode=\"PLAY\"");
        let s = tr.first().unwrap();
        assert!(s.is_tcp());
        assert!(s.is_interleaved());
        assert_eq!(s.interleaved, ChannelRange::pair(0));
        assert_eq!(s.ssrc, vec![0x7F3A_1B2C]);
        assert_eq!(s.mode, vec![TransportMode::Play]);
        assert_eq!(
            tr.to_value(),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=7F3A1B2C;mode=\"PLAY\""
        );
    }

    #[test]
    fn rfc2326_multicast_and_alternatives() {
        let tr = t("RTP/AVP;multicast;ttl=127;mode=\"PLAY\", RTP/AVP;unicast;client_port=3456-3457;mode=\"PLAY\"");
        assert_eq!(tr.0.len(), 2);
        assert!(tr.0[0].is_multicast());
        assert_eq!(tr.0[0].ttl, Some(127));
        assert_eq!(tr.0[1].client_port, PortRange::pair(3456));
        let tr = t("RTP/AVP;multicast;destination=224.2.0.1;port=3456-3457;ttl=16;layers=2;mode=\"PLAY,RECORD\";append");
        let s = tr.first().unwrap();
        assert_eq!(s.port, PortRange::pair(3456));
        assert_eq!(s.layers, Some(2));
        assert!(s.append);
        assert_eq!(s.mode, vec![TransportMode::Play, TransportMode::Record]);
        assert_eq!(
            tr.to_value(),
            "RTP/AVP;multicast;destination=224.2.0.1;append;ttl=16;layers=2;port=3456-3457;mode=\"PLAY,RECORD\""
        );
    }

    #[test]
    fn realplayer_and_sloppy_peers() {
        let tr = t("x-pn-tng/tcp;mode=play,rtp/avp/tcp;unicast;mode=play");
        assert_eq!(
            tr.0[0].protocol,
            TransportProtocol::Other("x-pn-tng/tcp".into())
        );
        assert!(tr.0[0].is_tcp());
        assert_eq!(tr.0[1].protocol, TransportProtocol::rtp_avp_tcp());
        assert_eq!(tr.0[1].mode, vec![TransportMode::Play]);
        let tr = t(" RTP/AVP ; Unicast ; CLIENT_PORT = 5000 - 5001 ; destination ; ssrc=1a2b ; mode=record ");
        let s = tr.first().unwrap();
        assert_eq!(s.client_port, PortRange::pair(5000));
        assert_eq!(s.destination, Some(Destination::Implicit));
        assert_eq!(s.ssrc, vec![0x1a2b]);
        assert_eq!(s.mode, vec![TransportMode::Record]);
        assert_eq!(
            tr.to_value(),
            "RTP/AVP;unicast;destination;client_port=5000-5001;ssrc=00001A2B;mode=\"RECORD\""
        );
        // live555's raw UDP for MPEG-TS
        assert_eq!(
            t("RAW/RAW/UDP;unicast;client_port=1234").0[0].protocol,
            TransportProtocol::Other("RAW/RAW/UDP".into())
        );
    }

    #[test]
    fn rfc7826_parameters() {
        let v = "RTP/AVPF/TCP;unicast;dest_addr=\"192.0.2.5:3456\"/\"192.0.2.5:3457\";src_addr=\"[2001:db8::1]:6256\";ssrc=93CB001E/0A13C760;mode=\"PLAY\";setup=passive;connection=new;RTCP-mux;MIKEY=AQAFgM0XflABAAAAAAAAAAAAAAYAyO;x-foo=\"a,b\";x-bar";
        let tr = t(v);
        let s = tr.first().unwrap();
        assert_eq!(
            s.dest_addr,
            vec!["192.0.2.5:3456".to_owned(), "192.0.2.5:3457".to_owned()]
        );
        assert_eq!(s.src_addr, vec!["[2001:db8::1]:6256".to_owned()]);
        assert!(
            !s.is_interleaved(),
            "TCP with dest_addr is a separate connection"
        );
        assert_eq!(s.ssrc, vec![0x93CB_001E, 0x0A13_C760]);
        assert_eq!(s.setup, Some(SetupRole::Passive));
        assert_eq!(s.connection, Some(ConnectionReuse::New));
        assert!(s.rtcp_mux);
        assert_eq!(s.mikey.as_deref(), Some("AQAFgM0XflABAAAAAAAAAAAAAAYAyO"));
        assert_eq!(
            s.extensions,
            vec![
                ExtensionParam::new("x-foo", Some("\"a,b\"")),
                ExtensionParam::new("x-bar", None::<String>)
            ]
        );
        assert_eq!(tr.to_value(), v);
    }

    #[test]
    fn proxy_rewrites_keep_the_rest() {
        let client = t("RTP/AVP;unicast;client_port=5000-5001;x-keep=1")
            .0
            .remove(0);
        let upstream = client
            .clone()
            .with_protocol(TransportProtocol::rtp_avp_tcp())
            .with_client_ports(None)
            .with_interleaved(ChannelRange::pair(4));
        assert_eq!(
            Transport(vec![upstream]).to_value(),
            "RTP/AVP/TCP;unicast;interleaved=4-5;x-keep=1"
        );
        let reply = client
            .with_server_ports(PortRange::pair(7000))
            .with_destination(Some(Destination::Address("10.0.0.9".into())))
            .with_source(Some("10.0.0.1".into()))
            .with_ssrc(vec![1]);
        assert_eq!(
            Transport(vec![reply]).to_value(),
            "RTP/AVP;unicast;destination=10.0.0.9;source=10.0.0.1;client_port=5000-5001;server_port=7000-7001;ssrc=00000001;x-keep=1"
        );
        assert_eq!(PortRange::pair(u16::MAX), None);
        assert_eq!(PortRange::single(9).rtcp_port(), Some(10));
        assert_eq!(
            ChannelRange {
                start: 2,
                end: None
            }
            .rtcp_channel(),
            Some(3)
        );
    }

    #[test]
    fn errors_carry_offsets() {
        let cases: [(&str, usize); 17] = [
            ("", 0),
            (";unicast", 0),
            ("RTP/AVP;client_port=70000", 20),
            ("RTP/AVP;client_port=5000-x", 25),
            ("RTP/AVP;interleaved=256", 20),
            ("RTP/AVP;ttl=300", 12),
            ("RTP/AVP;unicast;multicast", 16),
            ("RTP/AVP;client_port=1;client_port=2", 22),
            ("RTP/AVP;client_port", 19),
            ("RTP/AVP;unicast=1", 16),
            ("RTP/AVP;ssrc=123456789", 13),
            ("RTP/AVP;ssrc=12G4", 15),
            ("RTP/AVP;mode=\"PLAY", 13),
            ("RTP/AVP;destination=a b", 21),
            ("RTP//AVP", 4),
            ("RTP/AVP;MIKEY=a?b", 15),
            ("RTP/AVP;a b", 9),
        ];
        for (v, offset) in cases {
            let e = Transport::parse_value(v).unwrap_err();
            assert_eq!((e.offset, e.header), (offset, H), "{v}: {e}");
        }
        let many = vec!["RTP/AVP"; 17].join(",");
        let e = Transport::parse_value(&many).unwrap_err();
        assert_eq!(e.offset, 16 * 8);
        assert_eq!(e.reason, "too many transport alternatives (at most 16)");
    }

    fn port_range() -> impl Strategy<Value = PortRange> {
        (any::<u16>(), proptest::option::of(any::<u16>()))
            .prop_map(|(start, end)| PortRange { start, end })
    }

    fn protocol() -> impl Strategy<Value = TransportProtocol> {
        let profile = prop_oneof![
            Just(RtpProfile::Avp),
            Just(RtpProfile::Savp),
            Just(RtpProfile::Avpf),
            Just(RtpProfile::Savpf),
            "X-[A-Z]{1,4}".prop_map(RtpProfile::Other),
        ];
        let lower = proptest::option::of(prop_oneof![
            Just(LowerTransport::Tcp),
            Just(LowerTransport::Udp),
            "X-[A-Z]{1,4}".prop_map(LowerTransport::Other),
        ]);
        prop_oneof![
            (profile, lower).prop_map(|(profile, lower)| TransportProtocol::Rtp { profile, lower }),
            "x-[a-z]{1,5}(/[a-z]{1,4}){0,2}".prop_map(TransportProtocol::Other),
        ]
    }

    fn addr() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?",
            "[a-z]{1,8}\\.example",
            "\\[2001:db8::[0-9a-f]{1,4}\\](:[0-9]{1,5})?",
        ]
    }

    prop_compose! {
        fn spec()(
            protocol in protocol(),
            delivery in proptest::option::of(prop_oneof![Just(Delivery::Unicast), Just(Delivery::Multicast)]),
            destination in proptest::option::of(prop_oneof![
                Just(Destination::Implicit),
                addr().prop_map(Destination::Address),
            ]),
            source in proptest::option::of(addr()),
            dest_addr in proptest::collection::vec(addr(), 0..3),
            src_addr in proptest::collection::vec(addr(), 0..3),
            interleaved in proptest::option::of((any::<u8>(), proptest::option::of(any::<u8>()))
                .prop_map(|(start, end)| ChannelRange { start, end })),
            flags in (any::<bool>(), any::<bool>()),
            ttl in proptest::option::of(any::<u8>()),
            layers in proptest::option::of(any::<u32>()),
            ports in (proptest::option::of(port_range()), proptest::option::of(port_range()), proptest::option::of(port_range())),
            ssrc in proptest::collection::vec(any::<u32>(), 0..3),
            mode in proptest::collection::vec(prop_oneof![
                Just(TransportMode::Play),
                Just(TransportMode::Record),
                "x[a-z]{1,5}".prop_map(TransportMode::Other),
            ], 0..3),
            setup in proptest::option::of(prop_oneof![
                Just(SetupRole::Active), Just(SetupRole::Passive), Just(SetupRole::ActPass),
                "x[a-z]{1,4}".prop_map(SetupRole::Other),
            ]),
            connection in proptest::option::of(prop_oneof![
                Just(ConnectionReuse::New), Just(ConnectionReuse::Existing),
                "x[a-z]{1,4}".prop_map(ConnectionReuse::Other),
            ]),
            mikey in proptest::option::of("[A-Za-z0-9+/]{1,20}={0,2}"),
            extensions in proptest::collection::vec(
                ("x-[a-z]{1,5}", proptest::option::of(prop_oneof![
                    "[a-z0-9.:]{1,6}",
                    "[a-z ,;=]{0,6}".prop_map(|s| syntax::quote(&s)),
                ])).prop_map(|(n, v)| ExtensionParam::new(n, v)),
                0..3,
            ),
        ) -> TransportSpec {
            TransportSpec {
                protocol, delivery, destination, source, dest_addr, src_addr, interleaved,
                append: flags.0, ttl, layers, port: ports.0, client_port: ports.1,
                server_port: ports.2, ssrc, mode, setup, connection, rtcp_mux: flags.1,
                mikey, extensions,
            }
        }
    }

    proptest! {
        #[test]
        fn round_trips(specs in proptest::collection::vec(spec(), 1..4)) {
            let tr = Transport(specs);
            let text = tr.to_value();
            prop_assert_eq!(Transport::parse_value(&text), Ok(tr), "{}", text);
        }
    }
}
