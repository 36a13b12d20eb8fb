//! `Cache-Control` (RFC 2326 §12.8, RFC 7826 §18.11 and the §20.2.3 ABNF): the
//! directive list governing caching of the media stream (SETUP) and of DESCRIBE,
//! GET_PARAMETER and SET_PARAMETER responses.
//!
//! What it does: parse every directive the two RFCs define, keep extensions (and
//! HTTP-style forms such as `no-cache="x"`) verbatim and in order, and answer the
//! questions a cache asks. What it does not: decide freshness (the cache engine combines
//! this with `Expires`, `Last-Modified` and the validators). Note `no-store` is not an
//! RTSP directive; it is kept as an extension.

use super::param::ExtensionParam;
use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

/// One cache directive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheDirective {
    /// `no-cache`: the stream or response must not be cached anywhere.
    NoCache,
    /// `public`: any cache may store it.
    Public,
    /// `private`: a shared cache (us) must not store it.
    Private,
    /// `no-transform`: the encoding must not be changed.
    NoTransform,
    /// `only-if-cached`: serve from cache or answer 504.
    OnlyIfCached,
    /// `must-revalidate`: never serve stale without revalidating.
    MustRevalidate,
    /// `proxy-revalidate`: like must-revalidate, for shared caches only.
    ProxyRevalidate,
    /// `max-age=delta-seconds`.
    MaxAge(u64),
    /// `max-stale[=delta-seconds]`: the client accepts stale content (by at most the
    /// given age, or any age without a value).
    MaxStale(Option<u64>),
    /// `min-fresh=delta-seconds`.
    MinFresh(u64),
    /// `token[=token|quoted-string]`, kept as received.
    Extension(ExtensionParam),
}

/// `Cache-Control: 1#cache-directive`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheControl(pub Vec<CacheDirective>);

impl CacheControl {
    /// Whether `no-cache` is present (also in the HTTP form `no-cache="field"`, which
    /// a cache must treat at least as strictly).
    pub fn no_cache(&self) -> bool {
        self.0.iter().any(|d| match d {
            CacheDirective::NoCache => true,
            CacheDirective::Extension(e) => e.name.eq_ignore_ascii_case("no-cache"),
            _ => false,
        })
    }

    /// Whether `private` is present (in either form).
    pub fn is_private(&self) -> bool {
        self.0.iter().any(|d| match d {
            CacheDirective::Private => true,
            CacheDirective::Extension(e) => e.name.eq_ignore_ascii_case("private"),
            _ => false,
        })
    }

    /// Whether `public` is present.
    pub fn is_public(&self) -> bool {
        self.0.contains(&CacheDirective::Public)
    }

    /// Whether a shared cache may store the stream at all: not `no-cache`, not
    /// `private`.
    pub fn allows_shared_caching(&self) -> bool {
        !self.no_cache() && !self.is_private()
    }

    /// Whether stale content must be revalidated (`must-revalidate` or, for us as a
    /// shared cache, `proxy-revalidate`).
    pub fn requires_revalidation(&self) -> bool {
        self.0.iter().any(|d| {
            matches!(
                d,
                CacheDirective::MustRevalidate | CacheDirective::ProxyRevalidate
            )
        })
    }

    /// Whether `no-transform` is present.
    pub fn no_transform(&self) -> bool {
        self.0.contains(&CacheDirective::NoTransform)
    }

    /// Whether `only-if-cached` is present.
    pub fn only_if_cached(&self) -> bool {
        self.0.contains(&CacheDirective::OnlyIfCached)
    }

    /// The smallest `max-age` given (the strictest reading of duplicates).
    pub fn max_age(&self) -> Option<u64> {
        self.0
            .iter()
            .filter_map(|d| match d {
                CacheDirective::MaxAge(s) => Some(*s),
                _ => None,
            })
            .min()
    }

    /// `max-stale`: `None` if absent, `Some(None)` for "any staleness".
    pub fn max_stale(&self) -> Option<Option<u64>> {
        self.0.iter().find_map(|d| match d {
            CacheDirective::MaxStale(s) => Some(*s),
            _ => None,
        })
    }

