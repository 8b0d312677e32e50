//! [`Sparse`]: a node field that is empty for most nodes (a file's
//! directory entries, extended attributes, symlink target), held behind
//! one pointer that is null while it is empty.
//!
//! Every node of every open volume is resident, so a field's inline size
//! is paid a million times in a drive of a million files: an empty
//! `BTreeMap` or `Vec` takes 24 bytes, a `Sparse` of either 8. It reads as
//! the value it wraps (`Deref`), and a mutable borrow allocates the value
//! on first use (`DerefMut`).
//!
//! Invariants: an empty value and no value are equal and encode alike;
//! [`Sparse::clear`], [`Sparse::from`] and the map's [`Sparse::remove`]
//! free the box once empty.

use super::name::Name;
use super::node::DirLink;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A value that is usually empty, boxed only while it is not.
#[derive(Clone, Default)]
pub struct Sparse<T: Empty>(Option<Box<T>>);

/// A type with a shared, static empty value for [`Sparse`] to lend.
pub trait Empty: Default + 'static {
    /// The empty value.
    fn empty() -> &'static Self;
    fn is_empty_value(&self) -> bool;
}

impl Empty for Vec<u8> {
    fn empty() -> &'static Self {
        static EMPTY: Vec<u8> = Vec::new();
        &EMPTY
    }
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

impl Empty for BTreeMap<Name, DirLink> {
    fn empty() -> &'static Self {
        static EMPTY: BTreeMap<Name, DirLink> = BTreeMap::new();
        &EMPTY
    }
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

impl Empty for BTreeMap<Vec<u8>, Vec<u8>> {
    fn empty() -> &'static Self {
        static EMPTY: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        &EMPTY
    }
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

impl<T: Empty> Sparse<T> {
    /// Empties the value and frees its box.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    /// The value (empty if there is none).
    pub fn into_inner(self) -> T {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl<T: Empty + FromIterator<A>, A> FromIterator<A> for Sparse<T> {
    fn from_iter<I: IntoIterator<Item = A>>(items: I) -> Self {
        T::from_iter(items).into()
    }
}

impl<K: Ord, V> Sparse<BTreeMap<K, V>>
where
    BTreeMap<K, V>: Empty,
{
    /// `BTreeMap::remove`, freeing the box when the last key goes (and
    /// allocating nothing when there is none).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let map = self.0.as_mut()?;
        let v = map.remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        v
    }
}

impl<T: Empty> From<T> for Sparse<T> {
    fn from(value: T) -> Self {
        Sparse((!value.is_empty_value()).then(|| Box::new(value)))
    }
}

impl<T: Empty> Deref for Sparse<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or_else(|| T::empty())
    }
}

impl<T: Empty> DerefMut for Sparse<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Default::default)
    }
}

impl<T: Empty + PartialEq> PartialEq for Sparse<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Empty + Eq> Eq for Sparse<T> {}

impl<T: Empty + fmt::Debug> fmt::Debug for Sparse<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<'a, T: Empty> IntoIterator for &'a Sparse<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        (**self).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty and absent are one value; the box goes when the map empties;
    /// a mutable borrow allocates it.
    #[test]
    fn empty_values_hold_no_box() {
        let mut m: Sparse<BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new().into();
        assert!(m.0.is_none() && m.is_empty());
        assert_eq!(m.remove(b"x".as_slice()), None);
        assert!(m.0.is_none());
        m.insert(b"a".to_vec(), b"1".to_vec());
        assert_eq!(m.get(b"a".as_slice()), Some(&b"1".to_vec()));
        assert_eq!(m.remove(b"a".as_slice()), Some(b"1".to_vec()));
        assert!(m.0.is_none());
        let mut v: Sparse<Vec<u8>> = Sparse::default();
        v.extend_from_slice(b"ab");
        assert_eq!(v, Sparse::from(b"ab".to_vec()));
        v.truncate(0);
        assert_eq!(v, Sparse::default(), "an empty box equals none");
        v.clear();
        assert!(v.0.is_none());
        assert_eq!(std::mem::size_of::<Sparse<Vec<u8>>>(), 8);
    }
}
