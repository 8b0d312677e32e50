//! [`ReplyFit`]: how many directory entries with attributes to prepare for
//! one READDIRPLUS reply, learned from the replies themselves.
//!
//! The kernel's reply buffer is the reader's `getdents64` buffer clamped
//! to one page below and to `max_pages` above (since Linux 6.16; one page
//! before): 32 KiB for glibc's `readdir` (about 200 entries with short
//! names), 4 KiB on older kernels (about 25). fuser does not tell the
//! callback that size, and an entry that does not fit is prepared for
//! nothing (the kernel asks for it again), while a reply cut short of the
//! buffer costs a whole round trip more per listing.
//!
//! Invariants:
//! - The estimate stays within [`MIN_ENTRIES`, `MAX_ENTRIES`].
//! - A reply that filled its buffer after `k` entries sets the estimate to
//!   `k` (what fit); a reply that took every prepared entry with room left
//!   raises it by half (the buffer is bigger than guessed). A reply at the
//!   end of a directory (fewer entries than asked) tells nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The first guess: what one page holds (4 KiB, ~25 short names) and a
/// little more.
pub const START_ENTRIES: usize = 32;
/// Never fewer: a reply holds at least one page.
pub const MIN_ENTRIES: usize = 16;
/// Never more: a 128 KiB buffer's worth of short names (the engine's own
/// batch is far above).
pub const MAX_ENTRIES: usize = 1024;

/// The per-mount estimate of the entries one READDIRPLUS reply holds.
#[derive(Debug)]
pub struct ReplyFit {
    entries: AtomicUsize,
}

impl Default for ReplyFit {
    fn default() -> Self {
        ReplyFit {
            entries: AtomicUsize::new(START_ENTRIES),
        }
    }
}

impl ReplyFit {
    /// How many entries to prepare for the next reply.
    pub fn limit(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Records how a reply went: `asked` entries were prepared, `added`
    /// of them fit, and `full` says whether the buffer refused the next.
    pub fn record(&self, asked: usize, added: usize, full: bool) {
        let next = if full {
            added
        } else if added == asked {
            asked + asked / 2
        } else {
            return;
        };
        self.entries
            .store(next.clamp(MIN_ENTRIES, MAX_ENTRIES), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies into a buffer holding `room` entries, `rounds` times.
    fn settle(fit: &ReplyFit, room: usize, rounds: usize) -> Vec<usize> {
        let mut asked = Vec::new();
        for _ in 0..rounds {
            let n = fit.limit();
            asked.push(n);
            fit.record(n, n.min(room), n > room);
        }
        asked
    }

    #[test]
    fn learns_a_big_buffer_and_stays_near_it() {
        let fit = ReplyFit::default();
        let asked = settle(&fit, 200, 12);
        // 32, 48, 72, 108, 162, 243 (full at 200), then 200/300 in turn.
        assert_eq!(&asked[..6], &[32, 48, 72, 108, 162, 243]);
        assert!(
            asked[6..].iter().all(|&n| (200..=300).contains(&n)),
            "{asked:?}"
        );
    }

    #[test]
    fn shrinks_to_a_small_buffer_at_once() {
        let fit = ReplyFit::default();
        settle(&fit, 200, 8);
        fit.record(fit.limit(), 25, true);
        assert_eq!(fit.limit(), 25);
    }

    #[test]
    fn the_end_of_a_directory_tells_nothing_and_bounds_hold() {
        let fit = ReplyFit::default();
        fit.record(32, 3, false);
        assert_eq!(fit.limit(), START_ENTRIES);
        fit.record(32, 1, true);
        assert_eq!(fit.limit(), MIN_ENTRIES);
        settle(&fit, usize::MAX, 40);
        assert_eq!(fit.limit(), MAX_ENTRIES);
    }
}
