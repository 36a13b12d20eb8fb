//! `Range` (RFC 2326 §12.29 with the time formats of §3.5-§3.7; RFC 7826 §18.40 and
//! §4.4): the play interval in normal play time (`npt`), SMPTE time code (`smpte`,
//! `smpte-30-drop`, `smpte-25`) or absolute time (`clock`), open at either end, with the
//! optional `;time=` at which the request takes effect.
//!
//! Exactness: npt seconds are [`Decimal`]s and fractions are kept as their digits, so
//! `npt=12.500-` is forwarded as written. Hour/minute forms are stored as numbers and
//! written zero-padded (`1:2:3` comes back as `01:02:03`, the same instant).
//!
//! What it does not: lists of ranges. RFC 2326's grammar allows `1#ranges-specifier`
//! but no peer sends more than one and RFC 7826 dropped it; a list is rejected with an
//! error at the comma. Unknown range formats are kept verbatim.

use super::accept_ranges::RangeUnit;
use super::date::UtcTime;
use super::decimal::Decimal;
use super::param::ExtensionParam;
use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

const H: &str = "Range";
/// Most fraction digits kept on an `hh:mm:ss.frac` npt time.
const MAX_FRACTION_DIGITS: usize = 18;

/// An interval with an optional start and end; at least one is present on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeRange<T> {
    /// Inclusive start; `None` for `-end` ranges.
    pub start: Option<T>,
    /// Exclusive end; `None` for open `start-` ranges.
    pub end: Option<T>,
}

/// A normal-play-time instant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NptTime {
    /// `now`: the live point.
    Now,
    /// `npt-sec`, e.g. `12.5`, kept textually.
    Seconds(Decimal),
    /// `npt-hhmmss`, e.g. `1:02:03.5`.
    Hms {
        /// Hours (any size).
        hours: u64,
        /// Minutes 0-59.
        minutes: u8,
        /// Seconds 0-59.
        seconds: u8,
        /// Digits after `.`; `Some("")` for a trailing dot, which the grammar allows.
        fraction: Option<String>,
    },
}

impl NptTime {
    /// Seconds as a decimal, e.g. `NptTime::seconds("12.5")`; `None` if not a
    /// non-negative decimal.
    pub fn seconds(s: &str) -> Option<Self> {
        let d = Decimal::parse(s)?;
        (!s.starts_with('-')).then_some(NptTime::Seconds(d))
    }

    /// Position in milliseconds (fraction truncated); `None` for `now` or on overflow.
    pub fn to_millis(&self) -> Option<u64> {
        match self {
            NptTime::Now => None,
            NptTime::Seconds(d) => u64::try_from(d.to_millis()?).ok(),
            NptTime::Hms {
                hours,
                minutes,
                seconds,
                fraction,
            } => {
                let secs = hours
                    .checked_mul(3600)?
                    .checked_add(u64::from(*minutes) * 60 + u64::from(*seconds))?;
                let mut ms = secs.checked_mul(1000)?;
                let mut scale = 100u64;
                for b in fraction.as_deref().unwrap_or("").bytes().take(3) {
                    ms = ms.checked_add(u64::from(b.checked_sub(b'0')?) * scale)?;
                    scale /= 10;
                }
                Some(ms)
            }
        }
    }

