//! The generic HTTP authentication syntax that RTSP reuses: challenge lists
//! (`WWW-Authenticate`, `Proxy-Authenticate`) and credentials (`Authorization`,
//! `Proxy-Authorization`), parsed into schemes with a token68 or `name=value` parameters
//! and serialised back.
//!
//! Implements RFC 7235 §2.1 (`challenge`, `credentials`, `auth-param`, `token68`) and
//! §4.1/§4.2, with `token` and `quoted-string` from RFC 7230 §3.2.6; RTSP refers to these
//! in RFC 2326 §12.5 and RFC 7826 §19.1.
//!
//! What it does not: interpret any scheme (see [`super::digest`] and [`super::basic`]),
//! or decode RFC 8187 extended parameters (`username*`), which are kept verbatim.
//!
//! Deliberate leniency, because cameras send it: an unquoted parameter value may contain
//! any visible character except `,` and `"` (e.g. `nonce=abc/def==`), and empty list
//! elements (`, ,`) are skipped. A value is always a complete header value, so there is no
//! "incomplete" outcome: a truncated value is reported as an error at the byte where it
//! ended. Limits: [`MAX_VALUE_LEN`], [`MAX_CHALLENGES`], [`MAX_PARAMS`], [`MAX_TOKEN_LEN`],
//! [`MAX_PARAM_VALUE_LEN`].

use std::fmt;

/// Longest header value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 8192;
/// Most challenges accepted across all `WWW-Authenticate` values of one response.
pub const MAX_CHALLENGES: usize = 16;
/// Most parameters accepted in one challenge or one set of credentials.
pub const MAX_PARAMS: usize = 32;
/// Longest scheme or parameter name, in bytes.
pub const MAX_TOKEN_LEN: usize = 64;
/// Longest parameter value or token68, in bytes (after removing quotes and escapes).
pub const MAX_PARAM_VALUE_LEN: usize = 2048;

/// A header value that could not be parsed as challenges or credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid authentication header (value #{value_index}, byte {offset}): {kind}")]
pub struct AuthSyntaxError {
    /// Which header value of the slice given to the parser (0 for a single value).
    pub value_index: usize,
    /// Byte offset into that value where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub kind: SyntaxErrorKind,
}

/// The reason an authentication header value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxErrorKind {
    /// The value exceeds [`MAX_VALUE_LEN`].
    #[error("header value is {len} bytes long; at most {max} are accepted")]
    ValueTooLong { len: usize, max: usize },
    /// Nothing but whitespace and commas.
    #[error("header value is empty; expected a scheme such as `Digest` or `Basic`")]
    Empty,
    /// A scheme name was expected here.
    #[error("expected an authentication scheme name such as `Digest`")]
    ExpectedScheme,
    /// The scheme must be followed by a space before its parameters.
    #[error("expected a space between the scheme name and its parameters")]
    ExpectedSpace,
    /// A parameter name was expected here.
    #[error("expected a parameter name such as `realm`")]
    ExpectedParamName,
    /// A parameter name must be followed by `=`.
    #[error("expected `=` after the parameter name")]
    ExpectedEquals,
    /// `name=` was not followed by a token or quoted string.
    #[error("expected a parameter value (a token or a quoted string) after `=`")]
    ExpectedParamValue,
    /// A quoted string ran to the end of the value.
    #[error("quoted string has no closing `\"`")]
    UnterminatedQuotedString,
    /// A control character (other than tab) appeared.
    #[error("control character 0x{byte:02x} is not allowed in a header value")]
    ControlCharacter { byte: u8 },
    /// Something other than `,` followed a parameter or token68.
    #[error("expected `,` before the next parameter or challenge")]
    ExpectedComma,
    /// A scheme or parameter name exceeds [`MAX_TOKEN_LEN`].
    #[error("name is longer than {max} bytes")]
    TokenTooLong { max: usize },
    /// A parameter value or token68 exceeds [`MAX_PARAM_VALUE_LEN`].
    #[error("parameter value is longer than {max} bytes")]
    ParamValueTooLong { max: usize },
    /// More than [`MAX_PARAMS`] parameters.
    #[error("more than {max} parameters")]
    TooManyParams { max: usize },
    /// More than [`MAX_CHALLENGES`] challenges.
    #[error("more than {max} challenges")]
    TooManyChallenges { max: usize },
    /// The same parameter name twice in one challenge (RFC 7235 §2.1 forbids it, and
    /// accepting it would let two parsers disagree about which value counts).
    #[error("parameter `{name}` appears more than once")]
    DuplicateParam { name: String },
    /// An `Authorization` value holds more than one set of credentials.
    #[error("more than one set of credentials in one header value")]
    MultipleCredentials,
}

