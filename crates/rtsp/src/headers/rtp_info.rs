//! `RTP-Info` (RFC 2326 §12.33, RFC 7826 §18.45): per stream, the URL and the RTP
//! sequence number and timestamp that correspond to the start of the PLAY range, which
//! a proxy needs to rewrite when it splices or re-sequences streams.
//!
//! Two wire forms are read:
//! * RTSP 1.0 as written by live555, ffmpeg and gst-rtsp-server:
//!   `url=rtsp://h/p/stream=0;seq=1;rtptime=2,url=rtsp://h/p/stream=1;seq=3`. The URL
//!   is unquoted and may itself contain `;`, `=` and `,`, so it is taken to end where
//!   `;seq=`, `;rtptime=`, `;ssrc=` or `,url=` begins (whitespace allowed around the
//!   punctuation), which is how those peers' own parsers behave.
//! * RTSP 2.0: `url="rtsp://h/p" ssrc=0A13C760:seq=45102;rtptime=12345678`, where one URL
//!   may carry several `ssrc=` blocks; each block becomes its own [`RtpInfoEntry`].
//!
//! Writing uses the 1.0 form for entries without an SSRC (quoting the URL only when the
//! unquoted form would be ambiguous) and the 2.0 form for entries with one. What it does
//! not: resolve URLs against the request URL.

use super::param::ExtensionParam;
use super::syntax::{self, Span};
use crate::header_map::{HeaderError, TypedHeader};

const H: &str = "RTP-Info";

/// The RTP state of one stream at the start of playback.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpInfoEntry {
    /// Stream URL as sent (usually absolute, e.g. `rtsp://h/p/trackID=1`).
    pub url: String,
    /// RTSP 2.0 synchronisation source the values belong to.
    pub ssrc: Option<u32>,
    /// Sequence number of the first packet.
    pub seq: Option<u16>,
    /// RTP timestamp corresponding to the range start.
    pub rtptime: Option<u32>,
    /// Other parameters, in order, values raw.
    pub params: Vec<ExtensionParam>,
}

impl RtpInfoEntry {
    /// An entry for `url` with no values yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ssrc: None,
            seq: None,
            rtptime: None,
            params: Vec::new(),
        }
    }
}

/// `RTP-Info: 1#rtsp-info-spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpInfo(pub Vec<RtpInfoEntry>);

impl RtpInfo {
    /// The first entry whose URL ends with `suffix` (control URLs are often relative,
    /// e.g. `trackID=1`, while RTP-Info carries absolute ones).
    pub fn find_by_url_suffix(&self, suffix: &str) -> Option<&RtpInfoEntry> {
        self.0.iter().find(|e| e.url.ends_with(suffix))
    }
}

/// Byte cursor over the value; positions are relative to `span`.
struct Cursor<'a> {
    span: Span<'a>,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.span.text.as_bytes()
    }
    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }
    fn at(&self) -> usize {
        self.span.offset.saturating_add(self.pos)
    }
    fn skip_lws(&mut self) {
        while self.peek().is_some_and(syntax::is_lws) {
            self.pos += 1;
        }
    }
    fn slice(&self, start: usize, end: usize) -> Span<'a> {
        self.span
            .slice(start, end)
            .unwrap_or(Span::new("", self.at()))
    }
    /// Consumes `word` (ASCII, case-insensitive) if it is next.
    fn eat_word(&mut self, word: &str) -> bool {
        let end = self.pos.saturating_add(word.len());
        match self.bytes().get(self.pos..end) {
            Some(b) if b.eq_ignore_ascii_case(word.as_bytes()) => {
                self.pos = end;
                true
            }
            _ => false,
        }
    }
}

/// Whether, from byte `i`, the text is `LWS* word LWS* "="` for one of `words`.
fn keyword_at(bytes: &[u8], mut i: usize, words: &[&str]) -> bool {
    while bytes.get(i).copied().is_some_and(syntax::is_lws) {
        i += 1;
    }
    words.iter().any(|w| {
        let mut j = i.saturating_add(w.len());
        let matches = bytes
            .get(i..j)
            .is_some_and(|b| b.eq_ignore_ascii_case(w.as_bytes()));
        if !matches {
            return false;
        }
        while bytes.get(j).copied().is_some_and(syntax::is_lws) {
            j += 1;
        }
        bytes.get(j) == Some(&b'=')
    })
}

/// Where an unquoted URL starting at `from` ends (see the module docs).
fn url_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        let next = i.saturating_add(1);
        let stop = match b {
            b';' => keyword_at(bytes, next, &["seq", "rtptime", "ssrc"]),
            b',' => keyword_at(bytes, next, &["url"]),
            // RFC 7826's own example separates the URL and `ssrc=` by a space only.
            b' ' | b'\t' => keyword_at(bytes, next, &["ssrc"]) || ends_in_lws(bytes, i),
            _ => false,
        };
        if stop {
            return i;
        }
        i = next;
    }
    bytes.len()
}

