//! A throwaway PostgreSQL server for real-peer tests, from Debian's `postgresql`
//! package (used by the records store's tests, the relay's and the binary's).
//!
//! What it does: `initdb` a cluster in a fresh temporary directory (trust
//! authentication, user `postgres`), start `postgres` on a free loopback TCP port with
//! its Unix socket in the same directory, wait until it accepts connections, and stop
//! it (fast shutdown) and delete the directory on drop. `initdb` and `postgres` refuse
//! to run as root, so under root they run as `nobody` through `runuser`, with the
//! directory handed to that user. A watchdog shell next to the server stops it within
//! a second when the test process dies without running destructors, so no server
//! outlives a killed test run. [`PostgresServer::stop`] and
//! [`PostgresServer::start_again`] simulate an outage on the same port and data.
//!
//! What it does not: TLS, other users or passwords, tuning beyond test speed
//! (`fsync=off`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::ports::free_tcp_port;
use crate::process::{run, Peer};

/// How long `initdb` and server start may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the server and stops the watchdog when the server ends; stops the server when
/// the watched test process is gone. Arguments: postgres binary, data dir, port,
/// socket dir, test pid.
const SERVE_SCRIPT: &str = r#"
"$1" -D "$2" -p "$3" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$4" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c shared_buffers=16MB -c max_connections=30 &
pg=$!
trap 'kill -INT $pg 2>/dev/null; wait $pg; exit 0' TERM INT
while [ -d "/proc/$5" ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done
kill -INT $pg 2>/dev/null
wait $pg
"#;

/// A running (or stopped, between [`PostgresServer::stop`] and
/// [`PostgresServer::start_again`]) test server.
pub struct PostgresServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
    peer: Option<Peer>,
}

/// The newest installed server's `bin` directory.
fn find_bin_dir() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| {
            format!(
                "PostgreSQL is not installed ({}: {e}); install the Debian package `postgresql` (apt-get install postgresql)",
                root.display()
            )
        })?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server under /usr/lib/postgresql/*/bin; install the Debian package `postgresql`".into()
    })
}

/// The effective user id, from `/proc/self/status` (no `unsafe` needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn id_of(user: &str, flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("cannot run id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("user {user} does not exist"))
}

impl PostgresServer {
    /// Creates a cluster and starts the server; panics with the server's output when
    /// that fails.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("cannot start a test PostgreSQL server: {e}"),
        }
    }

    fn try_start() -> Result<Self, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let bin = find_bin_dir()?;
        let dir = std::env::temp_dir().join(format!(
            "mg-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let run_as = if effective_uid() == Some(0) {
            let user = "nobody";
            let uid = id_of(user, "-u")?;
            let gid = id_of(user, "-g")?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to {user}: {e}", dir.display()))?;
            Some(user.to_owned())
        } else {
            None
        };
        let port = free_tcp_port().map_err(|e| format!("no free TCP port: {e}"))?;
        let mut server = Self {
            dir,
            bin,
            port,
            run_as,
            peer: None,
        };
        let data = server.data_dir();
        let mut initdb = server.command(&server.bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"]);
        let done = run("initdb", initdb, START_TIMEOUT).map_err(|e| e.to_string())?;
        if !done.success() {
            return Err(format!("initdb failed:\n{}", done.diagnostics));
        }
        server.start_again();
        Ok(server)
    }

    /// `cmd` as the server's user, run from its directory (a root-only working
    /// directory would make the server's user fail to start).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The URL the relay connects with.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again) on the same port and data; panics when it does not
    /// come up.
    pub fn start_again(&mut self) {
        assert!(self.peer.is_none(), "the server is already running");
        let mut sh = self.command(Path::new("/bin/sh"));
        sh.arg("-c")
            .arg(SERVE_SCRIPT)
            .arg("serve-postgres")
            .arg(self.bin.join("postgres"))
            .arg(self.data_dir())
            .arg(self.port.to_string())
            .arg(&self.dir)
            .arg(std::process::id().to_string());
        let peer =
            Peer::spawn("postgres", sh).unwrap_or_else(|e| panic!("cannot run postgres: {e}"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = peer
                .stderr_tail()
                .iter()
                .any(|l| l.contains("database system is ready to accept connections"));
            if ready && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if peer.try_status().is_some() || Instant::now() > deadline {
                panic!("postgres did not come up:\n{}", peer.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.peer = Some(peer);
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits until
    /// it is gone. The data stays for [`PostgresServer::start_again`].
    pub fn stop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        // The postmaster's pid is the first line of postmaster.pid; SIGINT asks for a
        // fast shutdown, which does not wait for clients to disconnect.
        let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
        }
        if peer.wait_timeout(Duration::from_secs(20)).is_none() {
            eprintln!("postgres ignored a fast shutdown; killing it");
            peer.kill();
        }
        // Wait for the port to be free so a restart can bind it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
