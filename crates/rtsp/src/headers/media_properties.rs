//! `Media-Properties` (RFC 7826 §18.29): what a server says about the content of a
//! session — random access, whether it changes, how long it is retained and which
//! scales it supports. Sent in SETUP responses and PLAY_NOTIFY.
//!
//! The proxy reads it before any heuristic (see the rtsp-proxy reference, §d.4):
//! `Immutable` with `Unlimited` marks a cacheable on-demand object; `Time-Progressing`
//! marks live content to split, not cache; `Dynamic` content needs revalidation. These
//! readings are interpretations, not RFC text. Unknown properties "MUST be ignored"; we
//! keep them so they are forwarded. What it does not: decide caching on its own.

use super::date::UtcTime;
use super::decimal::Decimal;
use super::param::ExtensionParam;
use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

const H: &str = "Media-Properties";

/// One supported scale, or a continuous range `lo:hi`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScaleEntry {
    /// A single supported scale.
    Value(Decimal),
    /// Any scale between the two.
    Range(Decimal, Decimal),
}

/// One media property.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaProperty {
    /// `Random-Access[=max seconds between random access points]`.
    RandomAccess(Option<Decimal>),
    /// `Beginning-Only`: playback may only start at the beginning.
    BeginningOnly,
    /// `No-Seeking`: no seeking at all.
    NoSeeking,
    /// `Immutable`: content does not change during the session.
    Immutable,
    /// `Dynamic`: content may change by external triggers.
    Dynamic,
    /// `Time-Progressing`: available media progresses with wallclock time (live).
    TimeProgressing,
    /// `Unlimited`: retained for the whole session.
    Unlimited,
    /// `Time-Limited=utc-time`: retained until this time.
    TimeLimited(UtcTime),
    /// `Time-Duration=seconds`: sliding retention window (`0.0` = nothing retained).
    TimeDuration(Decimal),
    /// `Scales="..."`: supported scale values and ranges.
    Scales(Vec<ScaleEntry>),
    /// Any other property, verbatim.
    Extension(ExtensionParam),
}

/// `Media-Properties: [media-prop-list]` (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaProperties(pub Vec<MediaProperty>);

impl MediaProperties {
    fn has(&self, p: &MediaProperty) -> bool {
        self.0.contains(p)
    }

    /// Whether this is an on-demand object a cache may store and replay: `Immutable`
    /// and `Unlimited`, and neither `Time-Progressing` nor `Dynamic`.
    pub fn is_cacheable_vod(&self) -> bool {
        self.has(&MediaProperty::Immutable)
            && self.has(&MediaProperty::Unlimited)
            && !self.has(&MediaProperty::TimeProgressing)
            && !self.has(&MediaProperty::Dynamic)
    }

    /// Whether the content is live (`Time-Progressing`): split it, do not cache it.
    /// A time-shift window (`Time-Duration` > 0) is still live.
    pub fn is_live(&self) -> bool {
        self.has(&MediaProperty::TimeProgressing)
    }

    /// Whether the content may change (`Dynamic`) and so needs revalidation.
    pub fn needs_revalidation(&self) -> bool {
        self.has(&MediaProperty::Dynamic)
    }

    /// Whether seeking is possible (not `No-Seeking`, not `Beginning-Only`).
    pub fn allows_seeking(&self) -> bool {
        !self.has(&MediaProperty::NoSeeking) && !self.has(&MediaProperty::BeginningOnly)
    }

    /// The `Time-Duration` window, if stated.
    pub fn time_duration(&self) -> Option<&Decimal> {
        self.0.iter().find_map(|p| match p {
            MediaProperty::TimeDuration(d) => Some(d),
            _ => None,
        })
    }

    /// The supported scales, if stated.
    pub fn scales(&self) -> Option<&[ScaleEntry]> {
        self.0.iter().find_map(|p| match p {
            MediaProperty::Scales(s) => Some(s.as_slice()),
            _ => None,
        })
    }
}

