//! Kernel inode numbers of a mount, mapped both ways to (volume, node id).
//!
//! Invariants:
//! - `ROOT_INO` is the mount's root; every other number names exactly one
//!   (volume, node) for the life of the mount (never reused, never
//!   forgotten).
//! - A root-volume node's number is its node id (the same on every client
//!   and across mounts, as before volumes existed) unless that number was
//!   already given to a node of another volume; such exceptions are kept in
//!   the maps like every other volume's numbers.
//! - Another volume's node gets a number derived from (volume, node id), so
//!   it is stable across mounts too unless it collides; the root of a
//!   shared folder has the number of the link node naming it in the root
//!   volume (owner view) or one derived the same way (member view).

use crate::drive::types::{Ino, ROOT_INO};
use crate::format::crypto::random_array;
use std::collections::HashMap;

/// A volume id and a node id in that volume.
pub type Place = ([u8; 16], u64);

/// Both directions of the mapping (root-volume identity numbers are not
/// stored).
#[derive(Debug, Default)]
pub struct Inos {
    to: HashMap<Place, Ino>,
    from: HashMap<Ino, Place>,
}

/// A number derived from `(volume, node)`, never 0 or `ROOT_INO`.
fn derived(place: &Place) -> Ino {
    let mut b = place.0.to_vec();
    b.extend_from_slice(&place.1.to_le_bytes());
    let h = crate::format::meta::sha256(&b);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
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

    /// A number for a root-volume node: its id unless taken.
    pub fn for_root_node(&mut self, place: Place) -> Ino {
        if place.1 == crate::drive::tree::ROOT {
            return ROOT_INO;
        }
        if let Some(i) = self.get(&place) {
            return i;
        }
        if !self.taken(place.1) {
            return place.1;
        }
        self.fresh(place, |_| false)
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
            let i = u64::from_le_bytes(random_array());
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
        assert_eq!(m.for_root_node((root, 1)), ROOT_INO);
        assert_eq!(m.for_root_node((root, 77)), 77);
        assert_eq!(m.place(77), None);
        // Another volume's node took number 99 first: the root-volume
        // node 99 gets another number, both ways.
        m.set((other, 5), 99);
        let n = m.for_root_node((root, 99));
        assert_ne!(n, 99);
        assert_eq!(m.place(n), Some((root, 99)));
        assert_eq!(m.for_root_node((root, 99)), n);
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
}
