//! A rename journalled before a crash and replayed at the next open, onto
//! a name another client took meanwhile: the other client's file keeps
//! its name and this client's file gets a conflict name, as a commit's
//! rebase would do; when the log entries since the crashed client's head
//! are replayed by the open, when a checkpoint written since lies past
//! that head (the open then loads the state there again), and when a
//! collection removed the state at that head from the store (the open
//! loads it from the client's metadata mirror and compares trees).

use crate::support::drive::*;
use cardfs::drive::*;

/// Checkpoint roots of the drive (`v/<volume>/s/...`).
async fn roots(env: &Env) -> usize {
    keys_under(env.store.as_ref(), "v/")
        .await
        .into_iter()
        .filter(|k| k.split('/').nth(2) == Some("s"))
        .count()
}

/// What the other client does after taking the name, before the crashed
/// client reopens.
#[derive(PartialEq)]
enum Then {
    Nothing,
    /// Writes a checkpoint past the crashed client's head.
    Checkpoint,
    /// Writes on and collects everything before its newest checkpoint.
    Collect,
}

async fn rename_replayed_onto_a_taken_name(then: Then) {
    let env = Env::new().await;
    let store = faulty(env.store.clone());
    let a = Drive::open_drive(store.clone(), env.id.clone(), env.opts("a"))
        .await
        .unwrap();
    put(&a, ROOT_INO, "x", b"mine").await;
    sync(&a).await;
    // Client A renames x to y, free in its view; its commit never lands.
    refuse_commits(&store);
    let no_flags = RenameFlags::default();
    a.rename(ROOT_INO, os("x"), ROOT_INO, os("y"), no_flags)
        .await
        .unwrap();
    // Client B meanwhile creates y.
    let b = env.open_with("b").await;
    put(&b, ROOT_INO, "y", b"theirs").await;
    sync(&b).await;
    if then != Then::Nothing {
        let before = roots(&env).await;
        let n = match then {
            Then::Collect => 2 * SNAPSHOT_EVERY + 5,
            _ => SNAPSHOT_EVERY,
        };
        for i in 0..n {
            put(&b, ROOT_INO, &format!("n{i}"), b"").await;
            sync(&b).await;
        }
        assert!(roots(&env).await > before, "no checkpoint was written");
    }
    if then == Then::Collect {
        let vol = volume(env.store.as_ref()).await;
        let first = seqs(env.store.as_ref(), &vol, "l").await[0];
        b.gc(&now_all(), &|_, _| {}).await.unwrap();
        let now = seqs(env.store.as_ref(), &vol, "l").await[0];
        assert!(now > first + SNAPSHOT_EVERY, "entries {first} -> {now}");
    }
    // A dies before committing; its next open replays the journal.
    a.abandon().await;
    store.update_config(|c| c.refuse_puts.clear());
    let a = Drive::open_drive(store.clone(), env.id.clone(), env.opts("a"))
        .await
        .unwrap();
    sync(&a).await;
    b.refresh().await.unwrap();
    for d in [&a, &b] {
        let y = lookup(d, "y").await.unwrap();
        assert_eq!(read_all(d, y).await, b"theirs", "B's file was replaced");
        assert!(lookup(d, "x").await.is_err());
        let copies: Vec<String> = names(d, ROOT_INO)
            .await
            .into_iter()
            .filter(|n| n.starts_with("y.conflict-"))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        let c = lookup(d, &copies[0]).await.unwrap();
        assert_eq!(read_all(d, c).await, b"mine");
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_replayed_rename_never_replaces_a_file_created_since() {
    rename_replayed_onto_a_taken_name(Then::Nothing).await;
}

#[tokio::test]
async fn a_replayed_rename_behind_a_newer_checkpoint_never_replaces_either() {
    rename_replayed_onto_a_taken_name(Then::Checkpoint).await;
}

#[tokio::test]
async fn a_replayed_rename_past_a_collection_never_replaces_either() {
    rename_replayed_onto_a_taken_name(Then::Collect).await;
}
