//! Hostile peers against the dispatcher's real listeners (issue 15, "Bad input"): the
//! MediaProxy UNIX socket, the `ng` front door and the relay link over mutual TLS. Each
//! test checks the refusal (an error reply or a closed connection, and its log line)
//! and that the rest of the cluster keeps being served in the same test.

mod link;
mod mediaproxy;
mod mgmt;
mod ng;
// The integration tests' config builder, so both start the same cluster.
#[path = "../../tests/common/config.rs"]
mod test_config;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::role::Dispatcher;
use mediagate_testkit::TempDir;

/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(10);

/// This test binary's log lines; every test shares them, so needles name the fault.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits for a log line containing every needle and returns it.
async fn wait_log(needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The dispatcher role with two relay engines in this process (127.0.0.1 and
/// 127.0.0.2), `ng` on UDP and TCP; each test gives its own `ports` base.
async fn cluster(dir: &TempDir, ports: u16) -> Dispatcher {
    logs();
    let relays = [
        ("local1", "127.0.0.1", ports),
        ("local2", "127.0.0.2", ports + 100),
    ];
    let front = "ng_listen_udp = [\"127.0.0.1:0\"]\nng_listen_tcp = [\"127.0.0.1:0\"]";
    let config = test_config::dispatcher_config(&dir.0, front, &relays, "");
    Dispatcher::start(&config, None).await.unwrap()
}
