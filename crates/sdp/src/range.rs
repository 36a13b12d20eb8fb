//! The `a=range:` attribute (RFC 2326 §C.1.5 and §3.6, RFC 7826 §4.4): raw text plus a
//! reader for Normal Play Time ranges, enough for an edge cache to tell finite
//! on-demand content (`npt=0-30.5`) from a live or open-ended stream (`npt=now-`,
//! `npt=0-`).
//!
//! SMPTE and absolute `clock=` ranges are only classified as finite or open-ended by
//! whether an end is present; their times are not decoded.

use std::time::Duration;

use crate::error::ValueError;
use crate::line::parse_decimal;

/// One `a=range:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<'a> {
    raw: &'a str,
}

/// A point in Normal Play Time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NptTime {
    /// `now`: the live point of a stream.
    Now,
    /// An offset from the start of the presentation.
    At(Duration),
}

/// An NPT range, `npt=<start>-[<end>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NptRange {
    /// The start; `now` for live streams.
    pub start: NptTime,
    /// The end, absent for live or open-ended content.
    pub end: Option<NptTime>,
}

impl NptRange {
    /// The length of a finite range (`end - start`), if both ends are offsets and the
    /// end is not before the start.
    pub fn duration(&self) -> Option<Duration> {
        match (self.start, self.end) {
            (NptTime::At(start), Some(NptTime::At(end))) => end.checked_sub(start),
            _ => None,
        }
    }
}

impl<'a> Range<'a> {
    /// Wraps an `a=range:` value; blanks around it are ignored.
    pub fn new(raw: &'a str) -> Self {
        Self {
            raw: raw.trim_matches([' ', '\t']),
        }
    }

    /// The value as written (without surrounding blanks).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The unit before `=` (`npt`, `smpte`, `smpte-30-drop`, `clock` ...).
    pub fn unit(&self) -> Option<&'a str> {
        self.raw.split_once('=').map(|(unit, _)| unit.trim_end())
    }

    /// Whether the range has an end: on-demand content of known length. `npt=0-` and
    /// `npt=now-` have none and are live or open-ended.
    pub fn is_finite(&self) -> bool {
        self.end_text().is_some_and(|end| !end.is_empty())
    }

    /// Whether the range starts at `now`, the explicit live form (`npt=now-`).
    pub fn is_live(&self) -> bool {
        matches!(
            self.npt(),
            Some(Ok(NptRange {
                start: NptTime::Now,
                ..
            }))
        )
    }

    /// The NPT range, if the unit is `npt`; `Err` if it is malformed, with the offset
    /// counted from the start of [`Range::raw`].
    pub fn npt(&self) -> Option<Result<NptRange, ValueError>> {
        let (unit, spec) = self.raw.split_once('=')?;
        if !unit.trim_end().eq_ignore_ascii_case("npt") {
            return None;
        }
        let base = unit.len() + 1;
        Some(parse_npt_range(strip_params(spec), base))
    }

    fn end_text(&self) -> Option<&'a str> {
        let (_, spec) = self.raw.split_once('=')?;
        let (_, end) = strip_params(spec).split_once('-')?;
        Some(end.trim())
    }
}

/// Drops a `;time=...` suffix that RFC 2326 allows after a range.
fn strip_params(spec: &str) -> &str {
    spec.split(';').next().unwrap_or_default()
}

fn parse_npt_range(spec: &str, base: usize) -> Result<NptRange, ValueError> {
    let (start, end) = spec
        .split_once('-')
        .ok_or(ValueError::new(base, "NPT range must contain `-`"))?;
    let start_text = start.trim();
    let start = if start_text.is_empty() {
        // RFC 7826 allows `npt=-30` (from the beginning to 30 s).
        NptTime::At(Duration::ZERO)
    } else {
        parse_npt_time(start_text).ok_or(ValueError::new(
            base,
            "NPT start must be `now`, seconds or h:mm:ss",
        ))?
    };
    let end_at = base + spec.find('-').map_or(spec.len(), |i| i + 1);
    let end_text = end.trim();
    let end = if end_text.is_empty() {
        None
    } else {
        Some(parse_npt_time(end_text).ok_or(ValueError::new(
            end_at,
            "NPT end must be seconds or h:mm:ss",
        ))?)
    };
    Ok(NptRange { start, end })
}

