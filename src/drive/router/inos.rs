//! Kernel inode numbers of a mount, mapped both ways to (volume, node id).
//!
//! Invariants:
//! - `ROOT_INO` is the mount's root; every other number names exactly one
//!   (volume, node) for the life of the mount (never reused, never
//!   forgotten).
//! - Every number is below [`INO_LIMIT`] (2^53), so tools that hold inode
//!   numbers in a double (Node.js, JavaScript bundlers and watchers) or as
//!   signed 64-bit values see them exactly.
//! - A root-volume node whose id is below 2^53 (every node created since
//!   ids are drawn below 2^53, see `tree::fresh_id`) has its id as number:
//!   the same on every client and across mounts. An older node with a
//!   64-bit id gets a number derived from (volume, node id), 53 bits of a
//!   SHA-256, so it is stable too. Either is replaced by a fresh random
//!   number only if already given to another place in this mount or equal
//!   to a root-volume node id (a collision: chance about n²/2^54 for n
//!   such nodes); exceptions are kept in the maps like every other number.
//! - Another volume's node gets a number derived from (volume, node id)
//!   the same way; the root of a shared folder has the number of the link
//!   node naming it in the root volume (owner view) or one derived the same
//!   way (member view).

use crate::drive::types::{Ino, ROOT_INO};
use crate::format::crypto::random_array;
use std::collections::HashMap;

/// Every inode number is below this (2^53).
pub const INO_LIMIT: u64 = 1 << 53;

/// A volume id and a node id in that volume.
pub type Place = ([u8; 16], u64);

/// Both directions of the mapping (root-volume identity numbers are not
/// stored).
#[derive(Debug, Default)]
pub struct Inos {
    to: HashMap<Place, Ino>,
    from: HashMap<Ino, Place>,
}

/// A number derived from `(volume, node)`, below [`INO_LIMIT`] (callers
/// refuse 0 and `ROOT_INO`).
fn derived(place: &Place) -> Ino {
    let mut b = place.0.to_vec();
    b.extend_from_slice(&place.1.to_le_bytes());
    let h = crate::format::meta::sha256(&b);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) & (INO_LIMIT - 1)
}

impl Inos {
    /// The number given to `place` earlier, if any (identity numbers of
    /// the root volume are not recorded here).
    pub fn get(&self, place: &Place) -> Option<Ino> {
        self.to.get(place).copied()
    }

    /// What `ino` was given to, if it was recorded.
    pub fn place(&self, ino: Ino) -> Option<Place> {
        self.from.get(&ino).copied()
    }

    /// Whether `ino` names a recorded place (not a root-volume identity).
    pub fn taken(&self, ino: Ino) -> bool {
        self.from.contains_key(&ino)
    }

    /// Records `ino` for `place` (both ways).
    pub fn set(&mut self, place: Place, ino: Ino) {
        self.to.insert(place, ino);
        self.from.insert(ino, place);
    }

    /// Forgets `place` (a volume link that was removed).
    pub fn remove(&mut self, place: &Place) {
        if let Some(ino) = self.to.remove(place) {
            self.from.remove(&ino);
        }
    }

    /// A number for a root-volume node: its id if below 2^53 and not
    /// taken, else derived (see the module doc); `in_use` says whether a
    /// number is a root-volume node id.
    pub fn for_root_node(&mut self, place: Place, in_use: impl Fn(Ino) -> bool) -> Ino {
        if place.1 == crate::drive::tree::ROOT {
            return ROOT_INO;
        }
        if let Some(i) = self.get(&place) {
            return i;
        }
        if place.1 < INO_LIMIT && !self.taken(place.1) {
            return place.1;
        }
        self.for_other(place, in_use)
    }

    /// A number for a node of another volume: derived from (volume, node)
    /// unless `in_use` (a root-volume node id) or already recorded.
    pub fn for_other(&mut self, place: Place, in_use: impl Fn(Ino) -> bool) -> Ino {
        if let Some(i) = self.get(&place) {
            return i;
        }
        let d = derived(&place);
        if d > ROOT_INO && !self.taken(d) && !in_use(d) {
            self.set(place, d);
            return d;
        }
        self.fresh(place, in_use)
    }

    fn fresh(&mut self, place: Place, in_use: impl Fn(Ino) -> bool) -> Ino {
        loop {
            let i = u64::from_le_bytes(random_array()) & (INO_LIMIT - 1);
            if i > ROOT_INO && !self.taken(i) && !in_use(i) {
                self.set(place, i);
                return i;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_volume_numbers_are_node_ids_unless_taken() {
        let mut m = Inos::default();
        let root = [1u8; 16];
        let other = [2u8; 16];
        let no = |_| false;
        assert_eq!(m.for_root_node((root, 1), no), ROOT_INO);
        assert_eq!(m.for_root_node((root, 77), no), 77);
        assert_eq!(m.place(77), None);
        // Another volume's node took number 99 first: the root-volume
        // node 99 gets another number, both ways.
        m.set((other, 5), 99);
        let n = m.for_root_node((root, 99), no);
        assert_ne!(n, 99);
        assert!(n < INO_LIMIT);
        assert_eq!(m.place(n), Some((root, 99)));
        assert_eq!(m.for_root_node((root, 99), no), n);
        assert_eq!(m.place(99), Some((other, 5)));
    }

    #[test]
    fn other_volume_numbers_are_stable_and_avoid_root_ids() {
        let mut a = Inos::default();
        let mut b = Inos::default();
        let v = [3u8; 16];
        let x = a.for_other((v, 42), |_| false);
        assert_eq!(b.for_other((v, 42), |_| false), x, "derived numbers differ");
        assert_eq!(a.place(x), Some((v, 42)));
        let mut c = Inos::default();
        let y = c.for_other((v, 42), |i| i == x);
        assert_ne!(y, x);
        assert!(y > ROOT_INO);
        a.remove(&(v, 42));
        assert_eq!(a.place(x), None);
    }

    #[test]
    fn old_64_bit_ids_get_stable_numbers_below_2_53() {
        let root = [1u8; 16];
        let big = u64::MAX - 5;
        let mut a = Inos::default();
        let mut b = Inos::default();
        let x = a.for_root_node((root, big), |_| false);
        assert!(x < INO_LIMIT && x > ROOT_INO);
        assert_eq!(b.for_root_node((root, big), |_| false), x, "not stable");
        assert_eq!(a.place(x), Some((root, big)));
        // The derived number is some root node's id: another one is used.
        let mut c = Inos::default();
        let y = c.for_root_node((root, big), |i| i == x);
        assert!(y != x && y < INO_LIMIT);
        for i in 0..1000u64 {
            let n = a.for_other(([9; 16], i << 40), |_| false);
            assert!(n < INO_LIMIT && n > ROOT_INO);
        }
    }
}
