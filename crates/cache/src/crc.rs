//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the per-record checksum of the
//! cache's packet logs and index files.
//!
//! Computed by the `crc32c` crate: the CPU's `crc32` instruction (SSE 4.2, ARMv8 CRC)
//! where it has one, chosen at run time, else its own tables. The table-driven version
//! this crate had before (slicing by 8) took about a third of the edge's CPU in a fill
//! from an origin sending faster than real time. The values are the same, so objects
//! written either way verify either way (tested below against the bitwise definition).
//! It detects damage (torn writes, flipped bits); it is not a defence against anyone
//! crafting files on purpose, which the cache does not try to be.

/// Extends a running CRC (start with 0) over `data`.
pub(crate) fn update(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

pub(crate) fn crc32c(data: &[u8]) -> u32 {
    update(0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLY: u32 = 0x82F6_3B78;

    /// Bit by bit, straight from the definition: the reference the fast version must match.
    fn slow(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn known_vectors() {
        // The CRC-32C check value (RFC 3720 appendix B.4 lists the same polynomial).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn matches_the_bitwise_definition_at_every_length_and_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc32c(&data[..len]), slow(&data[..len]), "len {len}");
            let split = len / 3;
            assert_eq!(
                update(update(0, &data[..split]), &data[split..len]),
                slow(&data[..len])
            );
        }
    }
}
