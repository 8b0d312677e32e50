//! Little helpers for hand-laid binary formats: a bounds-checked cursor for
//! parsing and SHA-256 with a domain-separation label.
//!
//! Invariants: the cursor never panics on short input; it reports
//! [`Short`] instead, and [`Cursor::finish`] refuses trailing bytes.

use sha2::{Digest, Sha256};

/// The input ended before a field, or had bytes left over after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short;

/// A read position in a byte slice.
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.rest.len() < n {
            return Err(Short);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Bytes consumed so far, given the slice the cursor started on.
    pub fn position(&self, start: &[u8]) -> usize {
        start.len() - self.rest.len()
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), Short> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Short)
        }
    }
}

/// How the common prefix of every format (magic, version, flags) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// The magic is wrong (or the input is shorter than it).
    Magic,
    /// The input ends after the magic.
    Short,
    /// An unsupported version.
    Version(u8),
    /// Flags outside `known_flags`.
    Flags(u8),
}

/// Reads `magic (4) || version (1) || flags (1)`, checking the version and
/// refusing unknown flags. Returns the flags.
pub fn read_prefix(
    c: &mut Cursor<'_>,
    magic: &[u8; 4],
    version: u8,
    known_flags: u8,
) -> Result<u8, Prefix> {
    if c.take(4).map_err(|_| Prefix::Magic)? != magic {
        return Err(Prefix::Magic);
    }
    let v = c.u8().map_err(|_| Prefix::Short)?;
    if v != version {
        return Err(Prefix::Version(v));
    }
    let flags = c.u8().map_err(|_| Prefix::Short)?;
    if flags & !known_flags != 0 {
        return Err(Prefix::Flags(flags));
    }
    Ok(flags)
}

/// SHA-256 over a domain label followed by the given parts.
pub fn hash(label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex of exactly `N` bytes.
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_and_refuses_short_or_trailing_input() {
        let bytes = [1u8, 2, 0, 3, 0, 0, 0, 9];
        let mut c = Cursor::new(&bytes);
        assert_eq!(c.u8(), Ok(1));
        assert_eq!(c.u16(), Ok(2));
        assert_eq!(c.u32(), Ok(3));
        assert_eq!(c.position(&bytes), 7);
        assert_eq!(c.u16(), Err(Short));
        assert!(c.finish().is_err());
    }

    #[test]
    fn hex_round_trip() {
        let text = hex(&[0, 0xab, 0x10]);
        assert_eq!(text, "00ab10");
        assert_eq!(parse_hex::<3>(&text), Some([0, 0xab, 0x10]));
        assert_eq!(parse_hex::<3>("00AB10"), Some([0, 0xab, 0x10]));
        assert_eq!(parse_hex::<3>("00ab1"), None);
        assert_eq!(parse_hex::<3>("00ab1g"), None);
    }
}