    fn parse_in(span: Span<'_>) -> Result<Self, HeaderError> {
        if span.text.eq_ignore_ascii_case("now") {
            return Ok(NptTime::Now);
        }
        let Some((h, rest)) = span.split_once(b':') else {
            return Decimal::parse_in(H, span, false, "npt time").map(NptTime::Seconds);
        };
        let (m, s) = rest
            .split_once(b':')
            .ok_or_else(|| syntax::err(H, rest.offset, "npt time must be seconds or h:mm:ss"))?;
        let hours = syntax::parse_u64(H, h, "npt hours")?;
        let minutes = sexagesimal(m, "npt minutes")?;
        let (s, fraction) = match s.split_once(b'.') {
            Some((s, f)) => {
                if let Some(at) = f.first_bad(|b| b.is_ascii_digit()) {
                    return Err(syntax::err(H, at, "npt fraction must be digits"));
                }
                if f.text.len() > MAX_FRACTION_DIGITS {
                    return Err(syntax::err(
                        H,
                        f.offset,
                        "npt fraction has more than 18 digits",
                    ));
                }
                (s, Some(f.text.to_owned()))
            }
            None => (s, None),
        };
        let seconds = sexagesimal(s, "npt seconds")?;
        Ok(NptTime::Hms {
            hours,
            minutes,
            seconds,
            fraction,
        })
    }

    fn write_to(&self, out: &mut String) {
        match self {
            NptTime::Now => out.push_str("now"),
            NptTime::Seconds(d) => out.push_str(d.as_str()),
            NptTime::Hms {
                hours,
                minutes,
                seconds,
                fraction,
            } => {
                out.push_str(&format!("{hours:02}:{minutes:02}:{seconds:02}"));
                if let Some(f) = fraction {
                    out.push('.');
                    out.push_str(f);
                }
            }
        }
    }
}

/// `1*2DIGIT` in 0..=59.
fn sexagesimal(span: Span<'_>, what: &str) -> Result<u8, HeaderError> {
    two_digits(span, 59, what)
}

/// `1*2DIGIT` in 0..=max.
fn two_digits(span: Span<'_>, max: u8, what: &str) -> Result<u8, HeaderError> {
    if span.text.len() > 2 {
        return Err(syntax::err(
            H,
            span.offset,
            format!("{what} must be 1 or 2 digits"),
        ));
    }
    let v: u8 = syntax::parse_uint(H, span, what)?;
    if v > max {
        return Err(syntax::err(
            H,
            span.offset,
            format!("{what} {v} is out of range (0-{max})"),
        ));
    }
    Ok(v)
}

/// SMPTE frame rate variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmpteKind {
    /// `smpte`: 30 fps.
    Smpte30,
    /// `smpte-30-drop`: 29.97 fps drop frame.
    Smpte30Drop,
    /// `smpte-25`: 25 fps.
    Smpte25,
}

impl SmpteKind {
    fn as_str(self) -> &'static str {
        match self {
            SmpteKind::Smpte30 => "smpte",
            SmpteKind::Smpte30Drop => "smpte-30-drop",
            SmpteKind::Smpte25 => "smpte-25",
        }
    }
}

/// SMPTE time code `hh:mm:ss[:frames][.subframes]` relative to the clip start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmpteTime {
    /// Hours 0-99.
    pub hours: u8,
    /// Minutes 0-59.
    pub minutes: u8,
    /// Seconds 0-59.
    pub seconds: u8,
    /// Frames 0-29.
    pub frames: Option<u8>,
    /// Hundredths of a frame 0-99.
    pub subframes: Option<u8>,
}

impl SmpteTime {
    fn parse_in(span: Span<'_>) -> Result<Self, HeaderError> {
        let (main, subframes) = match span.split_once(b'.') {
            Some((m, s)) => (m, Some(two_digits(s, 99, "smpte subframes")?)),
            None => (span, None),
        };
        let shape = || {
            syntax::err(
                H,
                main.offset,
                "smpte time must be hh:mm:ss[:frames][.subframes]",
            )
        };
        let mut parts = Vec::with_capacity(4);
        let mut rest = main;
        while let Some((field, tail)) = rest.split_once(b':') {
            if parts.len() >= 3 {
                return Err(shape());
            }
            parts.push(field.trim());
            rest = tail;
        }
        parts.push(rest.trim());
        let field = |i: usize| parts.get(i).copied().ok_or_else(shape);
        Ok(SmpteTime {
            hours: two_digits(field(0)?, 99, "smpte hours")?,
            minutes: sexagesimal(field(1)?, "smpte minutes")?,
            seconds: sexagesimal(field(2)?, "smpte seconds")?,
            frames: match parts.get(3) {
                Some(f) => Some(two_digits(*f, 29, "smpte frames")?),
                None => None,
            },
            subframes,
        })
    }

