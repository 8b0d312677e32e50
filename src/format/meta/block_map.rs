//! [`BlockMap`]: a file's block versions by block index, as a sorted
//! vector with room for one ref inline.
//!
//! Every file node of every open volume holds one, so its size per file is
//! much of the engine's memory per file: a `BTreeMap` allocates a whole
//! leaf (room for 11 refs, about 700 bytes) for a file of one block; a
//! vector an 80-byte chunk. This holds a single ref inside the node (most
//! files have one block: no allocation at all) and more in a vector sized
//! to what it holds.
//!
//! Invariants: indices strictly increasing, at most one ref per index;
//! iteration in index order (the encoding's order).

use super::node::BlockRef;
use smallvec::SmallVec;

/// Block refs by block index, sorted, one per index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockMap(SmallVec<[(u64, BlockRef); 1]>);

impl BlockMap {
    pub fn new() -> Self {
        Self(SmallVec::new())
    }

    fn find(&self, index: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&index, |(i, _)| *i)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The refs the map has room for without growing.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub fn get(&self, index: &u64) -> Option<&BlockRef> {
        self.find(*index).ok().map(|at| &self.0[at].1)
    }

    pub fn get_mut(&mut self, index: &u64) -> Option<&mut BlockRef> {
        self.find(*index).ok().map(|at| &mut self.0[at].1)
    }

    pub fn contains_key(&self, index: &u64) -> bool {
        self.find(*index).is_ok()
    }

    /// Sets the ref at `index`, returning the one it replaces. Appending
    /// past the last index (a file written in order) costs no search.
    pub fn insert(&mut self, index: u64, block: BlockRef) -> Option<BlockRef> {
        if self.0.last().is_none_or(|(i, _)| *i < index) {
            self.0.push((index, block));
            return None;
        }
        match self.find(index) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, block)),
            Err(at) => {
                self.0.insert(at, (index, block));
                None
            }
        }
    }

    pub fn remove(&mut self, index: &u64) -> Option<BlockRef> {
        self.find(*index).ok().map(|at| self.0.remove(at).1)
    }

    /// Keeps the refs for which `keep(index, ref)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&u64, &mut BlockRef) -> bool) {
        self.0.retain_mut(|(i, b)| keep(i, b));
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&u64, &BlockRef)> + '_ {
        self.0.iter().map(|(i, b)| (i, b))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &u64> + '_ {
        self.0.iter().map(|(i, _)| i)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &BlockRef> + '_ {
        self.0.iter().map(|(_, b)| b)
    }

    pub fn into_values(self) -> impl DoubleEndedIterator<Item = BlockRef> {
        self.0.into_iter().map(|(_, b)| b)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut BlockRef> + '_ {
        self.0.iter_mut().map(|(_, b)| b)
    }
}

impl Extend<(u64, BlockRef)> for BlockMap {
    fn extend<I: IntoIterator<Item = (u64, BlockRef)>>(&mut self, refs: I) {
        for (i, b) in refs {
            self.insert(i, b);
        }
    }
}

impl FromIterator<(u64, BlockRef)> for BlockMap {
    fn from_iter<I: IntoIterator<Item = (u64, BlockRef)>>(refs: I) -> Self {
        let mut m = BlockMap::new();
        m.extend(refs);
        m.0.shrink_to_fit();
        m
    }
}

impl<const N: usize> From<[(u64, BlockRef); N]> for BlockMap {
    fn from(refs: [(u64, BlockRef); N]) -> Self {
        refs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a BlockMap {
    type Item = (&'a u64, &'a BlockRef);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (u64, BlockRef)>,
        fn(&'a (u64, BlockRef)) -> (&'a u64, &'a BlockRef),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(i, b)| (i, b))
    }
}

impl std::ops::Index<&u64> for BlockMap {
    type Output = BlockRef;
    fn index(&self, index: &u64) -> &BlockRef {
        self.get(index).expect("no block at this index")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A ref told apart by `n` (its key is random: compare clones).
    fn block(n: u8) -> BlockRef {
        let mut b = BlockRef::fresh(u32::from(n) + 1, 0);
        b.id = [n; 16];
        b
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u64, u8),
        Remove(u64),
        RetainBelow(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..40, any::<u8>()).prop_map(|(i, n)| Step::Insert(i, n)),
            (0u64..40).prop_map(Step::Remove),
            (0u64..40).prop_map(Step::RetainBelow),
        ]
    }

    /// A map of one ref holds it inline, whether built by an insert (a
    /// file's first write) or collected (a decoded node); a collected map
    /// of more has room for exactly what it holds.
    #[test]
    fn one_ref_is_held_inline() {
        let mut m = BlockMap::new();
        m.insert(0, block(1));
        assert!(!m.0.spilled());
        m.insert(1, block(2));
        assert_eq!(m.len(), 2);
        let m: BlockMap = [(0, block(1))].into();
        assert!(!m.0.spilled());
        let m: BlockMap = (0..5).map(|i| (i, block(i as u8))).collect();
        assert_eq!(m.capacity(), 5);
    }

    proptest! {
        /// Behaves exactly as the `BTreeMap` it replaces.
        #[test]
        fn matches_a_btree_map(steps in proptest::collection::vec(step(), 0..60)) {
            let mut model = BTreeMap::new();
            let mut map = BlockMap::new();
            for s in steps {
                match s {
                    Step::Insert(i, n) => {
                        let b = block(n);
                        prop_assert_eq!(map.insert(i, b.clone()), model.insert(i, b));
                    }
                    Step::Remove(i) => prop_assert_eq!(map.remove(&i), model.remove(&i)),
                    Step::RetainBelow(end) => {
                        map.retain(|i, _| *i < end);
                        model.retain(|i, _| *i < end);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert!(map.iter().eq(model.iter()));
                for i in 0..40 {
                    prop_assert_eq!(map.get(&i), model.get(&i));
                    prop_assert_eq!(map.contains_key(&i), model.contains_key(&i));
                }
            }
        }
    }
}
