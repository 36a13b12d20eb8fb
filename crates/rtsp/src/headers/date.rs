//! Dates: the HTTP-date of `Date`, `Expires`, `Last-Modified` and `If-Modified-Since`
//! (RFC 2326 §3.7 and §12.18/§12.19/§12.23/§12.24, RFC 7826 §18.21/§18.22/§18.25/§18.27,
//! which point to RFC 2616 §3.3.1), and the ISO 8601 basic `utc-time` of `Range: clock=`,
//! `;time=` and `Media-Properties: Time-Limited=` (RFC 2326 §3.7, RFC 7826 §4.3).
//!
//! Parsing accepts the three HTTP-date forms (RFC 1123, RFC 850, asctime) with the usual
//! sloppiness (single-digit day, `UTC` for `GMT`, missing weekday); writing always uses
//! RFC 1123. The civil-calendar arithmetic (proleptic Gregorian, no leap seconds) is
//! written here so the crate needs no clock and no date library.
//!
//! What it does not: read the clock. Freshness checks take `now` as a parameter.

use std::fmt;

use super::syntax::{self, Span};
use crate::header_map::{HeaderError, TypedHeader};

const SECS_PER_DAY: i64 = 86_400;
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const WEEKDAYS_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// Most fraction digits kept on a `utc-time` (RFC 7826 allows 9; room for odd writers).
const MAX_FRACTION_DIGITS: usize = 18;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`:
/// shift the year to start in March so the leap day is last, then count 400-year eras).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month 1-12, day 1-31)`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A calendar date and time of day in UTC, as fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Civil {
    /// Year, 1 to 9999.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59 (a leap second 60 on input rolls into the next minute).
    pub second: u8,
}

impl Civil {
    /// Unix seconds of these fields, or `None` if a field is out of range. `second` may
    /// be 60 (a leap second), counted as the first second of the next minute.
    pub fn to_unix_seconds(&self) -> Option<i64> {
        let year = i64::from(self.year);
        let month = u32::from(self.month);
        if !(1..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || self.day == 0
            || u32::from(self.day) > days_in_month(year, month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, u32::from(self.day));
        Some(
            days * SECS_PER_DAY
                + i64::from(self.hour) * 3600
                + i64::from(self.minute) * 60
                + i64::from(self.second),
        )
    }

    /// Fields of a unix time, or `None` outside years 1 to 9999.
    pub fn from_unix_seconds(secs: i64) -> Option<Self> {
        if !(MIN_UNIX..=MAX_UNIX).contains(&secs) {
            return None;
        }
        let days = secs.div_euclid(SECS_PER_DAY);
        let rem = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Some(Self {
            year: u16::try_from(year).ok()?,
            month: u8::try_from(month).ok()?,
            day: u8::try_from(day).ok()?,
            hour: u8::try_from(rem / 3600).ok()?,
            minute: u8::try_from(rem % 3600 / 60).ok()?,
            second: u8::try_from(rem % 60).ok()?,
        })
    }
}

/// 0001-01-01T00:00:00Z.
const MIN_UNIX: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z.
const MAX_UNIX: i64 = 253_402_300_799;

/// An HTTP-date: a whole second in UTC between years 1 and 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpDate {
    secs: i64,
}

impl HttpDate {
    /// The date at `secs` seconds since 1970-01-01T00:00:00Z; `None` outside years
    /// 1 to 9999 (which RFC 1123 could not write with four year digits).
    pub fn from_unix_seconds(secs: i64) -> Option<Self> {
        (MIN_UNIX..=MAX_UNIX)
            .contains(&secs)
            .then_some(Self { secs })
    }

    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// The date of validated civil fields.
    pub fn from_civil(civil: Civil) -> Option<Self> {
        Self::from_unix_seconds(civil.to_unix_seconds()?)
    }

    /// Calendar fields of this date.
    pub fn to_civil(&self) -> Civil {
        Civil::from_unix_seconds(self.secs).unwrap_or(Civil {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        })
    }

    /// Day of week, 0 = Sunday.
    pub fn weekday(&self) -> u8 {
        // 1970-01-01 was a Thursday.
        let wd = (self.secs.div_euclid(SECS_PER_DAY) + 4).rem_euclid(7);
        u8::try_from(wd).unwrap_or(0)
    }

    /// Parses any of the three HTTP-date forms.
    pub fn parse(s: &str) -> Option<Self> {
        parse_http_date("Date", Span::new(s, 0)).ok()
    }

