//! A throwaway FreeRADIUS accounting server for real-peer tests, from Debian's
//! `freeradius` package (the dispatcher's RADIUS accounting uses it).
//!
//! What it does: writes a minimal `radiusd.conf` into its own directory (one
//! accounting listener on a free loopback UDP port, one client `127.0.0.1` with the
//! given secret, the `detail` module writing every accounting request to one file) and
//! a `dictionary` that includes the caller's dictionary files; runs `freeradius -X` in
//! the foreground; waits until it is ready. [`FreeRadius::stop`] and
//! [`FreeRadius::restart`] take the server away and bring it back on the same port.
//! [`FreeRadius::records`] reads the detail file back, attribute by attribute.
//! [`FreeRadius::start_in_netns`] runs it inside a network namespace (its loopback),
//! for tests whose RADIUS client lives there.
//!
//! What it does not: authentication, proxying, TLS or more than one client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::ports::free_udp_port;
use crate::process::{require_program, Peer};
use crate::{Error, Result};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) test server.
pub struct FreeRadius {
    dir: PathBuf,
    port: u16,
    program: PathBuf,
    /// `ip netns exec NS`, when it runs in a namespace.
    netns: Option<String>,
    peer: Option<Peer>,
}

impl FreeRadius {
    /// Starts a server that accepts accounting from 127.0.0.1 with `secret` and knows
    /// the attributes of `dictionaries` besides FreeRADIUS's own.
    pub fn start(secret: &str, dictionaries: &[&Path]) -> Result<FreeRadius> {
        Self::start_inner(secret, dictionaries, None)
    }

    /// [`FreeRadius::start`] inside the network namespace `netns` (on its loopback,
    /// 127.0.0.1): for a RADIUS client running in that namespace.
    pub fn start_in_netns(netns: &str, secret: &str, dictionaries: &[&Path]) -> Result<FreeRadius> {
        Self::start_inner(secret, dictionaries, Some(netns.to_owned()))
    }

    fn start_inner(
        secret: &str,
        dictionaries: &[&Path],
        netns: Option<String>,
    ) -> Result<FreeRadius> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let program = require_program("/usr/sbin/freeradius", "freeradius")?;
        let dir = std::env::temp_dir().join(format!(
            "mg-freeradius-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        std::fs::create_dir_all(&dir).map_err(io("FreeRADIUS directory"))?;
        let port = free_udp_port().map_err(io("a free UDP port"))?;
        let d = dir.display();
        std::fs::write(
            dir.join("radiusd.conf"),
            format!(
                "prefix = /usr\nexec_prefix = /usr\nsysconfdir = /etc\nlocalstatedir = /var\n\
                 sbindir = /usr/sbin\nconfdir = {d}\nraddbdir = {d}\nlogdir = {d}\n\
                 run_dir = {d}\nlibdir = /usr/lib/freeradius\npidfile = {d}/radiusd.pid\n\
                 name = radiusd\nmax_request_time = 30\ncleanup_delay = 1\n\
                 max_requests = 1024\nhostname_lookups = no\n\
                 log {{\n destination = stderr\n}}\n\
                 security {{\n allow_core_dumps = no\n}}\n\
                 client loopback {{\n ipaddr = 127.0.0.1\n secret = {secret}\n}}\n\
                 modules {{\n detail {{\n  filename = {d}/detail\n  escape_filenames = no\n  \
                 permissions = 0600\n  header = \"%t\"\n }}\n}}\n\
                 server default {{\n listen {{\n  type = acct\n  ipaddr = 127.0.0.1\n  \
                 port = {port}\n }}\n preacct {{\n }}\n accounting {{\n  detail\n }}\n}}\n"
            ),
        )
        .map_err(io("radiusd.conf"))?;
        let includes: String = dictionaries
            .iter()
            .map(|p| format!("$INCLUDE {}\n", p.display()))
            .collect();
        std::fs::write(dir.join("dictionary"), includes).map_err(io("dictionary"))?;
        let mut server = FreeRadius {
            dir,
            port,
            program,
            netns,
            peer: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// Starts the server again after [`FreeRadius::stop`] (same port and files).
    pub fn restart(&mut self) -> Result<()> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&self.program);
                cmd
            }
            None => Command::new(&self.program),
        };
        cmd.arg("-X").arg("-d").arg(&self.dir);
        let peer = Peer::spawn("freeradius", cmd)?;
        let ready = (0..START_TIMEOUT.as_millis() / 50).any(|_| {
            if peer.try_status().is_some() {
                return false;
            }
            let up = peer
                .stderr_tail()
                .iter()
                .chain(peer.stdout_tail().iter())
                .any(|l| l.contains("Ready to process requests"));
            if !up {
                std::thread::sleep(Duration::from_millis(50));
            }
            up
        });
        if !ready {
            return Err(Error::PeerFailed {
                what: "start freeradius".into(),
                detail: "it never said it was ready".into(),
                diagnostics: peer.diagnostics(),
            });
        }
        self.peer = Some(peer);
        Ok(())
    }

    /// Stops the server; requests go unanswered until [`FreeRadius::restart`].
    pub fn stop(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.terminate(Duration::from_secs(5));
        }
    }

    /// The accounting address.
    pub fn addr(&self) -> std::net::SocketAddr {
        (std::net::Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// The detail file as written so far (empty before the first record).
    pub fn detail(&self) -> String {
        std::fs::read_to_string(self.dir.join("detail")).unwrap_or_default()
    }

    /// The detail file's records: for each, its `Name = value` lines in order, values
    /// with FreeRADIUS's quotes removed.
    pub fn records(&self) -> Vec<Vec<(String, String)>> {
        parse_detail(&self.detail())
    }

    /// The server's output, for failure messages.
    pub fn diagnostics(&self) -> String {
        self.peer
            .as_ref()
            .map(Peer::diagnostics)
            .unwrap_or_default()
    }
}

/// Splits a detail file into records (separated by blank lines; each starts with a
/// date line) of `Name = value` pairs.
pub fn parse_detail(text: &str) -> Vec<Vec<(String, String)>> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .filter(|l| l.starts_with('\t'))
                .filter_map(|l| l.trim().split_once(" = "))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect()
        })
        .collect()
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn detail_records_split_and_unquote() {
        let text = "Sun Dec  6 06:15:15 2026\n\tAcct-Session-Id = \"x\"\n\tTimestamp = 17\n\n\
                    Sun Dec  6 06:15:16 2026\n\tSip-To-Tag = \"t\"\n\n";
        let r = super::parse_detail(text);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            vec![
                ("Acct-Session-Id".to_owned(), "x".to_owned()),
                ("Timestamp".to_owned(), "17".to_owned())
            ]
        );
        assert_eq!(r[1], vec![("Sip-To-Tag".to_owned(), "t".to_owned())]);
    }
}
