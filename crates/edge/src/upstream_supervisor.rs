//! The upstream supervisor of a live hub: keeps one origin session open, hands its
//! frames to the hub, and after a loss reconnects with exponential back-off.
//!
//! The decisions (retry or fail, how long to wait) are the sans-IO [`Supervisor`],
//! tested with no clock; the task around it connects, reads and sleeps. A failure
//! before the first successful open is final (the viewer's DESCRIBE gets the origin's
//! answer); later failures are retried until the hub gives up (the give-up clock is
//! the hub's, see `hub_life`) or asks the supervisor to stop, which sends the origin a
//! TEARDOWN before closing.
//!
//! What it does not: decide when viewers are let go, or touch viewers at all.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_rtsp::{InterleavedFrame, Method};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::hub_registry::HubSettings;
use crate::ports::{PortAllocator, SocketPair};
use crate::rtsp_client::{ClientError, RtspClient};
use crate::tracker::until_true;
use crate::upstream::{self, Described, UpstreamTarget};

/// What the supervisor tells its hub.
pub(crate) enum UpEvent {
    Ready(Arc<Described>),
    /// The first open failed: final.
    Failed(ClientError),
    Frames(Vec<InterleavedFrame>),
    /// An open session broke; a reconnect follows.
    Lost(ClientError),
}

/// What to do after an open attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Never opened: report the failure and stop.
    Fail,
    /// Try again after this long.
    Retry(Duration),
}

/// Reconnect policy, sans-IO: exponential back-off from `min` to `max`, reset by every
/// successful open.
#[derive(Debug, Clone)]
pub(crate) struct Supervisor {
    min: Duration,
    max: Duration,
    next: Duration,
    ever_ready: bool,
}

impl Supervisor {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
            ever_ready: false,
        }
    }

    /// A session opened (and is streaming).
    pub fn opened(&mut self) {
        self.ever_ready = true;
        self.next = self.min;
    }

    /// An open session broke: how long to wait before reconnecting.
    pub fn lost(&mut self) -> Duration {
        self.take_delay()
    }

    pub fn open_failed(&mut self) -> AfterFailure {
        if self.ever_ready {
            AfterFailure::Retry(self.take_delay())
        } else {
            AfterFailure::Fail
        }
    }

    fn take_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Runs the supervisor until the hub goes away, the first open fails, or `stop` turns
/// true.
pub(crate) async fn upstream_loop(
    target: UpstreamTarget,
    settings: HubSettings,
    ports: Arc<PortAllocator>,
    tx: mpsc::Sender<UpEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sup = Supervisor::new(settings.backoff_min, settings.backoff_max);
    let origin = target.url.to_string();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let opened = tokio::select! {
            r = upstream::open(&target, &ports) => r,
            _ = until_true(&mut stop) => return,
        };
        let delay = match opened {
            Ok((_client, described, _)) if !described.live => {
                // On-demand: the hub only answers DESCRIBE; viewers play through their
                // own upstream sessions (see `vod`).
                tracing::debug!(%origin, "origin content is on-demand; not splitting it");
                let _ = tx.send(UpEvent::Ready(Arc::new(described))).await;
                return;
            }
            Ok((client, described, udp)) => {
                sup.opened();
                if attempt == 1 {
                    tracing::info!(%origin, via = %target.connect_to, tracks = described.tracks.len(), udp = udp.is_some(), "origin session open");
                } else {
                    tracing::info!(%origin, via = %target.connect_to, attempt, "origin session reopened");
                }
                attempt = 0;
                let keepalive = keepalive_interval(described.session_timeout);
                let channels: Vec<u8> = described.tracks.iter().map(|t| t.channel).collect();
                let aggregate = described.aggregate_url.clone();
                if tx.send(UpEvent::Ready(Arc::new(described))).await.is_err() {
                    return;
                }
                let mut s = Streaming {
                    client,
                    tx: &tx,
                    keepalive,
                    url: &origin,
                    stop: &mut stop,
                };
                let end = match udp {
                    None => s.frames().await,
                    Some(sockets) => s.udp(sockets, &channels).await,
                };
                let err = match end {
                    StreamEnd::Stopped => {
                        // Polite: the origin frees the session at once instead of
                        // waiting for its timeout. Bounded, and without waiting for the
                        // answer (frames may still be queued before it).
                        let req = s.client.request(Method::Teardown, &aggregate);
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            s.client.send_no_wait(req),
                        )
                        .await;
                        tracing::info!(%origin, "origin session torn down");
                        return;
                    }
                    StreamEnd::Lost(e) => e,
                };
                let delay = sup.lost();
                tracing::warn!(%origin, error = %err, retry_in = ?delay, "origin session lost; reconnecting");
                if tx.send(UpEvent::Lost(err)).await.is_err() {
                    return;
                }
                delay
            }
            Err(e) => match sup.open_failed() {
                AfterFailure::Fail => {
                    tracing::warn!(%origin, via = %target.connect_to, error = %e, "cannot open the origin session");
                    let _ = tx.send(UpEvent::Failed(e)).await;
                    return;
                }
                AfterFailure::Retry(delay) => {
                    tracing::warn!(%origin, attempt, error = %e, retry_in = ?delay, "origin reconnect failed");
                    delay
                }
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = until_true(&mut stop) => return,
        }
    }
}