    /// `min-fresh`, if present.
    pub fn min_fresh(&self) -> Option<u64> {
        self.0.iter().find_map(|d| match d {
            CacheDirective::MinFresh(s) => Some(*s),
            _ => None,
        })
    }
}

/// Reads a delta-seconds value; tolerates quotes (`max-age="60"`) that HTTP-minded
/// servers add.
fn delta_seconds(
    header: &'static str,
    name: Span<'_>,
    value: Option<Span<'_>>,
) -> Result<u64, HeaderError> {
    let v = value.ok_or_else(|| {
        syntax::err(
            header,
            name.end(),
            format!(
                "{} needs a value in seconds",
                name.text.to_ascii_lowercase()
            ),
        )
    })?;
    let v = match v.text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(_) => v.slice(1, v.text.len().saturating_sub(1)).unwrap_or(v),
        None => v,
    };
    syntax::parse_uint(header, v, "delta-seconds")
}

fn parse_directive(header: &'static str, item: Span<'_>) -> Result<CacheDirective, HeaderError> {
    let (name, value) = syntax::split_param(item);
    let flag = |d: CacheDirective| -> Result<CacheDirective, HeaderError> {
        // A flag with a value (e.g. HTTP's `private="Set-Cookie"`) is kept verbatim as
        // an extension rather than rejected or stripped of its value.
        match value {
            None => Ok(d),
            Some(_) => ExtensionParam::parse(header, item).map(CacheDirective::Extension),
        }
    };
    let n = name.text;
    let is = |k: &str| n.eq_ignore_ascii_case(k);
    if is("no-cache") {
        flag(CacheDirective::NoCache)
    } else if is("public") {
        flag(CacheDirective::Public)
    } else if is("private") {
        flag(CacheDirective::Private)
    } else if is("no-transform") {
        flag(CacheDirective::NoTransform)
    } else if is("only-if-cached") {
        flag(CacheDirective::OnlyIfCached)
    } else if is("must-revalidate") {
        flag(CacheDirective::MustRevalidate)
    } else if is("proxy-revalidate") {
        flag(CacheDirective::ProxyRevalidate)
    } else if is("max-age") {
        delta_seconds(header, name, value).map(CacheDirective::MaxAge)
    } else if is("min-fresh") {
        delta_seconds(header, name, value).map(CacheDirective::MinFresh)
    } else if is("max-stale") {
        match value {
            None => Ok(CacheDirective::MaxStale(None)),
            Some(_) => {
                delta_seconds(header, name, value).map(|s| CacheDirective::MaxStale(Some(s)))
            }
        }
    } else {
        ExtensionParam::parse(header, item).map(CacheDirective::Extension)
    }
}

