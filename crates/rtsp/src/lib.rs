//! RTSP protocol core for mediagate: sans-IO, no sockets, no clock.
//!
//! What it does: parses and serializes RTSP/1.0 (RFC 2326) and RTSP/2.0 (RFC 7826)
//! requests and responses, interleaved `$` frames mixed on the same byte stream
//! (RFC 2326 §10.12), the QuickTime RTSP-over-HTTP tunnel framing, typed views of the
//! headers a proxy meets, and Basic/Digest authentication (RFC 7617, RFC 7616) for both
//! the client and the server side.
//!
//! It also keeps a client connection's request state ([`client::ClientSession`]: CSeq,
//! Session, challenge retry, response matching, keep-alive timing with time passed in).
//!
//! What it does not: any I/O, clocks or server session state machines; those live in
//! the engines, which feed bytes in and write the bytes this crate produces.
//!
//! Every parser is incremental (a partial buffer yields `Incomplete`), bounded (see
//! [`Limits`]) and total: malformed input yields an error with the byte offset, never a
//! panic.
//!
//! Public: the message types at the root, and the modules the edge, the load generator
//! and the fuzz targets call into ([`auth`], [`client`], [`headers`], [`parse`],
//! [`tunnel`], whose client half is kept as a documented API for tunnelled clients).
//! Submodules are private; their types are re-exported where they belong.

#![warn(unreachable_pub)]

pub mod auth;
pub mod client;
mod header_map;
pub mod headers;
mod message;
pub mod parse;
mod status;
pub mod tunnel;

pub use client::{ClientSession, ClientSessionError, ResponseDisposition};
pub use header_map::{HeaderError, Headers, TypedHeader};
pub use message::{FrameTooLarge, InterleavedFrame, Item, Method, Request, Response, Version};
pub use parse::{parse_head, parse_item, Decoder, Head, Limits, ParseError, Parsed};
pub use status::StatusCode;
pub use tunnel::{PostBodyDecoder, TunnelChannel, TunnelError, TunnelRequest};
