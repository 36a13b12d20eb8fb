//! The `ng` front door: Kamailio's and OpenSIPS' `rtpengine` modules talk to the
//! dispatcher as they would to one rtpengine. The listeners are the relay's own
//! ([`mediagate_relay::ng_listener`]); this is the service behind them.
//!
//! What it does: answers a retransmission (same cookie) from a cookie cache instead of
//! running it again, drops a retransmission whose first copy is still waiting for a
//! relay (the proxy retransmits again and then gets the cached reply), and runs the
//! rest through the [`Router`]. UDP requests run concurrently, since each may wait for
//! a relay. A request that is not a dictionary, or has no call-id, gets the `ng` error
//! reply and a log line naming its cookie (a broken proxy, not a call's normal end; a
//! delete for a call nobody knows is normal and is not logged).
//!
//! What it does not: decide anything about calls (the router does).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use mediagate_ng::bencode::Value;
use mediagate_ng::cookie_cache::CookieCache;
use mediagate_ng::framing::{self, Encoding};
use mediagate_ng::reply;
use mediagate_relay::ng_listener::NgService;

use crate::router::Router;

struct Cookies {
    done: CookieCache,
    running: HashSet<Vec<u8>>,
}

/// The service behind the dispatcher's `ng` listeners.
pub(crate) struct NgFront {
    router: Arc<Router>,
    cookies: Mutex<Cookies>,
}

impl NgFront {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        Self {
            router,
            cookies: Mutex::new(Cookies {
                done: CookieCache::new(Instant::now(), 100_000),
                running: HashSet::new(),
            }),
        }
    }

    fn cookies(&self) -> MutexGuard<'_, Cookies> {
        self.cookies.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Running {
    front: Arc<NgFront>,
    cookie: Vec<u8>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.front.cookies().running.remove(&self.cookie);
    }
}

impl NgService for NgFront {
    const CONCURRENT: bool = true;

    async fn process(
        self: Arc<Self>,
        cookie: Vec<u8>,
        encoding: Encoding,
        body: Result<Value, &'static str>,
    ) -> Option<Vec<u8>> {
        {
            let mut cookies = self.cookies();
            if let Some(cached) = cookies.done.get(&cookie, Instant::now()) {
                return Some(cached.to_vec());
            }
            if !cookies.running.insert(cookie.clone()) {
                return None;
            }
        }
        // Clears the cookie's "running" mark however this future ends, also when it is
        // dropped mid-way (a TCP client gone), so a later retransmission is not ignored.
        let running = Running {
            front: Arc::clone(&self),
            cookie,
        };
        let reply = match body {
            Ok(request) => {
                let reply = self.router.handle_ng(request).await;
                if reply.get("error-reason").and_then(Value::as_str) == Some(reply::NO_CALL_ID) {
                    tracing::warn!(
                        "dispatcher: ng front door: refused request {}: {}",
                        String::from_utf8_lossy(&running.cookie),
                        reply::NO_CALL_ID
                    );
                }
                reply
            }
            Err(reason) => {
                tracing::warn!(
                    "dispatcher: ng front door: refused request {}: {reason}",
                    String::from_utf8_lossy(&running.cookie)
                );
                reply::error(reason)
            }
        };
        let framed = framing::frame_reply(&running.cookie, encoding, &reply);
        self.cookies()
            .done
            .insert(&running.cookie, framed.clone(), Instant::now());
        drop(running);
        Some(framed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use mediagate_ng::bencode::dict;
    use tokio::sync::broadcast;

    use super::*;
    use crate::pool::{
        CommandError, PoolFuture, RelayEvent, RelayId, RelayPool, RelayState, RelayView,
    };
    use crate::router::LogEnded;
    use crate::sessions::SessionMap;

    /// One relay that answers every command after `delay`, counting them.
    struct SlowPool {
        commands: AtomicUsize,
        delay: Duration,
        events: broadcast::Sender<RelayEvent>,
    }

    impl RelayPool for SlowPool {
        fn relays(&self) -> Vec<RelayView> {
            vec![RelayView {
                id: RelayId(1),
                name: "r1".into(),
                addresses: vec![],
                state: RelayState::Active,
                sessions: 0,
                bps: 0,
                report: None,
            }]
        }

        fn command(
            &self,
            _relay: RelayId,
            _request: Value,
            _deadline: Duration,
        ) -> PoolFuture<'_, Result<Value, CommandError>> {
            self.commands.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(reply::ok(vec![]))
            })
        }

        fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
            self.events.subscribe()
        }
    }

    #[tokio::test]
    async fn a_retransmission_runs_once_and_gets_the_same_reply() {
        let pool = Arc::new(SlowPool {
            commands: AtomicUsize::new(0),
            delay: Duration::from_millis(50),
            events: broadcast::channel(4).0,
        });
        let router = Router::start(
            Arc::clone(&pool) as Arc<dyn RelayPool>,
            SessionMap::in_memory(),
            Duration::from_secs(1),
            Arc::new(LogEnded),
        );
        let front = Arc::new(NgFront::new(router));
        let offer = || {
            Ok(dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str("c")),
                ("from-tag", Value::str("f")),
                ("sdp", Value::str("v=0\r\n")),
            ]))
        };
        let first =
            tokio::spawn(Arc::clone(&front).process(b"k1".to_vec(), Encoding::Bencode, offer()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // While the first copy waits for the relay, a retransmission gets nothing.
        let during = Arc::clone(&front)
            .process(b"k1".to_vec(), Encoding::Bencode, offer())
            .await;
        assert_eq!(during, None);
        let first = first.await.unwrap().expect("a reply");
        assert_eq!(first, b"k1 d6:result2:oke".to_vec());
        let after = Arc::clone(&front)
            .process(b"k1".to_vec(), Encoding::Bencode, offer())
            .await;
        assert_eq!(after, Some(first));
        assert_eq!(pool.commands.load(Ordering::SeqCst), 1);
    }
}
