//! A throwaway OpenLDAP server for real-peer tests, from Debian's `slapd` package (the
//! edge's LDAP logins use it).
//!
//! What it does: writes a `slapd.conf` (core, cosine, inetOrgPerson and nis schemas,
//! one MDB database under `dc=example,dc=org` with a root DN), loads the caller's LDIF
//! with `slapadd` before the server starts, runs `slapd` in the foreground on a free
//! loopback port, waits until it accepts connections, and stops it and deletes its
//! directory on drop. A watchdog shell next to the server stops it within a second
//! when the test process dies without running destructors.
//!
//! What it does not: TLS, SASL, replication, or changes at run time (load everything
//! the test needs in the LDIF).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::ports::free_tcp_port;
use crate::process::{require_program, run, Peer};
use crate::{Error, Result};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The root DN, which may read everything.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
/// Its password.
pub const ROOT_PW: &str = "root-secret";

const PACKAGE: &str = "slapd (and ldap-utils for the command-line tools)";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs slapd and stops it when the test process is gone. Arguments: slapd, config,
/// URL, test pid.
const SERVE_SCRIPT: &str = r#"
"$1" -f "$2" -h "$3" -d 0 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 0' TERM INT
while [ -d "/proc/$4" ] && kill -0 $pid 2>/dev/null; do sleep 0.5; done
kill -TERM $pid 2>/dev/null
wait $pid
"#;

/// A running test directory.
pub struct Slapd {
    dir: PathBuf,
    port: u16,
    peer: Option<Peer>,
}

impl Slapd {
    /// Starts a server holding the base entry `dc=example,dc=org` plus `ldif`
    /// (entries under it, separated by blank lines).
    pub fn start(ldif: &str) -> Result<Slapd> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let slapd = require_program("/usr/sbin/slapd", PACKAGE)?;
        let slapadd = require_program("/usr/sbin/slapadd", PACKAGE)?;
        let dir = std::env::temp_dir().join(format!(
            "mg-slapd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        std::fs::create_dir_all(dir.join("data")).map_err(io("slapd data directory"))?;
        let conf = dir.join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 pidfile {dir}/slapd.pid\n\
                 database mdb\n\
                 maxsize 16777216\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ROOT_DN}\"\n\
                 rootpw {ROOT_PW}\n\
                 directory {dir}/data\n",
                dir = dir.display()
            ),
        )
        .map_err(io("slapd.conf"))?;
        let data = dir.join("data.ldif");
        std::fs::write(
            &data,
            format!(
                "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n{ldif}\n"
            ),
        )
        .map_err(io("LDIF"))?;
        let mut add = Command::new(slapadd);
        add.arg("-f").arg(&conf).arg("-l").arg(&data);
        let done = run("slapadd", add, START_TIMEOUT)?;
        if !done.success() {
            return Err(Error::PeerFailed {
                what: "load the test LDIF".into(),
                detail: "slapadd failed".into(),
                diagnostics: done.diagnostics,
            });
        }
        let port = free_tcp_port().map_err(io("a free TCP port"))?;
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(SERVE_SCRIPT)
            .arg("serve-slapd")
            .arg(slapd)
            .arg(&conf)
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .arg(std::process::id().to_string());
        let peer = Peer::spawn("slapd", sh)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if peer.try_status().is_some() || Instant::now() > deadline {
                return Err(Error::PeerFailed {
                    what: "start slapd".into(),
                    detail: "it never accepted connections".into(),
                    diagnostics: peer.diagnostics(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Slapd {
            dir,
            port,
            peer: Some(peer),
        })
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.terminate(Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