impl TypedHeader for CacheControl {
    const NAME: &'static str = "Cache-Control";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(Self::NAME, value, "a cache directive")?;
        let items = syntax::split_list(
            Self::NAME,
            span,
            b',',
            syntax::MAX_LIST_ITEMS,
            Nesting::Quotes,
            "cache directives",
        )?;
        if items.is_empty() {
            return Err(syntax::err(
                Self::NAME,
                span.offset,
                "expected a cache directive",
            ));
        }
        items
            .into_iter()
            .map(|item| parse_directive(Self::NAME, item))
            .collect::<Result<Vec<_>, _>>()
            .map(CacheControl)
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match d {
                CacheDirective::NoCache => out.push_str("no-cache"),
                CacheDirective::Public => out.push_str("public"),
                CacheDirective::Private => out.push_str("private"),
                CacheDirective::NoTransform => out.push_str("no-transform"),
                CacheDirective::OnlyIfCached => out.push_str("only-if-cached"),
                CacheDirective::MustRevalidate => out.push_str("must-revalidate"),
                CacheDirective::ProxyRevalidate => out.push_str("proxy-revalidate"),
                CacheDirective::MaxAge(s) => out.push_str(&format!("max-age={s}")),
                CacheDirective::MaxStale(None) => out.push_str("max-stale"),
                CacheDirective::MaxStale(Some(s)) => out.push_str(&format!("max-stale={s}")),
                CacheDirective::MinFresh(s) => out.push_str(&format!("min-fresh={s}")),
                CacheDirective::Extension(e) => e.write_bare(&mut out),
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    fn extension() -> impl Strategy<Value = ExtensionParam> {
        (
            "x-[a-z0-9]{1,8}",
            proptest::option::of(prop_oneof![
                "[a-zA-Z0-9.]{1,8}",
                "[a-z ,;=]{0,8}".prop_map(|s| syntax::quote(&s)),
            ]),
        )
            .prop_map(|(n, v)| ExtensionParam::new(n, v))
    }

    pub(crate) fn directive() -> impl Strategy<Value = CacheDirective> {
        prop_oneof![
            Just(CacheDirective::NoCache),
            Just(CacheDirective::Public),
            Just(CacheDirective::Private),
            Just(CacheDirective::NoTransform),
            Just(CacheDirective::OnlyIfCached),
            Just(CacheDirective::MustRevalidate),
            Just(CacheDirective::ProxyRevalidate),
            any::<u64>().prop_map(CacheDirective::MaxAge),
            proptest::option::of(any::<u64>()).prop_map(CacheDirective::MaxStale),
            any::<u64>().prop_map(CacheDirective::MinFresh),
            extension().prop_map(CacheDirective::Extension),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc_and_real_world_samples() {
        // QuickTime tunnel and live555 GET/POST.
        assert_eq!(
            CacheControl::parse_value("no-cache"),
            Ok(CacheControl(vec![CacheDirective::NoCache]))
        );
        let cc = CacheControl::parse_value(
            "Public , MAX-AGE = 3600,must-revalidate, max-stale, min-fresh=5, x-ttl=\"a, b\"",
        )
        .unwrap();
        assert_eq!(
            cc.0,
            vec![
                CacheDirective::Public,
                CacheDirective::MaxAge(3600),
                CacheDirective::MustRevalidate,
                CacheDirective::MaxStale(None),
                CacheDirective::MinFresh(5),
                CacheDirective::Extension(ExtensionParam::new("x-ttl", Some("\"a, b\""))),
            ]
        );
        assert_eq!(
            cc.to_value(),
            "public, max-age=3600, must-revalidate, max-stale, min-fresh=5, x-ttl=\"a, b\""
        );
        assert!(cc.allows_shared_caching());
        assert!(cc.requires_revalidation());
        assert_eq!(cc.max_age(), Some(3600));
        assert_eq!(cc.max_stale(), Some(None));
        assert_eq!(cc.min_fresh(), Some(5));
    }

    #[test]
    fn http_style_forms_are_kept_and_understood() {
        let cc =
            CacheControl::parse_value("private=\"Session\", max-age=\"60\", no-store").unwrap();
        assert!(cc.is_private());
        assert!(!cc.allows_shared_caching());
        assert_eq!(cc.max_age(), Some(60));
        assert_eq!(
            cc.0[2],
            CacheDirective::Extension(ExtensionParam::new("no-store", None::<String>))
        );
        assert_eq!(cc.to_value(), "private=\"Session\", max-age=60, no-store");
    }

    #[test]
    fn errors_carry_offsets() {
        let e = CacheControl::parse_value("public, max-age").unwrap_err();
        assert_eq!((e.offset, e.header), (15, "Cache-Control"));
        assert_eq!(
            CacheControl::parse_value("max-age=-1").unwrap_err().offset,
            8
        );
        assert_eq!(
            CacheControl::parse_value("max-age=99999999999999999999")
                .unwrap_err()
                .offset,
            8
        );
        assert_eq!(CacheControl::parse_value("x=\"open").unwrap_err().offset, 2);
        assert_eq!(CacheControl::parse_value(" , ").unwrap_err().offset, 1);
        assert_eq!(CacheControl::parse_value("").unwrap_err().offset, 0);
        assert_eq!(CacheControl::parse_value("a b").unwrap_err().offset, 1);
        let many = vec!["public"; 65].join(",");
        assert_eq!(CacheControl::parse_value(&many).unwrap_err().offset, 64 * 7);
    }

    proptest! {
        #[test]
        fn round_trips(ds in proptest::collection::vec(strategy::directive(), 1..10)) {
            let cc = CacheControl(ds);
            prop_assert_eq!(CacheControl::parse_value(&cc.to_value()), Ok(cc));
        }
    }
}
