//! The hash every scheduler that must agree across processes uses: FNV-1a over the
//! bytes, then the splitmix64 finaliser so that nearby inputs (addresses one apart,
//! URLs differing in one digit) land far apart.
//!
//! Fixed by this file, not by the standard library: `std`'s `RandomState` is seeded per
//! process and `DefaultHasher`'s algorithm may change between Rust releases, and several
//! balancers (or one balancer before and after an upgrade) must compute the same values.

/// 64-bit hash of `bytes` under `seed`; stable across processes, builds and versions.
pub(crate) fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET ^ mix(seed);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

/// splitmix64's finaliser: a bijection with full avalanche.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A back end's identity for hashing: its address's bytes (IP, then port, big-endian),
/// without formatting it into text on every pick.
pub(crate) fn addr_key(addr: std::net::SocketAddr) -> ([u8; 18], usize) {
    let mut key = [0u8; 18];
    let n = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            key[..4].copy_from_slice(&v4.octets());
            4
        }
        std::net::IpAddr::V6(v6) => {
            key[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    key[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    (key, n + 2)
}

/// A uniform draw in (0, 1] from a hash, for weighted rendezvous scores.
pub(crate) fn unit_interval(h: u64) -> f64 {
    // 53 bits fill an f64 mantissa exactly; +1 keeps ln() finite.
    ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned() {
        // Balancers of different builds must agree: a change here moves every key.
        assert_eq!(hash64(0, b""), mix(0xcbf2_9ce4_8422_2325 ^ mix(0)));
        assert_eq!(hash64(1, b"a"), hash64(1, b"a"));
        assert_ne!(hash64(1, b"a"), hash64(2, b"a"));
        assert_ne!(hash64(1, b"a"), hash64(1, b"b"));
        assert_eq!(mix(0), 0);
        assert_eq!(mix(1), 6_238_072_747_940_578_789);
        assert_eq!(hash64(0, b"rtsp://vip/a"), 13_798_834_107_135_237_105);
    }

    #[test]
    fn unit_interval_stays_inside() {
        for h in [0, 1, u64::MAX, u64::MAX / 2] {
            let u = unit_interval(h);
            assert!(u > 0.0 && u <= 1.0, "{u}");
        }
    }
}
