//! Reference-model test with a second client: two drives on one store take
//! turns; each turn's changes are rebased on the other client's when it
//! ends (a name taken meanwhile gets a conflict name, an edit of a file the
//! other client changed becomes a conflict copy, a change that no longer
//! applies is dropped), and the model's rebase must agree with the
//! engine's, tree for tree (see `support::drive::model::two`). Handles
//! are held within a turn and closed before it ends.

use crate::support::drive::model::two::*;
use crate::support::drive::model::*;
use crate::support::drive::*;
use proptest::prelude::*;

/// Runs a named two-client sequence on a fresh drive.
fn two(ops: Vec<M>) {
    rt().block_on(async { check_two(Env::new().await, ops, 0).await });
}

/// Both clients edit, rename and delete the same names on stale views: the
/// conflicts of every kind the rebase decides, then a crash that replays a
/// turn's changes on the other client's commits.
#[test]
fn stale_turns_conflict_as_the_model_says() {
    use M::*;
    two(vec![
        Create(0),
        Write(0, 0, 100, 1),
        Mkdir(3),
        Create(4),
        Switch { stale: false },
        // Client 1 edits, client 0 (stale) edits the same file.
        Write(0, 10, 10, 2),
        Create(1),
        Chmod(4, 0),
        Switch { stale: true },
        Write(0, 20, 10, 3),
        Create(1),
        Unlink(4),
        SetXattr(0, 0, 4, 9, 0),
        Switch { stale: true },
        // Client 1 (stale) deletes what client 0 edited.
        Unlink(0),
        Rename(1, 2, 0),
        Switch { stale: true },
        Write(2, 0, 5, 4),
        Crash,
        Read(2),
        Switch { stale: false },
        Read(0),
    ]);
}

/// Shrunk from a failure: a collection run by a client that had not
/// looked at the store since the other client committed read the live set
/// only up to its own head, and deleted the other client's new content.
#[test]
fn a_collector_behind_keeps_what_the_other_client_committed() {
    use M::*;
    two(vec![
        Create(1),
        Create(0),
        Write(0, 0, 1, 0),
        Switch { stale: true },
        Gc,
    ]);
}

/// Client 1 writes through held handles: into a file it renames while
/// holding it, and into a file it created by holding it and unlinked
/// while held (its writes go with it when closed); then client 0, on its
/// old view, edits the renamed file at its old name and holds it too.
#[test]
fn writes_through_held_handles_rebase_as_the_model_says() {
    use M::*;
    two(vec![
        Create(0),
        Write(0, 0, 100, 1),
        Switch { stale: false },
        Hold(0, 0),
        WriteHeld(0, 50, 100, 2),
        Rename(0, 1, 0),
        WriteHeld(0, 0, 10, 3),
        ReadHeld(0),
        Read(1),
        Hold(2, 1),
        WriteHeld(1, 0, 70_000, 4),
        Unlink(2),
        WriteHeld(1, 10, 10, 5),
        ReadHeld(1),
        Switch { stale: true },
        Write(0, 0, 20, 6),
        Hold(0, 0),
        WriteHeld(0, 30, 5, 7),
        ReadHeld(0),
        Switch { stale: true },
        Read(1),
        Hold(1, 1),
        Crash,
        Read(1),
    ]);
}

/// Shrunk from a failure: client 1, on its old view, makes a file at a
/// name client 0 took meanwhile, then unlinks it while holding it open
/// and writes to it. The rebase gives the new file a conflict name; the
/// unlink must follow it there (it was removed, and what was written to
/// it after goes with it), not leave it behind nor reach client 0's file.
#[test]
fn an_unlink_follows_a_new_file_to_its_conflict_name() {
    use M::*;
    two(vec![
        Create(3),
        Switch { stale: true },
        Hold(3, 0),
        Unlink(3),
        WriteHeld(0, 0, 1, 0),
    ]);
}

/// Client 1 renames a file it made at a name client 0 took meanwhile:
/// the rename moves its own file, from the conflict name, and client 0's
/// stays where it is.
#[test]
fn a_rename_follows_a_new_file_to_its_conflict_name() {
    use M::*;
    two(vec![
        Create(0),
        Write(0, 0, 10, 1),
        Switch { stale: true },
        Create(0),
        Write(0, 0, 20, 2),
        Rename(0, 1, 0),
        Write(1, 5, 5, 3),
    ]);
}