    /// RFC 1123 form, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn to_rfc1123(&self) -> String {
        let c = self.to_civil();
        let wd = WEEKDAYS
            .get(usize::from(self.weekday()))
            .copied()
            .unwrap_or("Thu");
        let mon = MONTHS
            .get(usize::from(c.month).saturating_sub(1))
            .copied()
            .unwrap_or("Jan");
        format!(
            "{wd}, {:02} {mon} {:04} {:02}:{:02}:{:02} GMT",
            c.day, c.year, c.hour, c.minute, c.second
        )
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc1123())
    }
}

/// Splits on LWS into at most `max` tokens.
fn words<'a>(
    header: &'static str,
    span: Span<'a>,
    max: usize,
) -> Result<Vec<Span<'a>>, HeaderError> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let bytes = span.text.as_bytes();
    for i in 0..=bytes.len() {
        let ws = bytes.get(i).is_none_or(|&b| syntax::is_lws(b));
        match (ws, start) {
            (true, Some(s)) => {
                if out.len() >= max {
                    return Err(syntax::err(
                        header,
                        span.offset.saturating_add(s),
                        "unexpected text after the date",
                    ));
                }
                if let Some(w) = span.slice(s, i) {
                    out.push(w);
                }
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    Ok(out)
}

fn parse_digits(
    header: &'static str,
    span: Span<'_>,
    min: usize,
    max: usize,
    what: &str,
) -> Result<u32, HeaderError> {
    if span.text.len() < min || span.text.len() > max {
        return Err(syntax::err(
            header,
            span.offset,
            format!("{what} must have {min} to {max} digits"),
        ));
    }
    syntax::parse_uint(header, span, what)
}

fn parse_month(header: &'static str, span: Span<'_>) -> Result<u32, HeaderError> {
    MONTHS
        .iter()
        .zip(1u32..)
        .find(|(m, _)| m.eq_ignore_ascii_case(span.text))
        .map(|(_, n)| n)
        .ok_or_else(|| {
            syntax::err(
                header,
                span.offset,
                "unknown month name (expected Jan to Dec)",
            )
        })
}

fn check_weekday(header: &'static str, span: Span<'_>) -> Result<(), HeaderError> {
    let known = WEEKDAYS
        .iter()
        .chain(WEEKDAYS_LONG.iter())
        .any(|d| d.eq_ignore_ascii_case(span.text));
    if known {
        Ok(())
    } else {
        Err(syntax::err(header, span.offset, "unknown weekday name"))
    }
}

fn check_zone(
    header: &'static str,
    span: Option<Span<'_>>,
    after: usize,
) -> Result<(), HeaderError> {
    match span {
        Some(z)
            if ["GMT", "UTC", "UT", "Z", "+0000"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(z.text)) =>
        {
            Ok(())
        }
        Some(z) => Err(syntax::err(header, z.offset, "time zone must be GMT")),
        None => Err(syntax::err(
            header,
            after,
            "missing time zone (expected GMT)",
        )),
    }
}

/// `HH:MM:SS` → (hour, minute, second).
fn parse_clock(header: &'static str, span: Span<'_>) -> Result<(u8, u8, u8), HeaderError> {
    let (h, rest) = span
        .split_once(b':')
        .ok_or_else(|| syntax::err(header, span.offset, "expected a time as HH:MM:SS"))?;
    let (m, s) = rest
        .split_once(b':')
        .ok_or_else(|| syntax::err(header, rest.offset, "expected a time as HH:MM:SS"))?;
    let hour = parse_digits(header, h, 1, 2, "hour")?;
    let minute = parse_digits(header, m, 2, 2, "minute")?;
    let second = parse_digits(header, s, 2, 2, "second")?;
    let fit = |v: u32, max: u32, sp: Span<'_>, what: &str| {
        if v > max {
            Err(syntax::err(
                header,
                sp.offset,
                format!("{what} {v} is out of range (0-{max})"),
            ))
        } else {
            u8::try_from(v).map_err(|_| syntax::err(header, sp.offset, "out of range"))
        }
    };
    Ok((
        fit(hour, 23, h, "hour")?,
        fit(minute, 59, m, "minute")?,
        fit(second, 60, s, "second")?,
    ))
}

fn build(
    header: &'static str,
    at: usize,
    year: u32,
    month: u32,
    day: u32,
    (hour, minute, second): (u8, u8, u8),
) -> Result<HttpDate, HeaderError> {
    let civil = Civil {
        year: u16::try_from(year).unwrap_or(0),
        month: u8::try_from(month).unwrap_or(0),
        day: u8::try_from(day).unwrap_or(0),
        hour,
        minute,
        second,
    };
    HttpDate::from_civil(civil)
        .ok_or_else(|| syntax::err(header, at, "no such calendar date (check day and year)"))
}

/// Parses RFC 1123, RFC 850 or asctime dates; errors point at the offending word.
pub(crate) fn parse_http_date(
    header: &'static str,
    span: Span<'_>,
) -> Result<HttpDate, HeaderError> {
    let span = span.trim();
    if span.is_empty() {
        return Err(syntax::err(
            header,
            span.offset,
            "empty value, expected a date",
        ));
    }
    let w = words(header, span, 6)?;
    let first = *w
        .first()
        .ok_or_else(|| syntax::err(header, span.offset, "expected a date"))?;
    let has_comma = first.text.ends_with(',');
    let starts_with_digit = first
        .text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit());
    // Index of the first word after the weekday.
    let rest: &[Span<'_>] = if starts_with_digit {
        &w
    } else {
        let name = if has_comma {
            first
                .slice(0, first.text.len().saturating_sub(1))
                .unwrap_or(first)
        } else {
            first
        };
        check_weekday(header, name)?;
        w.get(1..).unwrap_or(&[])
    };
    let missing = |after: usize| syntax::err(header, after, "date is incomplete");
    let end = span.end();
    let word = |i: usize| rest.get(i).copied().ok_or_else(|| missing(end));
    let w0 = word(0)?;
    if w0.text.contains('-') {
        // RFC 850: 06-Nov-94 08:49:37 GMT
        let (d, r) = w0.split_once(b'-').ok_or_else(|| missing(w0.offset))?;
        let (m, y) = r.split_once(b'-').ok_or_else(|| missing(r.offset))?;
        let day = parse_digits(header, d, 1, 2, "day")?;
        let month = parse_month(header, m)?;
        let year = match y.text.len() {
            // Two-digit years: fixed pivot instead of "50 years from now" (no clock here).
            2 => {
                let yy = parse_digits(header, y, 2, 2, "year")?;
                if yy < 70 {
                    2000 + yy
                } else {
                    1900 + yy
                }
            }
            _ => parse_digits(header, y, 4, 4, "year")?,
        };
        let clock = parse_clock(header, word(1)?)?;
        check_zone(header, rest.get(2).copied(), end)?;
        if let Some(extra) = rest.get(3) {
            return Err(syntax::err(
                header,
                extra.offset,
                "unexpected text after the date",
            ));
        }
        return build(header, w0.offset, year, month, day, clock);
    }
    if w0.text.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        // RFC 1123: 06 Nov 1994 08:49:37 GMT
        let day = parse_digits(header, w0, 1, 2, "day")?;
        let month = parse_month(header, word(1)?)?;
        let year = parse_digits(header, word(2)?, 4, 4, "year")?;
        let clock = parse_clock(header, word(3)?)?;
        check_zone(header, rest.get(4).copied(), end)?;
        if let Some(extra) = rest.get(5) {
            return Err(syntax::err(
                header,
                extra.offset,
                "unexpected text after the date",
            ));
        }
        return build(header, w0.offset, year, month, day, clock);
    }
    // asctime: Nov  6 08:49:37 1994
    let month = parse_month(header, w0)?;
    let day = parse_digits(header, word(1)?, 1, 2, "day")?;
    let clock = parse_clock(header, word(2)?)?;
    let year = parse_digits(header, word(3)?, 4, 4, "year")?;
    if let Some(extra) = rest.get(4) {
        // Some writers append GMT to asctime; tolerate exactly that.
        check_zone(header, Some(*extra), end)?;
        if let Some(extra) = rest.get(5) {
            return Err(syntax::err(
                header,
                extra.offset,
                "unexpected text after the date",
            ));
        }
    }
    build(header, w0.offset, year, month, day, clock)
}

