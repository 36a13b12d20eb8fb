//! Writes SR, RR, SDES, BYE and APP packets and compound packets into a caller
//! buffer (RFC 3550 §6.1, §6.4–§6.7).
//!
//! What it does: computes each packet's exact length first, checks counts (at most 31),
//! item and reason lengths (at most 255) and the 16-bit length field, then writes the
//! packet with SDES chunks and BYE reasons null-padded to 32 bits.
//! [`CompoundWriter`] chains packets and insists that the first is an SR or RR.
//!
//! What it does not: allocate, add RTCP padding (only SRTCP would need it), or decide
//! when to send (the RTCP interval needs a clock: engines).

use super::report::{ReportBlock, SenderInfo, REPORT_BLOCK_LEN, SENDER_INFO_LEN};
use super::sdes::{SdesItem, SdesType};
use super::{MAX_COUNT, PT_APP, PT_BYE, PT_RR, PT_SDES, PT_SR, RTCP_HEADER_LEN};
use crate::build_error::BuildError;
use crate::writer::SliceWriter;

/// One SDES chunk to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunkSpec<'a> {
    /// Source described.
    pub ssrc: u32,
    /// Its items; each value at most 255 bytes; [`SdesType::END`] is not allowed.
    pub items: &'a [SdesItem<'a>],
}

/// Largest RTCP packet the 16-bit length field can describe.
const MAX_PACKET_LEN: usize = (u16::MAX as usize + 1) * 4;

fn check_count(field: &'static str, n: usize) -> Result<u8, BuildError> {
    u8::try_from(n)
        .ok()
        .filter(|&c| usize::from(c) <= MAX_COUNT)
        .ok_or(BuildError::OutOfRange {
            field,
            value: n,
            max: MAX_COUNT,
        })
}

fn check_len255(field: &'static str, len: usize) -> Result<u8, BuildError> {
    u8::try_from(len).map_err(|_| BuildError::OutOfRange {
        field,
        value: len,
        max: 255,
    })
}

fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Checks sizes, writes the common header and hands the body to `body`.
fn write_packet(
    out: &mut [u8],
    count: u8,
    packet_type: u8,
    len: usize,
    body: impl FnOnce(&mut SliceWriter<'_>),
) -> Result<usize, BuildError> {
    if len > MAX_PACKET_LEN {
        return Err(BuildError::OutOfRange {
            field: "RTCP packet length in bytes",
            value: len,
            max: MAX_PACKET_LEN,
        });
    }
    let available = out.len();
    let out = out.get_mut(..len).ok_or(BuildError::BufferTooSmall {
        needed: len,
        available,
    })?;
    let mut w = SliceWriter::new(out);
    // Exact: len is a multiple of 4 between 4 and MAX_PACKET_LEN.
    let words = (len / 4 - 1) as u16;
    w.put(&[2 << 6 | count, packet_type]);
    w.put(&words.to_be_bytes());
    body(&mut w);
    Ok(w.pos())
}

fn put_blocks(w: &mut SliceWriter<'_>, blocks: &[ReportBlock]) {
    for b in blocks {
        w.put(&b.encode());
    }
}

/// Writes an SR with `blocks` report blocks; returns its length.
pub fn write_sender_report(
    out: &mut [u8],
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, BuildError> {
    let count = check_count("report block count", blocks.len())?;
    let len = RTCP_HEADER_LEN + 4 + SENDER_INFO_LEN + REPORT_BLOCK_LEN * blocks.len();
    write_packet(out, count, PT_SR, len, |w| {
        w.put(&info.ssrc.to_be_bytes());
        w.put(&info.ntp_timestamp.to_be_bytes());
        w.put(&info.rtp_timestamp.to_be_bytes());
        w.put(&info.packet_count.to_be_bytes());
        w.put(&info.octet_count.to_be_bytes());
        put_blocks(w, blocks);
    })
}

/// Writes an RR from `ssrc` with `blocks`; returns its length.
pub fn write_receiver_report(
    out: &mut [u8],
    ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, BuildError> {
    let count = check_count("report block count", blocks.len())?;
    let len = RTCP_HEADER_LEN + 4 + REPORT_BLOCK_LEN * blocks.len();
    write_packet(out, count, PT_RR, len, |w| {
        w.put(&ssrc.to_be_bytes());
        put_blocks(w, blocks);
    })
}

/// Writes an SDES packet with `chunks`; returns its length.
pub fn write_sdes(out: &mut [u8], chunks: &[SdesChunkSpec<'_>]) -> Result<usize, BuildError> {
    let count = check_count("SDES chunk count", chunks.len())?;
    let mut len = RTCP_HEADER_LEN;
    for chunk in chunks {
        let mut items: usize = 0;
        for item in chunk.items {
            if item.kind == SdesType::END {
                return Err(BuildError::OutOfRange {
                    field: "SDES item type (0 ends a chunk and cannot be an item)",
                    value: 0,
                    max: 255,
                });
            }
            check_len255("SDES item length", item.value.len())?;
            items = items.saturating_add(2 + item.value.len());
        }
        // At least one null octet, then up to the 32-bit boundary.
        len = len.saturating_add(round4(items.saturating_add(5)));
    }
    write_packet(out, count, PT_SDES, len, |w| {
        for chunk in chunks {
            w.put(&chunk.ssrc.to_be_bytes());
            let start = w.pos();
            for item in chunk.items {
                // Lengths were checked above.
                w.put(&[item.kind.0, item.value.len() as u8]);
                w.put(item.value);
            }
            let written = w.pos() - start + 4;
            w.zeros(round4(written + 1) - written);
        }
    })
}

/// Writes an SDES packet with one chunk carrying only a CNAME.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, BuildError> {
    let items = [SdesItem {
        kind: SdesType::CNAME,
        value: cname,
    }];
    write_sdes(
        out,
        &[SdesChunkSpec {
            ssrc,
            items: &items,
        }],
    )
}

/// Writes a BYE for `ssrcs` with an optional reason; returns its length.
pub fn write_bye(
    out: &mut [u8],
    ssrcs: &[u32],
    reason: Option<&[u8]>,
) -> Result<usize, BuildError> {
    let count = check_count("BYE source count", ssrcs.len())?;
    let reason_len = reason
        .map(|r| check_len255("BYE reason length", r.len()))
        .transpose()?;
    let reason_bytes = reason_len.map_or(0, |n| round4(1 + usize::from(n)));
    let len = RTCP_HEADER_LEN + 4 * ssrcs.len() + reason_bytes;
    write_packet(out, count, PT_BYE, len, |w| {
        for ssrc in ssrcs {
            w.put(&ssrc.to_be_bytes());
        }
        if let (Some(reason), Some(n)) = (reason, reason_len) {
            w.put(&[n]);
            w.put(reason);
            w.zeros(reason_bytes - 1 - reason.len());
        }
    })
}

/// Writes an APP packet; `data` must be a multiple of 4 bytes.
pub fn write_app(
    out: &mut [u8],
    subtype: u8,
    ssrc: u32,
    name: [u8; 4],
    data: &[u8],
) -> Result<usize, BuildError> {
    let count = check_count("APP subtype", subtype.into())?;
    if data.len() % 4 != 0 {
        return Err(BuildError::NotWordAligned {
            field: "APP data",
            len: data.len(),
        });
    }
    let len = (RTCP_HEADER_LEN + 8).saturating_add(data.len());
    write_packet(out, count, PT_APP, len, |w| {
        w.put(&ssrc.to_be_bytes());
        w.put(&name);
        w.put(data);
    })
}

/// Builds a compound RTCP packet in a caller buffer, one part after another.
///
/// ```
/// use mediagate_rtp::rtcp::build::CompoundWriter;
/// use mediagate_rtp::rtcp::{Compound, ReportBlock};
///
/// let mut buf = [0u8; 1500];
/// let mut w = CompoundWriter::new(&mut buf);
/// w.receiver_report(0x1234, &[ReportBlock { ssrc: 0x5678, ..Default::default() }])?;
/// w.sdes_cname(0x1234, b"edge@example.net")?;
/// let n = w.finish()?;
/// assert_eq!(Compound::parse(&buf[..n]).unwrap().len(), 2);
/// # Ok::<(), mediagate_rtp::BuildError>(())
/// ```
#[derive(Debug)]
pub struct CompoundWriter<'a> {
    out: &'a mut [u8],
    len: usize,
    first_type: Option<u8>,
}

impl<'a> CompoundWriter<'a> {
    /// Starts an empty compound packet at the beginning of `out`.
    pub fn new(out: &'a mut [u8]) -> Self {
        Self {
            out,
            len: 0,
            first_type: None,
        }
    }

    fn append(
        &mut self,
        packet_type: u8,
        write: impl FnOnce(&mut [u8]) -> Result<usize, BuildError>,
    ) -> Result<&mut Self, BuildError> {
        let available = self.out.len();
        let rest = self.out.get_mut(self.len..).unwrap_or(&mut []);
        let n = write(rest).map_err(|e| match e {
            BuildError::BufferTooSmall { needed, .. } => BuildError::BufferTooSmall {
                needed: needed.saturating_add(self.len),
                available,
            },
            other => other,
        })?;
        self.len += n;
        self.first_type.get_or_insert(packet_type);
        Ok(self)
    }

    /// Appends an SR.
    pub fn sender_report(
        &mut self,
        info: &SenderInfo,
        blocks: &[ReportBlock],
    ) -> Result<&mut Self, BuildError> {
        self.append(PT_SR, |out| write_sender_report(out, info, blocks))
    }

    /// Appends an RR.
    pub fn receiver_report(
        &mut self,
        ssrc: u32,
        blocks: &[ReportBlock],
    ) -> Result<&mut Self, BuildError> {
        self.append(PT_RR, |out| write_receiver_report(out, ssrc, blocks))
    }

    /// Appends an SDES packet.
    pub fn sdes(&mut self, chunks: &[SdesChunkSpec<'_>]) -> Result<&mut Self, BuildError> {
        self.append(PT_SDES, |out| write_sdes(out, chunks))
    }

    /// Appends an SDES packet with a single CNAME.
    pub fn sdes_cname(&mut self, ssrc: u32, cname: &[u8]) -> Result<&mut Self, BuildError> {
        self.append(PT_SDES, |out| write_sdes_cname(out, ssrc, cname))
    }

    /// Appends a BYE.
    pub fn bye(&mut self, ssrcs: &[u32], reason: Option<&[u8]>) -> Result<&mut Self, BuildError> {
        self.append(PT_BYE, |out| write_bye(out, ssrcs, reason))
    }

    /// Appends an APP packet.
    pub fn app(
        &mut self,
        subtype: u8,
        ssrc: u32,
        name: [u8; 4],
        data: &[u8],
    ) -> Result<&mut Self, BuildError> {
        self.append(PT_APP, |out| write_app(out, subtype, ssrc, name, data))
    }

    /// Length written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first packet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ends the compound; returns its length. Fails if it does not start with an SR or
    /// RR (RFC 3550 §6.1); use [`CompoundWriter::len`] for RFC 5506 reduced-size RTCP.
    pub fn finish(self) -> Result<usize, BuildError> {
        match self.first_type {
            None => Err(BuildError::EmptyCompound),
            Some(PT_SR | PT_RR) => Ok(self.len),
            Some(_) => Err(BuildError::CompoundMustStartWithReport),
        }
    }
}
