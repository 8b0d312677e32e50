//! Engine-level throughput on the in-memory store (no FUSE, no network):
//! sequential write and read of a large file, small-file creates, stats,
//! and the time and heap an open of the resulting drive takes (heap counted
//! by a counting allocator: bytes live after the open less before it,
//! i.e. what the engine holds per file). These figures are the ceiling the FUSE layer adds to. Prints one line
//! per figure; run through `scripts/bench-engine`.
//!
//! Usage: bench_engine [FILE_MIB] [FILES] [DIRS]   (defaults 1024, 10000, 1)
//!
//! The small files are spread evenly over DIRS directories (a directory's
//! node holds its entries, so one directory of a million names is a node
//! of ~30 MB that every checkpoint rewrites: not the shape of a real tree).

use cardfs::drive::{Caller, Drive, DriveOptions, Identity, ROOT_INO};
use cardfs::store::{MemoryStore, ObjectStore};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Live bytes by allocation size: 8-byte steps up to 1 KiB, then one class
/// per power of two (what `BENCH_HEAP_CLASSES=1` prints after an open).
static CLASSES: [AtomicUsize; 192] = [const { AtomicUsize::new(0) }; 192];

fn class(size: usize) -> usize {
    if size <= 1024 {
        size.div_ceil(8)
    } else {
        (129 + (usize::BITS - (size - 1).leading_zeros()) as usize - 11).min(191)
    }
}

/// The lower bound of the sizes in class `c`.
fn class_floor(c: usize) -> usize {
    if c <= 128 {
        (c * 8).saturating_sub(7)
    } else {
        (1 << (c - 129 + 10)) + 1
    }
}