macro_rules! date_header {
    ($(#[$doc:meta])* $name:ident, $wire:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub HttpDate);

        impl TypedHeader for $name {
            const NAME: &'static str = $wire;

            fn parse_value(value: &str) -> Result<Self, HeaderError> {
                let span = syntax::start(Self::NAME, value)?;
                parse_http_date(Self::NAME, span).map($name)
            }

            fn to_value(&self) -> String {
                self.0.to_rfc1123()
            }
        }
    };
}

date_header!(
    /// `Date` (RFC 2326 §12.18, RFC 7826 §18.21): when the message was sent.
    Date,
    "Date"
);
date_header!(
    /// `Last-Modified` (RFC 2326 §12.24, RFC 7826 §18.27): when the description
    /// (DESCRIBE) or media stream (SETUP) last changed; compare with a cached copy.
    LastModified,
    "Last-Modified"
);
date_header!(
    /// `If-Modified-Since` (RFC 2326 §12.23, RFC 7826 §18.25): DESCRIBE or SETUP is
    /// answered 304 when the resource did not change since this date.
    IfModifiedSince,
    "If-Modified-Since"
);

/// `Expires` (RFC 2326 §12.19, RFC 7826 §18.22). An invalid date, "especially the
/// value 0", means already expired, so parsing never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expires {
    /// Stale after this date.
    At(HttpDate),
    /// The value was not a valid date: treat as stale now. Written as `0`.
    AlreadyExpired,
}

