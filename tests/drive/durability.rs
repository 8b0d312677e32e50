//! Closed = safe from a daemon crash: a real child process writes through
//! the engine, closes its files without fsync, and is killed with SIGKILL
//! (before its uploads, or while they run). Reopening with the same cache
//! directory finds every closed file byte for byte and uploads it; a file
//! still open keeps what was sealed and is reported as having lost its
//! unsealed tail.
//!
//! A crash of the whole machine may lose what was never fsynced; then each
//! file comes back as a version that existed (a prefix of the operations,
//! in order). That is checked by damaging the cache the way a lost page
//! cache does: cutting the journal short, and emptying object files.

use crate::support::drive::crash::{
    child_arg, child_role, local_store, new_drive, open_in_child, quiet_opts, ready,
    run_child_and_kill,
};
use crate::support::drive::*;
use cardfs::drive::*;
use std::path::{Path, PathBuf};

const CHILD_ENV: &str = "CARDFS_TEST_DURABILITY_CHILD";

/// Distinct contents per (seed, length).
fn content(seed: u64, len: usize) -> Vec<u8> {
    crate::support::pattern(len, seed)
}

/// The many-small-files tree: (path, seed, length).
fn small_files() -> Vec<(String, u64, usize)> {
    (0..300u64)
        .map(|i| {
            let len = match i % 5 {
                0 => 0,
                1 => 1 + i as usize,
                2 => 4096,
                3 => 20_000 + 37 * i as usize,
                _ => (1 << 20) + 11, // two blocks, the second tiny
            };
            (format!("tree/d{}/f{i:03}", i % 10), 1000 + i, len)
        })
        .collect()
}

/// The sequence written for the damage tests: one block each, in order.
fn sequence() -> Vec<(String, u64, usize)> {
    (0..60u64)
        .map(|i| (format!("seq/f{i:02}"), 5000 + i, 3000 + 997 * i as usize))
        .collect()
}

const BIG: usize = 40_000_000;

fn crash(dir: &Path, role: &str) {
    run_child_and_kill(
        &crate::support::test_name(module_path!(), "durability_child_entry"),
        CHILD_ENV,
        &child_arg(dir, role),
    );
}

async fn mkdirs(d: &Drive, path: &str) -> Ino {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = match d.lookup(ino, os(part)).await {
            Ok(a) => a.ino,
            Err(_) => d.mkdir(ino, os(part), 0o755, WHO).await.unwrap().ino,
        };
    }
    ino
}

/// Creates, writes (in 1 MiB writes) and closes `path`; no fsync.
async fn write_closed(d: &Drive, path: &str, data: &[u8]) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = mkdirs(d, dir).await;
    let (a, fh) = d
        .create(parent, os(name), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        d.write(a.ino, fh, (i << 20) as u64, chunk).await.unwrap();
    }
    d.release(a.ino, fh).await.unwrap();
}

/// Asserts that `d` holds every file of `files` byte for byte.
async fn assert_files(d: &Drive, files: &[(String, u64, usize)], who: &str) {
    for (path, seed, len) in files {
        let ino = lookup(d, path)
            .await
            .unwrap_or_else(|e| panic!("{who}: closed file {path} lost: {e}"));
        let got = read_all(d, ino).await;
        assert_eq!(got.len(), *len, "{who}: {path} has the wrong length");
        assert!(got == content(*seed, *len), "{who}: {path} differs");
    }
}

