//! Hex text of bytes: lower-case encoding, and strict decoding of exactly
//! `N` bytes (object names, card ids, cache file names).
//!
//! Invariant: [`decode`] accepts only `2 * N` ASCII hex digits (either
//! case) and nothing else: no sign, no whitespace, no odd length.

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex of exactly `N` bytes.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = encode(&[0, 0xab, 0x10, 0xff]);
        assert_eq!(text, "00ab10ff");
        assert_eq!(decode::<4>(&text), Some([0, 0xab, 0x10, 0xff]));
        assert_eq!(decode::<4>("00AB10FF"), Some([0, 0xab, 0x10, 0xff]));
        let all: Vec<u8> = (0..=255).collect();
        let back = decode::<256>(&encode(&all)).unwrap();
        assert_eq!(back.to_vec(), all);
        assert_eq!(encode(&[]), "");
        assert_eq!(decode::<0>(""), Some([]));
    }

    #[test]
    fn refuses_anything_but_exact_hex_digits() {
        for bad in [
            "00ab1", "00ab10f", "00ab1g", "+0ab10", "-1ab10", " 0ab10", "0xab10", "00ab1é",
        ] {
            assert_eq!(decode::<3>(bad), None, "{bad:?}");
        }
    }
}
