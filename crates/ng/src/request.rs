//! Interpreting an `ng` request dictionary: the command, the call identifiers, the SDP,
//! and the options in every form clients send them.
//!
//! What it does: reads the keys Kamailio and OpenSIPS send (rtpengine's
//! `docs/ng_control_protocol.md`), accepting both spellings of every key (`received-from`
//! and `received from`, `rtpp-flags` / `rtpp_flags` / `rtpp flags`, any case) and of every
//! flag (`trust address` and `trust-address`). Options arrive in three forms that all
//! end in the same [`Options`]: structured keys (`"ICE": "remove"`, `"replace":
//! ["origin"]`), items of the `flags` list, and the raw `rtpp-flags` string that
//! Kamailio 6 with a via-branch argument sends for the daemon to parse
//! (`replace-origin ICE=remove rtcp-mux=[offer] trust-address`), parsed by
//! [`parse_rtpp_flags`].
//!
//! What it does not: check that a command has the keys it needs (the command handlers
//! do, with rtpengine's exact error strings), or act on anything. Options it does not
//! know are kept in [`Options::ignored`] (bounded) for the log, as rtpengine ignores
//! them too.

use std::net::IpAddr;

use super::bencode::Value;

/// Longest `rtpp-flags` string parsed.
pub const MAX_RTPP_FLAGS_LEN: usize = 8192;
/// Most tokens taken from one `rtpp-flags` string or `flags` list.
pub const MAX_FLAG_TOKENS: usize = 256;
/// Most ignored options remembered for the log.
const MAX_IGNORED: usize = 16;

/// The `command` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `ping`: liveness.
    Ping,
    /// `offer`: the SDP offer passing through the SIP proxy.
    Offer,
    /// `answer`: the SDP answer.
    Answer,
    /// `delete`: the call (or one party) is over.
    Delete,
    /// `query`: a call's streams and counters.
    Query,
    /// `list`: the call-ids.
    List,
    /// `statistics`: relay-wide counters.
    Statistics,
    /// Anything else, answered `Unrecognized command`.
    Other(String),
}

impl Command {
    fn from_wire(s: &[u8]) -> Self {
        match s {
            b"ping" => Self::Ping,
            b"offer" => Self::Offer,
            b"answer" => Self::Answer,
            b"delete" => Self::Delete,
            b"query" => Self::Query,
            b"list" => Self::List,
            b"statistics" => Self::Statistics,
            other => Self::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }

    /// The wire name, for logs and counters.
    pub fn name(&self) -> &str {
        match self {
            Self::Ping => "ping",
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Delete => "delete",
            Self::Query => "query",
            Self::List => "list",
            Self::Statistics => "statistics",
            Self::Other(s) => s,
        }
    }
}

/// `ICE` option values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceOption {
    /// Strip ICE attributes (our default: the relay is not an ICE agent).
    Remove,
    /// Anything else (`force`, `force-relay`, `default`, `optional`): still stripped,
    /// since the relay cannot take part in ICE; kept for the log.
    Other,
}

/// An address family (`IP4` / `IP6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// SDP addrtype (`IP4` / `IP6`).
    pub fn sdp_name(self) -> &'static str {
        match self {
            Self::V4 => "IP4",
            Self::V6 => "IP6",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "IP4" | "IPV4" | "4" => Some(Self::V4),
            "IP6" | "IPV6" | "6" => Some(Self::V6),
            _ => None,
        }
    }
}

/// `endpoint-learning` values; what each means for a stream is the relay's to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learning {
    /// The secure default: expected sources latch at once; strangers only when no
    /// expectation is usable, within the window and packet budget.
    Heuristic,
    /// Legacy: the first packet from anywhere latches (MediaProxy's behaviour).
    Immediate,
    /// No learning from strangers: media goes to the signalled address and is accepted
    /// only from the signalled endpoint or its IP (or `received-from`), never learned
    /// from another source.
    Off,
}

