//! [`NodeTable`]: a tree's nodes by id, in a table that two trees can
//! share (the engine's committed tree and its view), each seeing the shared
//! table through a small overlay of the nodes it changed since.
//!
//! A drive of a million files holds a million entries here; a second
//! table for the view (2^21 slots of 16 bytes, and a million `Arc`
//! increments to fill it at every open) would cost ~35 bytes a file. With
//! one shared table the view costs only the nodes its pending ops changed.
//! An open fills the table from a checkpoint's [`PageNodes`] in one step
//! ([`NodeTable::from_pages`], in bucket order).
//!
//! Invariants:
//! - An id in `over` reads as its value there (`None`: removed); any other
//!   id reads as in `base`. A `None` in `over` only ever marks an id that
//!   `base` holds.
//! - `len` is the number of ids that read as a node.
//! - `base` is changed in place only while this table is its only holder
//!   (`Arc::get_mut`): changes to a shared table go to `over`, so another
//!   table sharing the base never sees them. An unshared table therefore
//!   works as a plain hash map (its overlay only shrinks).
//! - [`NodeTable::fold_into_shared`] moves one table's overlay into the
//!   base it shares with another without copying the base, after making
//!   the other's overlay hold what the other read through the base for
//!   every id it moves: neither table's contents change.

use crate::format::meta::Node;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::sync::Arc;

/// The shared part: every node, by id.
type Base = HashMap<u64, Arc<Node>>;

/// A table's fill is ordered by the top `FILL_GROUP_BITS` bits of the
/// bucket each id's probe starts at (see [`NodeTable::from_pages`]).
const FILL_GROUP_BITS: u32 = 10;

/// The nodes of one checkpoint page made ready for a table, each in its
/// `Arc`. Made where the page is decoded (on the blocking pool, pages side
/// by side), so that [`NodeTable::from_pages`] only orders and fills.
#[derive(Debug, Default)]
pub struct PageNodes {
    nodes: Vec<(u64, Arc<Node>)>,
}

impl PageNodes {
    pub fn new(nodes: Vec<Node>) -> Self {
        // A vector of its own, not `collect` (which would reuse the
        // decoded nodes' buffer in place and shrink it: the freed tail of
        // every page's buffer, a few KiB, stayed a hole among the nodes
        // for as long as the daemon runs).
        let mut made = Vec::with_capacity(nodes.len());
        made.extend(nodes.into_iter().map(|n| (n.id, Arc::new(n))));
        PageNodes { nodes: made }
    }
}

/// Nodes by id: a base table (shared while another table holds it) and an
/// overlay of this table's own changes to it.
#[derive(Debug, Clone, Default)]
pub struct NodeTable {
    base: Arc<Base>,
    over: HashMap<u64, Option<Arc<Node>>>,
    len: usize,
}

impl NodeTable {
    /// A table holding `nodes` (not shared).
    pub fn from_map(nodes: Base) -> Self {
        NodeTable {
            len: nodes.len(),
            base: Arc::new(nodes),
            over: HashMap::new(),
        }
    }

    /// A table (not shared) holding every node of `pages`; an id in two
    /// pages reads as the later one.
    ///
    /// Inserted in the order they come, a million ids land in random
    /// buckets of a 34 MB table: a cache and TLB miss each, ~250 ns, a
    /// quarter of a second on one core at the end of a 1M-file open (the
    /// other core idle). Inserted grouped by where their probe starts
    /// (hashbrown's bucket is the hash's low bits; a stable counting sort
    /// on the top bits of that index), each group's inserts stay within a
    /// few hundred KiB of the table. Only the speed depends on that layout:
    /// any order builds the same table. The groups are kept in one flat
    /// vector, freed whole (per-page vectors of hashes, made beside the
    /// decode, left 8 MB of holes among the nodes at 1M files).
    pub fn from_pages(pages: Vec<PageNodes>) -> Self {
        let count: usize = pages.iter().map(|p| p.nodes.len()).sum();
        let mut base: Base = HashMap::with_capacity(count);
        // The bucket count behind that capacity (7/8 of it usable).
        let buckets = (base.capacity() * 8 / 7).next_power_of_two();
        let shift = buckets.trailing_zeros().saturating_sub(FILL_GROUP_BITS);
        let hasher = base.hasher();
        let mut groups: Vec<u16> = Vec::with_capacity(count);
        groups.extend(
            (pages.iter().flat_map(|p| &p.nodes))
                .map(|(id, _)| ((hasher.hash_one(id) as usize & (buckets - 1)) >> shift) as u16),
        );
        let mut next = vec![0usize; (buckets >> shift) + 1];
        for g in &groups {
            next[*g as usize + 1] += 1;
        }
        for g in 1..next.len() {
            next[g] += next[g - 1];
        }
        let mut ordered: Vec<Option<(u64, Arc<Node>)>> = Vec::new();
        ordered.resize_with(count, || None);
        for (n, g) in pages.into_iter().flat_map(|p| p.nodes).zip(groups) {
            let at = &mut next[g as usize];
            ordered[*at] = Some(n);
            *at += 1;
        }
        base.extend(ordered.into_iter().flatten());
        NodeTable::from_map(base)
    }

