//! Socket and IP addresses as config values, with errors that show the expected form.
//!
//! What it does: [`BindAddr`] is an `IP:PORT` to listen on (`"0.0.0.0:8554"`,
//! `"[::]:8554"`); [`HostIp`] is a bare IP address. What it does not: resolve host
//! names (a listening socket binds an address, and resolving at load time would make the
//! config's meaning depend on DNS) or check that the address exists on this host.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// An address and port to bind a socket to. Port 0 asks the kernel for a free port,
/// which tests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BindAddr(pub SocketAddr);

impl BindAddr {
    /// The socket address.
    pub const fn get(self) -> SocketAddr {
        self.0
    }
}

impl FromStr for BindAddr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "an address")?;
        s.parse::<SocketAddr>().map(Self).map_err(|_| {
            let hint = if s.parse::<std::net::Ipv6Addr>().is_ok() {
                "the port is missing; IPv6 addresses go in brackets, as in [::1]:8554"
            } else if s.parse::<IpAddr>().is_ok() {
                "the port is missing"
            } else if s.matches(':').count() > 1 && !s.starts_with('[') {
                "IPv6 addresses go in brackets"
            } else {
                "host names are not allowed here"
            };
            InvalidValue::new(format!(
                "invalid address {}: expected IP:PORT such as \"0.0.0.0:8554\" or \"[::]:8554\" ({hint})",
                quoted(s)
            ))
        })
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_value_serde!(BindAddr, "an address such as \"0.0.0.0:8554\"");

/// An IPv4 or IPv6 address without a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostIp(pub IpAddr);

impl HostIp {
    /// The address.
    pub const fn get(self) -> IpAddr {
        self.0
    }
}

impl FromStr for HostIp {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "an IP address")?;
        s.parse::<IpAddr>().map(Self).map_err(|_| {
            InvalidValue::new(format!(
                "invalid IP address {}: expected an IPv4 or IPv6 address such as \"192.0.2.10\" or \"2001:db8::10\", without a port",
                quoted(s)
            ))
        })
    }
}

impl fmt::Display for HostIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_value_serde!(HostIp, "an IP address such as \"192.0.2.10\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(
            "0.0.0.0:8554".parse::<BindAddr>().unwrap().to_string(),
            "0.0.0.0:8554"
        );
        assert_eq!(
            "[::]:8554".parse::<BindAddr>().unwrap().to_string(),
            "[::]:8554"
        );
        assert_eq!("127.0.0.1:0".parse::<BindAddr>().unwrap().get().port(), 0);
        let e = |s: &str| s.parse::<BindAddr>().unwrap_err().to_string();
        assert_eq!(
            e("0.0.0.0"),
            "invalid address \"0.0.0.0\": expected IP:PORT such as \"0.0.0.0:8554\" or \"[::]:8554\" (the port is missing)"
        );
        assert!(e("::1:80").contains("IPv6 addresses go in brackets"));
        assert!(e("localhost:80").contains("host names are not allowed"));
        assert!(e("1.2.3.4:99999").contains("expected IP:PORT"));
    }

    #[test]
    fn host_ips() {
        assert_eq!(
            "2001:db8::10".parse::<HostIp>().unwrap().to_string(),
            "2001:db8::10"
        );
        assert_eq!(
            "192.0.2.10".parse::<HostIp>().unwrap().get(),
            IpAddr::from([192, 0, 2, 10])
        );
        let e = "192.0.2.10:5".parse::<HostIp>().unwrap_err().to_string();
        assert!(e.starts_with("invalid IP address \"192.0.2.10:5\""), "{e}");
    }
}