fn parse_scales(value: Span<'_>) -> Result<Vec<ScaleEntry>, HeaderError> {
    let inner = value
        .text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|_| value.text.len() >= 2)
        .and_then(|_| value.slice(1, value.text.len().saturating_sub(1)))
        .ok_or_else(|| {
            syntax::err(
                H,
                value.offset,
                "Scales needs a quoted list, e.g. Scales=\"1, 2\"",
            )
        })?;
    let items = syntax::split_list(
        H,
        inner,
        b',',
        syntax::MAX_LIST_ITEMS,
        Nesting::Quotes,
        "scales",
    )?;
    if items.is_empty() {
        return Err(syntax::err(H, inner.offset, "Scales list is empty"));
    }
    items
        .into_iter()
        .map(|item| match item.split_once(b':') {
            Some((lo, hi)) => Ok(ScaleEntry::Range(
                Decimal::parse_in(H, lo.trim(), true, "scale")?,
                Decimal::parse_in(H, hi.trim(), true, "scale")?,
            )),
            None => Decimal::parse_in(H, item, true, "scale").map(ScaleEntry::Value),
        })
        .collect()
}

fn parse_property(item: Span<'_>) -> Result<MediaProperty, HeaderError> {
    let (name, value) = syntax::split_param(item);
    let is = |k: &str| name.text.eq_ignore_ascii_case(k);
    let need =
        || value.ok_or_else(|| syntax::err(H, name.end(), format!("{} needs a value", name.text)));
    let flag = |p: MediaProperty| match value {
        None => Ok(p),
        Some(v) => Err(syntax::err(
            H,
            v.offset,
            format!("{} takes no value", name.text),
        )),
    };
    if is("Random-Access") {
        value
            .map(|v| Decimal::parse_in(H, v, false, "Random-Access interval"))
            .transpose()
            .map(MediaProperty::RandomAccess)
    } else if is("Beginning-Only") {
        flag(MediaProperty::BeginningOnly)
    } else if is("No-Seeking") {
        flag(MediaProperty::NoSeeking)
    } else if is("Immutable") {
        flag(MediaProperty::Immutable)
    } else if is("Dynamic") {
        flag(MediaProperty::Dynamic)
    } else if is("Time-Progressing") {
        flag(MediaProperty::TimeProgressing)
    } else if is("Unlimited") {
        flag(MediaProperty::Unlimited)
    } else if is("Time-Limited") {
        UtcTime::parse_in(H, need()?).map(MediaProperty::TimeLimited)
    } else if is("Time-Duration") {
        Decimal::parse_in(H, need()?, false, "Time-Duration").map(MediaProperty::TimeDuration)
    } else if is("Scales") {
        parse_scales(need()?).map(MediaProperty::Scales)
    } else {
        ExtensionParam::parse(H, item).map(MediaProperty::Extension)
    }
}