/// Whether only LWS, `;` or `,` follow position `i` before the next non-LWS byte,
/// i.e. the whitespace at `i` cannot be part of the URL.
fn ends_in_lws(bytes: &[u8], mut i: usize) -> bool {
    while bytes.get(i).copied().is_some_and(syntax::is_lws) {
        i += 1;
    }
    match bytes.get(i) {
        None => true,
        Some(b';') => keyword_at(bytes, i.saturating_add(1), &["seq", "rtptime", "ssrc"]),
        Some(b',') => keyword_at(bytes, i.saturating_add(1), &["url"]),
        _ => false,
    }
}

/// Reads a quoted string starting at the cursor (which is on the `"`).
fn quoted(c: &mut Cursor<'_>) -> Result<String, HeaderError> {
    let start = c.pos;
    let mut escaped = false;
    let mut i = start.saturating_add(1);
    while let Some(&b) = c.bytes().get(i) {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            let end = i.saturating_add(1);
            c.pos = end;
            return syntax::unquote(H, c.slice(start, end));
        }
        i = i.saturating_add(1);
    }
    Err(syntax::err(
        H,
        c.span.offset.saturating_add(start),
        "quoted string is not terminated (missing closing '\"')",
    ))
}

/// Reads a parameter value up to a delimiter; `stop_at_colon` for `ssrc`, whose value
/// is followed by `:` in RTSP 2.0.
fn raw_value<'a>(c: &mut Cursor<'a>, stop_at_colon: bool) -> Result<Span<'a>, HeaderError> {
    let start = c.pos;
    if c.peek() == Some(b'"') {
        quoted(c)?;
        return Ok(c.slice(start, c.pos));
    }
    while let Some(b) = c.peek() {
        if matches!(b, b';' | b',' | b' ' | b'\t') || (stop_at_colon && b == b':') {
            break;
        }
        if b == b'"' {
            return Err(syntax::err(
                H,
                c.at(),
                "unexpected quote in parameter value",
            ));
        }
        c.pos += 1;
    }
    Ok(c.slice(start, c.pos))
}

/// Parses the `;name=value` parameters after a URL into one or more entries.
fn parse_params(
    c: &mut Cursor<'_>,
    url: &str,
    out: &mut Vec<RtpInfoEntry>,
) -> Result<(), HeaderError> {
    let mut entry = RtpInfoEntry::new(url);
    let mut count = 0usize;
    // After `ssrc=X:` the next parameter follows without a `;`.
    let mut param_may_follow = false;
    loop {
        c.skip_lws();
        match c.peek() {
            None | Some(b',') => break,
            Some(b';') => {
                c.pos += 1;
                c.skip_lws();
            }
            Some(_) if param_may_follow => {}
            // A space then `ssrc=` (RFC 7826's example form).
            Some(_) if keyword_at(c.bytes(), c.pos, &["ssrc"]) => {}
            Some(_) => {
                return Err(syntax::err(
                    H,
                    c.at(),
                    "expected ';' before the next parameter or ',' before the next stream",
                ))
            }
        }
        param_may_follow = false;
        if matches!(c.peek(), None | Some(b',' | b';')) {
            // Empty parameter (`;;` or trailing `;`): tolerated.
            continue;
        }
        count += 1;
        if count > syntax::MAX_PARAMS {
            return Err(syntax::err(
                H,
                c.at(),
                format!("too many parameters (at most {})", syntax::MAX_PARAMS),
            ));
        }
        let name_start = c.pos;
        while c.peek().is_some_and(syntax::is_token_byte) {
            c.pos += 1;
        }
        let name = c.slice(name_start, c.pos);
        let name_text = syntax::expect_token(H, name, "parameter name")?;
        c.skip_lws();
        let value = if c.peek() == Some(b'=') {
            c.pos += 1;
            c.skip_lws();
            Some(raw_value(c, name_text.eq_ignore_ascii_case("ssrc"))?)
        } else {
            None
        };
        let need = || {
            value.ok_or_else(|| syntax::err(H, name.end(), format!("{name_text} needs a value")))
        };
        let duplicate = || syntax::err(H, name.offset, format!("duplicate {name_text} parameter"));
        if name_text.eq_ignore_ascii_case("seq") {
            if entry.seq.is_some() {
                return Err(duplicate());
            }
            entry.seq = Some(syntax::parse_uint(H, need()?, "seq")?);
        } else if name_text.eq_ignore_ascii_case("rtptime") {
            if entry.rtptime.is_some() {
                return Err(duplicate());
            }
            entry.rtptime = Some(syntax::parse_uint(H, need()?, "rtptime")?);
        } else if name_text.eq_ignore_ascii_case("ssrc") {
            let ssrc = syntax::parse_ssrc(H, need()?)?;
            if entry.ssrc.is_some() {
                // A further ssrc block for the same URL (RFC 7826).
                let next = RtpInfoEntry::new(url);
                out.push(std::mem::replace(&mut entry, next));
            }
            entry.ssrc = Some(ssrc);
            c.skip_lws();
            if c.peek() == Some(b':') {
                c.pos += 1;
                param_may_follow = true;
            }
        } else {
            let text = match value {
                Some(v) => c.slice(name_start, v.end().saturating_sub(c.span.offset)),
                None => name,
            };
            entry.params.push(ExtensionParam::parse(H, text)?);
        }
    }
    out.push(entry);
    Ok(())
}