/// Reopens the crashed client's cache (which replays and uploads), checks
/// `files`, syncs, and checks them again from a client with an empty cache.
async fn reopen_and_check(dir: &Path, id: &Identity, files: &[(String, u64, usize)]) {
    let store = local_store(dir);
    let d = Drive::open_drive(store.clone(), id.clone(), quiet_opts(dir.join("cache")))
        .await
        .unwrap();
    assert_files(&d, files, "reopened client").await;
    sync(&d).await;
    assert_eq!(d.status().pending_ops, 0);
    d.shutdown().await.unwrap();
    let other = Drive::open_drive(store, id.clone(), quiet_opts(dir.join("other-cache")))
        .await
        .unwrap();
    assert_files(&other, files, "client with an empty cache").await;
    other.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_big_file_survives_sigkill_before_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = new_drive(dir.path()).await;
    crash(dir.path(), "offline-big");
    let files = vec![("big/one.bin".to_string(), 1, BIG)];
    reopen_and_check(dir.path(), &id, &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_big_file_survives_sigkill_during_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = new_drive(dir.path()).await;
    crash(dir.path(), "online-big");
    let files = vec![("big/one.bin".to_string(), 1, BIG)];
    reopen_and_check(dir.path(), &id, &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_closed_small_files_survive_sigkill_during_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = new_drive(dir.path()).await;
    crash(dir.path(), "online-small");
    reopen_and_check(dir.path(), &id, &small_files()).await;
}

/// Small files share packs: a pack not yet uploaded when the process dies
/// is found in the cache, uploaded, and every file in it reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_closed_small_files_survive_sigkill_before_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = new_drive(dir.path()).await;
    crash(dir.path(), "offline-small");
    reopen_and_check(dir.path(), &id, &small_files()).await;
}

/// A file open for writing when the process dies keeps what was sealed
/// (whole blocks written sequentially); the unsealed tail is gone, and the
/// next open reports that file (once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_file_keeps_its_sealed_part_and_the_loss_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = new_drive(dir.path()).await;
    crash(dir.path(), "open-tail");
    let d = Drive::open_drive(store, id.clone(), quiet_opts(dir.path().join("cache")))
        .await
        .unwrap();
    assert_files(&d, &[("closed.bin".to_string(), 2, 1 << 20)], "reopened").await;
    let ino = lookup(&d, "open/tail.bin").await.unwrap();
    let got = read_all(&d, ino).await;
    assert_eq!(got.len(), 3 << 20, "the sealed blocks, not the tail");
    assert!(got == content(3, (3 << 20) + 1000)[..3 << 20]);
    let status = d.status();
    assert_eq!(
        status.lost_unsealed,
        vec!["open/tail.bin".to_string()],
        "the file that lost its unsealed tail is named"
    );
    assert!(
        d.status().lost_unsealed.is_empty(),
        "reported once, not on every status"
    );
    d.shutdown().await.unwrap();
}

/// Opens a copy of a crashed client's cache without committing anything
/// (log puts fail), and returns, per file of `seq`, whether it is missing,
/// empty, or complete; any other state (wrong bytes, a read error) fails.
async fn states_after_damage(
    dir: &Path,
    id: &Identity,
    cache: PathBuf,
    seq: &[(String, u64, usize)],
) -> Vec<char> {
    let flaky = faulty(local_store(dir));
    refuse_commits(&flaky);
    let d = Drive::open_drive(flaky, id.clone(), quiet_opts(cache))
        .await
        .unwrap();
    let mut states = Vec::new();
    for (path, seed, len) in seq {
        let state = match lookup(&d, path).await {
            Err(DriveError::NotFound) => '-',
            Err(e) => panic!("{path}: {e}"),
            Ok(ino) => {
                let size = d.getattr(ino).await.unwrap().size;
                let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
                let got = d.read(ino, fh, 0, (*len as u32) + 10).await;
                d.release(ino, fh).await.unwrap();
                let got = got.unwrap_or_else(|e| panic!("{path}: read failed: {e}"));
                if size == 0 {
                    '0'
                } else {
                    assert!(
                        got == content(*seed, *len),
                        "{path}: {size} bytes that are not a version that existed"
                    );
                    'F'
                }
            }
        };
        states.push(state);
    }
    d.abandon().await;
    states
}

