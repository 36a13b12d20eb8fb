//! Stateless server nonces: the issue time plus a keyed hash, so a server can check a
//! nonce it handed out without remembering it (RFC 7616 §3.3 suggests
//! `time-stamp H(time-stamp ":" ETag ":" secret-data)`; §5.5 discusses the trade-offs).
//!
//! Format: unpadded base64url of `issued_at (u64, big-endian) || tag[..16]`, where
//! `tag = HMAC-SHA-256(secret, issued_at || realm)` (RFC 2104). HMAC rather than a bare
//! `SHA-256(secret || ...)` so the construction does not depend on field lengths to resist
//! length extension. 32 characters, all safe in a token and in a quoted string.
//!
//! What it does not: prevent replay within a nonce's lifetime (that needs per-nonce
//! state for `nc` tracking), or read a clock: time is passed in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const TAG_LEN: usize = 16;
const RAW_LEN: usize = 8 + TAG_LEN;
/// Length of an encoded nonce in characters.
pub(crate) const NONCE_LEN: usize = 32;

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle` compares lengths first (public) and then every byte without branching.
    a.ct_eq(b).into()
}

/// HMAC-SHA-256 (RFC 2104) over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length (longer ones are hashed first), so this never fails.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Issues and checks nonces bound to one secret and one realm.
#[derive(Clone)]
pub(crate) struct NonceKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(<secret>)")
    }
}

impl NonceKey {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn tag(&self, issued_at: u64, realm: &str) -> [u8; 32] {
        hmac_sha256(&self.secret, &[&issued_at.to_be_bytes(), realm.as_bytes()])
    }

    /// A nonce stamped with `now_unix_secs`.
    pub(crate) fn issue(&self, realm: &str, now_unix_secs: u64) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now_unix_secs.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(now_unix_secs, realm)[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The issue time of a nonce we issued for `realm`, or `None` if it is not ours
    /// (malformed, tampered with, other realm or other secret).
    pub(crate) fn issued_at(&self, realm: &str, nonce: &str) -> Option<u64> {
        // Length first, so decoding never allocates on attacker-chosen sizes.
        if nonce.len() != NONCE_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let (time, tag) = raw.split_at_checked(8)?;
        let issued_at = u64::from_be_bytes(time.try_into().ok()?);
        let expected = self.tag(issued_at, realm);
        constant_time_eq(tag, expected.get(..TAG_LEN)?).then_some(issued_at)
    }
}

#[cfg(test)]
mod tests {
    use super::super::digest::hex;
    use super::*;

    #[test]
    fn hmac_matches_rfc4231() {
        // RFC 4231 test cases 1, 2 and 6 (key longer than the block size).
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn constant_time_eq_compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn nonce_round_trips_and_binds_secret_and_realm() {
        let key = NonceKey::new(b"0123456789abcdef");
        let n = key.issue("realm", 1_700_000_000);
        assert_eq!(n.len(), NONCE_LEN);
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(key.issued_at("realm", &n), Some(1_700_000_000));
        assert_eq!(key.issued_at("other realm", &n), None);
        assert_eq!(
            NonceKey::new(b"another secret!!").issued_at("realm", &n),
            None
        );
        assert_eq!(key.issued_at("realm", &n[1..]), None);
        assert_eq!(key.issued_at("realm", "!".repeat(NONCE_LEN).as_str()), None);
    }

    #[test]
    fn every_single_character_change_is_detected() {
        let key = NonceKey::new(b"0123456789abcdef");
        let n = key.issue("r", 42);
        for i in 0..n.len() {
            for c in ['A', 'z', '0', '-', '_'] {
                let mut t: Vec<char> = n.chars().collect();
                if t[i] == c {
                    continue;
                }
                t[i] = c;
                let t: String = t.into_iter().collect();
                // 32 base64 characters carry exactly 24 bytes, so no change is lost
                // in padding bits.
                if let Some(at) = key.issued_at("r", &t) {
                    panic!("tampered nonce {t} accepted as issued at {at}");
                }
            }
        }
    }
}
