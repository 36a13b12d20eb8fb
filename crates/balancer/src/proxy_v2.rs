//! The PROXY protocol version 2 header (HAProxy's `proxy-protocol.txt`, section 2.2):
//! the binary prefix a proxy writes before a connection's (or a datagram's) payload so
//! the server learns the real client's address. Sans-IO: bytes in, values out.
//!
//! What it does: [`Header::encode`] writes `PROXY` and `LOCAL` headers for TCP and UDP
//! over IPv4 and IPv6 (families `AF_INET`/`AF_INET6`, transports `STREAM`/`DGRAM`),
//! with optional TLVs; [`decode`] reads one header from the start of a buffer that may
//! hold only part of it, for a stream (call again when more bytes arrived) or a
//! datagram (a partial header there is an error for the caller to report).
//!
//! Tolerated on decode, as the spec asks of a receiver: an `AF_UNSPEC` family or an
//! `UNSPEC` transport (the address block is skipped); a `LOCAL` command with any
//! address block; an address block longer than the family needs (the rest is TLVs);
//! `AF_UNIX` addresses (kept as raw paths).
//!
//! Rejected, with the byte offset of the offending field: a wrong signature (as soon as
//! the first wrong byte arrives, so a client that speaks no PROXY is refused at once),
//! a version other than 2, an unknown command, family or transport, an address block
//! shorter than its family needs, a TLV running past the block, and a block longer than
//! [`MAX_PAYLOAD`] (the spec allows 65,535 bytes; we bound what a peer makes us buffer).
//!
//! What it does not: version 1 (the text form), TLV semantics (CRC32C, SSL, unique ID:
//! TLVs are carried as raw type and value), or deciding whom to trust: accepting a
//! header only from known proxies is the caller's policy.
//!
//! PROXY over UDP: the spec's `DGRAM` transport (`0x12`, `0x22`) describes a datagram
//! flow; a header and its payload travel in the same datagram and are parsed per
//! datagram (dnsdist sends it that way; nginx declines UDP PROXY).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Bytes before the address block: signature, version and command, family and
/// transport, block length.
pub const FIXED_LEN: usize = 16;

/// Largest address block (addresses and TLVs) the decoder accepts. 1 KiB holds the
/// largest address (two Unix paths, 216 bytes) and the TLVs HAProxy sends (ALPN,
/// authority, unique id, SSL) several times over.
pub const MAX_PAYLOAD: usize = 1024;

const UNIX_PATH_LEN: usize = 108;

/// `LOCAL`: the connection was made by the proxy itself (a health check); the
/// receiver uses the connection's own addresses. `PROXY`: relayed for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Local,
    Proxy,
}

/// The relayed flow's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `SOCK_STREAM`: TCP.
    Stream,
    /// `SOCK_DGRAM`: UDP.
    Dgram,
}

/// The relayed flow's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// `AF_UNSPEC` or the `UNSPEC` transport: no address (what `LOCAL` usually sends).
    Unspec,
    /// `AF_INET` or `AF_INET6`: `source` is the client, `destination` the address it
    /// connected to. Both are of the same family after decoding; on encoding, a mixed
    /// pair is written as IPv6 with the IPv4 side mapped (`::ffff:a.b.c.d`).
    Inet {
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `AF_UNIX`: paths without their trailing NUL padding (at most 108 bytes each).
    Unix {
        transport: Transport,
        source: Vec<u8>,
        destination: Vec<u8>,
    },
}

/// One type-length-value field after the addresses, carried raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// A decoded or to-be-encoded v2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub command: Command,
    pub addresses: Addresses,
    pub tlvs: Vec<Tlv>,
}

/// Why a header cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("PROXY v2 address block of {len} bytes exceeds the 65535 the length field holds")]
    TooLong { len: usize },
    #[error("Unix socket path of {len} bytes exceeds the 108 a PROXY v2 header holds")]
    UnixPathTooLong { len: usize },
}

/// Why bytes are not a valid v2 header. `offset` is the byte (from the start of the
/// buffer) where the offending field starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PROXY v2 header at byte {offset}: {reason}")]
pub struct DecodeError {
    pub offset: usize,
    pub reason: DecodeErrorReason,
}