/// Each file is a version that existed, and together they are a prefix of
/// the operations: complete files, then at most one created-but-empty
/// file, then files not created yet.
fn assert_prefix(states: &[char], what: &str) -> usize {
    let text: String = states.iter().collect();
    let full = states.iter().take_while(|c| **c == 'F').count();
    let rest = &states[full..];
    let empty = rest.iter().take_while(|c| **c == '0').count();
    assert!(
        empty <= 1 && rest[empty..].iter().all(|c| *c == '-'),
        "{what}: not a prefix of the operations: {text}"
    );
    full
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The one volume directory of a cache (`cache/v/<volume>`).
fn volume_dir(cache: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache.join("v"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one volume");
    dirs.pop().unwrap()
}

/// A machine crash loses page-cache data that was never fsynced: the
/// journal may end anywhere, and object files may be empty. Whatever is
/// lost, every file comes back as a version that existed, never a file
/// naming missing data (which would read as tampering) or a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_page_cache_leaves_a_prefix_of_the_operations() {
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = new_drive(dir.path()).await;
    crash(dir.path(), "sequence");
    let seq = sequence();
    let crashed = dir.path().join("cache");

    // Undamaged: everything closed is there.
    let copy = dir.path().join("copy-whole");
    copy_dir(&crashed, &copy);
    let states = states_after_damage(dir.path(), &id, copy, &seq).await;
    assert_eq!(assert_prefix(&states, "undamaged"), seq.len());

    // The journal cut at several points: shorter and shorter prefixes.
    let journal_len = std::fs::metadata(volume_dir(&crashed).join("journal"))
        .unwrap()
        .len();
    let mut last = usize::MAX;
    for cut in [7, 5, 3, 2, 1] {
        let at = journal_len * cut / 8 + 5; // rarely on a record boundary
        let copy = dir.path().join(format!("copy-cut-{cut}"));
        copy_dir(&crashed, &copy);
        let journal = volume_dir(&copy).join("journal");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&journal)
            .unwrap();
        f.set_len(at).unwrap();
        let states = states_after_damage(dir.path(), &id, copy, &seq).await;
        let full = assert_prefix(&states, &format!("journal cut at {at} of {journal_len}"));
        assert!(full < seq.len(), "a cut journal cannot hold everything");
        assert!(full <= last, "a shorter journal, a shorter prefix");
        last = full;
    }

    // Object files emptied or cut short (as after a crash with delayed
    // allocation, or a pack whose later appends never reached the disk):
    // the files whose data is gone, and every later operation, are cut.
    let objects = volume_dir(&crashed).join("objects");
    let mut names: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = e.metadata().unwrap().modified().unwrap();
            (t, e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    // The small files share packs (each failed commit closes one).
    assert!(
        !names.is_empty() && names.len() <= seq.len() / 4,
        "{} objects for {} small files",
        names.len(),
        seq.len()
    );
    let victim = &names[names.len() / 2].1;
    let copy = dir.path().join("copy-emptied");
    copy_dir(&crashed, &copy);
    std::fs::write(volume_dir(&copy).join("objects").join(victim), b"").unwrap();
    let states = states_after_damage(dir.path(), &id, copy, &seq).await;
    let full = assert_prefix(&states, "an object file emptied");
    assert!(
        full < seq.len(),
        "the files whose object is empty cannot be complete: {states:?}"
    );
    let copy = dir.path().join("copy-halved");
    copy_dir(&crashed, &copy);
    let path = volume_dir(&copy).join("objects").join(victim);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    let states = states_after_damage(dir.path(), &id, copy, &seq).await;
    let halved = assert_prefix(&states, "an object file cut in half");
    assert!(
        full <= halved && halved < seq.len(),
        "the files in the lost half cannot be complete: {states:?}"
    );
    if names.len() == 1 {
        assert!(
            halved > 0,
            "the first half of the pack survives: {states:?}"
        );
    }
}

/// The child process of these tests (does nothing unless started by them):
/// writes as its role says, prints CHILD-READY, keeps running until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the durability tests' child process"]
async fn durability_child_entry() {
    let Some((dir, role)) = child_role(CHILD_ENV) else {
        return;
    };
    let (d, flaky) = open_in_child(&dir, "cache").await;
    match role.as_str() {
        "offline-big" => {
            flaky.set_offline(true);
            write_closed(&d, "big/one.bin", &content(1, BIG)).await;
        }
        "online-big" => {
            write_closed(&d, "big/one.bin", &content(1, BIG)).await;
            assert!(
                d.status().pending_bytes > 0,
                "killed before the upload ends"
            );
        }
        "online-small" => {
            for (path, seed, len) in small_files() {
                write_closed(&d, &path, &content(seed, len)).await;
            }
            assert!(d.status().pending_ops > 0, "killed before the commit ends");
        }
        "offline-small" => {
            flaky.set_offline(true);
            for (path, seed, len) in small_files() {
                write_closed(&d, &path, &content(seed, len)).await;
            }
        }
        "open-tail" => {
            flaky.set_offline(true);
            write_closed(&d, "closed.bin", &content(2, 1 << 20)).await;
            let parent = mkdirs(&d, "open").await;
            let (a, fh) = d
                .create(parent, os("tail.bin"), 0o644, libc::O_RDWR, WHO)
                .await
                .unwrap();
            let data = content(3, (3 << 20) + 1000);
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                d.write(a.ino, fh, (i << 20) as u64, chunk).await.unwrap();
            }
            // Still open: three sealed blocks, 1000 unsealed bytes.
        }
        "sequence" => {
            flaky.set_offline(true);
            for (path, seed, len) in sequence() {
                write_closed(&d, &path, &content(seed, len)).await;
            }
        }
        other => panic!("unknown role {other}"),
    }
    ready();
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
}
