//! The `ng` front door: Kamailio's and OpenSIPS' `rtpengine` modules talk to the
//! dispatcher as they would to one rtpengine. The listeners are the relay's own
//! ([`mediagate_relay::ng_listener`]); this is the service behind them.
//!
//! What it does: answers a retransmission (same cookie) from a cookie cache instead of
//! running it again, drops a retransmission whose first copy is still waiting for a
//! relay (the proxy retransmits again and then gets the cached reply), and runs the
//! rest through the [`Router`]. UDP requests run concurrently, since each may wait for
//! a relay.
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
        let reply = match body {
            Ok(request) => self.router.handle_ng(request).await,
            Err(reason) => reply::error(reason),
        };
        let framed = framing::frame_reply(&cookie, encoding, &reply);
        let mut cookies = self.cookies();
        cookies.running.remove(&cookie);
        cookies.done.insert(&cookie, framed.clone(), Instant::now());
        Some(framed)
    }
}
