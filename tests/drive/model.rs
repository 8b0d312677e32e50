//! Reference-model test: random sequences of file operations (create,
//! write at random offsets, truncate, rename with flags, unlink, rmdir,
//! mkdir, link, read, symlinks, chmod, xattrs, held handles, sharing a
//! folder, reopen, crash-and-reopen, collect-and-reopen on a fresh cache;
//! the second client is in `model_two.rs`) run against the engine and
//! a simple in-memory model; every result (data or errno) must agree, and
//! after reopen/crash the whole tree must agree.
//!
//! Shrunk failures are kept below as named regression tests.

use crate::support::drive::model::*;
use crate::support::drive::*;
use proptest::prelude::*;
use proptest::test_runner::{FailurePersistence, FileFailurePersistence};

/// Shrunk from a proptest failure: with the committer running in parallel
/// the journal could get the same op twice (two appenders) or lose one (a
/// reset racing an fsync), so a crash replayed a `mkdir` after its `rmdir`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_crash_replay_keeps_op_order() {
    use M::*;
    check(vec![
        Reopen,
        Create(7),
        Mkdir(5),
        Read(6),
        Truncate(6, 2713047),
        Reopen,
        Rename(4, 3, 2),
        Write(5, 4358, 11049, 183),
        Crash,
        Crash,
        Crash,
        Write(6, 1552378, 2421, 186),
        Write(0, 1048573, 49543, 91),
        Reopen,
        Read(5),
        Rename(6, 4, 0),
        Rename(1, 5, 1),
        Truncate(1, 244),
        Read(5),
        Read(4),
        Rename(2, 2, 1),
        Mkdir(2),
        Create(2),
        Read(0),
        Rename(3, 7, 0),
        Create(5),
        Rmdir(2),
        Create(4),
        Create(5),
        Rmdir(0),
        Crash,
    ])
    .await;
}

/// Shrunk: a conflict copy appeared after a crash because a journalled
/// content change was replayed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_crash_does_not_duplicate_content_change() {
    use M::*;
    check(vec![
        Create(1),
        Write(1, 2097149, 34092, 212),
        Write(1, 2320, 48971, 121),
        Truncate(1, 165),
        Crash,
        Write(1, 1000, 5000, 7),
        Crash,
        Read(1),
    ])
    .await;
}

/// Collections between changes, with unsealed and uncommitted content
/// around them, then reopening on fresh caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_between_changes_keep_everything_live() {
    use M::*;
    check(vec![
        Create(0),
        Write(0, 0, 60_000, 1),
        Gc,
        Write(0, 1_048_573, 40_000, 2),
        Create(4),
        Write(4, 5, 3000, 3),
        Gc,
        Truncate(0, 1_000_000),
        Link(0, 5),
        Unlink(0),
        Gc,
        Crash,
        Read(5),
        Write(5, 2_000_000, 9000, 4),
        Gc,
        Read(5),
        Read(4),
    ])
    .await;
}

/// A handle held open keeps reading and writing its file through a
/// rename and an unlink (what it wrote after the unlink goes with it),
/// while a symlink, chmod and extended attributes around it survive a
/// crash, a reopen and a collection.
#[test]
fn held_handles_symlinks_modes_and_xattrs_match_the_model() {
    use M::*;
    rt().block_on(check(vec![
        Hold(0, 0),
        WriteHeld(0, 10, 100, 7),
        Read(0),
        Hold(0, 1),
        WriteHeld(1, 50, 10, 8),
        ReadHeld(0),
        Rename(0, 1, 0),
        WriteHeld(0, 5000, 10, 9),
        Read(1),
        Symlink(2, 1),
        Chmod(1, 3),
        Chmod(2, 0),
        SetXattr(1, 0, 20, 3, 1),
        SetXattr(1, 0, 5, 4, 1),
        SetXattr(2, 1, 0, 0, 2),
        SetXattr(2, 1, 7, 5, 0),
        Write(2, 0, 10, 1),
        Crash,
        Hold(1, 0),
        Unlink(1),
        WriteHeld(0, 0, 3, 1),
        ReadHeld(0),
        Read(1),
        Release(0),
        ReadHeld(0),
        RemoveXattr(2, 1),
        RemoveXattr(2, 1),
        Mkdir(3),
        Hold(3, 1),
        Hold(9, 1),
        Mkdir(8),
        Hold(9, 1),
        WriteHeld(1, 1, 1, 1),
        Reopen,
        ReadHeld(1),
        Gc,
    ]));
}

