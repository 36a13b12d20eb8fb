//! Opening a stream at the origin: DESCRIBE, SETUP of every track over TCP interleaved
//! (RFC 2326 §10.12; the origin is read over TCP by default so nothing is lost between
//! origin and edge), PLAY.
//!
//! What it does not: keep the stream going (the hub task reads frames and reconnects).

use std::time::Duration;

use mediagate_rtsp::{Method, Response};
use mediagate_sdp::SessionDescription;

use crate::ports::{PortAllocator, SocketPair};
use crate::reach::{Grant, Reach};
use crate::rtsp_client::{ClientError, Credentials, RtspClient};
use mediagate_config::RtspUrl;

/// Where and how to open the stream.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// The URL to request (absolute, without credentials). Through a parent edge this is
    /// still the origin's URL; only `connect_to` changes.
    pub url: RtspUrl,
    /// `host:port` to connect to: the origin, or the parent edge.
    pub connect_to: String,
    pub credentials: Option<Credentials>,
    /// Our `Via` entry, e.g. `RTSP/1.0 edge1`.
    pub via: String,
    pub timeout: Duration,
    /// Receive media over UDP instead of TCP interleaved (a route's
    /// `upstream_transport = "udp"`).
    pub udp: bool,
    /// The remap rule that chose this origin (its advertised prefix), for records.
    pub rule: Option<String>,
    /// Keep on-demand content of this origin in the cache (the route's `cache`;
    /// forward and transparent targets: true). Whether the edge has a cache at all is
    /// `[edge.cache] enabled`.
    pub cache: bool,
    /// Largest object kept for this origin, in bytes (the route's `cache_max_object`).
    pub cache_max_object: Option<u64>,
    /// Cache content the origin wanted credentials for even when it is not marked
    /// `public` (the route's `cache_authenticated`).
    pub cache_authenticated: bool,
    /// Who vouches for `connect_to`: the config (a route, the parent) or only the
    /// forward allow list.
    pub(crate) grant: Grant,
    /// Where this edge may connect; every hop and redirect is checked against it.
    pub(crate) reach: std::sync::Arc<Reach>,
}

/// Codec families whose keyframes we recognise (owned by `mediagate_rtp`).
pub use mediagate_rtp::Codec;

/// One track of the origin's stream.
#[derive(Debug, Clone)]
pub struct TrackInfo {
    /// Index of the `m=` section in the SDP.
    pub media_index: usize,
    /// The origin's control URL for SETUP.
    pub control_url: String,
    pub is_video: bool,
    pub codec: Codec,
    pub clock_rate: u32,
    /// Interleaved channel of RTP (RTCP is `+ 1`) on the origin connection.
    pub channel: u8,
}

/// What the origin said about the stream.
#[derive(Debug, Clone)]
pub struct Described {
    pub sdp: SessionDescription,
    pub tracks: Vec<TrackInfo>,
    /// No finite `a=range`: live content (split); finite: on-demand.
    pub live: bool,
    /// Origin session timeout (seconds) from the SETUP responses (as the client core
    /// read it), for keep-alives.
    pub session_timeout: u64,
    /// The origin URL for aggregate requests (PLAY, PAUSE, TEARDOWN).
    pub aggregate_url: String,
    /// What the DESCRIBE answer said about caching it (`sdp_origin` left empty: the
    /// cache fill takes it from `sdp`).
    pub caching: mediagate_cache::Validators,
    /// The origin wanted credentials for it: the DESCRIBE carried the route's
    /// credentials after a challenge, or a viewer's own `Authorization`.
    pub needed_auth: bool,
}

/// A conditional DESCRIBE's answer.
#[derive(Debug)]
pub enum Revalidated {
    /// `304 Not Modified`, with the caching headers it carried (RFC 7234 §4.3.4: they
    /// replace the stored ones).
    NotModified(mediagate_cache::Validators),
    Changed(Box<Described>),
}

