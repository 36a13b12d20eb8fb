//! `mediagate-loadgen rtsp-stub`: a minimal RTSP server that answers at once and sends
//! no media, as a back end for measuring a balancer's own cost per session (issue 14:
//! 5,000 session setups a second on a 2-core machine, where a real media server's
//! own work per session would use the cores the balancer is measured on).
//!
//! It answers OPTIONS, DESCRIBE (one H.264 track), SETUP (a new session id unless the
//! request names one; the `Transport` echoed with `server_port` for UDP), PLAY,
//! PAUSE, GET_PARAMETER, SET_PARAMETER and TEARDOWN with 200, anything else with 501.
//! It keeps no state beyond a counter and checks nothing: it is not a server to
//! test a client against.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use bytes::BytesMut;
use mediagate_rtsp::parse::{Decoder, Limits};
use mediagate_rtsp::{Item, Method, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=stub\r\nt=0 0\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=42c01e;sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==\r\n\
a=control:trackID=0\r\n";

/// Options of `mediagate-loadgen rtsp-stub`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StubArgs {
    /// Address to listen on, IP:PORT; repeat for several.
    #[arg(long, required = true)]
    pub listen: Vec<SocketAddr>,
}

/// Serves until killed.
pub(crate) fn run(args: StubArgs) -> anyhow::Result<u8> {
    let _ = mediagate_udp::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let next = Arc::new(AtomicU64::new(1));
        let mut tasks = Vec::new();
        for addr in &args.listen {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let next = next.clone();
                    tokio::spawn(async move { serve(s, &next).await });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(0)
    })
}

async fn serve(mut s: TcpStream, next: &AtomicU64) {
    let _ = s.set_nodelay(true);
    let mut dec = Decoder::new(Limits::default());
    let mut out = BytesMut::new();
    loop {
        loop {
            match dec.next_item() {
                Ok(Some(Item::Request(req))) => answer(&req, next).write_to(&mut out),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let buf = dec.buffer_mut();
        buf.reserve(16 * 1024);
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn answer(req: &Request, next: &AtomicU64) -> Response {
    let mut r = Response::reply_to(req, StatusCode::OK);
    match req.method {
        Method::Options => r.headers.append(
            "Public",
            "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
        ),
        Method::Describe => {
            r.headers.append(
                "Content-Base",
                format!("{}/", req.uri.trim_end_matches('/')),
            );
            r.set_body("application/sdp", SDP);
        }
        Method::Setup => {
            let session = match req.headers.get("Session") {
                Some(s) => s.split(';').next().unwrap_or(s).trim().to_owned(),
                None => format!("{:016x}", next.fetch_add(1, Ordering::Relaxed)),
            };
            r.headers.append("Session", format!("{session};timeout=60"));
            let t = req.headers.get("Transport").unwrap_or("RTP/AVP;unicast");
            let t = if t.contains("interleaved") {
                t.to_owned()
            } else {
                format!("{t};server_port=6970-6971")
            };
            r.headers.append("Transport", t);
        }
        Method::Play
        | Method::Pause
        | Method::Teardown
        | Method::GetParameter
        | Method::SetParameter => {
            if let Some(s) = req.headers.get("Session") {
                r.headers.append("Session", s);
            }
        }
        _ => r.set_status(StatusCode::NOT_IMPLEMENTED),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtsp::Version;

    fn req(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut r = Request::new(method, "rtsp://h/cam", Version::Rtsp1_0);
        r.headers.append("CSeq", "7");
        for (k, v) in headers {
            r.headers.append(*k, *v);
        }
        r
    }

    #[test]
    fn answers_a_session_and_numbers_new_ones() {
        let next = AtomicU64::new(1);
        let d = answer(&req(Method::Describe, &[]), &next);
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.headers.get("CSeq"), Some("7"));
        assert_eq!(d.headers.get("Content-Base"), Some("rtsp://h/cam/"));
        assert!(d.body.starts_with(b"v=0"));
        let tcp = "RTP/AVP/TCP;unicast;interleaved=0-1";
        let s = answer(&req(Method::Setup, &[("Transport", tcp)]), &next);
        assert_eq!(
            s.headers.get("Session"),
            Some("0000000000000001;timeout=60")
        );
        assert_eq!(s.headers.get("Transport"), Some(tcp));
        let udp = "RTP/AVP;unicast;client_port=5000-5001";
        let s = answer(&req(Method::Setup, &[("Transport", udp)]), &next);
        assert_eq!(
            s.headers.get("Session"),
            Some("0000000000000002;timeout=60")
        );
        assert_eq!(
            s.headers.get("Transport"),
            Some("RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971")
        );
        let again = answer(
            &req(
                Method::Setup,
                &[("Session", "0000000000000002"), ("Transport", udp)],
            ),
            &next,
        );
        assert_eq!(
            again.headers.get("Session"),
            Some("0000000000000002;timeout=60")
        );
        let t = answer(&req(Method::Teardown, &[("Session", "abc")]), &next);
        assert_eq!(t.headers.get("Session"), Some("abc"));
        assert_eq!(
            answer(&req(Method::Record, &[]), &next).status,
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