/// Shrunk from a failure: a share makes its own puts (a new volume's
/// keyring, entries and checkpoint) and, every other one failing
/// transiently, must retry each of them rather than fail the share.
#[test]
fn a_share_retries_puts_that_fail_on_the_way() {
    use M::*;
    let ops = vec![
        Mkdir(0),
        Create(1),
        Write(1, 0, 3000, 4),
        Share(0),
        Create(2),
        Share(0),
    ];
    rt().block_on(async { check_on(Env::new().await, ops, 2).await });
}

/// Removing the member of a shared folder and adding it back are key
/// rotations: with every other put failing transiently each retries its
/// own store calls (the keyring's put among them) rather than fail, with a
/// handle held open and written across them; removing a member that is
/// not there is ENOENT, and a folder that is not shared EINVAL. So does a
/// re-encryption of the folder (its commits).
#[test]
fn a_rotation_retries_puts_that_fail_on_the_way() {
    use M::*;
    let ops = vec![
        Mkdir(3),
        Create(4),
        Write(4, 0, 3000, 4),
        Share(3),
        Hold(4, 0),
        Unshare(3),
        WriteHeld(0, 100, 2000, 5),
        Unshare(3),
        Unshare(4),
        Unshare(0),
        Share(3),
        Unshare(3),
        Share(3),
        ReadHeld(0),
        Reencrypt(3),
        Reencrypt(4),
        Crash,
        Read(4),
        Unshare(3),
        Reencrypt(3),
        Reopen,
        Read(4),
        Share(3),
    ];
    rt().block_on(async { check_on(Env::new().await, ops, 2).await });
}

/// Sharing a folder makes it a volume of its own: a file with a name
/// outside it becomes two files, renames and links across its edge are
/// EXDEV, folders in it or files cannot be shared, sharing it again changes
/// nothing, and an empty shared folder is removed like any directory;
/// through a crash, a reopen and a collection.
#[test]
fn shared_folders_match_the_model() {
    use M::*;
    rt().block_on(check(vec![
        Mkdir(3),
        Create(4),
        Write(4, 0, 5000, 1),
        Link(4, 0),
        SetXattr(3, 0, 3, 2, 0),
        Chmod(3, 1),
        Share(3),
        Write(4, 10, 10, 3),
        Read(0),
        Read(4),
        Rename(4, 1, 0),
        Rename(0, 5, 0),
        Link(4, 2),
        Link(0, 5),
        Mkdir(6),
        Share(6),
        Share(4),
        Share(0),
        Share(3),
        Rename(4, 5, 0),
        Crash,
        Read(5),
        Mkdir(8),
        Share(8),
        Chmod(8, 2),
        Reopen,
        Rmdir(8),
        Mkdir(8),
        Rename(8, 3, 0),
        Gc,
        Read(5),
    ]));
}

/// Where proptest keeps a test file's failures: `NAME.proptest-regressions`
/// beside the file that holds the `proptest!` block. Its default
/// (`SourceParallel`) would look for `tests/proptest-regressions/NAME.txt`
/// once the file sits next to a `main.rs`, and silently find nothing.
pub(crate) fn beside_this_file() -> Option<Box<dyn FailurePersistence>> {
    Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )))
}

/// The committed regressions are where [`beside_this_file`] reads them
/// (proptest says nothing when the file is missing).
#[test]
fn regressions_are_found() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(file!())
        .with_extension("proptest-regressions");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().filter(|l| l.starts_with("cc ")).count() >= 3,
        "{}",
        path.display()
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 2000,
        failure_persistence: beside_this_file(),
        .. ProptestConfig::default()
    })]
    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        rt().block_on(check(ops));
    }

    #[test]
    fn engine_matches_model_with_failing_puts(ops in proptest::collection::vec(op(), 1..30), every in 2u64..6) {
        rt().block_on(async { check_on(Env::new().await, ops, every).await });
    }
}