/// A DESCRIBE's answer: the description, or a `304` to a conditional one.
enum Answer {
    Described(Described),
    NotModified(mediagate_cache::Validators),
}

/// The caching headers of an origin's answer (`sdp_origin` left empty).
fn caching_headers(resp: &Response) -> mediagate_cache::Validators {
    let header = |name: &str| resp.headers.get(name).map(str::to_owned);
    mediagate_cache::Validators {
        etag: header("ETag").or_else(|| header("MTag")),
        last_modified: header("Last-Modified"),
        expires: header("Expires"),
        cache_control: {
            let all: Vec<&str> = resp.headers.get_all("Cache-Control").collect();
            (!all.is_empty()).then(|| all.join(", "))
        },
        sdp_origin: None,
    }
}

impl Described {
    /// The track whose keyframes mark join points (the first video track).
    pub fn video_track(&self) -> Option<usize> {
        self.tracks.iter().position(|t| t.is_video)
    }
}

/// Connects, describes, sets up every track and starts playing (live streams).
/// Returns the client (now streaming) and the description.
pub async fn open(
    target: &UpstreamTarget,
    ports: &PortAllocator,
) -> Result<(RtspClient, Described, Option<Vec<SocketPair>>), ClientError> {
    let (mut client, mut described) = describe(target).await?;
    if !described.live {
        // On-demand content is not split: each viewer gets its own session.
        return Ok((client, described, None));
    }
    let sockets = if target.udp {
        Some(setup_tracks_udp(&mut client, &mut described, ports).await?)
    } else {
        setup_tracks(&mut client, &mut described).await?;
        None
    };
    play(&mut client, &described, None).await?;
    Ok((client, described, sockets))
}

/// SETUPs every track over UDP with a port pair of ours per track. Each track's
/// `channel` keeps its interleaved numbering (`2i`), which the receiving loop uses to
/// label datagrams, so the hub sees one kind of input whatever the transport.
pub async fn setup_tracks_udp(
    client: &mut RtspClient,
    d: &mut Described,
    ports: &PortAllocator,
) -> Result<Vec<SocketPair>, ClientError> {
    let mut pairs = Vec::with_capacity(d.tracks.len());
    for t in &mut d.tracks {
        let pair = ports.bind_pair().await.map_err(ClientError::Io)?;
        let rtp = pair.rtp_port();
        let mut req = client.request(Method::Setup, &t.control_url);
        req.headers.append(
            "Transport",
            format!("RTP/AVP;unicast;client_port={}-{}", rtp, rtp + 1),
        );
        client.send_ok(req).await?;
        d.session_timeout = client.session_timeout().unwrap_or(d.session_timeout);
        pairs.push(pair);
    }
    Ok(pairs)
}

/// Redirects followed before giving up (RFC 2326 §11.3.3: 3xx with `Location`).
const MAX_REDIRECTS: usize = 3;

/// Connects and DESCRIBEs, following redirects: viewers never see an origin's
/// `Location`, the edge goes there itself. Credentials go only to the host the route
/// named, never to another host a redirect points at. Every hop is resolved once and
/// checked by `reach` (a redirect to another host needs the forward allow list, and
/// never reaches loopback, link-local or private addresses no rule names); the
/// connection goes to exactly the checked address.
pub async fn describe(target: &UpstreamTarget) -> Result<(RtspClient, Described), ClientError> {
    describe_with(target, None, None).await
}

/// [`describe`] with a viewer's own `Authorization` value (origin auth pass-through,
/// for a target without credentials). It goes only to the host the viewer asked for,
/// never to another host a redirect points at; an origin's `401` comes back as
/// [`ClientError::Challenged`] with its challenges, for the viewer to answer.
/// `forwarded_for` (an accounting DESCRIBE's `X-Forwarded-For`) goes on every hop.
pub async fn describe_with(
    target: &UpstreamTarget,
    authorization: Option<&str>,
    forwarded_for: Option<&str>,
) -> Result<(RtspClient, Described), ClientError> {
    match describe_inner(target, authorization, forwarded_for, &[]).await? {
        (client, Answer::Described(d)) => Ok((client, d)),
        (_, Answer::NotModified(_)) => Err(ClientError::Status {
            method: "DESCRIBE".into(),
            status: mediagate_rtsp::StatusCode::BAD_GATEWAY,
            reason: "the origin answered an unconditional DESCRIBE with 304".into(),
        }),
    }
}

