//! The I/O shell of one accounting connection: opens it (the DESCRIBE of
//! [`crate::accounting`], through `upstream::describe_with`, so redirects and every
//! hop pass the `reach` checks like any other origin connection), then a task holds
//! it, sending the keep-alives [`AccountingClock`] asks for and reading the answers,
//! until the [`AccountingConn`] handle is dropped (the viewer's session ended), the
//! origin closes it, or the origin stops answering.
//!
//! What it does not: decide anything about timing (the clock does) or carry media.

use mediagate_rtsp::{Item, Method, Response};
use tokio::sync::oneshot;

use crate::accounting::{refusal, AccountingClock, CloseWhy, Due, ANSWER_TIMEOUT};
use crate::rtsp_client::RtspClient;
use crate::session::Now;
use crate::tracker::TaskGuard;
use crate::upstream::{self, UpstreamTarget};

/// An open accounting connection. Dropping it closes the connection at once.
#[derive(Debug)]
pub(crate) struct AccountingConn {
    _ended: oneshot::Sender<()>,
}

/// Asks the origin about a viewer: DESCRIBE `target` with the viewer's own
/// `authorization` (the route's credentials are never sent here) and `forwarded_for`.
/// On acceptance the connection is held by a task until the returned handle drops;
/// a refusal is the viewer's answer.
pub(crate) async fn open(
    target: &UpstreamTarget,
    authorization: Option<&str>,
    forwarded_for: &str,
    keepalive: std::time::Duration,
    guard: TaskGuard,
) -> Result<AccountingConn, Response> {
    let mut target = target.clone();
    target.credentials = None;
    let (client, _) = upstream::describe_with(&target, authorization, Some(forwarded_for))
        .await
        .map_err(|e| {
            tracing::debug!(url = %target.url, error = %e, "accounting DESCRIBE refused");
            refusal(&e)
        })?;
    let (tx, rx) = oneshot::channel();
    let clock = AccountingClock::new(keepalive, ANSWER_TIMEOUT, Now::system().at);
    let url = target.url.to_string();
    tokio::spawn(async move {
        let why = hold(client, clock, &url, rx).await;
        tracing::debug!(url = %url, why = why.as_str(), "accounting connection closed");
        drop(guard);
    });
    Ok(AccountingConn { _ended: tx })
}

/// Keeps the connection until the viewer ends or the origin goes; dropping `client`
/// closes the socket.
async fn hold(
    mut client: RtspClient,
    mut clock: AccountingClock,
    url: &str,
    mut ended: oneshot::Receiver<()>,
) -> CloseWhy {
    loop {
        let deadline = tokio::time::Instant::from_std(clock.poll_timeout());
        tokio::select! {
            _ = &mut ended => clock.on_viewer_ended(Now::system().at),
            _ = tokio::time::sleep_until(deadline) => {}
            item = client.next_item() => match item {
                Ok(Item::Response(_)) => clock.on_answer(),
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(url, error = %e, "origin closed an accounting connection");
                    return CloseWhy::OriginSilent;
                }
            },
        }
        while let Some(due) = clock.handle_timeout(Now::system().at) {
            match due {
                Due::KeepAlive => {
                    let req = client.request(Method::Options, url);
                    if let Err(e) = client.send_no_wait(req).await {
                        tracing::info!(url, error = %e, "accounting keep-alive failed");
                        return CloseWhy::OriginSilent;
                    }
                }
                Due::Close(why) => {
                    if why == CloseWhy::OriginSilent {
                        tracing::warn!(url, "origin stopped answering an accounting connection");
                    }
                    return why;
                }
            }
        }
    }
}
