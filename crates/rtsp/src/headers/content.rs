//! Entity headers describing a message body or where it lives: `Content-Base`
//! (RFC 2326 §12.11, RFC 7826 §18.13), `Content-Location` (§12.15 / §18.17), `Location`
//! (§12.25 / §18.28), `Content-Length` (§12.14 / §18.16) and `Content-Type`
//! (§12.16 / §18.19, media types as in RFC 2616 §3.7).
//!
//! What it does not: resolve relative URLs against `Content-Base` or validate URL
//! syntax beyond "non-empty, bounded, no control characters"; the URL layer does that.

use super::param::ExtensionParam;
use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

/// Longest URL accepted in a URL-valued header.
pub const MAX_URL_LEN: usize = 4096;

fn parse_url(header: &'static str, value: &str) -> Result<String, HeaderError> {
    let span = syntax::start_nonempty(header, value, "a URL")?;
    if span.text.len() > MAX_URL_LEN {
        return Err(syntax::err(
            header,
            span.offset,
            format!("URL is longer than {MAX_URL_LEN} bytes"),
        ));
    }
    Ok(span.text.to_owned())
}

macro_rules! url_header {
    ($(#[$doc:meta])* $name:ident, $wire:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(pub String);

        impl $name {
            /// The URL text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TypedHeader for $name {
            const NAME: &'static str = $wire;

            fn parse_value(value: &str) -> Result<Self, HeaderError> {
                parse_url(Self::NAME, value).map($name)
            }

            fn to_value(&self) -> String {
                self.0.clone()
            }
        }
    };
}

url_header!(
    /// `Content-Base`: base URL for relative URLs in the body (DESCRIBE response).
    ContentBase,
    "Content-Base"
);
url_header!(
    /// `Content-Location`: where the body's resource can be fetched.
    ContentLocation,
    "Content-Location"
);
url_header!(
    /// `Location`: redirect target (3xx and REDIRECT).
    Location,
    "Location"
);

/// `Content-Length: 1*19DIGIT`, body size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentLength(pub u64);

impl TypedHeader for ContentLength {
    const NAME: &'static str = "Content-Length";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(Self::NAME, value, "a body length")?;
        // Two lengths (repeated headers joined by ", ") are a framing ambiguity that
        // request smuggling exploits; refuse rather than pick one.
        if let Some(i) = span.text.find(',') {
            return Err(syntax::err(
                Self::NAME,
                span.offset.saturating_add(i),
                "multiple Content-Length values",
            ));
        }
        if span.text.len() > 19 {
            return Err(syntax::err(
                Self::NAME,
                span.offset,
                "body length has more than 19 digits",
            ));
        }
        syntax::parse_u64(Self::NAME, span, "body length").map(ContentLength)
    }

    fn to_value(&self) -> String {
        self.0.to_string()
    }
}

/// `Content-Type: type/subtype *(;parameter)`; type and subtype keep their spelling
/// but compare case-insensitively through [`ContentType::is`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentType {
    /// Top-level type, e.g. `application`.
    pub media_type: String,
    /// Subtype, e.g. `sdp`.
    pub subtype: String,
    /// Parameters such as `charset`, in order, values raw.
    pub params: Vec<ExtensionParam>,
}

impl ContentType {
    /// `type/subtype` without parameters.
    pub fn new(media_type: impl Into<String>, subtype: impl Into<String>) -> Self {
        Self {
            media_type: media_type.into(),
            subtype: subtype.into(),
            params: Vec::new(),
        }
    }

    /// `application/sdp`, the DESCRIBE body type.
    pub fn sdp() -> Self {
        Self::new("application", "sdp")
    }

    /// Case-insensitive match on type and subtype.
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type)
            && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// Value of parameter `name` (case-insensitive), quotes decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .and_then(ExtensionParam::unquoted_value)
    }
}

