//! The dispatcher's memory with many calls held (issue 15 benchmark: 10 relays with
//! 10,000 calls each under 100 MB).
//!
//! Runs the dispatcher's router with its SQLite session map (a file, as the role opens
//! it) over ten fake relays in this process that answer every command at once with a
//! fixed SDP, places `RELAYS x CALLS` calls (offer and answer each, as a proxy sends
//! them) and prints this process's RSS before and after. The relays are fakes: what is
//! measured is the dispatcher's own state (router, session map, SQLite page cache),
//! not TLS links (about 50 KiB of buffers per linked relay) or relay engines.
//!
//! `cargo run --release -p mediagate-dispatcher --example session_memory [RELAYS [CALLS]]`

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_dispatcher::pool::{
    CommandError, PoolFuture, RelayEvent, RelayId, RelayPool, RelayState, RelayView,
};
use mediagate_dispatcher::router::{LogEnded, Router};
use mediagate_dispatcher::sessions::SessionMap;
use mediagate_ng::bencode::{dict, Value};
use tokio::sync::broadcast;

struct FakeRelays {
    calls: Vec<AtomicU64>,
    events: broadcast::Sender<RelayEvent>,
}

impl RelayPool for FakeRelays {
    fn relays(&self) -> Vec<RelayView> {
        self.calls
            .iter()
            .enumerate()
            .map(|(i, n)| RelayView {
                id: RelayId(i as u64 + 1),
                name: format!("relay{}", i + 1),
                addresses: vec![IpAddr::from([10, 0, 0, i as u8 + 1])],
                state: RelayState::Active,
                sessions: n.load(Ordering::Relaxed),
                bps: 0,
                report: None,
            })
            .collect()
    }

    fn command(
        &self,
        relay: RelayId,
        request: Value,
        _deadline: Duration,
    ) -> PoolFuture<'_, Result<Value, CommandError>> {
        let i = relay.0 as usize - 1;
        if request.get("command").and_then(Value::as_str) == Some("offer") {
            self.calls[i].fetch_add(1, Ordering::Relaxed);
        }
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.{n}\r\ns=-\r\nc=IN IP4 10.0.0.{n}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\n",
            n = i + 1
        );
        Box::pin(async move {
            Ok(dict([
                ("result", Value::str("ok")),
                ("sdp", Value::str(&sdp)),
            ]))
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.events.subscribe()
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let relays: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let per_relay: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("mg-session-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let map = SessionMap::open(&dir.join("dispatcher-sessions.sqlite")).expect("the map");
        let pool = Arc::new(FakeRelays {
            calls: (0..relays).map(|_| AtomicU64::new(0)).collect(),
            events: broadcast::channel(16).0,
        });
        let router = Router::start(pool.clone(), map, Duration::from_millis(200), Arc::new(LogEnded));
        let before = rss_mib();
        let started = Instant::now();
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
        for i in 0..relays * per_relay {
            // Call-IDs and tags as long as a SIP phone's.
            let call_id = format!("{i:08x}-5d1c-4a2e-9f0b-{:012x}@192.0.2.5", i * 7919);
            for (command, to_tag) in [("offer", None), ("answer", Some("as8f7a6sd5f4"))] {
                let mut entries = vec![
                    (b"command".to_vec(), Value::str(command)),
                    (b"call-id".to_vec(), Value::str(&call_id)),
                    (b"from-tag".to_vec(), Value::str("a9f8e7d6c5b4a3")),
                    (b"sdp".to_vec(), Value::str(sdp)),
                ];
                if let Some(tag) = to_tag {
                    entries.push((b"to-tag".to_vec(), Value::str(tag)));
                }
                let reply = router.handle_ng(Value::Dict(entries)).await;
                assert_eq!(
                    reply.get("result").and_then(Value::as_str),
                    Some("ok"),
                    "{reply:?}"
                );
            }
        }
        let elapsed = started.elapsed();
        let after = rss_mib();
        let spread: Vec<u64> = pool.calls.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        println!(
            "{} calls held on {relays} fake relays ({spread:?} each), placed in {:.1} s",
            router.call_count(),
            elapsed.as_secs_f64()
        );
        println!(
            "RSS: {before:.1} MiB before, {after:.1} MiB after: {:.1} MiB for the calls ({:.0} bytes each)",
            after - before,
            (after - before) * 1024.0 * 1024.0 / router.call_count().max(1) as f64
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