/// `rtcp-mux` option items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpMuxOptions {
    /// Offer rtcp-mux to the answerer even if the offerer did not.
    pub offer: bool,
    /// Like `offer`; the relay always demultiplexes, so nothing more is needed.
    pub require: bool,
    /// Do not offer rtcp-mux to the answerer; RTCP is demultiplexed for the offerer.
    pub demux: bool,
    /// Accept the offerer's rtcp-mux even if the answerer declines it.
    pub accept: bool,
    /// Refuse rtcp-mux on both sides.
    pub reject: bool,
}

/// The options of an offer, answer or delete, however they were spelled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `trust address` (true: the SDP address is the endpoint) or `SIP source address`
    /// (false: the `received-from` address is). `None`: the default, trust.
    pub trust_address: Option<bool>,
    /// `replace: origin`: rewrite the `o=` address too.
    pub replace_origin: bool,
    /// `replace: session-connection`: rewrite the session-level `c=` (done whenever
    /// one exists, since leaving a phone's address there would misroute media).
    pub replace_session_connection: bool,
    /// The `ICE` option.
    pub ice: Option<IceOption>,
    /// `received-from`: the address the SIP message came from (the phone's NAT).
    pub received_from: Option<IpAddr>,
    /// `media address`: the endpoint address to use instead of the SDP's.
    pub media_address: Option<IpAddr>,
    /// `address family`: the family to advertise to the other side.
    pub address_family: Option<Family>,
    /// `rtcp-mux` items.
    pub rtcp_mux: RtcpMuxOptions,
    /// `no rtcp attribute`: do not add `a=rtcp`.
    pub no_rtcp_attribute: bool,
    /// `full rtcp attribute`: write `a=rtcp:PORT IN IP4 ADDR`.
    pub full_rtcp_attribute: bool,
    /// `original sendrecv`: keep the direction attributes as they were.
    pub original_sendrecv: bool,
    /// `asymmetric`: the endpoint sends from another port than it receives on, so no
    /// source is enforced or learned.
    pub asymmetric: bool,
    /// `strict source` (always on here) or `media handover` (allow re-latching).
    pub media_handover: bool,
    /// `endpoint-learning`.
    pub learning: Option<Learning>,
    /// `delete delay` in seconds.
    pub delete_delay: Option<u32>,
    /// `delete` flag `fatal`: an unknown call is an error, not a warning.
    pub fatal: bool,
    /// `delete` flag `fast`: skip the statistics in the reply.
    pub fast: bool,
    /// `transport protocol`, if asked.
    pub transport_protocol: Option<String>,
    /// `direction` (interface names), kept for the log and the record.
    pub direction: Vec<String>,
    /// `label`.
    pub label: Option<String>,
    /// Options not understood (at most a few), for the log.
    pub ignored: Vec<String>,
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// `call-id`.
    pub call_id: Option<String>,
    /// `from-tag`: the offerer's tag (rtpengine's orientation; Kamailio swaps tags for
    /// offers in replies and answers in requests so this holds).
    pub from_tag: Option<String>,
    /// `to-tag`: the answerer's tag.
    pub to_tag: Option<String>,
    /// `via-branch`.
    pub via_branch: Option<String>,
    /// `sdp`, as received.
    pub sdp: Option<Vec<u8>>,
    /// `supports` contains `load limit`: overload is answered with `result: load
    /// limit` instead of an error.
    pub supports_load_limit: bool,
    /// `limit` of `list`.
    pub limit: Option<i64>,
    /// Options.
    pub options: Options,
}

/// Why a dictionary is not a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No `command` key.
    NoCommand,
}

impl RequestError {
    /// rtpengine's `error-reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCommand => "Dictionary contains no key \"command\"",
        }
    }
}