/// What is wrong in a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorReason {
    #[error("not the PROXY v2 signature")]
    Signature,
    #[error("version {0} (only 2 is supported)")]
    Version(u8),
    #[error("unknown command {0:#x}")]
    Command(u8),
    #[error("unknown address family {0:#x}")]
    Family(u8),
    #[error("unknown transport {0:#x}")]
    Transport(u8),
    #[error("address block of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("address block of {len} bytes is shorter than the {need} its family needs")]
    ShortAddresses { len: usize, need: usize },
    #[error("TLV runs past the end of the header")]
    TruncatedTlv,
    #[error("datagram ends inside the header")]
    TruncatedDatagram,
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header in the first `consumed` bytes; the payload follows.
    Done { header: Header, consumed: usize },
    /// Nothing wrong so far; at least `need` bytes in all are needed to go on.
    NeedMore { need: usize },
}

impl Header {
    /// A `PROXY` header for a client `source` that reached `destination`.
    /// An IPv4 peer of a dual-stack socket (`::ffff:a.b.c.d`) is written as IPv4:
    /// the header carries one address family, and back ends expect the client's own.
    pub fn proxy(transport: Transport, source: SocketAddr, destination: SocketAddr) -> Header {
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        Header {
            command: Command::Proxy,
            addresses: Addresses::Inet {
                transport,
                source: canonical(source),
                destination: canonical(destination),
            },
            tlvs: Vec::new(),
        }
    }

    /// A `LOCAL` header without addresses (health checks and the like).
    pub fn local() -> Header {
        Header {
            command: Command::Local,
            addresses: Addresses::Unspec,
            tlvs: Vec::new(),
        }
    }

    /// The client address a receiver should use: the source of a `PROXY` header with
    /// internet addresses; None otherwise (use the connection's own peer address).
    pub fn client(&self) -> Option<SocketAddr> {
        match (&self.command, &self.addresses) {
            (Command::Proxy, Addresses::Inet { source, .. }) => Some(*source),
            _ => None,
        }
    }

    /// Appends the encoded header to `out`; returns its length.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let start = out.len();
        let mut block = Vec::with_capacity(36);
        let fam_proto = match &self.addresses {
            Addresses::Unspec => 0x00,
            Addresses::Inet {
                transport,
                source,
                destination,
            } => {
                let family = match (source.ip(), destination.ip()) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        block.extend_from_slice(&s.octets());
                        block.extend_from_slice(&d.octets());
                        0x10
                    }
                    (s, d) => {
                        block.extend_from_slice(&as_v6(s).octets());
                        block.extend_from_slice(&as_v6(d).octets());
                        0x20
                    }
                };
                block.extend_from_slice(&source.port().to_be_bytes());
                block.extend_from_slice(&destination.port().to_be_bytes());
                family | transport_nibble(*transport)
            }
            Addresses::Unix {
                transport,
                source,
                destination,
            } => {
                for path in [source, destination] {
                    if path.len() > UNIX_PATH_LEN {
                        return Err(EncodeError::UnixPathTooLong { len: path.len() });
                    }
                    block.extend_from_slice(path);
                    block.resize(block.len() + UNIX_PATH_LEN - path.len(), 0);
                }
                0x30 | transport_nibble(*transport)
            }
        };
        for tlv in &self.tlvs {
            let len = u16::try_from(tlv.value.len()).map_err(|_| EncodeError::TooLong {
                len: tlv.value.len(),
            })?;
            block.push(tlv.kind);
            block.extend_from_slice(&len.to_be_bytes());
            block.extend_from_slice(&tlv.value);
        }
        let len =
            u16::try_from(block.len()).map_err(|_| EncodeError::TooLong { len: block.len() })?;
        out.extend_from_slice(&SIGNATURE);
        out.push(match self.command {
            Command::Local => 0x20,
            Command::Proxy => 0x21,
        });
        out.push(fam_proto);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
        Ok(out.len() - start)
    }

    /// The encoded header as a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn transport_nibble(t: Transport) -> u8 {
    match t {
        Transport::Stream => 0x1,
        Transport::Dgram => 0x2,
    }
}

fn err(offset: usize, reason: DecodeErrorReason) -> DecodeError {
    DecodeError { offset, reason }
}