/// A conditional DESCRIBE (`If-None-Match` / `If-Modified-Since` as `conditions`)
/// with the route's credentials, on a connection closed afterwards: the revalidation
/// of a cached object (RFC 7826 §18.24, §18.25).
pub async fn describe_if_changed(
    target: &UpstreamTarget,
    conditions: &[(&'static str, String)],
) -> Result<Revalidated, ClientError> {
    Ok(
        match describe_inner(target, None, None, conditions).await? {
            (_, Answer::Described(d)) => Revalidated::Changed(Box::new(d)),
            (_, Answer::NotModified(v)) => Revalidated::NotModified(v),
        },
    )
}

/// DESCRIBE with `extra` headers.
async fn describe_inner(
    target: &UpstreamTarget,
    mut authorization: Option<&str>,
    forwarded_for: Option<&str>,
    extra: &[(&'static str, String)],
) -> Result<(RtspClient, Answer), ClientError> {
    let mut url = target.url.clone();
    let mut hop = target.connect_to.clone();
    let mut grant = target.grant;
    let mut credentials = target.credentials.clone();
    let via_parent = target.connect_to != target.url.authority();
    let mut addr = connect_addr(&target.reach, &hop, grant).await?;
    let mut hops = 0;
    let (client, resp) = loop {
        let mut client = RtspClient::connect(
            addr,
            &hop,
            credentials.clone(),
            target.timeout,
            target.via.clone(),
        )
        .await?;
        let mut req = client.request(Method::Describe, &url.to_string());
        req.headers.append("Accept", "application/sdp");
        if let Some(a) = authorization {
            req.headers.set("Authorization", a.to_owned());
        }
        if let Some(f) = forwarded_for {
            req.headers.set("X-Forwarded-For", f.to_owned());
        }
        for (name, value) in extra {
            req.headers.set(name, value.clone());
        }
        let resp = client.send(req).await?;
        let redirect = matches!(resp.status.as_u16(), 301 | 302 | 303 | 307);
        match resp.headers.get("Location").filter(|_| redirect) {
            Some(location) if hops < MAX_REDIRECTS => {
                let next: RtspUrl = location.parse().map_err(|_| ClientError::Status {
                    method: "DESCRIBE".into(),
                    status: mediagate_rtsp::StatusCode::BAD_GATEWAY,
                    reason: format!("the origin redirected to an invalid URL {location:?}"),
                })?;
                let same_host = next.host() == url.host();
                if next.host() != target.url.host() {
                    credentials = None;
                    authorization = None;
                }
                // Through a parent, the parent stays the hop and follows the origin
                // (and checks where it goes).
                if !via_parent {
                    // The config vouches for the host it named, on any port; another
                    // host needs the allow list, like a forward request.
                    if !same_host {
                        grant = Grant::AllowList;
                    }
                    hop = next.authority();
                    addr = connect_addr(&target.reach, &hop, grant)
                        .await
                        .map_err(|e| match e {
                            ClientError::Unreachable(why) => ClientError::RedirectRefused {
                                location: next.without_credentials().to_string(),
                                why,
                            },
                            other => other,
                        })?;
                }
                url = next.without_credentials();
                hops += 1;
            }
            _ if resp.status.is_success() => break (client, resp),
            _ if resp.status == mediagate_rtsp::StatusCode::NOT_MODIFIED && !extra.is_empty() => {
                let v = caching_headers(&resp);
                return Ok((client, Answer::NotModified(v)));
            }
            _ if resp.status == mediagate_rtsp::StatusCode::UNAUTHORIZED
                && credentials.is_none() =>
            {
                return Err(ClientError::Challenged {
                    status: resp.status,
                    challenges: resp
                        .headers
                        .get_all("WWW-Authenticate")
                        .map(str::to_owned)
                        .collect(),
                })
            }
            _ => {
                return Err(ClientError::Status {
                    method: "DESCRIBE".into(),
                    status: resp.status,
                    reason: resp.reason.clone(),
                })
            }
        }
    };
    let url = url.to_string();
    let base = content_base(&resp, &url);
    let sdp = SessionDescription::parse(&resp.body).map_err(|e| ClientError::Status {
        method: "DESCRIBE".into(),
        status: mediagate_rtsp::StatusCode::BAD_GATEWAY,
        reason: format!("origin sent an invalid SDP: {e}"),
    })?;
    let caching = caching_headers(&resp);
    let needed_auth = authorization.is_some() || client.answered_challenge();
    let d = described_from_sdp(sdp, &base, caching, needed_auth)?;
    Ok((client, Answer::Described(d)))
}

/// The description of stored content (`meta`, the cache's record of the origin's
/// answer): its SDP with an `o=` line put back (the stored version; the session id is
/// not kept), track control URLs under `url`. What a viewer's `only-if-cached`
/// DESCRIBE is answered from when no hub holds the origin's own answer. None when the
/// stored SDP does not describe an RTP track.
pub(crate) fn described_from_stored(meta: &mediagate_cache::Meta, url: &str) -> Option<Described> {
    let version = meta.validators.sdp_origin.as_deref().unwrap_or("0");
    let mut text = String::with_capacity(meta.sdp.len() + 64);
    for line in meta.sdp.split_inclusive('\n') {
        text.push_str(line);
        if line.starts_with("v=") {
            text.push_str(&format!("o=- 0 {version} IN IP4 0.0.0.0\r\n"));
        }
    }
    let sdp = SessionDescription::parse(text.as_bytes()).ok()?;
    let caching = mediagate_cache::Validators {
        sdp_origin: None,
        ..meta.validators.clone()
    };
    let base = format!("{}/", url.trim_end_matches('/'));
    described_from_sdp(sdp, &base, caching, meta.needed_auth).ok()
}

/// A description from an origin's SDP: its RTP tracks with their control URLs under
/// `base`, live unless its `a=range` is finite.
fn described_from_sdp(
    sdp: SessionDescription,
    base: &str,
    caching: mediagate_cache::Validators,
    needed_auth: bool,
) -> Result<Described, ClientError> {
    let live = !sdp.range().map(|r| r.is_finite()).unwrap_or(false);
    let tracks = rtp_tracks(&sdp, base);
    if tracks.is_empty() {
        return Err(ClientError::Status {
            method: "DESCRIBE".into(),
            status: mediagate_rtsp::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: "the origin's SDP has no RTP track".into(),
        });
    }
    let aggregate_url = sdp.aggregate_control_url(base);
    Ok(Described {
        sdp,
        tracks,
        live,
        session_timeout: 60,
        aggregate_url,
        caching,
        needed_auth,
    })
}

/// The RTP tracks of `sdp` with their control URLs (relative ones resolved against
/// `base`), codecs and clock rates, numbered for interleaving (`2i`, RTCP `2i + 1`).
/// Sections that are not RTP or have no control URL are left out; at most 127 tracks.
pub(crate) fn rtp_tracks(sdp: &SessionDescription, base: &str) -> Vec<TrackInfo> {
    let mut tracks = Vec::new();
    for (i, m) in sdp.media().iter().enumerate() {
        // Port 0 does not mean "disabled" here: RTSP servers put 0 in `m=` because
        // ports are negotiated by SETUP (RFC 2326 §C.1), unlike SDP offer/answer.
        if !m.is_rtp() {
            continue;
        }
        let Some(control_url) = sdp.media_control_url(m, base) else {
            continue;
        };
        let rtpmap = m.payload_types().next().and_then(|pt| m.rtpmap(pt));
        let codec = rtpmap
            .as_ref()
            .map_or(Codec::Other, |r| Codec::from_encoding(r.encoding));
        let is_video = m.media_type() == "video";
        let clock_rate = rtpmap
            .as_ref()
            .map(|r| r.clock_rate)
            .filter(|&c| c > 0)
            .unwrap_or(if is_video { 90_000 } else { 8_000 });
        let Ok(channel) = u8::try_from(tracks.len() * 2) else {
            break; // 127 tracks are enough for anyone
        };
        tracks.push(TrackInfo {
            media_index: i,
            control_url,
            is_video,
            codec,
            clock_rate,
            channel,
        });
    }
    tracks
}

/// SETUPs every track over TCP interleaved.
pub async fn setup_tracks(client: &mut RtspClient, d: &mut Described) -> Result<(), ClientError> {
    for i in 0..d.tracks.len() {
        setup_track(client, d, i, None).await?;
    }
    Ok(())
}

/// SETUPs track `i` over TCP interleaved, with a viewer's own `Authorization` if
/// given (an accounting session answers each request with the viewer's own).
pub async fn setup_track(
    client: &mut RtspClient,
    d: &mut Described,
    i: usize,
    authorization: Option<&str>,
) -> Result<(), ClientError> {
    let Some(t) = d.tracks.get_mut(i) else {
        return Ok(());
    };
    let mut req = client.request(Method::Setup, &t.control_url);
    if let Some(a) = authorization {
        req.headers.set("Authorization", a.to_owned());
    }
    req.headers.append(
        "Transport",
        format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{}",
            t.channel,
            t.channel + 1
        ),
    );
    let resp = client.send_ok(req).await?;
    if let Some(ch) = resp.headers.get("Transport").and_then(interleaved_channel) {
        t.channel = ch; // the origin may pick its own channels
    }
    d.session_timeout = client.session_timeout().unwrap_or(d.session_timeout);
    Ok(())
}

/// PLAYs the aggregate URL; `extra` carries a viewer's Range/Scale/Speed for
/// on-demand content. Returns the origin's response (for RTP-Info).
pub async fn play(
    client: &mut RtspClient,
    d: &Described,
    extra: Option<&mediagate_rtsp::Headers>,
) -> Result<Response, ClientError> {
    play_as(client, d, extra, None).await
}

/// [`play`] carrying a viewer's own `Authorization` (pass-through).
pub async fn play_as(
    client: &mut RtspClient,
    d: &Described,
    extra: Option<&mediagate_rtsp::Headers>,
    authorization: Option<&str>,
) -> Result<Response, ClientError> {
    let mut req = client.request(Method::Play, &d.aggregate_url);
    if let Some(a) = authorization {
        req.headers.set("Authorization", a.to_owned());
    }
    match extra {
        Some(h) => {
            for name in ["Range", "Scale", "Speed"] {
                if let Some(v) = h.get(name) {
                    req.headers.append(name, v.to_owned());
                }
            }
        }
        None if !d.live => req.headers.append("Range", "npt=0.000-"),
        None => {}
    }
    client.send_ok(req).await
}

/// Base for relative control URLs (RFC 2326 §C.1.1): Content-Base, else
/// Content-Location, else the request URL.
fn content_base(resp: &Response, request_url: &str) -> String {
    mediagate_sdp::control_base(
        resp.headers.get("Content-Base"),
        resp.headers.get("Content-Location"),
        request_url,
    )
    .to_owned()
}

/// The checked address of `authority` (`host:port`, as `RtspUrl::authority` writes it).
async fn connect_addr(
    reach: &Reach,
    authority: &str,
    grant: Grant,
) -> Result<std::net::SocketAddr, ClientError> {
    let (host, port) = authority
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            ClientError::Io(std::io::Error::other(format!(
                "not a host:port authority: {authority}"
            )))
        })?;
    Ok(reach.resolve_checked(host, port, grant).await?)
}

/// The RTP channel of an `interleaved=a-b` transport parameter.
pub fn interleaved_channel(transport: &str) -> Option<u8> {
    transport
        .split([';', ','])
        .find_map(|p| p.trim().strip_prefix("interleaved="))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_interleaved_channel() {
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=4-5;ssrc=1234ABCD"),
            Some(4)
        );
        assert_eq!(interleaved_channel("RTP/AVP;unicast;client_port=1-2"), None);
    }

    const SDP: &str = "v=0\r\no=- 7 3 IN IP4 127.0.0.1\r\ns=clip\r\nt=0 0\r\na=range:npt=0-10\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n";

    /// An origin that answers one DESCRIBE per connection: `304` with a new max-age when
    /// the request's `If-None-Match` is `"v1"`, else the SDP with validators. Returns
    /// the requests it saw.
    async fn conditional_origin() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the request ends");
                    req.extend_from_slice(&buf[..n]);
                }
                let req = String::from_utf8(req).unwrap();
                let cseq = req
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .unwrap()
                    .to_owned();
                let answer = if req.contains("If-None-Match: \"v1\"\r\n") {
                    format!("RTSP/1.0 304 Not Modified\r\nCSeq: {cseq}\r\nCache-Control: max-age=600\r\n\r\n")
                } else {
                    format!(
                        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\nETag: \"v2\"\r\nCache-Control: public\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{SDP}",
                        SDP.len()
                    )
                };
                s.write_all(answer.as_bytes()).await.unwrap();
                seen.push(req);
            }
            seen
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_conditional_describe_sends_the_validators_and_reads_304_and_new_answers() {
        let (addr, origin) = conditional_origin().await;
        let cfg = mediagate_config::parse_config(&format!(
            "[[edge.route]]\nadvertised = \"/clip\"\norigin = \"rtsp://{addr}/clip\"\n"
        ))
        .unwrap();
        let router =
            crate::routing::Router::new(&cfg.edge, "RTSP/1.0 t".into(), Duration::from_secs(5));
        let target = router
            .resolve(
                "rtsp://127.0.0.1:8554/clip",
                "127.0.0.1:8554".parse().unwrap(),
                None,
            )
            .unwrap();
        let stored = mediagate_cache::Validators {
            etag: Some("\"v1\"".into()),
            last_modified: Some("Wed, 31 Dec 2025 14:00:00 GMT".into()),
            ..Default::default()
        };
        let conditions = crate::freshness::conditional_headers(&stored);
        match describe_if_changed(&target, &conditions).await.unwrap() {
            Revalidated::NotModified(v) => {
                assert_eq!(v.cache_control.as_deref(), Some("max-age=600"));
                assert_eq!(v.etag, None);
            }
            Revalidated::Changed(d) => panic!("a 304 is no change: {d:?}"),
        }
        let other = vec![("If-None-Match", "\"v0\"".to_owned())];
        match describe_if_changed(&target, &other).await.unwrap() {
            Revalidated::Changed(d) => {
                assert_eq!(d.caching.etag.as_deref(), Some("\"v2\""));
                assert_eq!(
                    d.caching.cache_control.as_deref(),
                    Some("public, max-age=60")
                );
                assert!(!d.needed_auth);
                assert_eq!(d.sdp.origin().unwrap().session_version.to_string(), "3");
            }
            Revalidated::NotModified(_) => panic!("another ETag is a change"),
        }
        let seen = origin.await.unwrap();
        assert!(seen[0].starts_with("DESCRIBE rtsp://"), "{}", seen[0]);
        assert!(seen[0].contains("If-None-Match: \"v1\"\r\n"), "{}", seen[0]);
        assert!(
            seen[0].contains("If-Modified-Since: Wed, 31 Dec 2025 14:00:00 GMT\r\n"),
            "{}",
            seen[0]
        );
        assert!(!seen[1].contains("If-Modified-Since"), "{}", seen[1]);
    }
}