    fn write_to(&self, out: &mut String) {
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            self.hours, self.minutes, self.seconds
        ));
        if let Some(f) = self.frames {
            out.push_str(&format!(":{f:02}"));
        }
        if let Some(s) = self.subframes {
            out.push_str(&format!(".{s:02}"));
        }
    }
}

/// The range itself, by format. `None` ranges are the bare format name RFC 7826 allows
/// (e.g. `npt` meaning "from the current position").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RangeSpec {
    /// `npt[=range]`.
    Npt(Option<TimeRange<NptTime>>),
    /// `smpte[-30-drop|-25][=range]`.
    Smpte {
        /// Frame-rate variant.
        kind: SmpteKind,
        /// The interval.
        range: Option<TimeRange<SmpteTime>>,
    },
    /// `clock[=range]`.
    Clock(Option<TimeRange<UtcTime>>),
    /// Unknown format, kept verbatim.
    Other {
        /// Format token.
        unit: String,
        /// Raw text after `=`.
        value: Option<String>,
    },
}

impl RangeSpec {
    /// The format of this range.
    pub fn unit(&self) -> RangeUnit {
        match self {
            RangeSpec::Npt(_) => RangeUnit::Npt,
            RangeSpec::Smpte { kind, .. } => match kind {
                SmpteKind::Smpte30 => RangeUnit::Smpte,
                SmpteKind::Smpte30Drop => RangeUnit::Smpte30Drop,
                SmpteKind::Smpte25 => RangeUnit::Smpte25,
            },
            RangeSpec::Clock(_) => RangeUnit::Clock,
            RangeSpec::Other { unit, .. } => RangeUnit::Other(unit.clone()),
        }
    }
}

/// `Range: ranges-spec [;time=utc-time] *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Range {
    /// The requested or granted interval.
    pub spec: RangeSpec,
    /// When the request takes effect (`;time=`).
    pub time: Option<UtcTime>,
    /// Other parameters, in order.
    pub params: Vec<ExtensionParam>,
}

impl Range {
    /// A range without `time` or other parameters.
    pub fn new(spec: RangeSpec) -> Self {
        Self {
            spec,
            time: None,
            params: Vec::new(),
        }
    }

    /// `npt=start-[end]`.
    pub fn npt(start: NptTime, end: Option<NptTime>) -> Self {
        Self::new(RangeSpec::Npt(Some(TimeRange {
            start: Some(start),
            end,
        })))
    }

    /// Start in npt milliseconds, for `npt=` ranges with a numeric start.
    pub fn npt_start_millis(&self) -> Option<u64> {
        match &self.spec {
            RangeSpec::Npt(Some(TimeRange { start: Some(t), .. })) => t.to_millis(),
            _ => None,
        }
    }
}

