//! Typed views of the RTP-related attribute values: `a=rtpmap:` (RFC 8866 §6.6),
//! `a=fmtp:` (§6.15) with a reader for its `key=value;` parameter lists, and `a=rtcp:`
//! (RFC 3605). `a=rtcp-mux` (RFC 5761) is a flag and needs no view.
//!
//! These parse one value each, on demand; they do not know codec semantics (what
//! `sprop-parameter-sets` or `config` contain is the depacketizer's business).

use std::fmt;

use crate::error::ValueError;
use crate::line::{fields, parse_decimal};

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtpmap<'a> {
    /// The RTP payload type, 0 to 127.
    pub payload_type: u8,
    /// The encoding name as written (`H264`, `MPEG4-GENERIC`, `opus` ...); compare it
    /// ignoring ASCII case.
    pub encoding: &'a str,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The encoding parameters, which for audio are the channel count.
    pub channels: Option<u16>,
}

impl<'a> Rtpmap<'a> {
    /// Parses an `a=rtpmap:` value.
    pub fn parse(value: &'a str) -> Result<Self, ValueError> {
        let mut it = fields(value);
        let (pt_span, pt) = it
            .next()
            .ok_or(ValueError::new(value.len(), "missing payload type"))?;
        let payload_type = parse_payload_type(pt).ok_or(ValueError::new(
            pt_span.start,
            "payload type must be a decimal number from 0 to 127",
        ))?;
        let (enc_span, encoding_field) = it.next().ok_or(ValueError::new(
            value.len(),
            "missing `<encoding name>/<clock rate>`",
        ))?;
        if let Some((extra, _)) = it.next() {
            return Err(ValueError::new(
                extra.start,
                "unexpected text after the clock rate",
            ));
        }
        let mut parts = encoding_field.split('/');
        let encoding = parts.next().unwrap_or_default();
        if encoding.is_empty() {
            return Err(ValueError::new(enc_span.start, "empty encoding name"));
        }
        let rate_at = enc_span.start + encoding.len() + 1;
        let rate = parts
            .next()
            .ok_or(ValueError::new(enc_span.end, "missing `/<clock rate>`"))?;
        let clock_rate = parse_decimal(rate).ok_or(ValueError::new(
            rate_at,
            "clock rate must be a decimal number",
        ))?;
        let channels_at = rate_at + rate.len() + 1;
        let channels = parts
            .next()
            .map(|c| {
                parse_decimal(c).ok_or(ValueError::new(
                    channels_at,
                    "encoding parameters (channels) must be a decimal number",
                ))
            })
            .transpose()?;
        if parts.next().is_some() {
            return Err(ValueError::new(
                enc_span.start,
                "too many `/` parts after the encoding name",
            ));
        }
        Ok(Self {
            payload_type,
            encoding,
            clock_rate,
            channels,
        })
    }
}

fn parse_payload_type(text: &str) -> Option<u8> {
    parse_decimal::<u8>(text).filter(|pt| *pt <= 127)
}

/// `a=fmtp:<format> <format specific parameters>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmtp<'a> {
    /// The format the parameters apply to (an RTP payload type for RTP protos).
    pub format: &'a str,
    /// The parameters as written, leading blanks removed.
    pub params: &'a str,
}

impl<'a> Fmtp<'a> {
    /// Parses an `a=fmtp:` value. Parameters may be empty.
    pub fn parse(value: &'a str) -> Result<Self, ValueError> {
        let trimmed = value.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            return Err(ValueError::new(value.len(), "missing format"));
        }
        let (format, params) = match trimmed.find([' ', '\t']) {
            Some(i) => (
                trimmed.get(..i).unwrap_or_default(),
                trimmed.get(i..).unwrap_or_default(),
            ),
            None => (trimmed, ""),
        };
        Ok(Self {
            format,
            params: params.trim_start_matches([' ', '\t']),
        })
    }

    /// The format as an RTP payload type, if it is one.
    pub fn payload_type(&self) -> Option<u8> {
        parse_payload_type(self.format)
    }

    /// The parameters as `(key, value)` pairs; see [`fmtp_params`].
    pub fn param_pairs(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        fmtp_params(self.params)
    }

    /// The value of one parameter, matching the key ignoring ASCII case (media type
    /// parameter names are case-insensitive, RFC 6838 §4.3). A key without `=` gives
    /// `Some("")`.
    pub fn param(&self, key: &str) -> Option<&'a str> {
        self.param_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.unwrap_or_default())
    }
}

/// Splits `a=fmtp:` parameters of the common `key=value;key=value` form into pairs,
/// trimming blanks around each item and key. The value is everything after the first
/// `=`, so base64 padding (`sprop-parameter-sets=Z0IA...,aM4=`) stays intact. An item
/// without `=` (such as `0-15` for telephone-event) comes back as `(item, None)`; empty
/// items are skipped.
pub fn fmtp_params(params: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    params.split(';').filter_map(|item| {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            return None;
        }
        Some(match item.split_once('=') {
            Some((k, v)) => (
                k.trim_end_matches([' ', '\t']),
                Some(v.trim_start_matches([' ', '\t'])),
            ),
            None => (item, None),
        })
    })
}

/// The network address part of an `a=rtcp:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetAddress<'a> {
    /// Network type, `IN`.
    pub nettype: &'a str,
    /// Address type, `IP4` or `IP6`.
    pub addrtype: &'a str,
    /// The address.
    pub address: &'a str,
}

/// `a=rtcp:<port> [<nettype> <addrtype> <connection-address>]` (RFC 3605 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp<'a> {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when it differs from the `c=` address.
    pub address: Option<NetAddress<'a>>,
}