impl TypedHeader for RtpInfo {
    const NAME: &'static str = H;

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(H, value, "url=...")?;
        let mut c = Cursor { span, pos: 0 };
        let mut entries = Vec::new();
        let mut urls = 0usize;
        loop {
            c.skip_lws();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            urls += 1;
            if urls > syntax::MAX_LIST_ITEMS || entries.len() >= syntax::MAX_LIST_ITEMS {
                return Err(syntax::err(
                    H,
                    c.at(),
                    format!("too many streams (at most {})", syntax::MAX_LIST_ITEMS),
                ));
            }
            let entry_at = c.at();
            if !c.eat_word("url") {
                return Err(syntax::err(H, entry_at, "each stream must start with url="));
            }
            c.skip_lws();
            if c.peek() != Some(b'=') {
                return Err(syntax::err(H, c.at(), "expected '=' after url"));
            }
            c.pos += 1;
            c.skip_lws();
            let url = if c.peek() == Some(b'"') {
                quoted(&mut c)?
            } else {
                let start = c.pos;
                let end = url_end(c.bytes(), start);
                let url = c.slice(start, end).trim();
                c.pos = end;
                url.text.to_owned()
            };
            if url.is_empty() {
                return Err(syntax::err(H, c.at(), "empty stream URL"));
            }
            parse_params(&mut c, &url, &mut entries)?;
        }
        if entries.is_empty() {
            return Err(syntax::err(H, span.offset, "expected url=..."));
        }
        Ok(RtpInfo(entries))
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("url=");
            let bytes = e.url.as_bytes();
            let plain = !e.url.is_empty()
                && !e.url.starts_with('"')
                && !bytes.iter().any(|&b| syntax::is_lws(b))
                && url_end(bytes, 0) == bytes.len()
                // Unknown parameters right after an unquoted URL would read as part of
                // it; seq or rtptime (written first) mark where the URL ends.
                && (e.params.is_empty() || e.seq.is_some() || e.rtptime.is_some());
            let mut ri = Vec::new();
            if let Some(s) = e.seq {
                ri.push(format!("seq={s}"));
            }
            if let Some(t) = e.rtptime {
                ri.push(format!("rtptime={t}"));
            }
            for p in &e.params {
                let mut s = String::new();
                p.write_bare(&mut s);
                ri.push(s);
            }
            match e.ssrc {
                None => {
                    if plain {
                        out.push_str(&e.url);
                    } else {
                        out.push_str(&syntax::quote(&e.url));
                    }
                    for p in ri {
                        out.push(';');
                        out.push_str(&p);
                    }
                }
                Some(ssrc) => {
                    out.push_str(&syntax::quote(&e.url));
                    out.push_str(&format!(" ssrc={ssrc:08X}"));
                    if !ri.is_empty() {
                        out.push(':');
                        out.push_str(&ri.join(";"));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(url: &str, seq: Option<u16>, rtptime: Option<u32>) -> RtpInfoEntry {
        RtpInfoEntry {
            seq,
            rtptime,
            ..RtpInfoEntry::new(url)
        }
    }

    #[test]
    fn rtsp1_forms_from_real_servers() {
        // gst-rtsp-server / ffmpeg style, stream=N control URLs contain '='.
        let v = "url=rtsp://h/p/stream=0;seq=1;rtptime=2,url=rtsp://h/p/stream=1;seq=3;rtptime=4";
        let r = RtpInfo::parse_value(v).unwrap();
        assert_eq!(
            r.0,
            vec![
                entry("rtsp://h/p/stream=0", Some(1), Some(2)),
                entry("rtsp://h/p/stream=1", Some(3), Some(4)),
            ]
        );
        assert_eq!(r.to_value(), v);
        // live555 with a space after the comma; RFC 2326 example without rtptime.
        let r = RtpInfo::parse_value(
            "url=rtsp://foo.com/bar.avi/streamid=0;seq=45102, url=rtsp://foo.com/bar.avi/streamid=1;seq=30211",
        )
        .unwrap();
        assert_eq!(
            r.0[1],
            entry("rtsp://foo.com/bar.avi/streamid=1", Some(30211), None)
        );
        assert_eq!(
            r.find_by_url_suffix("streamid=0").and_then(|e| e.seq),
            Some(45102)
        );
        // URL with its own ';' and ',' parameters, sloppy spacing and case.
        let r = RtpInfo::parse_value(
            "URL = rtsp://cam/live;jsessionid=x,y/track1 ; SEQ = 7 ;rtptime=8 ; x-q=\"a,b\"",
        )
        .unwrap();
        assert_eq!(r.0[0].url, "rtsp://cam/live;jsessionid=x,y/track1");
        assert_eq!((r.0[0].seq, r.0[0].rtptime), (Some(7), Some(8)));
        assert_eq!(
            r.0[0].params,
            vec![ExtensionParam::new("x-q", Some("\"a,b\""))]
        );
    }

    #[test]
    fn rtsp2_form_from_rfc7826() {
        let v = "url=\"rtsp://example.com/foo/audio\" ssrc=0A13C760:seq=45102;rtptime=12345678,url=\"rtsp://example.com/foo/video\" ssrc=9A9DE123:seq=30211;rtptime=29567112";
        let r = RtpInfo::parse_value(v).unwrap();
        assert_eq!(
            r.0[0],
            RtpInfoEntry {
                ssrc: Some(0x0A13_C760),
                ..entry(
                    "rtsp://example.com/foo/audio",
                    Some(45102),
                    Some(12_345_678)
                )
            }
        );
        assert_eq!(r.0[1].ssrc, Some(0x9A9D_E123));
        assert_eq!(r.to_value(), v);
        // Several ssrc blocks for one URL, grammar form with ';'.
        let r = RtpInfo::parse_value("url=\"rtsp://e/v\";ssrc=1:seq=1;ssrc=2 : seq=2;rtptime=3")
            .unwrap();
        assert_eq!(r.0.len(), 2);
        assert_eq!(
            (r.0[1].url.as_str(), r.0[1].ssrc, r.0[1].seq),
            ("rtsp://e/v", Some(2), Some(2))
        );
        assert_eq!(RtpInfo::parse_value(&r.to_value()), Ok(r));
    }

    #[test]
    fn ambiguous_urls_are_quoted_on_output() {
        let r = RtpInfo(vec![entry("rtsp://h/a;seq=9", Some(1), None)]);
        assert_eq!(r.to_value(), "url=\"rtsp://h/a;seq=9\";seq=1");
        assert_eq!(RtpInfo::parse_value(&r.to_value()), Ok(r));
        // Only unknown parameters: unquoted they would read as part of the URL.
        let mut e = RtpInfoEntry::new("rtsp://a/");
        e.params.push(ExtensionParam::new("x-a", None::<String>));
        let r = RtpInfo(vec![e]);
        assert_eq!(r.to_value(), "url=\"rtsp://a/\";x-a");
        assert_eq!(RtpInfo::parse_value(&r.to_value()), Ok(r));
    }

    #[test]
    fn errors_carry_offsets() {
        let cases: [(&str, usize); 10] = [
            ("", 0),
            ("seq=1", 0),
            ("url", 3),
            ("url=;seq=1", 4),
            ("url=a;seq=65536", 10),
            ("url=a;seq=", 10),
            ("url=a;rtptime=4294967296", 14),
            ("url=a;seq=1;seq=2", 12),
            ("url=\"a", 4),
            ("url=\"a\" x", 8),
        ];
        for (v, offset) in cases {
            let e = RtpInfo::parse_value(v).unwrap_err();
            assert_eq!((e.offset, e.header), (offset, H), "{v}: {e}");
        }
        let many = vec!["url=a;seq=1"; 65].join(",");
        assert_eq!(RtpInfo::parse_value(&many).unwrap_err().offset, 64 * 12);
    }

    fn entry_strategy() -> impl Strategy<Value = RtpInfoEntry> {
        (
            prop_oneof![
                "rtsp://[a-z]{1,5}/[a-z=0-9/]{0,10}",
                "rtsp://h/[a-z;=,]{0,10}"
            ],
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u32>()),
            proptest::collection::vec(
                ("x-[a-z]{1,4}", proptest::option::of("[a-z0-9]{1,4}"))
                    .prop_map(|(n, v)| ExtensionParam::new(n, v)),
                0..2,
            ),
        )
            .prop_map(|(url, ssrc, seq, rtptime, params)| RtpInfoEntry {
                url,
                ssrc,
                seq,
                rtptime,
                params,
            })
    }

    proptest! {
        #[test]
        fn round_trips(entries in proptest::collection::vec(entry_strategy(), 1..4)) {
            let r = RtpInfo(entries);
            let text = r.to_value();
            prop_assert_eq!(RtpInfo::parse_value(&text), Ok(r), "{}", text);
        }
    }
}
