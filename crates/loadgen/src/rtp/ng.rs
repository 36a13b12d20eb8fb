//! A minimal `ng` client for the load generator: just enough bencode to send offer,
//! answer and delete as Kamailio does and to read `result`, `error-reason` and `sdp`
//! back, over UDP with a cookie per request and retransmission on timeout.
//!
//! What it does not: validate replies beyond what it reads (the relay's own codec is
//! tested in `mediagate-relay`; this one only has to talk to mediagate and rtpengine
//! alike), or pipeline requests.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A bencode value, as far as replies need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bval {
    Bytes(Vec<u8>),
    Int(i64),
    List(Vec<Bval>),
    Dict(Vec<(Vec<u8>, Bval)>),
}

impl Bval {
    pub fn get(&self, key: &str) -> Option<&Bval> {
        match self {
            Bval::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Bval::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// Encodes a dictionary of strings and string lists.
pub fn encode(entries: &[(&str, Entry<'_>)]) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(b);
    }
    let mut out = vec![b'd'];
    for (k, v) in entries {
        bytes(&mut out, k.as_bytes());
        match v {
            Entry::Str(s) => bytes(&mut out, s.as_bytes()),
            Entry::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Entry::List(items) => {
                out.push(b'l');
                for i in *items {
                    bytes(&mut out, i.as_bytes());
                }
                out.push(b'e');
            }
        }
    }
    out.push(b'e');
    out
}

/// A value in a request.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Str(&'a str),
    Int(i64),
    List(&'a [&'a str]),
}

/// Decodes one value; `None` on anything malformed (depth-limited).
pub fn decode(buf: &[u8]) -> Option<Bval> {
    fn value(buf: &[u8], pos: &mut usize, depth: u32) -> Option<Bval> {
        if depth > 16 {
            return None;
        }
        match *buf.get(*pos)? {
            b'i' => {
                let end = *pos + buf.get(*pos..)?.iter().position(|b| *b == b'e')?;
                let n = std::str::from_utf8(buf.get(*pos + 1..end)?)
                    .ok()?
                    .parse()
                    .ok()?;
                *pos = end + 1;
                Some(Bval::Int(n))
            }
            b'l' | b'd' => {
                let dict = buf.get(*pos) == Some(&b'd');
                *pos += 1;
                let mut items = Vec::new();
                let mut entries = Vec::new();
                while *buf.get(*pos)? != b'e' {
                    if dict {
                        let Bval::Bytes(k) = value(buf, pos, depth + 1)? else {
                            return None;
                        };
                        entries.push((k, value(buf, pos, depth + 1)?));
                    } else {
                        items.push(value(buf, pos, depth + 1)?);
                    }
                }
                *pos += 1;
                Some(if dict {
                    Bval::Dict(entries)
                } else {
                    Bval::List(items)
                })
            }
            b'0'..=b'9' => {
                let colon = *pos + buf.get(*pos..)?.iter().position(|b| *b == b':')?;
                let len: usize = std::str::from_utf8(buf.get(*pos..colon)?)
                    .ok()?
                    .parse()
                    .ok()?;
                let start = colon + 1;
                let s = buf.get(start..start.checked_add(len)?)?.to_vec();
                *pos = start + len;
                Some(Bval::Bytes(s))
            }
            _ => None,
        }
    }
    let mut pos = 0;
    value(buf, &mut pos, 0)
}

/// A UDP `ng` client.
#[derive(Debug)]
pub struct NgClient {
    socket: UdpSocket,
    relay: SocketAddr,
    next: u64,
    tag: u32,
}

impl NgClient {
    pub fn new(relay: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if relay.is_ipv4() {
            "0.0.0.0:0".parse().map_err(io::Error::other)?
        } else {
            "[::]:0".parse().map_err(io::Error::other)?
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(relay)?;
        Ok(Self {
            socket,
            relay,
            next: 0,
            tag: std::process::id(),
        })
    }

    /// Sends one request (retrying 3 times at 1 s, as Kamailio does) and returns the
    /// decoded reply and the round-trip time of the attempt that was answered.
    pub fn request(&mut self, body: &[u8]) -> io::Result<(Bval, Duration)> {
        self.next += 1;
        let cookie = format!("{}_{}_{} ", self.tag, std::process::id(), self.next);
        let mut datagram = cookie.clone().into_bytes();
        datagram.extend_from_slice(body);
        let mut buf = vec![0u8; 65_536];
        for _ in 0..3 {
            let sent = Instant::now();
            self.socket.send(&datagram)?;
            self.socket.set_read_timeout(Some(Duration::from_secs(1)))?;
            loop {
                match self.socket.recv(&mut buf) {
                    Ok(n) => {
                        let reply = buf.get(..n).unwrap_or_default();
                        // A late reply to an earlier retransmission: skip it.
                        let Some(rest) = reply.strip_prefix(cookie.as_bytes()) else {
                            continue;
                        };
                        let v = decode(rest).ok_or_else(|| {
                            io::Error::other(format!("undecodable ng reply from {}", self.relay))
                        })?;
                        return Ok((v, sent.elapsed()));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no ng reply from {} after 3 tries", self.relay),
        ))
    }
}

/// The relay's result: `Ok(reply)` for `ok`, else the error text.
pub fn check(reply: &Bval) -> Result<&Bval, String> {
    match reply.get("result").and_then(Bval::text) {
        Some("ok") | Some("pong") => Ok(reply),
        Some(other) => Err(format!(
            "{other}: {}",
            reply
                .get("error-reason")
                .or_else(|| reply.get("message"))
                .and_then(Bval::text)
                .unwrap_or("")
        )),
        None => Err("reply without result".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_kamailio_and_decodes_replies() {
        let b = encode(&[
            ("command", Entry::Str("offer")),
            ("flags", Entry::List(&["trust-address"])),
            ("delete delay", Entry::Int(0)),
        ]);
        assert_eq!(
            b,
            b"d7:command5:offer5:flagsl13:trust-addresse12:delete delayi0ee"
        );
        let r = decode(b"d6:result2:ok3:sdp3:v=04:listli1e2:abee").unwrap();
        assert_eq!(
            check(&r).unwrap().get("sdp").and_then(Bval::text),
            Some("v=0")
        );
        let e = decode(b"d6:result5:error12:error-reason16:Ran out of portse").unwrap();
        assert_eq!(check(&e).unwrap_err(), "error: Ran out of ports");
        assert_eq!(decode(b"d3:abc"), None);
        assert_eq!(decode(&[b'l'; 100]), None);
    }
}