impl<'a> Rtcp<'a> {
    /// Parses an `a=rtcp:` value.
    pub fn parse(value: &'a str) -> Result<Self, ValueError> {
        let all: Vec<_> = fields(value).take(5).collect();
        let port_of = |span: &std::ops::Range<usize>, text: &str| {
            parse_decimal(text).ok_or(ValueError::new(
                span.start,
                "RTCP port must be a decimal number from 0 to 65535",
            ))
        };
        match all.as_slice() {
            [(span, port)] => Ok(Self {
                port: port_of(span, port)?,
                address: None,
            }),
            [(span, port), (_, nettype), (_, addrtype), (_, address)] => Ok(Self {
                port: port_of(span, port)?,
                address: Some(NetAddress {
                    nettype,
                    addrtype,
                    address,
                }),
            }),
            [] => Err(ValueError::new(value.len(), "missing RTCP port")),
            [_, (span, _), ..] => Err(ValueError::new(
                span.start,
                "after the port, expect exactly `<nettype> <addrtype> <address>`",
            )),
        }
    }
}

impl fmt::Display for Rtcp<'_> {
    /// Formats the value as it appears after `a=rtcp:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(a) = &self.address {
            write!(f, " {} {} {}", a.nettype, a.addrtype, a.address)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_video_and_audio() {
        assert_eq!(
            Rtpmap::parse("96 H264/90000").unwrap(),
            Rtpmap {
                payload_type: 96,
                encoding: "H264",
                clock_rate: 90000,
                channels: None,
            }
        );
        assert_eq!(
            Rtpmap::parse("97 MPEG4-GENERIC/44100/2").unwrap(),
            Rtpmap {
                payload_type: 97,
                encoding: "MPEG4-GENERIC",
                clock_rate: 44100,
                channels: Some(2),
            }
        );
    }

    #[test]
    fn rtpmap_errors() {
        assert_eq!(
            Rtpmap::parse("128 x/1"),
            Err(ValueError::new(
                0,
                "payload type must be a decimal number from 0 to 127"
            ))
        );
        assert_eq!(
            Rtpmap::parse("96 H264"),
            Err(ValueError::new(7, "missing `/<clock rate>`"))
        );
        assert_eq!(
            Rtpmap::parse("96 H264/9k"),
            Err(ValueError::new(8, "clock rate must be a decimal number"))
        );
        assert_eq!(Rtpmap::parse("0 PCMU/8000/one").unwrap_err().offset, 12);
        assert_eq!(Rtpmap::parse("0 PCMU/8000/1/2").unwrap_err().offset, 2);
        assert_eq!(Rtpmap::parse("0 /8000").unwrap_err().offset, 2);
        assert_eq!(Rtpmap::parse("0 PCMU/8000 x").unwrap_err().offset, 12);
        assert_eq!(Rtpmap::parse("").unwrap_err().offset, 0);
    }

    #[test]
    fn fmtp_h264_params() {
        let f = Fmtp::parse(
            "96 packetization-mode=1; sprop-parameter-sets=Z0IAKeKQFAe2AtwEBAaQeJEV,aM48gA==; \
             profile-level-id=42001E",
        )
        .unwrap();
        assert_eq!(f.format, "96");
        assert_eq!(f.payload_type(), Some(96));
        assert_eq!(f.param("packetization-mode"), Some("1"));
        assert_eq!(
            f.param("SPROP-PARAMETER-SETS"),
            Some("Z0IAKeKQFAe2AtwEBAaQeJEV,aM48gA==")
        );
        assert_eq!(f.param("profile-level-id"), Some("42001E"));
        assert_eq!(f.param("missing"), None);
    }

    #[test]
    fn fmtp_params_edge_cases() {
        let got: Vec<_> = fmtp_params("0-15").collect();
        assert_eq!(got, vec![("0-15", None)]);
        let got: Vec<_> = fmtp_params(" a = 1 ;;b=;c").collect();
        assert_eq!(got, vec![("a", Some("1")), ("b", Some("")), ("c", None)]);
        assert_eq!(fmtp_params("").count(), 0);
        let f = Fmtp::parse("101 0-15").unwrap();
        assert_eq!(f.param("0-15"), Some(""));
        let f = Fmtp::parse("t38").unwrap();
        assert_eq!((f.format, f.params, f.payload_type()), ("t38", "", None));
        assert_eq!(Fmtp::parse("  "), Err(ValueError::new(2, "missing format")));
    }

    #[test]
    fn rtcp_port_and_address() {
        assert_eq!(
            Rtcp::parse("53020").unwrap(),
            Rtcp {
                port: 53020,
                address: None,
            }
        );
        let r = Rtcp::parse("9079 IN IP4 192.0.2.50").unwrap();
        assert_eq!(
            r.address,
            Some(NetAddress {
                nettype: "IN",
                addrtype: "IP4",
                address: "192.0.2.50",
            })
        );
        assert_eq!(r.to_string(), "9079 IN IP4 192.0.2.50");
        assert_eq!(Rtcp::parse("53020").unwrap().to_string(), "53020");
    }

    #[test]
    fn rtcp_errors() {
        assert_eq!(Rtcp::parse("x").unwrap_err().offset, 0);
        assert_eq!(Rtcp::parse("5 IN IP4").unwrap_err().offset, 2);
        assert_eq!(Rtcp::parse("5 IN IP4 a b").unwrap_err().offset, 2);
        assert_eq!(
            Rtcp::parse(""),
            Err(ValueError::new(0, "missing RTCP port"))
        );
    }
}