/// Splits `start-end` and parses each present side with `parse`.
fn time_range<T>(
    value: Span<'_>,
    parse: impl Fn(Span<'_>) -> Result<T, HeaderError>,
) -> Result<TimeRange<T>, HeaderError> {
    let (start, end) = value
        .split_once(b'-')
        .ok_or_else(|| syntax::err(H, value.end(), "range needs '-' between start and end"))?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() && end.is_empty() {
        return Err(syntax::err(
            H,
            value.offset,
            "range needs a start or an end",
        ));
    }
    Ok(TimeRange {
        start: if start.is_empty() {
            None
        } else {
            Some(parse(start)?)
        },
        end: if end.is_empty() {
            None
        } else {
            Some(parse(end)?)
        },
    })
}

fn write_time_range<T>(out: &mut String, r: &TimeRange<T>, write: impl Fn(&T, &mut String)) {
    if let Some(s) = &r.start {
        write(s, out);
    }
    out.push('-');
    if let Some(e) = &r.end {
        write(e, out);
    }
}

fn parse_spec(item: Span<'_>) -> Result<RangeSpec, HeaderError> {
    if let Some(i) = item.text.find(',') {
        return Err(syntax::err(
            H,
            item.offset.saturating_add(i),
            "only one range is supported (found a list)",
        ));
    }
    let (unit, value) = syntax::split_param(item);
    let unit_text = syntax::expect_token(H, unit, "range format")?;
    let spec = match RangeUnit::from_token(unit_text) {
        RangeUnit::Npt => RangeSpec::Npt(
            value
                .map(|v| time_range(v, NptTime::parse_in))
                .transpose()?,
        ),
        RangeUnit::Clock => RangeSpec::Clock(
            value
                .map(|v| time_range(v, |s| UtcTime::parse_in(H, s)))
                .transpose()?,
        ),
        RangeUnit::Smpte | RangeUnit::Smpte30Drop | RangeUnit::Smpte25 => {
            let kind = match RangeUnit::from_token(unit_text) {
                RangeUnit::Smpte30Drop => SmpteKind::Smpte30Drop,
                RangeUnit::Smpte25 => SmpteKind::Smpte25,
                _ => SmpteKind::Smpte30,
            };
            RangeSpec::Smpte {
                kind,
                range: value
                    .map(|v| time_range(v, SmpteTime::parse_in))
                    .transpose()?,
            }
        }
        RangeUnit::Other(unit) => {
            if let Some(v) = value {
                if let Some(at) = v.first_bad(|b| b != b'"') {
                    return Err(syntax::err(H, at, "unexpected quote in range value"));
                }
            }
            RangeSpec::Other {
                unit,
                value: value.map(|v| v.text.to_owned()),
            }
        }
    };
    Ok(spec)
}

impl TypedHeader for Range {
    const NAME: &'static str = H;

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(H, value, "a range such as npt=0-")?;
        let parts = syntax::split_list(
            H,
            span,
            b';',
            syntax::MAX_PARAMS,
            Nesting::Quotes,
            "range parameters",
        )?;
        let mut parts = parts.into_iter();
        let first = parts
            .next()
            .filter(|p| p.offset == span.offset)
            .ok_or_else(|| syntax::err(H, span.offset, "missing range before ';'"))?;
        let mut range = Range::new(parse_spec(first)?);
        for p in parts {
            let (name, v) = syntax::split_param(p);
            if name.text.eq_ignore_ascii_case("time") {
                if range.time.is_some() {
                    return Err(syntax::err(H, name.offset, "duplicate time parameter"));
                }
                let v = v.ok_or_else(|| {
                    syntax::err(H, name.end(), "time needs a value such as 19970123T143720Z")
                })?;
                range.time = Some(UtcTime::parse_in(H, v)?);
            } else {
                range.params.push(ExtensionParam::parse(H, p)?);
            }
        }
        Ok(range)
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        match &self.spec {
            RangeSpec::Npt(r) => {
                out.push_str("npt");
                if let Some(r) = r {
                    out.push('=');
                    write_time_range(&mut out, r, NptTime::write_to);
                }
            }
            RangeSpec::Smpte { kind, range } => {
                out.push_str(kind.as_str());
                if let Some(r) = range {
                    out.push('=');
                    write_time_range(&mut out, r, SmpteTime::write_to);
                }
            }
            RangeSpec::Clock(r) => {
                out.push_str("clock");
                if let Some(r) = r {
                    out.push('=');
                    write_time_range(&mut out, r, UtcTime::write_to);
                }
            }
            RangeSpec::Other { unit, value } => {
                out.push_str(unit);
                if let Some(v) = value {
                    out.push('=');
                    out.push_str(v);
                }
            }
        }
        if let Some(t) = &self.time {
            out.push_str(";time=");
            t.write_to(&mut out);
        }
        for p in &self.params {
            p.write_to(&mut out);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use crate::headers::date::strategy::utc_time;
    use crate::headers::decimal::strategy::decimal;
    use proptest::prelude::*;

    fn npt_time() -> impl Strategy<Value = NptTime> + Clone {
        prop_oneof![
            Just(NptTime::Now),
            decimal(false).prop_map(NptTime::Seconds),
            (
                any::<u64>(),
                0u8..60,
                0u8..60,
                proptest::option::of("[0-9]{0,9}")
            )
                .prop_map(|(hours, minutes, seconds, fraction)| NptTime::Hms {
                    hours,
                    minutes,
                    seconds,
                    fraction
                }),
        ]
    }

    fn smpte_time() -> impl Strategy<Value = SmpteTime> + Clone {
        (
            0u8..100,
            0u8..60,
            0u8..60,
            proptest::option::of(0u8..30),
            proptest::option::of(0u8..100),
        )
            .prop_map(|(hours, minutes, seconds, frames, subframes)| SmpteTime {
                hours,
                minutes,
                seconds,
                frames,
                subframes,
            })
    }

    fn time_range<T: std::fmt::Debug + Clone>(
        t: impl Strategy<Value = T> + Clone,
    ) -> impl Strategy<Value = TimeRange<T>> {
        prop_oneof![
            (t.clone(), proptest::option::of(t.clone())).prop_map(|(s, e)| TimeRange {
                start: Some(s),
                end: e
            }),
            t.prop_map(|e| TimeRange {
                start: None,
                end: Some(e)
            }),
        ]
    }

    pub(crate) fn range() -> impl Strategy<Value = Range> {
        let spec = prop_oneof![
            proptest::option::of(time_range(npt_time())).prop_map(RangeSpec::Npt),
            (
                prop_oneof![
                    Just(SmpteKind::Smpte30),
                    Just(SmpteKind::Smpte30Drop),
                    Just(SmpteKind::Smpte25)
                ],
                proptest::option::of(time_range(smpte_time()))
            )
                .prop_map(|(kind, range)| RangeSpec::Smpte { kind, range }),
            proptest::option::of(time_range(utc_time())).prop_map(RangeSpec::Clock),
            ("x-[a-z]{1,6}", proptest::option::of("[a-z0-9.-]{0,8}"))
                .prop_map(|(unit, value)| RangeSpec::Other { unit, value }),
        ];
        (
            spec,
            proptest::option::of(utc_time()),
            proptest::collection::vec(
                ("y-[a-z]{1,6}", proptest::option::of("[a-z0-9]{1,6}"))
                    .prop_map(|(n, v)| ExtensionParam::new(n, v)),
                0..3,
            ),
        )
            .prop_map(|(spec, time, params)| Range { spec, time, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: &str) -> NptTime {
        NptTime::seconds(s).unwrap()
    }

    #[test]
    fn npt_samples_from_real_peers() {
        // GStreamer live, ffmpeg and live555 PLAY, RFC 2326 examples
        assert_eq!(
            Range::parse_value("npt=now-"),
            Ok(Range::npt(NptTime::Now, None))
        );
        assert_eq!(
            Range::parse_value("npt=0.000-"),
            Ok(Range::npt(secs("0.000"), None))
        );
        let r = Range::parse_value("npt=0.000-596.480").unwrap();
        assert_eq!(r, Range::npt(secs("0.000"), Some(secs("596.480"))));
        assert_eq!(r.to_value(), "npt=0.000-596.480");
        let r = Range::parse_value("npt=12.500-20").unwrap();
        assert_eq!(r.to_value(), "npt=12.500-20");
        assert_eq!(r.npt_start_millis(), Some(12_500));
        assert_eq!(
            Range::parse_value("npt = -20"),
            Ok(Range::new(RangeSpec::Npt(Some(TimeRange {
                start: None,
                end: Some(secs("20"))
            }))))
        );
        let r = Range::parse_value("npt=1:02:03.25-").unwrap();
        assert_eq!(
            r.spec,
            RangeSpec::Npt(Some(TimeRange {
                start: Some(NptTime::Hms {
                    hours: 1,
                    minutes: 2,
                    seconds: 3,
                    fraction: Some("25".into())
                }),
                end: None
            }))
        );
        assert_eq!(r.to_value(), "npt=01:02:03.25-");
        assert_eq!(r.npt_start_millis(), Some(3_723_250));
        assert_eq!(
            Range::parse_value("NPT"),
            Ok(Range::new(RangeSpec::Npt(None)))
        );
    }

    #[test]
    fn smpte_and_clock_samples() {
        let r = Range::parse_value("smpte=10:12:33:20-").unwrap();
        assert_eq!(
            r.spec,
            RangeSpec::Smpte {
                kind: SmpteKind::Smpte30,
                range: Some(TimeRange {
                    start: Some(SmpteTime {
                        hours: 10,
                        minutes: 12,
                        seconds: 33,
                        frames: Some(20),
                        subframes: None
                    }),
                    end: None
                })
            }
        );
        let r = Range::parse_value("smpte-25=10:07:00-10:07:33:05.01").unwrap();
        assert_eq!(r.to_value(), "smpte-25=10:07:00-10:07:33:05.01");
        let r = Range::parse_value("smpte-30-drop=0:10:00-").unwrap();
        assert_eq!(r.to_value(), "smpte-30-drop=00:10:00-");

        let r = Range::parse_value("clock=19961108T142300Z-19961108T143520Z").unwrap();
        let RangeSpec::Clock(Some(TimeRange {
            start: Some(s),
            end: Some(e),
        })) = &r.spec
        else {
            panic!("not a clock range: {r:?}");
        };
        assert_eq!(e.unix_seconds() - s.unix_seconds(), 740);
        assert_eq!(r.to_value(), "clock=19961108T142300Z-19961108T143520Z");
        let r = Range::parse_value("clock=19961108T142300Z-").unwrap();
        assert_eq!(r.to_value(), "clock=19961108T142300Z-");
    }

    #[test]
    fn time_parameter_and_extensions() {
        let r = Range::parse_value("npt=0- ; time=19970123T143720Z ; x-a=1").unwrap();
        assert_eq!(
            r.time.as_ref().map(UtcTime::unix_seconds),
            Some(854_030_240)
        );
        assert_eq!(r.params, vec![ExtensionParam::new("x-a", Some("1"))]);
        assert_eq!(r.to_value(), "npt=0-;time=19970123T143720Z;x-a=1");
        let r = Range::parse_value("x-frames=1-100").unwrap();
        assert_eq!(
            r.spec,
            RangeSpec::Other {
                unit: "x-frames".into(),
                value: Some("1-100".into())
            }
        );
        assert_eq!(r.to_value(), "x-frames=1-100");
    }

    #[test]
    fn errors_carry_offsets() {
        let cases: [(&str, usize); 14] = [
            ("", 0),
            ("npt=-", 4),
            ("npt=5", 5),
            ("npt=abc-", 4),
            ("npt=-1-", 6),
            ("npt=1:60:00-", 6),
            ("npt=1:2-", 6),
            ("npt=0-, npt=5-", 6),
            ("smpte=10:12-", 6),
            ("smpte=10:12:33:30-", 15),
            ("clock=19961108T142300-", 21),
            ("npt=0-;time", 11),
            ("npt=0-;time=1;", 12),
            (";time=19970123T143720Z", 0),
        ];
        for (v, offset) in cases {
            let e = Range::parse_value(v).unwrap_err();
            assert_eq!((e.offset, e.header), (offset, "Range"), "{v}: {e}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(r in strategy::range()) {
            let text = r.to_value();
            prop_assert_eq!(Range::parse_value(&text), Ok(r), "{}", text);
        }
    }
}