fn count(size: usize, add: bool) {
    let c = &CLASSES[class(size)];
    if add {
        c.fetch_add(size, Ordering::Relaxed);
    } else {
        c.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the
// counter is only arithmetic on the sizes it is given.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        count(layout.size(), true);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        count(layout.size(), false);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        count(new_size, true);
        count(layout.size(), false);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const WHO: Caller = Caller { uid: 0, gid: 0 };

fn rate(bytes: u64, t: Duration) -> String {
    format!(
        "{:.0} MiB/s",
        bytes as f64 / (1 << 20) as f64 / t.as_secs_f64()
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args
        .next()
        .map(|a| a.parse().expect("FILE_MIB"))
        .unwrap_or(1024);
    let files: u64 = args
        .next()
        .map(|a| a.parse().expect("FILES"))
        .unwrap_or(10_000);
    let dirs: u64 = args
        .next()
        .map(|a| a.parse().expect("DIRS"))
        .unwrap_or(1)
        .max(1);
    let size = mib << 20;
    let tmp = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let me = Identity::generate();
    Drive::create_drive(store.clone(), &me, b"bench")
        .await
        .expect("create drive");
    let mut opts = DriveOptions::new(tmp.path().join("cache"));
    opts.cache_size = 2 * size + (256 << 20);
    let d = Drive::open_drive(store.clone(), me.clone(), opts)
        .await
        .expect("open drive");

    // Sequential write, 1 MiB per call (the kernel's largest FUSE write).
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let (attr, fh) = d
        .create(ROOT_INO, &OsString::from("big"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    let t = Instant::now();
    for i in 0..mib {
        d.write(attr.ino, fh, i << 20, &chunk).await.unwrap();
    }
    d.release(attr.ino, fh).await.unwrap();
    let written = t.elapsed();
    d.sync(&|_, _| {}).await.unwrap();
    let synced = t.elapsed();
    println!(
        "sequential write {mib} MiB: {} into the cache ({:.2} s), {} including upload to the store ({:.2} s)",
        rate(size, written),
        written.as_secs_f64(),
        rate(size, synced),
        synced.as_secs_f64()
    );

    // Sequential read, 128 KiB per call (the kernel's default read size),
    // first from the local cache, then by a client with an empty cache.
    for (label, drive) in [
        ("cached", d.clone()),
        ("from store", {
            let mut o = DriveOptions::new(tmp.path().join("cold"));
            o.cache_size = 2 * size + (256 << 20);
            Drive::open_drive(store.clone(), me.clone(), o)
                .await
                .unwrap()
        }),
    ] {
        let fh = drive.open(attr.ino, libc::O_RDONLY).await.unwrap();
        let t = Instant::now();
        let mut off = 0;
        while off < size {
            let got = drive.read(attr.ino, fh, off, 128 << 10).await.unwrap();
            assert_eq!(got.len(), 128 << 10);
            off += got.len() as u64;
        }
        let e = t.elapsed();
        drive.release(attr.ino, fh).await.unwrap();
        println!(
            "sequential read {mib} MiB ({label}): {} ({:.2} s)",
            rate(size, e),
            e.as_secs_f64()
        );
    }

    // Small files: create + 1 KiB write + release each, in `dirs`
    // directories (file i in directory i % dirs).
    let mut parents = Vec::with_capacity(dirs as usize);
    for k in 0..dirs {
        let name = if dirs == 1 {
            "many".to_string()
        } else {
            format!("many{k}")
        };
        let dir = d
            .mkdir(ROOT_INO, &OsString::from(name), 0o755, WHO)
            .await
            .unwrap()
            .ino;
        parents.push(dir);
    }
    let parent = |i: u64| parents[(i % dirs) as usize];
    let small = vec![7u8; 1024];
    let t = Instant::now();
    let mut inos = Vec::with_capacity(files as usize);
    for i in 0..files {
        let (a, fh) = d
            .create(
                parent(i),
                &OsString::from(format!("f{i}")),
                0o644,
                libc::O_WRONLY,
                WHO,
            )
            .await
            .unwrap();
        d.write(a.ino, fh, 0, &small).await.unwrap();
        d.release(a.ino, fh).await.unwrap();
        inos.push(a.ino);
    }
    let e = t.elapsed();
    println!(
        "{files} creates of 1 KiB files: {:.0} files/s ({:.2} s)",
        files as f64 / e.as_secs_f64(),
        e.as_secs_f64()
    );
    let t = Instant::now();
    d.sync(&|_, _| {}).await.unwrap();
    println!(
        "  commit of those to the store: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    for (i, ino) in inos.iter().enumerate() {
        let a = d
            .lookup(parent(i as u64), &OsString::from(format!("f{i}")))
            .await
            .unwrap();
        assert_eq!(a.ino, *ino);
        d.getattr(*ino).await.unwrap();
    }
    let e = t.elapsed();
    println!(
        "{files} lookups + stats: {:.0} per s ({:.3} s)",
        files as f64 / e.as_secs_f64(),
        e.as_secs_f64()
    );

    // Opening the drive afresh (snapshot + log tail), each time with an
    // empty cache directory; `BENCH_OPENS` times (default 1), the median
    // printed last.
    d.shutdown().await.unwrap();
    drop(d);
    let opens: usize = std::env::var("BENCH_OPENS")
        .ok()
        .map(|v| v.parse().expect("BENCH_OPENS"))
        .unwrap_or(1)
        .max(1);
    let mut times = Vec::with_capacity(opens);
    for k in 0..opens {
        let before = LIVE.load(Ordering::Relaxed);
        let classes_before: Vec<usize> =
            CLASSES.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let t = Instant::now();
        let again = Drive::open_drive(
            store.clone(),
            me.clone(),
            DriveOptions::new(tmp.path().join(format!("reopen{k}"))),
        )
        .await
        .unwrap();
        let open = t.elapsed();
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        println!(
            "open of a drive with {} files: {:.3} s; heap held {:.1} MiB ({} bytes per file)",
            files + 2,
            open.as_secs_f64(),
            held as f64 / (1 << 20) as f64,
            held as u64 / (files + 2)
        );
        if std::env::var_os("BENCH_HEAP_CLASSES").is_some() {
            // Where the held bytes are, by allocation size (largest first).
            let mut held: Vec<(usize, isize)> = CLASSES
                .iter()
                .zip(&classes_before)
                .enumerate()
                .map(|(c, (now, was))| (c, now.load(Ordering::Relaxed) as isize - *was as isize))
                .filter(|(_, b)| *b != 0)
                .collect();
            held.sort_by_key(|(_, b)| -b.abs());
            for (c, b) in held.iter().take(12) {
                println!(
                    "  allocations of {}..{} bytes: {:.1} bytes per file",
                    class_floor(*c),
                    class_floor(*c + 1) - 1,
                    *b as f64 / (files + 2) as f64
                );
            }
        }
        again.shutdown().await.unwrap();
        drop(again);
        times.push(open);
    }
    if opens > 1 {
        times.sort();
        println!(
            "open median of {opens}: {:.3} s",
            times[opens / 2].as_secs_f64()
        );
    }
}
