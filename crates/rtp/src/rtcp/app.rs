//! APP packets: application-defined data (RFC 3550 §6.7).
//!
//! What it does: exposes subtype, SSRC, the 4-character name and the data. What it
//! does not: interpret any application's data.

use super::{RawRtcp, RtcpError};
use crate::reader::Reader;

/// A validated APP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    raw: RawRtcp<'a>,
    ssrc: u32,
    name: [u8; 4],
    data: &'a [u8],
}

impl<'a> App<'a> {
    /// Interprets `raw` (packet type 204).
    pub fn new(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        let mut r = Reader::new(raw.body);
        let short = RtcpError::Malformed {
            offset: raw.offset,
            context: "APP packet shorter than its SSRC and name",
        };
        let ssrc = r.u32().ok_or(short)?;
        let name = *r.array::<4>().ok_or(short)?;
        Ok(Self {
            raw,
            ssrc,
            name,
            data: r.rest(),
        })
    }

    /// The packet before interpretation.
    pub fn raw(&self) -> RawRtcp<'a> {
        self.raw
    }

    /// 5-bit subtype (the count field).
    pub fn subtype(&self) -> u8 {
        self.raw.count
    }

    /// SSRC of the sender.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Four ASCII characters naming the application.
    pub fn name(&self) -> [u8; 4] {
        self.name
    }

    /// Application-dependent data.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}
