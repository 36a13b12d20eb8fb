//! What the tests of this crate need from the host, checked at run time. A test that
//! cannot make its check fails here with the reason and the fix; it never passes
//! without checking.

use std::net::UdpSocket;

/// A socket bound to `addr` (an IPv6 address: `[::1]:0`, `[::]:0`), or a failure that
/// says this host lacks IPv6.
pub(crate) fn bind_ipv6(addr: &str) -> UdpSocket {
    UdpSocket::bind(addr).unwrap_or_else(|e| {
        panic!(
            "this test needs IPv6 (binding {addr} failed: {e}); enable it on the loopback \
             (sysctl net.ipv6.conf.lo.disable_ipv6=0, or a network namespace with IPv6) \
             rather than let the test pass unchecked"
        )
    })
}