/// Reads one header from the start of `buf` (a stream's first bytes). A buffer that
/// ends early gives [`Decoded::NeedMore`] unless what is there is already wrong.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let sig = buf.len().min(SIGNATURE.len());
    if let Some(i) = (0..sig).find(|&i| buf[i] != SIGNATURE[i]) {
        return Err(err(i, DecodeErrorReason::Signature));
    }
    if buf.len() < FIXED_LEN {
        // Check what fixed fields have arrived, so garbage is refused early.
        if let Some(&vc) = buf.get(12) {
            check_ver_cmd(vc)?;
        }
        if let Some(&fp) = buf.get(13) {
            check_fam_proto(fp)?;
        }
        return Ok(Decoded::NeedMore { need: FIXED_LEN });
    }
    let command = check_ver_cmd(buf[12])?;
    let (family, transport) = check_fam_proto(buf[13])?;
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_PAYLOAD {
        return Err(err(
            14,
            DecodeErrorReason::TooLong {
                len,
                max: MAX_PAYLOAD,
            },
        ));
    }
    let need_addr = match (family, transport) {
        (_, None) | (0x0, _) => 0,
        (0x1, _) => 12,
        (0x2, _) => 36,
        _ => 2 * UNIX_PATH_LEN,
    };
    if len < need_addr {
        return Err(err(
            14,
            DecodeErrorReason::ShortAddresses {
                len,
                need: need_addr,
            },
        ));
    }
    let total = FIXED_LEN + len;
    if buf.len() < total {
        return Ok(Decoded::NeedMore { need: total });
    }
    let block = &buf[FIXED_LEN..total];
    let addresses = match (family, transport) {
        (0x1, Some(transport)) => {
            let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Addresses::Inet {
                transport,
                source: SocketAddr::new(ip(&block[0..4]).into(), port(&block[8..10])),
                destination: SocketAddr::new(ip(&block[4..8]).into(), port(&block[10..12])),
            }
        }
        (0x2, Some(transport)) => {
            let ip = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16]));
            Addresses::Inet {
                transport,
                source: SocketAddr::new(ip(&block[0..16]).into(), port(&block[32..34])),
                destination: SocketAddr::new(ip(&block[16..32]).into(), port(&block[34..36])),
            }
        }
        (0x3, Some(transport)) => {
            let path = |b: &[u8]| {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                b[..end].to_vec()
            };
            Addresses::Unix {
                transport,
                source: path(&block[..UNIX_PATH_LEN]),
                destination: path(&block[UNIX_PATH_LEN..2 * UNIX_PATH_LEN]),
            }
        }
        _ => Addresses::Unspec,
    };
    // With an unspecified family or transport the whole block is opaque: the spec has
    // the receiver skip it, TLVs included.
    let tlvs = if matches!(addresses, Addresses::Unspec) {
        Vec::new()
    } else {
        decode_tlvs(&block[need_addr..], FIXED_LEN + need_addr)?
    };
    Ok(Decoded::Done {
        header: Header {
            command,
            addresses,
            tlvs,
        },
        consumed: total,
    })
}

/// Reads the header at the start of one datagram: the header and payload arrive
/// together, so a partial header is an error. Returns the header and the payload's
/// offset; a datagram without the signature gives an error at byte 0 or later.
pub fn decode_datagram(datagram: &[u8]) -> Result<(Header, usize), DecodeError> {
    match decode(datagram)? {
        Decoded::Done { header, consumed } => Ok((header, consumed)),
        Decoded::NeedMore { .. } => Err(err(datagram.len(), DecodeErrorReason::TruncatedDatagram)),
    }
}

fn port(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn check_ver_cmd(b: u8) -> Result<Command, DecodeError> {
    if b >> 4 != 2 {
        return Err(err(12, DecodeErrorReason::Version(b >> 4)));
    }
    match b & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        c => Err(err(12, DecodeErrorReason::Command(c))),
    }
}

/// The family nibble (0 unspec, 1 inet, 2 inet6, 3 unix) and the transport (None for
/// `UNSPEC`).
fn check_fam_proto(b: u8) -> Result<(u8, Option<Transport>), DecodeError> {
    let family = b >> 4;
    if family > 3 {
        return Err(err(13, DecodeErrorReason::Family(family)));
    }
    let transport = match b & 0x0F {
        0 => None,
        1 => Some(Transport::Stream),
        2 => Some(Transport::Dgram),
        t => return Err(err(13, DecodeErrorReason::Transport(t))),
    };
    Ok((family, transport))
}

fn decode_tlvs(mut b: &[u8], mut offset: usize) -> Result<Vec<Tlv>, DecodeError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 3 {
            return Err(err(offset, DecodeErrorReason::TruncatedTlv));
        }
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        if b.len() < 3 + len {
            return Err(err(offset, DecodeErrorReason::TruncatedTlv));
        }
        out.push(Tlv {
            kind: b[0],
            value: b[3..3 + len].to_vec(),
        });
        b = &b[3 + len..];
        offset += 3 + len;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "proxy_v2_tests.rs"]
mod tests;