/// How often to send a keep-alive for an origin session with this timeout.
pub(crate) fn keepalive_interval(session_timeout: u64) -> Duration {
    mediagate_rtsp::client::keepalive_interval(session_timeout, crate::rtsp_client::KEEPALIVE_FLOOR)
}

enum StreamEnd {
    Lost(ClientError),
    Stopped,
}

/// One open session being read.
struct Streaming<'a> {
    client: RtspClient,
    tx: &'a mpsc::Sender<UpEvent>,
    keepalive: Duration,
    url: &'a str,
    stop: &'a mut watch::Receiver<bool>,
}

impl Streaming<'_> {
    /// Reads interleaved frames until the connection fails or the hub stops us.
    async fn frames(&mut self) -> StreamEnd {
        let mut tick = tokio::time::interval_at(Instant::now() + self.keepalive, self.keepalive);
        // No data for this long means the origin is gone even if TCP has not noticed.
        let silence = Duration::from_secs(10);
        loop {
            tokio::select! {
                r = tokio::time::timeout(silence, self.client.next_frame()) => {
                    let first = match r {
                        Ok(Ok(f)) => f,
                        Ok(Err(e)) => return StreamEnd::Lost(e),
                        Err(_) => return StreamEnd::Lost(ClientError::Timeout(silence)),
                    };
                    let mut batch = vec![first];
                    if let Err(e) = self.client.ready_frames(256, &mut batch) {
                        return StreamEnd::Lost(e);
                    }
                    if self.tx.send(UpEvent::Frames(batch)).await.is_err() {
                        return StreamEnd::Lost(ClientError::Closed);
                    }
                }
                _ = tick.tick() => {
                    let req = self.client.request(Method::GetParameter, self.url);
                    if let Err(e) = self.client.send_no_wait(req).await {
                        return StreamEnd::Lost(e);
                    }
                }
                _ = until_true(self.stop) => return StreamEnd::Stopped,
            }
        }
    }

    /// Media over UDP (a route's `upstream_transport = "udp"`): datagrams on our
    /// per-track sockets, accepted only from the origin's address so nobody else can
    /// inject into the hub, are labelled with the track's channel numbers and handed on
    /// like interleaved frames. The RTSP connection stays open for keep-alives; silence
    /// on the sockets counts as a lost upstream, as on TCP.
    async fn udp(&mut self, sockets: Vec<SocketPair>, channels: &[u8]) -> StreamEnd {
        let origin_ip = self.client.peer_addr().ok().map(|a| a.ip());
        let (ftx, mut frx) = mpsc::channel::<Vec<InterleavedFrame>>(64);
        let mut readers = Vec::new();
        for (pair, &ch) in sockets.into_iter().zip(channels) {
            let pair = Arc::new(pair);
            for (rtcp, label) in [(false, ch), (true, ch.wrapping_add(1))] {
                let task = tokio::spawn(read_origin_udp(
                    pair.clone(),
                    rtcp,
                    label,
                    origin_ip,
                    ftx.clone(),
                ));
                readers.push(AbortOnDrop(task));
            }
        }
        drop(ftx);
        let mut tick = tokio::time::interval_at(Instant::now() + self.keepalive, self.keepalive);
        let silence = Duration::from_secs(10);
        loop {
            tokio::select! {
                r = tokio::time::timeout(silence, frx.recv()) => match r {
                    Ok(Some(batch)) => {
                        if self.tx.send(UpEvent::Frames(batch)).await.is_err() {
                            return StreamEnd::Lost(ClientError::Closed);
                        }
                    }
                    Ok(None) => return StreamEnd::Lost(ClientError::Closed),
                    Err(_) => return StreamEnd::Lost(ClientError::Timeout(silence)),
                },
                _ = tick.tick() => {
                    let req = self.client.request(Method::GetParameter, self.url);
                    if let Err(e) = self.client.send_no_wait(req).await {
                        return StreamEnd::Lost(e);
                    }
                }
                // Only to notice the control connection closing; answers are skipped.
                r = self.client.next_frame() => if let Err(e) = r {
                    return StreamEnd::Lost(e);
                },
                _ = until_true(self.stop) => return StreamEnd::Stopped,
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_origin_udp(
    pair: Arc<SocketPair>,
    rtcp: bool,
    label: u8,
    origin_ip: Option<IpAddr>,
    out: mpsc::Sender<Vec<InterleavedFrame>>,
) {
    let sock = if rtcp { &pair.rtcp } else { &pair.rtp };
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(first) = sock.recv_from(&mut buf).await else {
            return;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some((n, from)) = next {
            if origin_ip.is_none_or(|ip| ip == from.ip()) {
                if let Ok(f) = InterleavedFrame::new(label, Bytes::copy_from_slice(&buf[..n])) {
                    batch.push(f);
                }
            }
            next = if batch.len() < 64 {
                sock.try_recv_from(&mut buf).ok()
            } else {
                None
            };
        }
        if !batch.is_empty() && out.send(batch).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn keepalive_is_half_the_timeout_within_bounds() {
        assert_eq!(keepalive_interval(60), Duration::from_secs(30));
        assert_eq!(keepalive_interval(20), Duration::from_secs(10));
        assert_eq!(keepalive_interval(2), Duration::from_secs(5));
        assert_eq!(keepalive_interval(600), Duration::from_secs(30));
    }

    #[test]
    fn a_failure_before_the_first_open_is_final() {
        let mut s = Supervisor::new(MIN, MAX);
        assert_eq!(s.open_failed(), AfterFailure::Fail);
    }

    #[test]
    fn reconnects_back_off_exponentially_up_to_the_cap() {
        let mut s = Supervisor::new(MIN, MAX);
        s.opened();
        assert_eq!(s.lost(), MIN);
        let waits: Vec<Duration> = (0..8)
            .map(|_| match s.open_failed() {
                AfterFailure::Retry(d) => d,
                AfterFailure::Fail => panic!("a failure after an open is retried"),
            })
            .collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
    }

    #[test]
    fn a_successful_open_resets_the_back_off() {
        let mut s = Supervisor::new(MIN, MAX);
        s.opened();
        s.lost();
        s.open_failed();
        s.open_failed();
        s.opened();
        assert_eq!(s.lost(), MIN);
        assert_eq!(s.open_failed(), AfterFailure::Retry(MIN * 2));
    }
}