/// `received from`, `Received_From` and `received-from` all become `received-from`.
pub(crate) fn canonical(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            ' ' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Strings of a list value, or a single string as a one-item list.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items
            .iter()
            .take(MAX_FLAG_TOKENS)
            .filter_map(text)
            .collect(),
        Value::Bytes(_) => text(v).into_iter().collect(),
        _ => Vec::new(),
    }
}

impl Request {
    /// Reads a request dictionary.
    pub fn from_value(dict: &Value) -> Result<Self, RequestError> {
        let mut command = None;
        let mut req = Request {
            command: Command::Ping,
            call_id: None,
            from_tag: None,
            to_tag: None,
            via_branch: None,
            sdp: None,
            supports_load_limit: false,
            limit: None,
            options: Options::default(),
        };
        let mut rtpp_flags = None;
        for (key, value) in dict.as_dict().unwrap_or_default() {
            let key = canonical(&String::from_utf8_lossy(key));
            match key.as_str() {
                "command" => command = value.as_bytes().map(Command::from_wire),
                "call-id" => req.call_id = text(value),
                "from-tag" => req.from_tag = text(value),
                "to-tag" => req.to_tag = text(value),
                "via-branch" => req.via_branch = text(value),
                "sdp" => req.sdp = value.as_bytes().map(<[u8]>::to_vec),
                "supports" => {
                    req.supports_load_limit =
                        strings(value).iter().any(|s| canonical(s) == "load-limit");
                }
                "limit" => req.limit = value.as_int(),
                "rtpp-flags" => rtpp_flags = text(value),
                _ => apply_key(&mut req.options, &key, value),
            }
        }
        req.command = command.ok_or(RequestError::NoCommand)?;
        if let Some(flags) = rtpp_flags {
            for (key, value) in parse_rtpp_flags(&flags) {
                match (key.as_str(), &value) {
                    ("call-id", Some(v)) => req.call_id = text(v),
                    ("from-tag", Some(v)) => req.from_tag = text(v),
                    ("to-tag", Some(v)) => req.to_tag = text(v),
                    ("via-branch", Some(v)) => req.via_branch = text(v),
                    (_, Some(v)) => apply_key(&mut req.options, &key, v),
                    (_, None) => apply_flag(&mut req.options, &key),
                }
            }
        }
        Ok(req)
    }
}

fn parse_ip_value(v: &Value) -> Option<IpAddr> {
    // `received-from` is a list `[family, address]`; accept a bare address too.
    let items = strings(v);
    items.iter().rev().find_map(|s| s.trim().parse().ok())
}

fn ignore(opts: &mut Options, what: String) {
    if opts.ignored.len() < MAX_IGNORED {
        opts.ignored.push(what);
    }
}

/// Applies one structured key (already canonical).
fn apply_key(opts: &mut Options, key: &str, value: &Value) {
    match key {
        "flags" => {
            for f in strings(value) {
                apply_flag(opts, &canonical(&f));
            }
        }
        "replace" => {
            for item in strings(value) {
                match canonical(&item).as_str() {
                    "origin" | "origin-full" => opts.replace_origin = true,
                    "session-connection" | "session-conn" => {
                        opts.replace_session_connection = true;
                    }
                    other => ignore(opts, format!("replace={other}")),
                }
            }
        }
        "ice" => {
            opts.ice = Some(match text(value).map(|s| canonical(&s)).as_deref() {
                Some("remove") => IceOption::Remove,
                _ => IceOption::Other,
            });
        }
        "received-from" => opts.received_from = parse_ip_value(value),
        "media-address" => opts.media_address = parse_ip_value(value),
        "address-family" => opts.address_family = text(value).and_then(|s| Family::parse(&s)),
        "rtcp-mux" => {
            for item in strings(value) {
                apply_rtcp_mux(opts, &canonical(&item));
            }
        }
        "delete-delay" => {
            opts.delete_delay = value
                .as_int()
                .and_then(|d| u32::try_from(d.clamp(0, 86_400)).ok());
        }
        "endpoint-learning" => {
            opts.learning = match text(value).map(|s| canonical(&s)).as_deref() {
                Some("heuristic") | Some("delayed") => Some(Learning::Heuristic),
                Some("immediate") => Some(Learning::Immediate),
                Some("off") => Some(Learning::Off),
                _ => None,
            };
        }
        "transport-protocol" => opts.transport_protocol = text(value),
        "direction" => opts.direction = strings(value),
        "from-interface" | "to-interface" => {
            if let Some(s) = text(value) {
                opts.direction.push(s);
            }
        }
        "label" => opts.label = text(value),
        // Keys that need no action here.
        "sip-message-type" | "sip-code" | "metadata" | "record-call" | "tos" | "ptime" | "sdes"
        | "dtls" | "osrtp" | "codec" | "t.38" | "t38" => {
            ignore(opts, key.to_owned());
        }
        other => ignore(opts, other.to_owned()),
    }
}

