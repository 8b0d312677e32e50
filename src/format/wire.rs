//! Little-endian byte writer and reader for the hand-laid formats, plus the
//! helpers they share: the prefix every format starts with (`magic[4] ||
//! version u8 || flags u8`, one convention for identity and drive formats),
//! domain-separated SHA-256 (hex is in `format::hex`).
//!
//! Invariants: the reader never panics on malformed input; every read past
//! the end is [`FormatError::Truncated`]; every length and count read from
//! the input is checked against the bytes left before anything is sliced or
//! allocated (a count that cannot fit is [`FormatError::Count`]), so what a
//! parser allocates is bounded by a small multiple of its input;
//! [`Reader::finish`] refuses trailing bytes.

use sha2::{Digest, Sha256};

/// Why bytes could not be parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("truncated")]
    Truncated,
    /// A count of items that cannot all fit in the bytes left (a forged
    /// count), refused before anything is allocated for them.
    #[error(
        "a count of {count} items of at least {min_item} bytes does not fit in the {left} bytes left"
    )]
    Count {
        count: u64,
        min_item: u64,
        left: u64,
    },
    #[error("wrong magic")]
    BadMagic,
    #[error("unsupported version {0}")]
    Version(u16),
    #[error("unknown feature flags {0:#x}")]
    Flags(u16),
    #[error("invalid: {0}")]
    Invalid(&'static str),
    #[error("trailing bytes")]
    Trailing,
    #[error("bad signature")]
    Signature,
    #[error("decryption failed")]
    Decrypt,
}

/// Appends little-endian values to a buffer.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Fixed-size bytes, no length prefix.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A u32 length followed by the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).expect("field below 4 GiB"));
        self.raw(v)
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// Reads little-endian values from a slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items each at least `min_item` bytes long, checked against
    /// the remaining input so a forged count cannot force a huge allocation.
    pub fn count(&mut self, min_item: usize) -> Result<usize, FormatError> {
        let n = self.u32()? as usize;
        let min_item = min_item.max(1);
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(FormatError::Count {
                count: n as u64,
                min_item: min_item as u64,
                left: self.remaining() as u64,
            });
        }
        Ok(n)
    }
    /// Checks the common prefix `magic || version u8 || flags u8`: the
    /// magic, that the version is `expected` and that no feature flag is
    /// set (see [`read_prefix`]).
    pub fn versioned_header(&mut self, magic: &[u8; 4], expected: u8) -> Result<(), FormatError> {
        read_prefix(self, magic, expected, 0)
            .map(|_| ())
            .map_err(|e| match e {
                Prefix::Magic => FormatError::BadMagic,
                Prefix::Short => FormatError::Truncated,
                Prefix::Version(v) => FormatError::Version(v.into()),
                Prefix::Flags(f) => FormatError::Flags(f.into()),
            })
    }
    pub fn finish(&self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::Trailing);
        }
        Ok(())
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
    c: &mut Reader<'_>,
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

/// Hex lives in [`super::hex`]; these names stay for the formats' callers.
pub use super::hex::{decode as parse_hex, encode as hex};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .i64(-5)
            .bytes(b"abc")
            .raw(&[9; 2]);
        let v = w.into_vec();
        let mut r = Reader::new(&v);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.u64().unwrap(), 4);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.array::<2>().unwrap(), [9, 9]);
        r.finish().unwrap();
        for cut in 0..v.len() {
            let mut r = Reader::new(&v[..cut]);
            let all = (|| -> Result<(), FormatError> {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.u64()?;
                r.i64()?;
                r.bytes()?;
                r.array::<2>()?;
                Ok(())
            })();
            assert_eq!(all, Err(FormatError::Truncated));
        }
    }

    #[test]
    fn forged_count_is_refused() {
        let mut w = Writer::new();
        w.u32(u32::MAX).raw(&[0; 40]);
        let v = w.into_vec();
        assert_eq!(
            Reader::new(&v).count(8),
            Err(FormatError::Count {
                count: u32::MAX as u64,
                min_item: 8,
                left: 40
            })
        );
        // Exactly enough bytes for the items is accepted; one short is not.
        let mut w = Writer::new();
        w.u32(5).raw(&[0; 40]);
        assert_eq!(Reader::new(&w.0).count(8), Ok(5));
        assert_eq!(
            Reader::new(&w.0[..43]).count(8).unwrap_err().to_string(),
            "a count of 5 items of at least 8 bytes does not fit in the 39 bytes left"
        );
        // A length past the end is refused without slicing.
        let mut w = Writer::new();
        w.u32(u32::MAX).raw(&[0; 3]);
        assert_eq!(Reader::new(&w.0).bytes(), Err(FormatError::Truncated));
    }

    #[test]
    fn prefix_checks_magic_version_and_flags() {
        let ok = [b'T', b'E', b'S', b'T', 1, 0b01];
        assert_eq!(
            read_prefix(&mut Reader::new(&ok), b"TEST", 1, 0b11),
            Ok(0b01)
        );
        let cases: [(&[u8], Prefix); 4] = [
            (b"XEST\x01\x00", Prefix::Magic),
            (b"TEST", Prefix::Short),
            (b"TEST\x02\x00", Prefix::Version(2)),
            (b"TEST\x01\x04", Prefix::Flags(4)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                read_prefix(&mut Reader::new(bytes), b"TEST", 1, 0b11),
                Err(want)
            );
        }
    }
}
