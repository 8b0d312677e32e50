//! Reference-model test: random sequences of file operations (create,
//! write at random offsets, truncate, rename with flags, unlink, rmdir,
//! mkdir, link, read, reopen, crash-and-reopen) run against the engine and
//! a simple in-memory model; every result (data or errno) must agree, and
//! after reopen/crash the whole tree must agree.
//!
//! Shrunk failures are kept below as named regression tests.

mod drive_common;
use drive_common::model::*;
use drive_common::*;
use proptest::prelude::*;

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, .. ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        rt().block_on(check(ops));
    }

    #[test]
    fn engine_matches_model_with_failing_puts(ops in proptest::collection::vec(op(), 1..30), every in 2u64..6) {
        rt().block_on(async { check_on(Env::new().await, ops, every).await });
    }
}