impl Expires {
    /// The expiry date, if a valid one was given.
    pub fn date(&self) -> Option<HttpDate> {
        match self {
            Expires::At(d) => Some(*d),
            Expires::AlreadyExpired => None,
        }
    }

    /// Whether content with this header may still be served without revalidation at
    /// `now_unix` (seconds since the epoch).
    pub fn is_fresh_at(&self, now_unix: i64) -> bool {
        match self {
            Expires::At(d) => d.unix_seconds() > now_unix,
            Expires::AlreadyExpired => false,
        }
    }
}

impl TypedHeader for Expires {
    const NAME: &'static str = "Expires";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let parsed =
            syntax::start(Self::NAME, value).and_then(|span| parse_http_date(Self::NAME, span));
        Ok(match parsed {
            Ok(d) => Expires::At(d),
            Err(_) => Expires::AlreadyExpired,
        })
    }

    fn to_value(&self) -> String {
        match self {
            Expires::At(d) => d.to_rfc1123(),
            Expires::AlreadyExpired => "0".to_owned(),
        }
    }
}

/// RTSP absolute time `YYYYMMDDThhmmss[.fraction]Z` (RFC 2326 §3.7, RFC 7826 §4.3),
/// whole seconds plus the fraction digits exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UtcTime {
    secs: i64,
    fraction: Option<String>,
}

impl UtcTime {
    /// Whole-second time; `None` outside years 1 to 9999.
    pub fn from_unix_seconds(secs: i64) -> Option<Self> {
        HttpDate::from_unix_seconds(secs)?;
        Some(Self {
            secs,
            fraction: None,
        })
    }

