//! Streaming envelopes use constant memory: encrypting and decrypting
//! 48 MiB keeps the heap peak (measured by a counting global allocator in
//! this test binary) to a few chunks, far below the input size.

use cardfs::format::card::Card;
use cardfs::format::key::UserKey;
use cardfs::identity::envelope::{decrypt_then_verify, sign_then_encrypt};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwards the caller's valid layout to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const TOTAL: u64 = 48 << 20;

/// Produces TOTAL pseudo-random bytes without holding them.
struct Source {
    left: u64,
    state: u64,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1);
            *b = (self.state >> 56) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts bytes and folds them into a checksum.
#[derive(Default)]
struct Sink {
    len: u64,
    sum: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len() as u64;
        for b in buf {
            self.sum = self.sum.wrapping_mul(31).wrapping_add(*b as u64);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn peak_during(f: impl FnOnce()) -> usize {
    PEAK.store(CURRENT.load(Ordering::SeqCst), Ordering::SeqCst);
    let base = CURRENT.load(Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

#[test]
fn encrypt_and_decrypt_48_mib_in_constant_memory() {
    let alice = UserKey::from_secret_bytes("alice", &[1; 32], &[2; 32]).unwrap();
    let bob = UserKey::from_secret_bytes("bob", &[3; 32], &[4; 32]).unwrap();
    let alice_card = Card::create(&alice, "alice", 0).unwrap();
    let bob_card = Card::create(&bob, "bob", 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.cfe");

    let mut expected = Sink::default();
    std::io::copy(
        &mut Source {
            left: TOTAL,
            state: 7,
        },
        &mut expected,
    )
    .unwrap();

    let cards = [bob_card];
    let enc_peak = peak_during(|| {
        let file = std::fs::File::create(&path).unwrap();
        let source = Source {
            left: TOTAL,
            state: 7,
        };
        sign_then_encrypt(&alice, &alice_card, &cards, source, file).unwrap();
    });
    let mut got = Sink::default();
    let dec_peak = peak_during(|| {
        let file = std::fs::File::open(&path).unwrap();
        decrypt_then_verify(&bob, &alice_card, file, &mut got).unwrap();
    });
    assert_eq!((got.len, got.sum), (expected.len, expected.sum));
    println!("heap peak: encrypt {enc_peak} bytes, decrypt {dec_peak} bytes");
    assert!(enc_peak < 512 * 1024, "encrypt peak {enc_peak}");
    assert!(dec_peak < 512 * 1024, "decrypt peak {dec_peak}");
}
