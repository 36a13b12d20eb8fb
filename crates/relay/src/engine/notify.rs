//! Telling the SIP proxy that the relay ended a call for inactivity, so it can send
//! BYE to both phones: one JSON-RPC 2.0 request over HTTP to the configured URL, in
//! Kamailio's `dlg.terminate_dlg` form (`jsonrpcs` module over `xhttp`, params
//! Call-ID, from-tag, to-tag), the same call rtpengine's `--b2b-url` makes with
//! `xmlrpc-format` 2.
//!
//! What it does: one POST per timed-out call, bounded by a 3 s timeout, with the status
//! checked and failures logged. What it does not: parse the URL (the config's `HttpUrl`
//! did, and refuses `https://` and credentials where they are written), HTTPS,
//! retries, or any other RPC dialect.

use std::time::Duration;

use mediagate_config::HttpUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where to POST: host (for the `Host` header), `host:port` to connect to, and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NotifyTarget {
    authority: String,
    host_header: String,
    path: String,
}

impl From<&HttpUrl> for NotifyTarget {
    fn from(url: &HttpUrl) -> Self {
        Self {
            authority: url.authority(),
            host_header: url.host_header(),
            path: url.path_and_query().to_owned(),
        }
    }
}

impl NotifyTarget {
    fn connect_addr(&self) -> &str {
        &self.authority
    }
}

/// The JSON-RPC body for one call.
pub(super) fn terminate_body(call_id: &str, from_tag: &str, to_tag: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "method": "dlg.terminate_dlg",
        "params": [call_id, from_tag, to_tag],
        "id": 1,
    })
    .to_string()
}

/// POSTs the termination request; returns the HTTP status code.
pub(super) async fn send(target: &NotifyTarget, body: &str) -> Result<u16, String> {
    let work = async {
        let mut stream = TcpStream::connect(target.connect_addr())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.authority))?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            target.path,
            target.host_header,
            body.len(),
            body
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send to {}: {e}", target.authority))?;
        let mut head = vec![0u8; 1024];
        let mut got = 0;
        while got < head.len() && !head.get(..got).unwrap_or_default().contains(&b'\n') {
            let n = stream
                .read(head.get_mut(got..).unwrap_or_default())
                .await
                .map_err(|e| format!("no reply from {}: {e}", target.authority))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = String::from_utf8_lossy(head.get(..got).unwrap_or_default()).into_owned();
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("{} did not answer HTTP", target.authority))
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| format!("{} did not answer within 3 s", target.authority))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn target(url: &str) -> NotifyTarget {
        NotifyTarget::from(&url.parse::<HttpUrl>().unwrap())
    }

    #[test]
    fn url_forms() {
        let t = target("http://127.0.0.1:5060/RPC");
        assert_eq!(t.connect_addr(), "127.0.0.1:5060");
        assert_eq!(t.path, "/RPC");
        let t = target("http://sip.example");
        assert_eq!((t.connect_addr(), t.path.as_str()), ("sip.example:80", "/"));
        assert_eq!(t.host_header, "sip.example");
        assert_eq!(target("http://[::1]/x").connect_addr(), "[::1]:80");
        // https:// is refused by the config type, before any target exists.
        assert!("https://h/"
            .parse::<HttpUrl>()
            .unwrap_err()
            .to_string()
            .contains("https:// (HTTP over TLS) is not supported yet"));
    }

    #[test]
    fn body_is_kamailio_jsonrpc() {
        let v: serde_json::Value =
            serde_json::from_str(&terminate_body("c@h", "ft", "tt")).unwrap();
        assert_eq!(v["method"], "dlg.terminate_dlg");
        assert_eq!(v["params"], serde_json::json!(["c@h", "ft", "tt"]));
    }

    #[tokio::test]
    async fn posts_and_reads_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).ends_with("]}") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let target = target(&format!("http://{addr}/RPC"));
        let status = send(&target, &terminate_body("c1", "a", "b"))
            .await
            .unwrap();
        assert_eq!(status, 200);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /RPC HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains(&format!("\r\nHost: {addr}\r\n")),
            "{request}"
        );
        assert!(request.contains("dlg.terminate_dlg"));
    }
}