    /// Same time with a fraction of a second given as its decimal digits (`"25"` for
    /// .25); `None` unless `digits` is 1 to 18 ASCII digits.
    pub fn with_fraction(self, digits: &str) -> Option<Self> {
        let ok = !digits.is_empty()
            && digits.len() <= MAX_FRACTION_DIGITS
            && digits.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| Self {
            fraction: Some(digits.to_owned()),
            ..self
        })
    }

    /// Whole seconds since the epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// Fraction digits after the `.`, if any.
    pub fn fraction(&self) -> Option<&str> {
        self.fraction.as_deref()
    }

    /// Unix time in milliseconds, fraction truncated.
    pub fn unix_millis(&self) -> i64 {
        let mut ms = self.secs.saturating_mul(1000);
        let mut scale = 100i64;
        for b in self.fraction.as_deref().unwrap_or("").bytes().take(3) {
            ms = ms.saturating_add(i64::from(b.saturating_sub(b'0')) * scale);
            scale /= 10;
        }
        ms
    }

    /// Parses a `utc-time` at `span`.
    pub(crate) fn parse_in(header: &'static str, span: Span<'_>) -> Result<Self, HeaderError> {
        let bad = |at: usize, why: &str| {
            syntax::err(
                header,
                span.offset.saturating_add(at),
                format!("invalid clock time (expected YYYYMMDDThhmmss[.frac]Z): {why}"),
            )
        };
        let b = span.text.as_bytes();
        let digits_at = |range: std::ops::Range<usize>| -> Result<u32, HeaderError> {
            let start = range.start;
            let part = b.get(range).ok_or_else(|| bad(start, "too short"))?;
            let mut n = 0u32;
            for (i, d) in part.iter().enumerate() {
                if !d.is_ascii_digit() {
                    return Err(bad(start.saturating_add(i), "expected a digit"));
                }
                n = n * 10 + u32::from(d - b'0');
            }
            Ok(n)
        };
        let year = digits_at(0..4)?;
        let month = digits_at(4..6)?;
        let day = digits_at(6..8)?;
        if !matches!(b.get(8), Some(b'T' | b't')) {
            return Err(bad(8, "expected 'T' between date and time"));
        }
        let hour = digits_at(9..11)?;
        let minute = digits_at(11..13)?;
        let second = digits_at(13..15)?;
        let mut i = 15usize;
        let mut fraction = None;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let len = b
                .get(start..)
                .unwrap_or(&[])
                .iter()
                .take_while(|d| d.is_ascii_digit())
                .count();
            if len == 0 {
                return Err(bad(start, "expected fraction digits after '.'"));
            }
            if len > MAX_FRACTION_DIGITS {
                return Err(bad(start, "fraction has more than 18 digits"));
            }
            fraction = span.text.get(start..start + len).map(str::to_owned);
            i = start + len;
        }
        if !matches!(b.get(i), Some(b'Z' | b'z')) {
            return Err(bad(i, "expected 'Z' (times are always UTC)"));
        }
        if i + 1 != b.len() {
            return Err(bad(i + 1, "unexpected text after 'Z'"));
        }
        let civil = Civil {
            year: u16::try_from(year).unwrap_or(0),
            month: u8::try_from(month).unwrap_or(0),
            day: u8::try_from(day).unwrap_or(0),
            hour: u8::try_from(hour).unwrap_or(99),
            minute: u8::try_from(minute).unwrap_or(99),
            second: u8::try_from(second).unwrap_or(99),
        };
        let secs = civil
            .to_unix_seconds()
            .ok_or_else(|| bad(0, "no such date or time of day"))?;
        Ok(Self { secs, fraction })
    }

    /// Appends the `YYYYMMDDThhmmss[.frac]Z` form.
    pub(crate) fn write_to(&self, out: &mut String) {
        out.push_str(&self.to_string());
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Civil::from_unix_seconds(self.secs).unwrap_or(Civil {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        });
        write!(
            f,
            "{:04}{:02}{:02}T{:02}{:02}{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )?;
        if let Some(frac) = &self.fraction {
            write!(f, ".{frac}")?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn http_date() -> impl Strategy<Value = HttpDate> + Clone {
        (MIN_UNIX..=MAX_UNIX).prop_map(|s| HttpDate::from_unix_seconds(s).expect("in range"))
    }

    pub(crate) fn utc_time() -> impl Strategy<Value = UtcTime> + Clone {
        (MIN_UNIX..=MAX_UNIX, proptest::option::of("[0-9]{1,9}")).prop_map(|(s, f)| {
            let t = UtcTime::from_unix_seconds(s).expect("in range");
            match f {
                Some(f) => t.with_fraction(&f).expect("digits"),
                None => t,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: i64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    #[test]
    fn parses_the_three_rfc2616_forms() {
        for v in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            // sloppy real-world variants
            "sun, 6 nov 1994 08:49:37 UTC",
            "06 Nov 1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994 GMT",
        ] {
            let d = LastModified::parse_value(v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(d.0.unix_seconds(), SAMPLE, "{v}");
            assert_eq!(d.to_value(), "Sun, 06 Nov 1994 08:49:37 GMT");
        }
    }

    #[test]
    fn quicktime_tunnel_expires_and_live555_date() {
        // QuickTime's RTSP-over-HTTP POST: single-digit day.
        let e = Expires::parse_value("Sun, 9 Jan 1972 00:00:00 GMT").unwrap();
        assert_eq!(e.date().unwrap().unix_seconds(), 63_763_200);
        assert_eq!(e.to_value(), "Sun, 09 Jan 1972 00:00:00 GMT");
        // live555 writes Date on every response.
        let d = Date::parse_value("Thu, 01 Jan 2015 00:00:00 GMT").unwrap();
        assert_eq!(d.0.unix_seconds(), 1_420_070_400);
        assert_eq!(d.0.weekday(), 4);
    }

    #[test]
    fn invalid_expires_means_already_expired() {
        for v in ["0", "-1", "", "tomorrow", "Sun, 31 Feb 2020 00:00:00 GMT"] {
            assert_eq!(Expires::parse_value(v), Ok(Expires::AlreadyExpired), "{v}");
        }
        assert_eq!(Expires::AlreadyExpired.to_value(), "0");
        assert!(!Expires::AlreadyExpired.is_fresh_at(i64::MIN));
        let e = Expires::At(HttpDate::from_unix_seconds(100).unwrap());
        assert!(e.is_fresh_at(99));
        assert!(!e.is_fresh_at(100));
    }

    #[test]
    fn errors_point_at_the_bad_word() {
        let e = LastModified::parse_value("Sun, 06 Foo 1994 08:49:37 GMT").unwrap_err();
        assert_eq!((e.offset, e.header), (8, "Last-Modified"));
        let e = IfModifiedSince::parse_value("Sun, 06 Nov 1994 25:49:37 GMT").unwrap_err();
        assert_eq!(e.offset, 17);
        let e = Date::parse_value("Sun, 06 Nov 1994 08:49:37 EST").unwrap_err();
        assert_eq!(e.offset, 26);
        let e = Date::parse_value("Sun, 06 Nov 1994 08:49:37").unwrap_err();
        assert_eq!(e.offset, 25);
        let e = Date::parse_value("Sun, 29 Feb 1900 08:49:37 GMT").unwrap_err();
        assert_eq!(e.offset, 5);
        let e = Date::parse_value("Funday, 06 Nov 1994 08:49:37 GMT").unwrap_err();
        assert_eq!(e.offset, 0);
        let e = Date::parse_value("Sun, 06 Nov 1994 08:49:37 GMT x").unwrap_err();
        assert_eq!(e.offset, 30);
        assert!(Date::parse_value("Sun, 06 Nov 1994 08:49:37 GMT a b c d e f").is_err());
    }

    #[test]
    fn civil_arithmetic_known_points() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-719_162), (1, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let max = Civil {
            year: 9999,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
        };
        assert_eq!(max.to_unix_seconds(), Some(MAX_UNIX));
        assert_eq!(HttpDate::from_unix_seconds(MAX_UNIX + 1), None);
        assert_eq!(HttpDate::from_unix_seconds(MIN_UNIX - 1), None);
        assert_eq!(
            HttpDate::from_unix_seconds(MIN_UNIX).unwrap().to_rfc1123(),
            "Mon, 01 Jan 0001 00:00:00 GMT"
        );
    }

    #[test]
    fn utc_time_parses_and_writes() {
        let t = UtcTime::parse_in("Range", Span::new("19961108T142300Z", 0)).unwrap();
        assert_eq!(t.unix_seconds(), 847_462_980);
        assert_eq!(t.to_string(), "19961108T142300Z");
        let t = UtcTime::parse_in("Range", Span::new("19961108T142300.25Z", 0)).unwrap();
        assert_eq!(t.fraction(), Some("25"));
        assert_eq!(t.unix_millis(), 847_462_980_250);
        assert_eq!(t.to_string(), "19961108T142300.25Z");
        let e = UtcTime::parse_in("Range", Span::new("19961308T142300Z", 6)).unwrap_err();
        assert_eq!(e.offset, 6);
        let e = UtcTime::parse_in("Range", Span::new("19961108 142300Z", 0)).unwrap_err();
        assert_eq!(e.offset, 8);
        let e = UtcTime::parse_in("Range", Span::new("19961108T1423Z", 0)).unwrap_err();
        assert_eq!(e.offset, 13);
        let e = UtcTime::parse_in("Range", Span::new("19961108T142300", 0)).unwrap_err();
        assert_eq!(e.offset, 15);
    }

    proptest! {
        #[test]
        fn civil_round_trips(days in -719_162i64..=2_932_896) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            prop_assert!(d >= 1 && d <= days_in_month(y, m));
        }

        #[test]
        fn dates_round_trip(d in strategy::http_date()) {
            let h = LastModified(d);
            prop_assert_eq!(LastModified::parse_value(&h.to_value()), Ok(h));
        }

        #[test]
        fn utc_times_round_trip(t in strategy::utc_time()) {
            let s = t.to_string();
            prop_assert_eq!(UtcTime::parse_in("Range", Span::new(&s, 0)), Ok(t));
        }
    }
}