fn apply_rtcp_mux(opts: &mut Options, item: &str) {
    match item {
        "offer" => opts.rtcp_mux.offer = true,
        "require" => opts.rtcp_mux.require = true,
        "demux" => opts.rtcp_mux.demux = true,
        "accept" => opts.rtcp_mux.accept = true,
        "reject" => opts.rtcp_mux.reject = true,
        other => ignore(opts, format!("rtcp-mux={other}")),
    }
}

/// Applies one flag (already canonical): a `flags` list item or a bare `rtpp-flags`
/// token. Kamailio's module-side prefixes (`replace-origin`, `rtcp-mux-offer`) are
/// recognised here too, so both forms mean the same.
fn apply_flag(opts: &mut Options, flag: &str) {
    if let Some(item) = flag.strip_prefix("replace-") {
        return apply_key(opts, "replace", &Value::str(item));
    }
    if let Some(item) = flag.strip_prefix("rtcp-mux-") {
        return apply_rtcp_mux(opts, item);
    }
    match flag {
        "trust-address" => opts.trust_address = Some(true),
        "sip-source-address" => opts.trust_address = Some(false),
        "no-rtcp-attribute" => opts.no_rtcp_attribute = true,
        "full-rtcp-attribute" => opts.full_rtcp_attribute = true,
        "original-sendrecv" => opts.original_sendrecv = true,
        "asymmetric" => opts.asymmetric = true,
        "symmetric" => opts.asymmetric = false,
        "strict-source" => opts.media_handover = false,
        "media-handover" => opts.media_handover = true,
        "fatal" => opts.fatal = true,
        "fast" => opts.fast = true,
        "ip4" | "ipv4" => opts.address_family = Some(Family::V4),
        "ip6" | "ipv6" => opts.address_family = Some(Family::V6),
        "rtp/avp" | "rtp/avpf" | "rtp/savp" | "rtp/savpf" => {
            opts.transport_protocol = Some(flag.to_ascii_uppercase());
        }
        "internal" | "external" => opts.direction.push(flag.to_owned()),
        "port-latching" | "no-port-latching" | "loop-protect" | "to-tag" | "all"
        | "directional" | "unidirectional" | "reset" | "debug" | "early-media" => {}
        other => ignore(opts, other.to_owned()),
    }
}

