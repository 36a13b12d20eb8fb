//! Entity tags and the conditional headers that use them: `ETag` (RFC 2326 via RFC 2616
//! §14.19), `MTag` (RFC 7826 §18.31, the message-body tag of DESCRIBE, GET_PARAMETER and
//! SETUP responses), `If-Match` (RFC 2326 §12.22, RFC 7826 §18.24) and `If-None-Match`
//! (RFC 7826 §18.26), with the strong and weak comparison functions of RFC 7826 §16.1.3 /
//! RFC 2616 §13.3.3.
//!
//! What it does not: decide the response; the cache engine answers 304 or 412.

use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

/// Longest opaque tag accepted.
const MAX_TAG_LEN: usize = 1024;

/// `[W/] opaque-tag`; `tag` is the decoded content of the quoted string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    /// Weak validator (`W/` prefix): equal tags mean semantically equivalent only.
    pub weak: bool,
    /// The opaque tag without quotes.
    pub tag: String,
}

impl EntityTag {
    /// A strong tag.
    pub fn strong(tag: impl Into<String>) -> Self {
        Self {
            weak: false,
            tag: tag.into(),
        }
    }

    /// A weak tag.
    pub fn weak(tag: impl Into<String>) -> Self {
        Self {
            weak: true,
            tag: tag.into(),
        }
    }

    /// Strong comparison: both strong and the same tag. Required for If-Match and for
    /// sub-range or resumed transfers.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison: same tag, weakness ignored (If-None-Match on DESCRIBE).
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.tag == other.tag
    }

    /// Parses one entity tag at `span`. Unquoted tokens are accepted because some
    /// servers forget the quotes; they are written back quoted.
    pub(crate) fn parse_in(header: &'static str, span: Span<'_>) -> Result<Self, HeaderError> {
        let span = span.trim();
        let (weak, rest) = match span.text.get(..2) {
            Some("W/" | "w/") => (true, span.from(2).unwrap_or(span).trim()),
            _ => (false, span),
        };
        if rest.is_empty() {
            return Err(syntax::err(header, rest.offset, "missing entity tag"));
        }
        let tag = if rest.text.starts_with('"') {
            syntax::unquote(header, rest)?
        } else {
            syntax::expect_token(header, rest, "entity tag")?.to_owned()
        };
        if tag.len() > MAX_TAG_LEN {
            return Err(syntax::err(
                header,
                rest.offset,
                format!("entity tag is longer than {MAX_TAG_LEN} bytes"),
            ));
        }
        Ok(Self { weak, tag })
    }

    /// The wire form, e.g. `W/"abc"`.
    pub fn to_wire(&self) -> String {
        let q = syntax::quote(&self.tag);
        if self.weak {
            format!("W/{q}")
        } else {
            q
        }
    }
}

/// `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTagList {
    /// `*`: any current entity.
    Any,
    /// Explicit tags, in order.
    Tags(Vec<EntityTag>),
}