/// Client 1 makes a file at a name client 0 took meanwhile, then renames
/// another file of its own onto that name: the rename replaces client 1's
/// own file, now at its conflict name, and client 0's file stays as it is.
#[test]
fn a_rename_onto_a_new_file_follows_it_to_its_conflict_name() {
    use M::*;
    two(vec![
        Create(0),
        Write(0, 0, 10, 1),
        Switch { stale: true },
        Create(0),
        Write(0, 0, 20, 2),
        Create(1),
        Write(1, 0, 30, 3),
        Rename(1, 0, 0),
        Write(0, 30, 5, 4),
    ]);
}

/// The same with RENAME_EXCHANGE: the two files of client 1 swap names,
/// one of them being its conflict name.
#[test]
fn an_exchange_with_a_new_file_follows_it_to_its_conflict_name() {
    use M::*;
    two(vec![
        Create(0),
        Write(0, 0, 10, 1),
        Switch { stale: true },
        Create(0),
        Write(0, 0, 20, 2),
        Create(1),
        Write(1, 0, 30, 3),
        Rename(1, 0, 2),
        Write(1, 20, 5, 4),
    ]);
}

/// Client 1 edits a file and renames it; client 0, on its old view, edits
/// it too and then deletes it. Client 0 no longer has its version, so
/// client 1's stays, under its new name (client 0's edit must not replace
/// it).
#[test]
fn an_edit_then_delete_on_an_old_view_leaves_the_other_version() {
    use M::*;
    two(vec![
        Create(0),
        Write(0, 0, 100, 1),
        Switch { stale: false },
        Write(0, 0, 10, 2),
        Rename(0, 1, 0),
        Switch { stale: true },
        Write(0, 0, 20, 3),
        Unlink(0),
    ]);
}

/// Client 0 renames a file onto a name that is free in its view; client 1
/// created a file there meanwhile.
fn rename_onto_a_taken_name() -> Vec<M> {
    use M::*;
    vec![
        Create(0),
        Write(0, 0, 100, 1),
        Switch { stale: false },
        Create(1),
        Write(1, 0, 10, 2),
        Switch { stale: true },
        Rename(0, 1, 0),
    ]
}

#[test]
fn a_rename_onto_a_name_taken_meanwhile() {
    two(rename_onto_a_taken_name());
}

/// The same rename, journalled and then replayed after a crash: the
/// replay knows the names client 1 took since client 0's head.
#[test]
fn a_rename_replayed_after_a_crash_onto_a_name_taken_meanwhile() {
    let mut ops = rename_onto_a_taken_name();
    ops.push(M::Crash);
    two(ops);
}

/// Client 0 creates a file and a directory in a directory that client 1
/// removed meanwhile (it was empty there): both are kept, in the directory
/// above, under conflict names; a file it created and removed again there
/// stays removed.
#[test]
fn a_new_file_in_a_directory_removed_meanwhile_is_kept() {
    use M::*;
    two(vec![
        Mkdir(3),
        Switch { stale: false },
        Rmdir(3),
        Switch { stale: true },
        Create(4),
        Write(4, 0, 100, 7),
        // A scratch file made and removed again: not brought back.
        Create(5),
        Unlink(5),
        Mkdir(5),
    ]);
}

/// Shrunk from a failure: a rename of a name onto itself logged an op,
/// so a client with nothing else to commit committed (and so looked at
/// the other client's commits) where the model had nothing to commit.
/// rename(2) onto the same node now does nothing, as POSIX says (and the
/// model logs nothing for it, exchange or not).
#[test]
fn a_rename_onto_the_same_node_changes_nothing() {
    use M::*;
    two(vec![
        Mkdir(3),
        Symlink(4, 0),
        Switch { stale: true },
        Create(0),
        Switch { stale: true },
        Rename(4, 4, 0),
        Switch { stale: true },
        Switch { stale: true },
        // The same with RENAME_EXCHANGE.
        Rename(4, 4, 2),
        Switch { stale: true },
        Switch { stale: true },
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 2000,
        failure_persistence: crate::model::beside_this_file(),
        .. ProptestConfig::default()
    })]
    #[test]
    fn two_clients_match_the_model(ops in proptest::collection::vec(op_two(), 1..40)) {
        rt().block_on(async { check_two(Env::new().await, ops, 0).await });
    }

    #[test]
    fn two_clients_match_the_model_with_failing_puts(
        ops in proptest::collection::vec(op_two(), 1..30),
        every in 2u64..6,
    ) {
        rt().block_on(async { check_two(Env::new().await, ops, every).await });
    }
}