/// A value that cannot be written into an authentication header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot put {what} into an authentication header: {why}")]
pub struct InvalidAuthValue {
    /// Which item was refused, e.g. "parameter `username`".
    pub what: String,
    /// Why it was refused.
    pub why: &'static str,
}

impl InvalidAuthValue {
    fn new(what: impl Into<String>, why: &'static str) -> Self {
        Self {
            what: what.into(),
            why,
        }
    }
}

/// One `name=value` parameter; the value is stored unquoted and unescaped.
///
/// Constructed only through checked constructors, so every instance serialises to a
/// valid header fragment (no control characters can reach the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    name: String,
    value: String,
    quoted: bool,
}

impl AuthParam {
    /// A parameter written as a token when the value allows it, else as a quoted string.
    pub fn token(name: &str, value: &str) -> Result<Self, InvalidAuthValue> {
        Self::checked(name, value, false)
    }

    /// A parameter always written as a quoted string (Digest requires this for
    /// `realm`, `nonce`, `uri`, `response`, `cnonce`, `opaque`, `username`).
    pub fn quoted(name: &str, value: &str) -> Result<Self, InvalidAuthValue> {
        Self::checked(name, value, true)
    }

    fn checked(name: &str, value: &str, quoted: bool) -> Result<Self, InvalidAuthValue> {
        if name.is_empty() || name.len() > MAX_TOKEN_LEN || !name.bytes().all(is_tchar) {
            return Err(InvalidAuthValue::new(
                format!("parameter name `{}`", name.escape_debug()),
                "a name must be a token of 1 to 64 characters",
            ));
        }
        if value.len() > MAX_PARAM_VALUE_LEN {
            return Err(InvalidAuthValue::new(
                format!("parameter `{name}`"),
                "the value is longer than 2048 bytes",
            ));
        }
        if value.bytes().any(is_forbidden_ctl) {
            return Err(InvalidAuthValue::new(
                format!("parameter `{name}`"),
                "the value contains a control character",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.to_owned(),
            quoted: quoted || !is_token(value),
        })
    }

    /// The parameter name as written (compare it case-insensitively).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The unescaped value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the value is written as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }
}

impl fmt::Display for AuthParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        f.write_str("=")?;
        if !self.quoted && is_token(&self.value) {
            return f.write_str(&self.value);
        }
        f.write_str("\"")?;
        for c in self.value.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// What follows the scheme name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthData {
    /// Nothing (e.g. `Negotiate` alone).
    #[default]
    Empty,
    /// A token68 blob, as in `Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==`.
    Token68(String),
    /// Comma-separated parameters, in the order received.
    Params(Vec<AuthParam>),
}