/// `now`, `<seconds>[.<fraction>]` or `<h>:<mm>:<ss>[.<fraction>]` (RFC 2326 §3.6).
fn parse_npt_time(text: &str) -> Option<NptTime> {
    if text.eq_ignore_ascii_case("now") {
        return Some(NptTime::Now);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = whole.splitn(4, ':').collect();
    let seconds: u64 = match parts.as_slice() {
        [s] => parse_decimal(s)?,
        [h, m, s] => {
            let h: u64 = parse_decimal(h)?;
            let m: u64 = parse_decimal(m)?;
            let s: u64 = parse_decimal(s)?;
            if m > 59 || s > 59 {
                return None;
            }
            h.checked_mul(3600)?.checked_add(m * 60 + s)?
        }
        _ => return None,
    };
    let mut nanos: u32 = 0;
    let mut scale: u32 = 100_000_000;
    // Digits beyond nanoseconds carry no meaning for a media clock; ignore them.
    for digit in fraction.bytes().take(9) {
        nanos += u32::from(digit - b'0') * scale;
        scale /= 10;
    }
    Some(NptTime::At(Duration::new(seconds, nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u32) -> NptTime {
        NptTime::At(Duration::new(secs, millis * 1_000_000))
    }

    #[test]
    fn finite_npt() {
        let r = Range::new("npt=0-30.5");
        assert!(r.is_finite());
        assert!(!r.is_live());
        let npt = r.npt().unwrap().unwrap();
        assert_eq!(
            npt,
            NptRange {
                start: at(0, 0),
                end: Some(at(30, 500)),
            }
        );
        assert_eq!(npt.duration(), Some(Duration::from_millis(30_500)));
    }

    #[test]
    fn live_and_open_ended() {
        let live = Range::new("npt=now-");
        assert!(!live.is_finite());
        assert!(live.is_live());
        assert_eq!(
            live.npt().unwrap().unwrap(),
            NptRange {
                start: NptTime::Now,
                end: None,
            }
        );
        let open = Range::new("npt=0.000-");
        assert!(!open.is_finite());
        assert!(!open.is_live());
        assert_eq!(open.npt().unwrap().unwrap().duration(), None);
    }

    #[test]
    fn hhmmss_fractions_and_params() {
        let r = Range::new(" npt=00:00:10.25-1:02:03.5;time=19970123T143720Z ");
        assert_eq!(r.raw(), "npt=00:00:10.25-1:02:03.5;time=19970123T143720Z");
        let npt = r.npt().unwrap().unwrap();
        assert_eq!(npt.start, at(10, 250));
        assert_eq!(npt.end, Some(at(3723, 500)));
        let r = Range::new("npt=-30");
        assert_eq!(r.npt().unwrap().unwrap().start, at(0, 0));
        let r = Range::new("npt=1.1234567891234-2");
        assert_eq!(
            r.npt().unwrap().unwrap().start,
            NptTime::At(Duration::new(1, 123_456_789))
        );
    }

    #[test]
    fn other_units_are_classified_not_decoded() {
        let smpte = Range::new("smpte=10:07:00-10:07:33:05.01");
        assert_eq!(smpte.unit(), Some("smpte"));
        assert!(smpte.is_finite());
        assert_eq!(smpte.npt(), None);
        let clock = Range::new("clock=19961108T142300Z-");
        assert!(!clock.is_finite());
        assert!(!Range::new("garbage").is_finite());
        assert_eq!(Range::new("garbage").unit(), None);
    }

    #[test]
    fn malformed_npt_reports_offsets() {
        assert_eq!(
            Range::new("npt=abc-").npt(),
            Some(Err(ValueError::new(
                4,
                "NPT start must be `now`, seconds or h:mm:ss"
            )))
        );
        assert_eq!(
            Range::new("npt=0-1:99:00").npt(),
            Some(Err(ValueError::new(
                6,
                "NPT end must be seconds or h:mm:ss"
            )))
        );
        assert_eq!(
            Range::new("npt=5").npt(),
            Some(Err(ValueError::new(4, "NPT range must contain `-`")))
        );
        assert!(Range::new("npt=99999999999999999999-")
            .npt()
            .unwrap()
            .is_err());
        assert!(Range::new("npt=5124095576030432:00:00-")
            .npt()
            .unwrap()
            .is_err());
        assert!(Range::new("npt=1.2x-").npt().unwrap().is_err());
    }
}
