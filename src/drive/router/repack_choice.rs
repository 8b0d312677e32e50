//! Which packs a collection repacks (docs/ARCHITECTURE.md, "Collection"):
//! a bound on the drive's dead pack bytes, not on each pack's.
//!
//! Rule, over the packs old enough to judge (older than the grace) that
//! some live ref names:
//! - every pack under half live is repacked (it reclaims more than it
//!   moves);
//! - then, emptiest first, more packs while the dead bytes left in the
//!   packs exceed `waste_percent` of their live bytes, and while the bytes
//!   moved by those extra repacks stay within `max_moved`.
//!
//! Invariants:
//! - The choice is deterministic (ties by object id) and pure: the caller
//!   gives sizes and live bytes, nothing here reads the store.
//! - An extra pack chosen is at most `100 / (100 + waste_percent)` live:
//!   while the dead bytes left exceed that share of all live bytes, the
//!   emptiest pack left is at least that dead. So a byte reclaimed costs
//!   at most `100 / waste_percent` bytes moved (20 at the default 5%).

/// What the choice needs of one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackUse {
    pub id: [u8; 16],
    /// The pack object's size.
    pub size: u64,
    /// Sealed bytes of the block versions of it some live ref names.
    pub live: u64,
}

impl PackUse {
    fn dead(&self) -> u64 {
        self.size.saturating_sub(self.live)
    }

    /// Under half live: always repacked.
    fn mostly_dead(&self) -> bool {
        self.live * 100 < self.size * ALWAYS_BELOW_PERCENT
    }
}

/// A pack whose live bytes are below this share of its size is always
/// repacked: a repack at most doubles its live bytes until the old pack
/// goes, and reclaims more than it moves.
pub const ALWAYS_BELOW_PERCENT: u64 = 50;

/// The packs to repack among `packs` (see the module doc), emptiest first.
pub fn choose(packs: &[PackUse], waste_percent: u64, max_moved: u64) -> Vec<[u8; 16]> {
    let mut order: Vec<&PackUse> = packs.iter().filter(|p| p.live > 0).collect();
    // By live share (live / size), emptiest first, compared exactly.
    order.sort_by(|a, b| {
        (u128::from(a.live) * u128::from(b.size))
            .cmp(&(u128::from(b.live) * u128::from(a.size)))
            .then(a.id.cmp(&b.id))
    });
    let live: u64 = order.iter().map(|p| p.live).sum();
    let mut dead: u64 = order.iter().map(|p| p.dead()).sum();
    let mut moved = 0u64;
    let mut out = Vec::new();
    for p in order {
        let over = u128::from(dead) * 100 > u128::from(live) * u128::from(waste_percent);
        if !p.mostly_dead() {
            if !over || moved + p.live > max_moved {
                // The rest are at least as live: none qualifies.
                break;
            }
            moved += p.live;
        }
        dead -= p.dead();
        out.push(p.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8, size: u64, live: u64) -> PackUse {
        PackUse {
            id: [n; 16],
            size,
            live,
        }
    }

    fn dead_left(packs: &[PackUse], chosen: &[[u8; 16]]) -> u64 {
        packs
            .iter()
            .filter(|p| p.live > 0 && !chosen.contains(&p.id))
            .map(|p| p.size - p.live)
            .sum()
    }

    #[test]
    fn packs_under_half_live_always_go_whatever_the_bound() {
        let packs = [pack(1, 100, 49), pack(2, 100, 10), pack(3, 100, 100)];
        // Even with every byte of waste allowed and nothing to move.
        assert_eq!(choose(&packs, 1000, 0), vec![[2; 16], [1; 16]]);
    }

    #[test]
    fn packs_at_sixty_to_ninety_percent_live_go_emptiest_first_until_within_the_bound() {
        let packs: Vec<PackUse> = (0..10)
            .map(|i| pack(i, 1000, 600 + 30 * u64::from(i)))
            .collect();
        let live: u64 = packs.iter().map(|p| p.live).sum();
        let chosen = choose(&packs, 10, u64::MAX);
        assert!(dead_left(&packs, &chosen) * 10 <= live);
        // Emptiest first, and no more than needed: without the last one
        // chosen, the dead bytes left were over the bound.
        let want: Vec<[u8; 16]> = (0..chosen.len() as u8).map(|i| [i; 16]).collect();
        assert_eq!(chosen, want);
        assert!(dead_left(&packs, &chosen[..chosen.len() - 1]) * 10 > live);
    }

    #[test]
    fn nothing_moves_when_the_waste_is_within_the_bound() {
        let packs = [pack(1, 1000, 950), pack(2, 1000, 920), pack(3, 50, 0)];
        assert!(choose(&packs, 10, u64::MAX).is_empty());
        // With no waste allowed, every pack with a dead byte goes.
        assert_eq!(choose(&packs, 0, u64::MAX), vec![[2; 16], [1; 16]]);
    }

    #[test]
    fn the_bytes_moved_for_mostly_live_packs_are_bounded() {
        let packs: Vec<PackUse> = (0..10).map(|i| pack(i, 1000, 700)).collect();
        let half = pack(10, 1000, 300);
        let all: Vec<PackUse> = packs.iter().copied().chain([half]).collect();
        let chosen = choose(&all, 0, 2_100);
        // The pack under half live, then three packs of 700 live bytes.
        assert_eq!(chosen, vec![[10; 16], [0; 16], [1; 16], [2; 16]]);
    }
}
