//! SDP protocol core for mediagate (RFC 8866): sans-IO, no sockets, no clock.
//!
//! What it does: parses an SDP body into a [`SessionDescription`] of session-level
//! lines and [`MediaDescription`]s while keeping every line byte-exact, so unknown
//! lines and attributes survive and an unmodified description serialises back to the
//! identical bytes. On top of that raw form it offers typed views of the lines a
//! streaming proxy or SIP media relay needs (`o=`, `c=`, `m=`, `a=control`,
//! `a=rtpmap`, `a=fmtp`, `a=range`, `a=rtcp`, `a=rtcp-mux`, direction attributes) and
//! rewriters that change only the line they name (bump the session version, set
//! addresses and ports, set or remove attributes, strip ICE). [`control_base`] gives the
//! base that `a=control:` values resolve against into RTSP URLs (RFC 2326 §C.1.1).
//!
//! What it does not: offer/answer negotiation (RFC 3264), codec semantics, or any I/O.
//!
//! The parser takes a complete body: SDP has no framing of its own, so its container
//! (the RTSP or SIP `Content-Length`) delimits it and there is no `Incomplete` state;
//! any prefix of a body is either a shorter valid description or an error. It is
//! bounded by [`Limits`] and total: malformed input yields a [`ParseError`] with the
//! byte offset and line number, never a panic.

#![warn(unreachable_pub)]

mod attribute;
mod connection;
mod control;
mod error;
mod line;
mod media;
mod media_line;
mod origin;
mod parse;
mod range;
mod rtp_attributes;
mod section;
mod session;

pub use attribute::{Attribute, Direction, ICE_ATTRIBUTES};
pub use connection::Connection;
pub use control::control_base;
pub use error::{ParseError, ParseErrorKind, RewriteError, ValueError};
pub use line::{Line, LineEnding};
pub use media::MediaDescription;
pub use media_line::{MediaLine, MediaType};
pub use origin::Origin;
pub use parse::Limits;
pub use range::{NptRange, NptTime, Range};
pub use rtp_attributes::{fmtp_params, Fmtp, NetAddress, Rtcp, Rtpmap};
pub use session::SessionDescription;

#[cfg(test)]
mod tests;