    pub fn get(&self, id: &u64) -> Option<&Arc<Node>> {
        if self.over.is_empty() {
            return self.base.get(id);
        }
        match self.over.get(id) {
            Some(v) => v.as_ref(),
            None => self.base.get(id),
        }
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every node with its id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Arc<Node>)> + Clone + '_ {
        let over = &self.over;
        self.base
            .iter()
            .filter(move |(id, _)| over.is_empty() || !over.contains_key(*id))
            .chain(
                over.iter()
                    .filter_map(|(id, v)| v.as_ref().map(|n| (id, n))),
            )
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Node>> + Clone + '_ {
        self.iter().map(|(_, n)| n)
    }

    /// The node `id` to change in place (copied first if another table or
    /// tree holds it: copy on write).
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut Node> {
        if !self.over.contains_key(id) {
            if Arc::get_mut(&mut self.base).is_some() {
                let base = Arc::get_mut(&mut self.base).expect("checked unique");
                return base.get_mut(id).map(Arc::make_mut);
            }
            let n = self.base.get(id)?.clone();
            self.over.insert(*id, Some(n));
        }
        self.over.get_mut(id)?.as_mut().map(Arc::make_mut)
    }

    /// Sets node `id`, returning the one it replaces.
    pub fn insert(&mut self, id: u64, node: Arc<Node>) -> Option<Arc<Node>> {
        let old = match Arc::get_mut(&mut self.base) {
            Some(base) => {
                let in_base = base.insert(id, node);
                match self.over.remove(&id) {
                    Some(v) => v,
                    None => in_base,
                }
            }
            None => {
                let old = self.get(&id).cloned();
                self.over.insert(id, Some(node));
                old
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes node `id`, returning it.
    pub fn remove(&mut self, id: &u64) -> Option<Arc<Node>> {
        let old = match Arc::get_mut(&mut self.base) {
            Some(base) => {
                let in_base = base.remove(id);
                match self.over.remove(id) {
                    Some(v) => v,
                    None => in_base,
                }
            }
            None => {
                let old = match self.over.remove(id) {
                    Some(v) => v,
                    None => self.base.get(id).cloned(),
                };
                if self.base.contains_key(id) {
                    self.over.insert(*id, None);
                }
                old
            }
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Changes every node `pick` selects with `change` (each copied on
    /// write, as [`NodeTable::get_mut`]).
    pub fn change_where(
        &mut self,
        pick: impl Fn(&Node) -> bool,
        mut change: impl FnMut(&mut Node),
    ) {
        let ids: Vec<u64> = self
            .iter()
            .filter(|(_, n)| pick(n))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            change(self.get_mut(&id).expect("listed"));
        }
    }

    /// The number of ids this table's overlay holds (its own changes to a
    /// shared base, or what it pinned: see [`NodeTable::fold_into_shared`]).
    #[cfg(test)]
    pub fn overlay_len(&self) -> usize {
        self.over.len()
    }

    /// The ids in the overlay, sorted.
    #[cfg(test)]
    pub fn overlay_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.over.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Where the base is (to tell whether a fold copied it).
    #[cfg(test)]
    pub fn base_ptr(&self) -> *const Base {
        Arc::as_ptr(&self.base)
    }

    /// Whether both tables read through the same base.
    pub fn shares_base(&self, other: &NodeTable) -> bool {
        Arc::ptr_eq(&self.base, &other.base)
    }

    /// Moves the overlay into the base (a copy of the base first if
    /// another table still holds it).
    pub fn fold(&mut self) {
        if self.over.is_empty() {
            return;
        }
        let over = std::mem::take(&mut self.over);
        let base = Arc::make_mut(&mut self.base);
        for (id, v) in over {
            match v {
                Some(n) => base.insert(id, n),
                None => base.remove(&id),
            };
        }
    }

    /// [`NodeTable::fold`] without copying the base `other` shares: for
    /// every id this overlay changes, `other`'s overlay is made to hold
    /// what `other` reads now, unless that equals this table's value (which
    /// the base will hold), then `other` lets go of the base while it is
    /// changed in place, and reads through the new one. Neither table's contents change; if other holders of the base
    /// remain (a clone), the base is copied as by `fold`.
    pub fn fold_into_shared(&mut self, other: &mut NodeTable) {
        if self.over.is_empty() {
            return;
        }
        if !self.shares_base(other) {
            self.fold();
            return;
        }
        for (id, mine) in &self.over {
            match other.over.entry(*id) {
                Entry::Occupied(theirs) => {
                    if theirs.get() == mine {
                        theirs.remove();
                    }
                }
                Entry::Vacant(slot) => {
                    let theirs = self.base.get(id);
                    if theirs != mine.as_ref() {
                        slot.insert(theirs.cloned());
                    }
                }
            }
        }
        // `other` reads nothing through the base for the ids folded in
        // (each is in its overlay now, or agrees with the new base).
        other.base = Arc::default();
        self.fold();
        other.base = self.base.clone();
        // Markers for ids neither base holds any more are dropped: a
        // `None` marks only ids the base holds.
        let base = &self.base;
        other
            .over
            .retain(|id, v| v.is_some() || base.contains_key(id));
    }
}

impl std::ops::Index<&u64> for NodeTable {
    type Output = Arc<Node>;
    fn index(&self, id: &u64) -> &Arc<Node> {
        self.get(id).expect("no node with this id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A node told apart by `mark` (its `version`).
    fn node(id: u64, mark: u64) -> Arc<Node> {
        Arc::new(Node {
            id,
            version: mark,
            ..Default::default()
        })
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(bool, u64, u64),
        Remove(bool, u64),
        Change(bool, u64, u64),
        /// Fold one table's overlay into the base it shares with the other.
        Fold(bool),
        /// The second table becomes a copy of the first (sharing it).
        Share,
    }

    fn step() -> impl Strategy<Value = Step> {
        let id = 0u64..24;
        prop_oneof![
            (any::<bool>(), id.clone(), 1u64..1000).prop_map(|(a, i, m)| Step::Insert(a, i, m)),
            (any::<bool>(), id.clone()).prop_map(|(a, i)| Step::Remove(a, i)),
            (any::<bool>(), id, 1u64..1000).prop_map(|(a, i, m)| Step::Change(a, i, m)),
            any::<bool>().prop_map(Step::Fold),
            Just(Step::Share),
        ]
    }

    fn contents(t: &NodeTable) -> HashMap<u64, u64> {
        t.iter().map(|(id, n)| (*id, n.version)).collect()
    }

    fn check(t: &NodeTable, model: &HashMap<u64, u64>) -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(&contents(t), model);
        prop_assert_eq!(t.len(), model.len());
        prop_assert_eq!(t.iter().count(), model.len());
        for id in 0..24 {
            prop_assert_eq!(t.get(&id).map(|n| n.version), model.get(&id).copied());
            prop_assert_eq!(t.contains_key(&id), model.contains_key(&id));
        }
        for (id, v) in &t.over {
            prop_assert!(
                v.is_some() || t.base.contains_key(id),
                "marker without base node"
            );
        }
        Ok(())
    }

    proptest! {
        /// Two tables sharing a base read exactly as two independent
        /// maps through any mix of changes, folds and re-sharing; a fold
        /// into a base shared by the two tables alone never copies it.
        #[test]
        fn two_tables_sharing_a_base_behave_as_two_maps(
            start in proptest::collection::hash_map(0u64..24, 1u64..1000, 0..16),
            steps in proptest::collection::vec(step(), 0..80),
        ) {
            let first = NodeTable::from_map(
                start.iter().map(|(id, m)| (*id, node(*id, *m))).collect(),
            );
            let mut tables = [first.clone(), first];
            let mut models = [start.clone(), start];
            for s in steps {
                match s {
                    Step::Insert(a, id, m) => {
                        let (t, model) = (&mut tables[a as usize], &mut models[a as usize]);
                        prop_assert_eq!(
                            t.insert(id, node(id, m)).map(|n| n.version),
                            model.insert(id, m)
                        );
                    }
                    Step::Remove(a, id) => {
                        let (t, model) = (&mut tables[a as usize], &mut models[a as usize]);
                        prop_assert_eq!(t.remove(&id).map(|n| n.version), model.remove(&id));
                    }
                    Step::Change(a, id, m) => {
                        let (t, model) = (&mut tables[a as usize], &mut models[a as usize]);
                        let got = t.get_mut(&id).map(|n| {
                            n.version = m;
                        });
                        prop_assert_eq!(got.is_some(), model.contains_key(&id));
                        if let Some(v) = model.get_mut(&id) {
                            *v = m;
                        }
                    }
                    Step::Fold(a) => {
                        let [x, y] = &mut tables;
                        let (from, into) = if a { (x, y) } else { (y, x) };
                        let shared = from.shares_base(into);
                        let before = Arc::as_ptr(&from.base);
                        from.fold_into_shared(into);
                        prop_assert_eq!(from.overlay_len(), 0);
                        if shared {
                            prop_assert!(from.shares_base(into));
                            if into.over.is_empty() {
                                prop_assert_eq!(contents(into), contents(from));
                            }
                            prop_assert_eq!(Arc::as_ptr(&from.base), before, "base copied");
                        }
                    }
                    Step::Share => {
                        let [x, y] = &mut tables;
                        y.clone_from(x);
                        models[1] = models[0].clone();
                    }
                }
                check(&tables[0], &models[0])?;
                check(&tables[1], &models[1])?;
            }
        }
    }

    proptest! {
        /// A table filled from pages (in the order of where each id's probe
        /// starts) holds every id of every page, and an id in two pages as
        /// the later page has it: what inserting the pages in turn gives.
        #[test]
        fn a_table_from_pages_holds_what_inserting_them_in_turn_holds(
            pages in proptest::collection::vec(
                proptest::collection::vec((any::<u64>(), 1u64..1000), 0..400),
                0..12,
            ),
            repeat in proptest::collection::vec((0usize..12, 0usize..400, 1u64..1000), 0..40),
        ) {
            let mut pages = pages;
            // Ids in two pages (a later page holds the winning copy).
            for (p, i, m) in repeat {
                let found = pages.get(p % pages.len().max(1)).and_then(|pg| pg.get(i % pg.len().max(1)));
                if let Some(&(id, _)) = found {
                    let last = pages.len().saturating_sub(1);
                    if let Some(pg) = pages.get_mut(last) {
                        pg.push((id, m));
                    }
                }
            }
            let mut model = HashMap::new();
            for pg in &pages {
                for (id, m) in pg {
                    model.insert(*id, *m);
                }
            }
            let made: Vec<PageNodes> = pages
                .iter()
                .map(|pg| {
                    let nodes = pg.iter().map(|(id, m)| Node { id: *id, version: *m, ..Default::default() });
                    PageNodes::new(nodes.collect())
                })
                .collect();
            let t = NodeTable::from_pages(made);
            prop_assert_eq!(contents(&t), model.clone());
            prop_assert_eq!(t.len(), model.len());
            for (id, m) in &model {
                prop_assert_eq!(t.get(id).map(|n| n.version), Some(*m));
            }
        }
    }

    /// A big fill (many groups, ids with shared low bits) loses nothing.
    #[test]
    fn a_large_fill_from_pages_holds_every_id() {
        let pages: Vec<PageNodes> = (0..64u64)
            .map(|p| {
                let nodes = (0..2_000u64).map(|i| Node {
                    id: (i << 20) | p,
                    version: p,
                    ..Default::default()
                });
                PageNodes::new(nodes.collect())
            })
            .collect();
        let t = NodeTable::from_pages(pages);
        assert_eq!(t.len(), 128_000);
        for p in 0..64u64 {
            for i in (0..2_000u64).step_by(97) {
                assert_eq!(t.get(&((i << 20) | p)).map(|n| n.version), Some(p));
            }
        }
    }

    /// A table alone on its base changes it in place (no overlay); once a
    /// clone shares it, changes go to the overlay and the clone never sees
    /// them; a node changed is copied, the others stay shared.
    #[test]
    fn changes_go_to_the_overlay_only_while_shared() {
        let mut a = NodeTable::from_map((1..=3).map(|id| (id, node(id, 1))).collect());
        a.insert(4, node(4, 1));
        a.get_mut(&1).unwrap().version = 2;
        assert_eq!((a.overlay_len(), a.len()), (0, 4));
        let mut b = a.clone();
        b.get_mut(&2).unwrap().version = 3;
        b.remove(&3);
        assert_eq!((b.overlay_len(), b.len(), a.len()), (2, 3, 4));
        assert_eq!((a[&2].version, b[&2].version), (1, 3));
        assert!(a.contains_key(&3) && !b.contains_key(&3));
        assert!(Arc::ptr_eq(&a[&4], &b[&4]));
        assert!(!Arc::ptr_eq(&a[&2], &b[&2]));
        // Folding b into the base a shares: a pins its own node 2 and 3.
        b.fold_into_shared(&mut a);
        assert_eq!((a.overlay_len(), b.overlay_len()), (2, 0));
        assert_eq!((a[&2].version, a.len()), (1, 4));
        // a taking the same change drops its pin: its overlay is what
        // differs from b.
        a.get_mut(&2).unwrap().version = 3;
        a.remove(&3);
        a.fold_into_shared(&mut b);
        assert_eq!((a.overlay_len(), b.overlay_len()), (0, 0));
        assert_eq!(contents(&a), contents(&b));
    }
}