/// Splits an `rtpp-flags` string into `(canonical key, value)` items: `key=value`,
/// `key=[a b [c]]` (a list, nested at most 4 levels) and bare flags (`None`).
/// Bounded by [`MAX_RTPP_FLAGS_LEN`] and [`MAX_FLAG_TOKENS`]; malformed brackets end
/// the parse with what was read so far, since a half-understood option string is
/// better reported than fatal (rtpengine logs and continues too).
pub fn parse_rtpp_flags(s: &str) -> Vec<(String, Option<Value>)> {
    let mut end = s.len().min(MAX_RTPP_FLAGS_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = s.get(..end).unwrap_or_default();
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while out.len() < MAX_FLAG_TOKENS {
        while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
            pos += 1;
        }
        if pos >= bytes.len() {
            break;
        }
        let start = pos;
        while bytes
            .get(pos)
            .is_some_and(|b| !b.is_ascii_whitespace() && *b != b'=')
        {
            pos += 1;
        }
        let key = canonical(s.get(start..pos).unwrap_or_default());
        if bytes.get(pos) != Some(&b'=') {
            out.push((key, None));
            continue;
        }
        pos += 1;
        let value = if bytes.get(pos) == Some(&b'[') {
            match bracket_list(s, &mut pos, 1) {
                Some(v) => v,
                None => break,
            }
        } else {
            let vstart = pos;
            while bytes.get(pos).is_some_and(|b| !b.is_ascii_whitespace()) {
                pos += 1;
            }
            Value::str(s.get(vstart..pos).unwrap_or_default())
        };
        out.push((key, Some(value)));
    }
    out
}

