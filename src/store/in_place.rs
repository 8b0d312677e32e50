//! Small blocking store I/O run in place, on threads that say it may.
//!
//! A store built on blocking system calls (the local directory) normally
//! hands each call to tokio's blocking pool, so an async worker never
//! waits on the disk. For a small read that hand-off costs more than the
//! read: a random 4 KiB read of a file took three thread wake-ups (FUSE
//! request thread -> runtime worker -> blocking thread -> worker), about
//! half of its time on a loaded machine.
//!
//! A caller whose thread may block briefly (a FUSE request thread: the
//! mount has several, and the kernel waits for this answer anyway) runs
//! its future's first poll inside [`allowing`]; a store then does small
//! reads ([`SMALL_READ`] bytes or fewer) directly. Everywhere else
//! ([`allowed`] is false: runtime workers, tests) nothing changes.
//!
//! Invariant: the permission is scoped to the closure and to the current
//! thread: it is reset when the closure returns or unwinds, and a future
//! moved to a task afterwards runs without it.

use std::cell::Cell;

/// Largest read a store may run in place (a few content chunks).
pub const SMALL_READ: u64 = 64 * 1024;

thread_local! {
    static ALLOWED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with small blocking store reads allowed on this thread.
pub fn allowing<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ALLOWED.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(ALLOWED.with(|a| a.replace(true)));
    f()
}

/// Whether the current thread may run a small blocking read in place.
pub fn allowed() -> bool {
    ALLOWED.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_only_inside_and_reset_after_a_panic() {
        assert!(!allowed());
        assert!(allowing(allowed));
        assert!(!allowed());
        let caught = std::panic::catch_unwind(|| allowing(|| panic!("boom")));
        assert!(caught.is_err());
        assert!(!allowed(), "reset when the closure unwinds");
        allowing(|| {
            allowing(|| ());
            assert!(allowed(), "a nested scope keeps the outer permission");
        });
        let other = std::thread::spawn(allowed);
        assert!(allowing(|| !other.join().unwrap()), "per thread");
    }
}