impl EntityTagList {
    /// Whether the list matches the current entity (`None` = no entity exists) using
    /// strong comparison.
    pub fn matches_strong(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (EntityTagList::Any, Some(_)) => true,
            (EntityTagList::Tags(tags), Some(c)) => tags.iter().any(|t| t.strong_eq(c)),
        }
    }

    /// Whether the list matches the current entity using weak comparison.
    pub fn matches_weak(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (EntityTagList::Any, Some(_)) => true,
            (EntityTagList::Tags(tags), Some(c)) => tags.iter().any(|t| t.weak_eq(c)),
        }
    }

    fn parse_in(header: &'static str, value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(header, value, "'*' or entity tags")?;
        if span.text == "*" {
            return Ok(EntityTagList::Any);
        }
        let items = syntax::split_list(
            header,
            span,
            b',',
            syntax::MAX_LIST_ITEMS,
            Nesting::Quotes,
            "entity tags",
        )?;
        if items.is_empty() {
            return Err(syntax::err(
                header,
                span.offset,
                "expected '*' or entity tags",
            ));
        }
        items
            .into_iter()
            .map(|item| {
                if item.text == "*" {
                    Err(syntax::err(
                        header,
                        item.offset,
                        "'*' cannot be mixed with entity tags",
                    ))
                } else {
                    EntityTag::parse_in(header, item)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(EntityTagList::Tags)
    }

    fn to_wire(&self) -> String {
        match self {
            EntityTagList::Any => "*".to_owned(),
            EntityTagList::Tags(tags) => tags
                .iter()
                .map(EntityTag::to_wire)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

macro_rules! single_tag_header {
    ($(#[$doc:meta])* $name:ident, $wire:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(pub EntityTag);

        impl TypedHeader for $name {
            const NAME: &'static str = $wire;

            fn parse_value(value: &str) -> Result<Self, HeaderError> {
                let span = syntax::start_nonempty(Self::NAME, value, "an entity tag")?;
                EntityTag::parse_in(Self::NAME, span).map($name)
            }

            fn to_value(&self) -> String {
                self.0.to_wire()
            }
        }
    };
}

single_tag_header!(
    /// `ETag`: entity tag of a response body (RTSP 1.0, by reference to HTTP/1.1).
    ETag,
    "ETag"
);
single_tag_header!(
    /// `MTag` (RFC 7826 §18.31): validator of both the description and the media stream.
    MTag,
    "MTag"
);

/// `If-Match`: perform the request only if the current entity matches (strong
/// comparison); otherwise 412.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatch(pub EntityTagList);

impl IfMatch {
    /// Whether the condition holds for the current entity.
    pub fn is_satisfied_by(&self, current: Option<&EntityTag>) -> bool {
        self.0.matches_strong(current)
    }
}

impl TypedHeader for IfMatch {
    const NAME: &'static str = "If-Match";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        EntityTagList::parse_in(Self::NAME, value).map(IfMatch)
    }

    fn to_value(&self) -> String {
        self.0.to_wire()
    }
}

/// `If-None-Match`: when the current entity matches (weak comparison), DESCRIBE gets
/// 304 and other methods 412.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfNoneMatch(pub EntityTagList);

impl IfNoneMatch {
    /// Whether the current entity matches one of the tags, i.e. the request should be
    /// answered "not modified" / "precondition failed".
    pub fn matches(&self, current: Option<&EntityTag>) -> bool {
        self.0.matches_weak(current)
    }
}

impl TypedHeader for IfNoneMatch {
    const NAME: &'static str = "If-None-Match";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        EntityTagList::parse_in(Self::NAME, value).map(IfNoneMatch)
    }

    fn to_value(&self) -> String {
        self.0.to_wire()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_tags_and_lists() {
        assert_eq!(
            MTag::parse_value("\"2a76d4\""),
            Ok(MTag(EntityTag::strong("2a76d4")))
        );
        assert_eq!(
            ETag::parse_value("W/\"xyzzy\""),
            Ok(ETag(EntityTag::weak("xyzzy")))
        );
        // unquoted, as some servers send it
        assert_eq!(
            ETag::parse_value("abc123"),
            Ok(ETag(EntityTag::strong("abc123")))
        );
        assert_eq!(ETag(EntityTag::strong("abc123")).to_value(), "\"abc123\"");
        let m = IfNoneMatch::parse_value("\"a,b\" , W/\"c\"").unwrap();
        assert_eq!(
            m,
            IfNoneMatch(EntityTagList::Tags(vec![
                EntityTag::strong("a,b"),
                EntityTag::weak("c")
            ]))
        );
        assert_eq!(m.to_value(), "\"a,b\", W/\"c\"");
        assert_eq!(IfMatch::parse_value(" * "), Ok(IfMatch(EntityTagList::Any)));
    }

    #[test]
    fn comparison_functions_follow_the_rfc_table() {
        // RFC 7232 §2.3.2 table.
        let w1 = EntityTag::weak("1");
        let w2 = EntityTag::weak("2");
        let s1 = EntityTag::strong("1");
        assert!(!w1.strong_eq(&w1));
        assert!(w1.weak_eq(&w1));
        assert!(!w1.weak_eq(&w2));
        assert!(!w1.strong_eq(&s1));
        assert!(w1.weak_eq(&s1));
        assert!(s1.strong_eq(&s1));

        let any = IfMatch(EntityTagList::Any);
        assert!(any.is_satisfied_by(Some(&w1)));
        assert!(!any.is_satisfied_by(None));
        let im = IfMatch::parse_value("W/\"1\"").unwrap();
        assert!(!im.is_satisfied_by(Some(&s1)));
        let inm = IfNoneMatch::parse_value("W/\"1\"").unwrap();
        assert!(inm.matches(Some(&s1)));
        assert!(!inm.matches(Some(&w2)));
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(ETag::parse_value("W/").unwrap_err().offset, 2);
        assert_eq!(ETag::parse_value("\"abc").unwrap_err().offset, 0);
        assert_eq!(ETag::parse_value("\"a\"b").unwrap_err().offset, 3);
        assert_eq!(ETag::parse_value("a b").unwrap_err().offset, 1);
        assert_eq!(IfMatch::parse_value("\"a\", *").unwrap_err().offset, 5);
        assert_eq!(IfNoneMatch::parse_value("").unwrap_err().offset, 0);
        let e = IfNoneMatch::parse_value("\"a\", \"b").unwrap_err();
        assert_eq!((e.offset, e.header), (5, "If-None-Match"));
    }

    proptest! {
        #[test]
        fn round_trips(tags in proptest::collection::vec((any::<bool>(), "[ -~]{0,12}"), 1..5)) {
            let list = EntityTagList::Tags(
                tags.into_iter().map(|(weak, tag)| EntityTag { weak, tag }).collect(),
            );
            let h = IfNoneMatch(list);
            prop_assert_eq!(IfNoneMatch::parse_value(&h.to_value()), Ok(h));
        }
    }
}