impl TypedHeader for MediaProperties {
    const NAME: &'static str = H;

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start(H, value)?;
        let items = syntax::split_list(
            H,
            span,
            b',',
            syntax::MAX_LIST_ITEMS,
            Nesting::Quotes,
            "media properties",
        )?;
        items
            .into_iter()
            .map(parse_property)
            .collect::<Result<Vec<_>, _>>()
            .map(MediaProperties)
    }

    fn to_value(&self) -> String {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|p| match p {
                MediaProperty::RandomAccess(None) => "Random-Access".to_owned(),
                MediaProperty::RandomAccess(Some(d)) => format!("Random-Access={d}"),
                MediaProperty::BeginningOnly => "Beginning-Only".to_owned(),
                MediaProperty::NoSeeking => "No-Seeking".to_owned(),
                MediaProperty::Immutable => "Immutable".to_owned(),
                MediaProperty::Dynamic => "Dynamic".to_owned(),
                MediaProperty::TimeProgressing => "Time-Progressing".to_owned(),
                MediaProperty::Unlimited => "Unlimited".to_owned(),
                MediaProperty::TimeLimited(t) => format!("Time-Limited={t}"),
                MediaProperty::TimeDuration(d) => format!("Time-Duration={d}"),
                MediaProperty::Scales(s) => {
                    let list: Vec<String> = s
                        .iter()
                        .map(|e| match e {
                            ScaleEntry::Value(v) => v.to_string(),
                            ScaleEntry::Range(lo, hi) => format!("{lo}:{hi}"),
                        })
                        .collect();
                    format!("Scales=\"{}\"", list.join(", "))
                }
                MediaProperty::Extension(e) => {
                    let mut s = String::new();
                    e.write_bare(&mut s);
                    s
                }
            })
            .collect();
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::date::strategy::utc_time;
    use crate::headers::decimal::strategy::decimal;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn rfc7826_on_demand_example() {
        let v = "Random-Access=2.5, Unlimited, Immutable, Scales=\"-20, -10, -4, 0.5:1.5, 4, 8, 10, 15, 20\"";
        let mp = MediaProperties::parse_value(v).unwrap();
        assert_eq!(mp.0.len(), 4);
        assert_eq!(mp.0[0], MediaProperty::RandomAccess(Some(d("2.5"))));
        let scales = mp.scales().unwrap();
        assert_eq!(scales.len(), 9);
        assert_eq!(scales[0], ScaleEntry::Value(d("-20")));
        assert_eq!(scales[3], ScaleEntry::Range(d("0.5"), d("1.5")));
        assert!(mp.is_cacheable_vod());
        assert!(!mp.is_live());
        assert!(mp.allows_seeking());
        assert_eq!(mp.to_value(), v);
    }

    #[test]
    fn rfc7826_live_example_and_extensions() {
        let mp = MediaProperties::parse_value("No-Seeking, Time-Progressing, Time-Duration=0.0")
            .unwrap();
        assert!(mp.is_live());
        assert!(!mp.is_cacheable_vod());
        assert!(!mp.allows_seeking());
        assert_eq!(mp.time_duration(), Some(&d("0.0")));
        let mp = MediaProperties::parse_value(
            "dynamic, time-limited=20081128T165900Z, x-vendor=\"a, b\", Random-Access",
        )
        .unwrap();
        assert!(mp.needs_revalidation());
        assert_eq!(
            mp.0[2],
            MediaProperty::Extension(ExtensionParam::new("x-vendor", Some("\"a, b\"")))
        );
        assert_eq!(
            mp.to_value(),
            "Dynamic, Time-Limited=20081128T165900Z, x-vendor=\"a, b\", Random-Access"
        );
        assert_eq!(
            MediaProperties::parse_value(""),
            Ok(MediaProperties(vec![]))
        );
    }

    #[test]
    fn errors_carry_offsets() {
        let cases: [(&str, usize); 7] = [
            ("Immutable=1", 10),
            ("Time-Duration", 13),
            ("Time-Duration=-1", 14),
            ("Scales=1", 7),
            ("Scales=\"1, x\"", 11),
            ("Scales=\"\"", 8),
            ("Time-Limited=2008", 17),
        ];
        for (v, offset) in cases {
            let e = MediaProperties::parse_value(v).unwrap_err();
            assert_eq!((e.offset, e.header), (offset, H), "{v}: {e}");
        }
    }

    fn property() -> impl Strategy<Value = MediaProperty> {
        let scale = prop_oneof![
            decimal(true).prop_map(ScaleEntry::Value),
            (decimal(true), decimal(true)).prop_map(|(a, b)| ScaleEntry::Range(a, b)),
        ];
        prop_oneof![
            proptest::option::of(decimal(false)).prop_map(MediaProperty::RandomAccess),
            Just(MediaProperty::BeginningOnly),
            Just(MediaProperty::NoSeeking),
            Just(MediaProperty::Immutable),
            Just(MediaProperty::Dynamic),
            Just(MediaProperty::TimeProgressing),
            Just(MediaProperty::Unlimited),
            utc_time().prop_map(MediaProperty::TimeLimited),
            decimal(false).prop_map(MediaProperty::TimeDuration),
            proptest::collection::vec(scale, 1..5).prop_map(MediaProperty::Scales),
            ("x-[a-z]{1,5}", proptest::option::of("[a-z0-9.]{1,5}"))
                .prop_map(|(n, v)| MediaProperty::Extension(ExtensionParam::new(n, v))),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(props in proptest::collection::vec(property(), 0..6)) {
            let mp = MediaProperties(props);
            prop_assert_eq!(MediaProperties::parse_value(&mp.to_value()), Ok(mp));
        }
    }
}
