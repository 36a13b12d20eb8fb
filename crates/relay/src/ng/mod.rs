//! rtpengine's `ng` control protocol, sans-IO: the bencode and JSON encodings, message
//! framing over UDP and TCP, request interpretation, reply shapes and the per-cookie
//! reply cache. The wire format is summarised in `shared/reference/rtp-relay-anchors.md`
//! section (b), taken from rtpengine's `docs/ng_control_protocol.md` and
//! `daemon/control_ng.c`, and from the Kamailio and OpenSIPS `rtpengine` modules.

pub mod bencode;
pub mod cookie_cache;
pub mod framing;
pub mod json;
pub mod reply;
pub mod request;