impl TypedHeader for ContentType {
    const NAME: &'static str = "Content-Type";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(Self::NAME, value, "a media type")?;
        let parts = syntax::split_list(
            Self::NAME,
            span,
            b';',
            syntax::MAX_PARAMS,
            Nesting::Quotes,
            "media type parameters",
        )?;
        let mut parts = parts.into_iter();
        let essence: Span<'_> = parts
            .next()
            .filter(|p| p.offset == span.offset)
            .ok_or_else(|| syntax::err(Self::NAME, span.offset, "missing media type"))?;
        let (ty, sub) = essence.split_once(b'/').ok_or_else(|| {
            syntax::err(
                Self::NAME,
                essence.end(),
                "expected type/subtype, e.g. application/sdp",
            )
        })?;
        let ty = syntax::expect_token(Self::NAME, ty.trim(), "media type")?;
        let sub = syntax::expect_token(Self::NAME, sub.trim(), "media subtype")?;
        let params = parts
            .map(|p| ExtensionParam::parse(Self::NAME, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ContentType {
            media_type: ty.to_owned(),
            subtype: sub.to_owned(),
            params,
        })
    }

    fn to_value(&self) -> String {
        let mut out = format!("{}/{}", self.media_type, self.subtype);
        for p in &self.params {
            p.write_to(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_headers() {
        let b = ContentBase::parse_value(" rtsp://192.168.1.10:554/live/ch0/ ").unwrap();
        assert_eq!(b.as_str(), "rtsp://192.168.1.10:554/live/ch0/");
        assert_eq!(ContentBase::parse_value(&b.to_value()), Ok(b));
        assert_eq!(Location::parse_value("").unwrap_err().offset, 0);
        let long = format!("rtsp://h/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(ContentLocation::parse_value(&long).unwrap_err().offset, 0);
        assert_eq!(
            Location::parse_value("rtsp://a\r\nX: y")
                .unwrap_err()
                .offset,
            8
        );
    }

    #[test]
    fn content_length() {
        assert_eq!(ContentLength::parse_value("460"), Ok(ContentLength(460)));
        assert_eq!(ContentLength::parse_value("0"), Ok(ContentLength(0)));
        assert_eq!(
            ContentLength::parse_value("9999999999999999999"),
            Ok(ContentLength(9_999_999_999_999_999_999))
        );
        assert_eq!(ContentLength::parse_value("12, 12").unwrap_err().offset, 2);
        assert_eq!(ContentLength::parse_value("+5").unwrap_err().offset, 0);
        assert_eq!(ContentLength::parse_value("5 5").unwrap_err().offset, 1);
        assert_eq!(
            ContentLength::parse_value("18446744073709551615")
                .unwrap_err()
                .offset,
            0
        );
        assert_eq!(ContentLength(32767).to_value(), "32767");
    }

    #[test]
    fn content_type() {
        let t = ContentType::parse_value("application/sdp").unwrap();
        assert_eq!(t, ContentType::sdp());
        let t = ContentType::parse_value("Text/Parameters ; charset = \"UTF-8\"").unwrap();
        assert!(t.is("text", "parameters"));
        assert_eq!(t.param("CHARSET").as_deref(), Some("UTF-8"));
        assert_eq!(t.to_value(), "Text/Parameters;charset=\"UTF-8\"");
        assert_eq!(ContentType::parse_value(&t.to_value()), Ok(t));
        let t = ContentType::parse_value("application/x-rtsp-tunnelled").unwrap();
        assert!(t.is("application", "x-rtsp-tunnelled"));
        assert_eq!(
            ContentType::parse_value("application").unwrap_err().offset,
            11
        );
        assert_eq!(
            ContentType::parse_value("application/").unwrap_err().offset,
            12
        );
        assert_eq!(ContentType::parse_value(";a=b").unwrap_err().offset, 0);
        assert_eq!(ContentType::parse_value("a/b;c d").unwrap_err().offset, 5);
    }
}
