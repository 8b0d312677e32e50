//! [`Name`]: a directory entry's name as nodes hold it in memory, in place
//! when short.
//!
//! Every entry of every open directory holds one, so a drive of a million
//! files holds a million. As a `Vec<u8>` a 7-byte name costs 24 bytes plus
//! a heap chunk of 32; a `Name` is 24 bytes and holds names of up to
//! [`INLINE`] bytes (nearly all file names) in them; a longer one is boxed
//! at its exact length (16 bytes of pointer and length, plus the chunk).
//! Written without `unsafe`: the enum's tag and the inline length take two
//! of the 24 bytes.
//!
//! Invariants:
//! - A name of at most [`INLINE`] bytes is always inline, a longer one
//!   always boxed: one representation per value.
//! - Equality, ordering and hashing are those of the bytes, so a
//!   `BTreeMap<Name, _>` iterates in byte order (the order a directory's
//!   entries are encoded in) and answers look-ups by `&[u8]`.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// The longest name held in place.
pub const INLINE: usize = 22;

/// A name of bytes (not necessarily UTF-8), in place when short.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    /// Length, then the bytes (the rest zero).
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Name {
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(len, bytes) => &bytes[..*len as usize],
            Repr::Heap(b) => b,
        }
    }

    /// Whether the name is held in place (no allocation of its own).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline(..))
    }
}

impl From<&[u8]> for Name {
    fn from(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            Name(Repr::Inline(b.len() as u8, bytes))
        } else {
            Name(Repr::Heap(b.into()))
        }
    }
}

impl From<Vec<u8>> for Name {
    fn from(v: Vec<u8>) -> Self {
        if v.len() <= INLINE {
            Name::from(v.as_slice())
        } else {
            Name(Repr::Heap(v.into_boxed_slice()))
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Name {
    fn from(b: &[u8; N]) -> Self {
        Name::from(b.as_slice())
    }
}

impl From<Name> for Vec<u8> {
    fn from(n: Name) -> Self {
        match n.0 {
            Repr::Heap(b) => b.into_vec(),
            Repr::Inline(..) => n.as_bytes().to_vec(),
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::from(&[][..])
    }
}

impl Deref for Name {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl PartialEq<[u8]> for Name {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<Vec<u8>> for Name {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_bytes() == other.as_slice()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.as_bytes().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Inline up to `INLINE` bytes, boxed beyond, the bytes kept either way;
    /// 24 bytes whatever it holds.
    #[test]
    fn inline_up_to_the_boundary() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        assert_eq!(std::mem::size_of::<Option<Name>>(), 24);
        for len in [0, 1, 7, INLINE - 1, INLINE, INLINE + 1, 64, 255] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            for n in [Name::from(bytes.as_slice()), Name::from(bytes.clone())] {
                assert_eq!(n.is_inline(), len <= INLINE, "length {len}");
                assert_eq!(n.as_bytes(), bytes.as_slice());
                assert_eq!(n.len(), len);
                assert_eq!(Vec::from(n.clone()), bytes);
                assert_eq!(n, Name::from(bytes.as_slice()));
            }
        }
        assert_eq!(Name::default().as_bytes(), b"");
        assert_eq!(format!("{:?}", Name::from(b"a\"\xff")), "\"a\\\"\\xff\"");
    }

    proptest! {
        /// Compares, orders and hashes as its bytes, across the inline/heap
        /// boundary; a map keyed by names iterates in byte order and finds
        /// them by `&[u8]`.
        #[test]
        fn orders_as_its_bytes(
            names in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(255u8), any::<u8>()], 0..30),
                0..40,
            ),
        ) {
            let hash = |b: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                b(&mut h);
                h.finish()
            };
            for a in &names {
                for b in &names {
                    let (na, nb) = (Name::from(a.as_slice()), Name::from(b.as_slice()));
                    prop_assert_eq!(na.cmp(&nb), a.cmp(b));
                    prop_assert_eq!(na == nb, a == b);
                }
                let n = Name::from(a.clone());
                prop_assert_eq!(hash(&|h| n.hash(h)), hash(&|h| a.as_slice().hash(h)));
            }
            let by_name: BTreeMap<Name, usize> =
                names.iter().enumerate().map(|(i, n)| (Name::from(n.clone()), i)).collect();
            let by_bytes: BTreeMap<Vec<u8>, usize> =
                names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
            prop_assert!(by_name.iter().map(|(k, v)| (k.to_vec(), *v)).eq(by_bytes.into_iter()));
            for n in &names {
                prop_assert!(by_name.contains_key(n.as_slice()));
            }
        }
    }
}