impl AuthData {
    /// The value of the first parameter named `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            AuthData::Params(params) => params
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name))
                .map(|p| p.value.as_str()),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), InvalidAuthValue> {
        match self {
            AuthData::Empty => Ok(()),
            AuthData::Token68(t) => {
                if is_token68(t) {
                    Ok(())
                } else {
                    Err(InvalidAuthValue::new(
                        "token68",
                        "it must be letters, digits, `-._~+/`, then optional `=`",
                    ))
                }
            }
            AuthData::Params(params) => {
                if params.len() > MAX_PARAMS {
                    return Err(InvalidAuthValue::new(
                        "parameter list",
                        "too many parameters",
                    ));
                }
                for (i, p) in params.iter().enumerate() {
                    if params[..i]
                        .iter()
                        .any(|q| q.name.eq_ignore_ascii_case(&p.name))
                    {
                        return Err(InvalidAuthValue::new(
                            format!("parameter `{}`", p.name),
                            "it appears more than once",
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// One challenge from `WWW-Authenticate` / `Proxy-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    data: AuthData,
}

/// The credentials of one `Authorization` / `Proxy-Authorization` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    scheme: String,
    data: AuthData,
}

fn check_scheme(scheme: &str) -> Result<(), InvalidAuthValue> {
    if scheme.is_empty() || scheme.len() > MAX_TOKEN_LEN || !scheme.bytes().all(is_tchar) {
        return Err(InvalidAuthValue::new(
            format!("scheme `{}`", scheme.escape_debug()),
            "a scheme must be a token of 1 to 64 characters",
        ));
    }
    Ok(())
}

macro_rules! scheme_and_data {
    ($ty:ident) => {
        impl $ty {
            /// Checks that `scheme` is a token and `data` serialises validly.
            pub fn new(scheme: &str, data: AuthData) -> Result<Self, InvalidAuthValue> {
                check_scheme(scheme)?;
                data.check()?;
                Ok(Self {
                    scheme: scheme.to_owned(),
                    data,
                })
            }

            /// The scheme name as written (compare it case-insensitively).
            pub fn scheme(&self) -> &str {
                &self.scheme
            }

            /// Whether the scheme is `name`, ignoring ASCII case.
            pub fn is_scheme(&self, name: &str) -> bool {
                self.scheme.eq_ignore_ascii_case(name)
            }

            /// Token68 or parameters.
            pub fn data(&self) -> &AuthData {
                &self.data
            }

            /// The value of parameter `name` (ASCII case-insensitive), if present.
            pub fn param(&self, name: &str) -> Option<&str> {
                self.data.param(name)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_item(f, &self.scheme, &self.data)
            }
        }
    };
}

scheme_and_data!(Challenge);
scheme_and_data!(Credentials);

fn write_item(f: &mut fmt::Formatter<'_>, scheme: &str, data: &AuthData) -> fmt::Result {
    f.write_str(scheme)?;
    match data {
        AuthData::Empty => Ok(()),
        AuthData::Token68(t) => write!(f, " {t}"),
        AuthData::Params(params) => {
            for (i, p) in params.iter().enumerate() {
                f.write_str(if i == 0 { " " } else { ", " })?;
                write!(f, "{p}")?;
            }
            Ok(())
        }
    }
}

/// Joins challenges into one `WWW-Authenticate` value (RFC 7235 §4.1 allows a list).
/// Many RTSP clients read only one challenge per header line, so servers usually send
/// each challenge as its own header instead (see `to_string` on [`Challenge`]).
pub fn format_challenges(challenges: &[Challenge]) -> String {
    challenges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses every `WWW-Authenticate` (or `Proxy-Authenticate`) value of one response,
/// each of which may hold several challenges, in order.
pub fn parse_challenges(values: &[&str]) -> Result<Vec<Challenge>, AuthSyntaxError> {
    let mut out = Vec::new();
    for (value_index, value) in values.iter().enumerate() {
        let mut parser = Parser::new(value, value_index)?;
        parser.parse_list(&mut out, MAX_CHALLENGES)?;
    }
    Ok(out)
}

/// Parses one `Authorization` (or `Proxy-Authorization`) value.
pub fn parse_credentials(value: &str) -> Result<Credentials, AuthSyntaxError> {
    let mut parser = Parser::new(value, 0)?;
    let mut items = Vec::with_capacity(1);
    parser.parse_list(&mut items, 1)?;
    match items.pop() {
        Some(Challenge { scheme, data }) => Ok(Credentials { scheme, data }),
        None => Err(parser.error(0, SyntaxErrorKind::Empty)),
    }
}

/// `tchar` of RFC 7230 §3.2.6.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && s.len() <= MAX_PARAM_VALUE_LEN && body.bytes().all(is_token68_char)
}

/// Control characters may not appear anywhere in a header value, except tab.
/// Whether a value may be written unquoted (an RFC 7230 token). `AuthParam::quoted`
/// records "written quoted": true for any value that is not a token, however it
/// arrived, so printing and parsing back give an equal value (the fuzzer found the
/// mismatch when a leniently accepted unquoted value was printed quoted).
fn is_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(is_tchar)
}

fn is_forbidden_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Byte cursor over one header value. Every slice boundary it produces sits next to an
/// ASCII delimiter, so slicing the `&str` at those offsets cannot split a character.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    value_index: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, value_index: usize) -> Result<Self, AuthSyntaxError> {
        let p = Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            value_index,
        };
        if text.len() > MAX_VALUE_LEN {
            return Err(p.error(
                MAX_VALUE_LEN,
                SyntaxErrorKind::ValueTooLong {
                    len: text.len(),
                    max: MAX_VALUE_LEN,
                },
            ));
        }
        Ok(p)
    }

    fn error(&self, offset: usize, kind: SyntaxErrorKind) -> AuthSyntaxError {
        AuthSyntaxError {
            value_index: self.value_index,
            offset,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_ows(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_ows) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Skips `OWS *( "," OWS )`, i.e. the separators and empty elements of a `#` list.
    fn skip_separators(&mut self) {
        self.skip_ows();
        while self.peek() == Some(b',') {
            self.pos += 1;
            self.skip_ows();
        }
    }

    fn scan_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn token(&mut self, missing: SyntaxErrorKind) -> Result<&'a str, AuthSyntaxError> {
        let start = self.pos;
        let token = self.scan_while(is_tchar);
        if token.is_empty() {
            return Err(self.unexpected(missing));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(self.error(start, SyntaxErrorKind::TokenTooLong { max: MAX_TOKEN_LEN }));
        }
        Ok(token)
    }

    /// An error at the current byte, reporting a control character as such, since that
    /// is the more useful diagnosis (often a stray CR/LF from a broken folder).
    fn unexpected(&self, expected: SyntaxErrorKind) -> AuthSyntaxError {
        match self.peek() {
            Some(b) if is_forbidden_ctl(b) => {
                self.error(self.pos, SyntaxErrorKind::ControlCharacter { byte: b })
            }
            _ => self.error(self.pos, expected),
        }
    }

    /// Tries `token68 OWS` followed by the end or `,`; rewinds and returns `None` when the
    /// text is the start of a parameter list instead.
    fn try_token68(&mut self) -> Result<Option<String>, AuthSyntaxError> {
        let start = self.pos;
        let body = self.scan_while(is_token68_char);
        if body.is_empty() {
            return Ok(None);
        }
        while self.peek() == Some(b'=') {
            self.pos += 1;
        }
        let end = self.pos;
        self.skip_ows();
        if self.at_end() || self.peek() == Some(b',') {
            if end - start > MAX_PARAM_VALUE_LEN {
                return Err(self.error(
                    start,
                    SyntaxErrorKind::ParamValueTooLong {
                        max: MAX_PARAM_VALUE_LEN,
                    },
                ));
            }
            return Ok(Some(self.text.get(start..end).unwrap_or("").to_owned()));
        }
        self.pos = start;
        Ok(None)
    }

    /// Whether the cursor is at `token BWS "="`, i.e. another parameter of the same
    /// challenge rather than the scheme of the next one.
    fn looks_like_param(&self) -> bool {
        let mut i = self.pos;
        while self.bytes.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        if i == self.pos {
            return false;
        }
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        self.bytes.get(i) == Some(&b'=')
    }

    fn quoted_string(&mut self) -> Result<String, AuthSyntaxError> {
        let open = self.pos;
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error(self.pos, SyntaxErrorKind::UnterminatedQuotedString));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        None => {
                            return Err(
                                self.error(self.pos, SyntaxErrorKind::UnterminatedQuotedString)
                            )
                        }
                        Some(e) if is_forbidden_ctl(e) => {
                            return Err(
                                self.error(self.pos, SyntaxErrorKind::ControlCharacter { byte: e })
                            )
                        }
                        Some(e) => out.push(e),
                    }
                }
                b if is_forbidden_ctl(b) => {
                    return Err(self.error(self.pos, SyntaxErrorKind::ControlCharacter { byte: b }))
                }
                b => out.push(b),
            }
            if out.len() > MAX_PARAM_VALUE_LEN {
                return Err(self.error(
                    open,
                    SyntaxErrorKind::ParamValueTooLong {
                        max: MAX_PARAM_VALUE_LEN,
                    },
                ));
            }
            self.pos += 1;
        }
        // Only ASCII backslashes were removed from valid UTF-8, so this cannot fail; the
        // error arm keeps the parser total regardless.
        String::from_utf8(out).map_err(|_| self.error(open, SyntaxErrorKind::ExpectedParamValue))
    }

    fn param_value(&mut self) -> Result<(String, bool), AuthSyntaxError> {
        if self.peek() == Some(b'"') {
            return Ok((self.quoted_string()?, true));
        }
        let start = self.pos;
        let value =
            self.scan_while(|b| !(is_ows(b) || b == b',' || b == b'"' || is_forbidden_ctl(b)));
        if value.is_empty() {
            return Err(self.unexpected(SyntaxErrorKind::ExpectedParamValue));
        }
        if value.len() > MAX_PARAM_VALUE_LEN {
            return Err(self.error(
                start,
                SyntaxErrorKind::ParamValueTooLong {
                    max: MAX_PARAM_VALUE_LEN,
                },
            ));
        }
        Ok((value.to_owned(), !is_token(value)))
    }

    fn param(&mut self, params: &[AuthParam]) -> Result<AuthParam, AuthSyntaxError> {
        let name_at = self.pos;
        let name = self.token(SyntaxErrorKind::ExpectedParamName)?;
        self.skip_ows();
        if self.peek() != Some(b'=') {
            return Err(self.unexpected(SyntaxErrorKind::ExpectedEquals));
        }
        self.pos += 1;
        self.skip_ows();
        let (value, quoted) = self.param_value()?;
        if params.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            return Err(self.error(
                name_at,
                SyntaxErrorKind::DuplicateParam {
                    name: name.to_owned(),
                },
            ));
        }
        if params.len() >= MAX_PARAMS {
            return Err(self.error(name_at, SyntaxErrorKind::TooManyParams { max: MAX_PARAMS }));
        }
        Ok(AuthParam {
            name: name.to_owned(),
            value,
            quoted,
        })
    }

    /// Parses `1#challenge` into `out`, failing once `out` would exceed `max_items`.
    fn parse_list(
        &mut self,
        out: &mut Vec<Challenge>,
        max_items: usize,
    ) -> Result<(), AuthSyntaxError> {
        self.skip_separators();
        if self.at_end() {
            return Err(self.error(self.pos, SyntaxErrorKind::Empty));
        }
        while !self.at_end() {
            let scheme_at = self.pos;
            let scheme = self.token(SyntaxErrorKind::ExpectedScheme)?;
            if out.len() >= max_items {
                let kind = if max_items == 1 {
                    SyntaxErrorKind::MultipleCredentials
                } else {
                    SyntaxErrorKind::TooManyChallenges { max: max_items }
                };
                return Err(self.error(scheme_at, kind));
            }
            let spaced = self.skip_ows() > 0;
            let data = if self.at_end() || self.peek() == Some(b',') {
                AuthData::Empty
            } else if !spaced {
                return Err(self.unexpected(SyntaxErrorKind::ExpectedSpace));
            } else if let Some(t) = self.try_token68()? {
                AuthData::Token68(t)
            } else {
                AuthData::Params(self.params()?)
            };
            out.push(Challenge {
                scheme: scheme.to_owned(),
                data,
            });
            self.skip_separators();
        }
        Ok(())
    }

    /// Parameters of one challenge; stops before the scheme of the next challenge.
    fn params(&mut self) -> Result<Vec<AuthParam>, AuthSyntaxError> {
        let mut params = Vec::new();
        loop {
            let p = self.param(&params)?;
            params.push(p);
            self.skip_ows();
            if self.at_end() {
                return Ok(params);
            }
            if self.peek() != Some(b',') {
                return Err(self.unexpected(SyntaxErrorKind::ExpectedComma));
            }
            self.skip_separators();
            if self.at_end() || !self.looks_like_param() {
                return Ok(params);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Challenge {
        let mut v = parse_challenges(&[value]).expect("valid challenge");
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn err(value: &str) -> AuthSyntaxError {
        parse_challenges(&[value]).expect_err("must be rejected")
    }

    fn params(c: &Challenge) -> Vec<(&str, &str, bool)> {
        match c.data() {
            AuthData::Params(p) => p
                .iter()
                .map(|p| (p.name(), p.value(), p.is_quoted()))
                .collect(),
            other => panic!("expected params, got {other:?}"),
        }
    }

    #[test]
    fn parses_digest_with_escapes_and_mixed_quoting() {
        let c = one(r#"Digest realm="a \"b\" \\c", nonce=abc/def==, stale=FALSE"#);
        assert_eq!(c.scheme(), "Digest");
        assert_eq!(
            params(&c),
            vec![
                ("realm", r#"a "b" \c"#, true),
                // Accepted unquoted (cameras send this), but not a token, so it is
                // written back quoted.
                ("nonce", "abc/def==", true),
                ("stale", "FALSE", false),
            ]
        );
    }

    #[test]
    fn lenient_unquoted_value_prints_and_parses_back_equal() {
        // Found by the rtsp_headers fuzz target: `@` is accepted unquoted but is not a
        // token, so it prints quoted; both forms must be the same value.
        let c = parse_challenges(&["+ +=5-5-6-6-@, 0+"]).unwrap();
        let printed: Vec<String> = c.iter().map(|c| c.to_string()).collect();
        assert_eq!(printed[0], r#"+ +="5-5-6-6-@""#);
        let refs: Vec<&str> = printed.iter().map(String::as_str).collect();
        assert_eq!(parse_challenges(&refs).unwrap(), c);
    }

    #[test]
    fn parses_several_challenges_in_one_value() {
        let v = parse_challenges(&[
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        ])
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].scheme(), "Newauth");
        assert_eq!(v[0].param("TITLE"), Some(r#"Login to "apps""#));
        assert_eq!(v[0].param("type"), Some("1"));
        assert_eq!(v[1].scheme(), "Basic");
        assert_eq!(v[1].param("realm"), Some("simple"));
    }

    #[test]
    fn parses_token68_and_bare_schemes() {
        let v = parse_challenges(&["Negotiate, Basic QWxh==, Digest realm=x"]).unwrap();
        assert_eq!(v[0].data(), &AuthData::Empty);
        assert_eq!(v[1].data(), &AuthData::Token68("QWxh==".into()));
        assert_eq!(v[2].param("realm"), Some("x"));
        let c = parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap();
        assert!(c.is_scheme("basic"));
        assert_eq!(
            c.data(),
            &AuthData::Token68("QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into())
        );
    }

    #[test]
    fn tolerates_whitespace_and_empty_elements() {
        let c = one("  ,Digest   realm = \"r\" ,\t, nonce\t=\t\"n\" ,  ");
        assert_eq!(params(&c), vec![("realm", "r", true), ("nonce", "n", true)]);
    }

    #[test]
    fn several_values_are_concatenated_in_order() {
        let v =
            parse_challenges(&[r#"Digest realm="a", nonce="1""#, r#"Basic realm="a""#]).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].is_scheme("digest"));
        assert!(v[1].is_scheme("BASIC"));
    }

    #[test]
    fn errors_carry_value_index_and_offset() {
        let e = parse_challenges(&["Basic realm=\"x\"", "Digest realm=\"open"]).unwrap_err();
        assert_eq!(
            e,
            AuthSyntaxError {
                value_index: 1,
                offset: 18,
                kind: SyntaxErrorKind::UnterminatedQuotedString
            }
        );
        assert_eq!(err("").kind, SyntaxErrorKind::Empty);
        assert_eq!(err(" , ").kind, SyntaxErrorKind::Empty);
        assert_eq!(err("=x").offset, 0);
        assert_eq!(err("=x").kind, SyntaxErrorKind::ExpectedScheme);
        assert_eq!(err("Digest\"x\"").kind, SyntaxErrorKind::ExpectedSpace);
        let e = err("Digest nonce=\"n\", realm=");
        assert_eq!(
            (e.offset, e.kind),
            (24, SyntaxErrorKind::ExpectedParamValue)
        );
        // With nothing after `=` the grammar reads `realm=` as a token68 blob.
        assert_eq!(
            one("Digest realm=").data(),
            &AuthData::Token68("realm=".into())
        );
        let e = err("Digest realm=\"a\" nonce=\"b\"");
        assert_eq!((e.offset, e.kind), (17, SyntaxErrorKind::ExpectedComma));
        let e = err("Digest realm=a, Realm=b");
        assert_eq!(
            (e.offset, e.kind),
            (
                16,
                SyntaxErrorKind::DuplicateParam {
                    name: "Realm".into()
                }
            )
        );
        let e = err("Digest realm=\"a\r\nb\"");
        assert_eq!(
            (e.offset, e.kind),
            (15, SyntaxErrorKind::ControlCharacter { byte: b'\r' })
        );
        let e = err("Digest realm=a\nX: y");
        assert_eq!(
            (e.offset, e.kind),
            (14, SyntaxErrorKind::ControlCharacter { byte: b'\n' })
        );
        let e = err("Digest a=\"x\\");
        assert_eq!(
            (e.offset, e.kind),
            (12, SyntaxErrorKind::UnterminatedQuotedString)
        );
    }

    #[test]
    fn limits_are_enforced() {
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(
            err(&long).kind,
            SyntaxErrorKind::ValueTooLong {
                len: MAX_VALUE_LEN + 1,
                max: MAX_VALUE_LEN
            }
        );
        let scheme = "S".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            err(&scheme).kind,
            SyntaxErrorKind::TokenTooLong { max: MAX_TOKEN_LEN }
        );
        let value = format!("Digest nonce=\"{}\"", "n".repeat(MAX_PARAM_VALUE_LEN + 1));
        let e = err(&value);
        assert_eq!(
            (e.offset, e.kind),
            (
                13,
                SyntaxErrorKind::ParamValueTooLong {
                    max: MAX_PARAM_VALUE_LEN
                }
            )
        );
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        let e = err(&format!("X {}", many.join(", ")));
        assert_eq!(e.kind, SyntaxErrorKind::TooManyParams { max: MAX_PARAMS });
        let many = vec!["Basic realm=x"; MAX_CHALLENGES + 1];
        let e = parse_challenges(&many).unwrap_err();
        assert_eq!(
            (e.value_index, e.offset, e.kind),
            (
                MAX_CHALLENGES,
                0,
                SyntaxErrorKind::TooManyChallenges {
                    max: MAX_CHALLENGES
                }
            )
        );
        let e = parse_credentials("Digest a=b, Basic xyz").unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (12, SyntaxErrorKind::MultipleCredentials)
        );
    }

    #[test]
    fn serialises_with_quoting_and_escapes() {
        let c = Challenge::new(
            "Digest",
            AuthData::Params(vec![
                AuthParam::quoted("realm", r#"say "hi" \o/"#).unwrap(),
                AuthParam::token("algorithm", "SHA-256").unwrap(),
                AuthParam::token("nonce", "a/b=").unwrap(),
                AuthParam::token("empty", "").unwrap(),
            ]),
        )
        .unwrap();
        let text = c.to_string();
        assert_eq!(
            text,
            r#"Digest realm="say \"hi\" \\o/", algorithm=SHA-256, nonce="a/b=", empty="""#
        );
        let back = one(&text);
        assert_eq!(back.param("realm"), Some(r#"say "hi" \o/"#));
        assert_eq!(back.param("nonce"), Some("a/b="));
        assert_eq!(back.param("empty"), Some(""));
        assert_eq!(
            format_challenges(&[c.clone(), c.clone()]),
            format!("{text}, {text}")
        );
    }

    #[test]
    fn constructors_refuse_what_cannot_be_serialised() {
        assert!(AuthParam::quoted("realm", "a\r\nInjected: x").is_err());
        assert!(AuthParam::token("bad name", "x").is_err());
        assert!(AuthParam::token("", "x").is_err());
        assert!(Challenge::new("Dig est", AuthData::Empty).is_err());
        assert!(Credentials::new("Basic", AuthData::Token68("a b".into())).is_err());
        assert!(Credentials::new("Basic", AuthData::Token68("==".into())).is_err());
        let dup = AuthData::Params(vec![
            AuthParam::token("a", "1").unwrap(),
            AuthParam::token("A", "2").unwrap(),
        ]);
        assert!(Challenge::new("X", dup).is_err());
    }

    #[test]
    fn every_prefix_is_handled_without_panic_and_truncation_is_reported() {
        let full =
            r#"Digest realm="IP Camera(12345)", nonce="a\"b", stale="FALSE", Basic realm="x""#;
        for end in 0..full.len() {
            let prefix = &full[..end];
            match parse_challenges(&[prefix]) {
                Ok(v) => assert!(v.len() <= 2),
                Err(e) => assert!(e.offset <= end, "{prefix:?}: {e:?}"),
            }
        }
        // Cut inside the realm's quoted string: reported at the end of the value.
        let cut = &full[..20];
        assert_eq!(
            err(cut),
            AuthSyntaxError {
                value_index: 0,
                offset: 20,
                kind: SyntaxErrorKind::UnterminatedQuotedString
            }
        );
    }

    #[test]
    fn splitting_a_list_across_values_gives_the_same_challenges() {
        let parts = [
            r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#,
            r#"Digest realm="r", nonce="n", algorithm=MD5, qop="auth""#,
            r#"Basic realm="r""#,
        ];
        let joined = parts.join(", ");
        assert_eq!(
            parse_challenges(&[&joined]).unwrap(),
            parse_challenges(&parts).unwrap()
        );
        assert_eq!(parse_challenges(&parts).unwrap().len(), 3);
    }
}