/// Parses `[a b [c d]]` starting at the `[`; `None` if unbalanced or too deep.
fn bracket_list(s: &str, pos: &mut usize, depth: usize) -> Option<Value> {
    if depth > 4 {
        return None;
    }
    let bytes = s.as_bytes();
    *pos += 1; // '['
    let mut items = Vec::new();
    loop {
        while bytes.get(*pos).is_some_and(u8::is_ascii_whitespace) {
            *pos += 1;
        }
        match bytes.get(*pos)? {
            b']' => {
                *pos += 1;
                return Some(Value::List(items));
            }
            b'[' => items.push(bracket_list(s, pos, depth + 1)?),
            _ => {
                let start = *pos;
                while bytes
                    .get(*pos)
                    .is_some_and(|b| !b.is_ascii_whitespace() && *b != b']' && *b != b'[')
                {
                    *pos += 1;
                }
                items.push(Value::str(s.get(start..*pos)?));
            }
        }
        if items.len() > MAX_FLAG_TOKENS {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{decode_exact, dict, Limits};
    use proptest::prelude::*;

    fn req(wire: &[u8]) -> Request {
        Request::from_value(&decode_exact(wire, &Limits::default()).unwrap()).unwrap()
    }

    #[test]
    fn kamailio_5_6_offer_from_the_anchors() {
        let r = req(b"d8:supportsl10:load limite3:sdp3:v=05:flagsl13:trust-addresse7:replacel6:origin18:session-connectione3:ICE6:remove13:received-froml3:IP410:192.0.2.10e7:call-id6:abc1238:from-tag3:ft17:command5:offere");
        assert_eq!(r.command, Command::Offer);
        assert_eq!(r.call_id.as_deref(), Some("abc123"));
        assert_eq!(r.from_tag.as_deref(), Some("ft1"));
        assert_eq!(r.to_tag, None);
        assert_eq!(r.sdp.as_deref(), Some(&b"v=0"[..]));
        assert!(r.supports_load_limit);
        let o = &r.options;
        assert_eq!(o.trust_address, Some(true));
        assert!(o.replace_origin && o.replace_session_connection);
        assert_eq!(o.ice, Some(IceOption::Remove));
        assert_eq!(o.received_from, Some("192.0.2.10".parse().unwrap()));
        assert!(o.ignored.is_empty(), "{:?}", o.ignored);
    }

    #[test]
    fn both_key_spellings_and_structured_forms() {
        let spaced = dict([
            ("command", Value::str("offer")),
            (
                "received from",
                Value::List(vec![Value::str("IP6"), Value::str("2001:db8::1")]),
            ),
            ("address family", Value::str("IP6")),
            ("media address", Value::str("198.51.100.1")),
            ("delete delay", Value::str("7")),
            (
                "rtcp-mux",
                Value::List(vec![Value::str("offer"), Value::str("accept")]),
            ),
            (
                "flags",
                Value::List(vec![
                    Value::str("SIP source address"),
                    Value::str("full-rtcp-attribute"),
                ]),
            ),
            ("endpoint learning", Value::str("immediate")),
        ]);
        let r = Request::from_value(&spaced).unwrap();
        let o = r.options;
        assert_eq!(o.received_from, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(o.address_family, Some(Family::V6));
        assert_eq!(o.media_address, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(o.delete_delay, Some(7));
        assert!(o.rtcp_mux.offer && o.rtcp_mux.accept && !o.rtcp_mux.demux);
        assert_eq!(o.trust_address, Some(false));
        assert!(o.full_rtcp_attribute);
        assert_eq!(o.learning, Some(Learning::Immediate));
    }

    #[test]
    fn rtpp_flags_string_means_the_same_as_structured_keys() {
        let raw = dict([
            ("command", Value::str("offer")),
            (
                "rtpp-flags",
                Value::str("replace-origin replace-session-connection ICE=remove rtcp-mux=[offer demux] trust-address address-family=IP6 received-from=192.0.2.10 delete-delay=5 via-branch=z9hG4bK1 codec=[transcode=[PCMA PCMU]] SIP-source-address"),
            ),
        ]);
        let r = Request::from_value(&raw).unwrap();
        let o = &r.options;
        assert!(o.replace_origin && o.replace_session_connection);
        assert_eq!(o.ice, Some(IceOption::Remove));
        assert!(o.rtcp_mux.offer && o.rtcp_mux.demux);
        assert_eq!(o.address_family, Some(Family::V6));
        assert_eq!(o.received_from, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(o.delete_delay, Some(5));
        assert_eq!(o.trust_address, Some(false), "the later flag wins");
        assert_eq!(r.via_branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(o.ignored, vec!["codec".to_owned()]);
        let underscored = dict([
            ("command", Value::str("delete")),
            ("rtpp_flags", Value::str("fatal")),
        ]);
        assert!(Request::from_value(&underscored).unwrap().options.fatal);
    }

    #[test]
    fn rtpp_flags_tokens() {
        assert_eq!(
            parse_rtpp_flags(" a  B=c d=[e [f g]] "),
            vec![
                ("a".to_owned(), None),
                ("b".to_owned(), Some(Value::str("c"))),
                (
                    "d".to_owned(),
                    Some(Value::List(vec![
                        Value::str("e"),
                        Value::List(vec![Value::str("f"), Value::str("g")])
                    ]))
                ),
            ]
        );
        assert_eq!(parse_rtpp_flags("x=[a b"), vec![]);
        assert_eq!(
            parse_rtpp_flags("y x=[[[[[a]]]]]"),
            vec![("y".to_owned(), None)]
        );
        assert_eq!(
            parse_rtpp_flags("k="),
            vec![("k".to_owned(), Some(Value::str("")))]
        );
        assert_eq!(
            parse_rtpp_flags(&"f ".repeat(10_000)).len(),
            MAX_FLAG_TOKENS
        );
    }

    #[test]
    fn command_is_required_and_others_are_named() {
        let d = dict([("call-id", Value::str("x"))]);
        assert_eq!(Request::from_value(&d), Err(RequestError::NoCommand));
        assert_eq!(
            RequestError::NoCommand.reason(),
            "Dictionary contains no key \"command\""
        );
        let d = dict([("command", Value::str("play media"))]);
        assert_eq!(
            Request::from_value(&d).unwrap().command,
            Command::Other("play media".to_owned())
        );
    }

    proptest! {
        #[test]
        fn rtpp_flags_never_panic(s in "[ a-z=\\[\\]\\-\\.0-9]{0,200}") {
            let items = parse_rtpp_flags(&s);
            prop_assert!(items.len() <= MAX_FLAG_TOKENS);
            let d = dict([("command", Value::str("offer")), ("rtpp-flags", Value::Bytes(s.into_bytes()))]);
            prop_assert!(Request::from_value(&d).is_ok());
        }
    }
}
