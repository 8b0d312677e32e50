//! Sharing a folder does not share its past: a card holder added to a
//! folder reads its current content and everything written since, and can
//! decrypt no content object that existed only before the folder was first
//! shared (versions overwritten before the share), even with a store that
//! hands him every object (engine level, MemoryStore).

use crate::support::drive::loot::Loot;
use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;

/// Content objects in the store that are not in `seen`; adds them to it.
async fn new_objects(env: &Env, seen: &mut Vec<String>) -> Vec<String> {
    let now = keys_under(env.store.as_ref(), "c/").await;
    let fresh: Vec<String> = now.iter().filter(|k| !seen.contains(k)).cloned().collect();
    seen.extend(fresh.iter().cloned());
    fresh
}

async fn overwrite(d: &Drive, ino: Ino, bytes: &[u8]) {
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, bytes).await.unwrap();
    d.release(ino, fh).await.unwrap();
    sync(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_added_to_a_folder_opens_nothing_from_before_the_share() {
    let env = Env::new().await;
    let bob = Identity::generate();
    let owner = env.open_with("owner").await;
    let mut seen = Vec::new();
    new_objects(&env, &mut seen).await;
    let docs = owner
        .mkdir(ROOT_INO, os("docs"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    // Three versions of a two-block file and a small one, each synced:
    // only the last versions exist in the folder when it is shared.
    let big = |seed: u64| pattern((1 << 20) + 4000, seed);
    let f = put(&owner, docs, "report", &big(1)).await;
    let s = put(&owner, docs, "small", b"small v1").await;
    sync(&owner).await;
    let mut pre_share_only = new_objects(&env, &mut seen).await;
    overwrite(&owner, f, &big(2)).await;
    overwrite(&owner, s, b"small v2").await;
    pre_share_only.extend(new_objects(&env, &mut seen).await);
    overwrite(&owner, f, &big(3)).await;
    overwrite(&owner, s, b"small v3, current when shared").await;
    let current_at_share = new_objects(&env, &mut seen).await;
    // Two whole blocks of report, and the small block versions (report's
    // 4,000-byte tails, small) in packs: v1's tail and small v1 share one
    // unless a background commit came between them.
    assert!(
        (5..=6).contains(&pre_share_only.len()),
        "{pre_share_only:?}"
    );
    assert_eq!(current_at_share.len(), 3);

    owner
        .share_add(docs, bob.member(Role::Writer))
        .await
        .unwrap();
    sync(&owner).await;
    // Written since the share: a new version of one file and a new file.
    let shared = lookup(&owner, "docs").await.unwrap();
    let f = lookup(&owner, "docs/small").await.unwrap();
    overwrite(&owner, f, b"small v4, after the share").await;
    put(&owner, shared, "later", b"a file made after the share").await;
    sync(&owner).await;
    let since_share = new_objects(&env, &mut seen).await;
    assert_eq!(since_share.len(), 2, "{since_share:?}");

    // Bob reads the current content.
    let b = Drive::open_drive(env.store.clone(), bob.clone(), env.opts("bob"))
        .await
        .unwrap();
    assert_eq!(names(&b, ROOT_INO).await, ["docs"]);
    let read = |path: &'static str| {
        let b = &b;
        async move { read_all(b, lookup(b, path).await.unwrap()).await }
    };
    assert_eq!(read("docs/report").await, big(3));
    assert_eq!(read("docs/small").await, b"small v4, after the share");
    assert_eq!(read("docs/later").await, b"a file made after the share");

    // Everything Bob can reach, tried on every object of the store.
    let loot = Loot::take(
        env.store.as_ref(),
        &env.id.ed25519.verifying_key(),
        &bob.x25519,
    )
    .await;
    assert!(!loot.blocks.is_empty());
    let all = keys_under(env.store.as_ref(), "c/").await;
    assert_eq!(all.len(), seen.len());
    for o in &all {
        let bytes = env.store.get(o, Default::default()).await.unwrap().bytes;
        let opens = loot.opens(o, &bytes);
        if pre_share_only.contains(o) {
            assert!(!opens, "{o} existed only before the share, yet opens");
        } else {
            assert!(
                opens,
                "{o} (current at or written since the share) does not open"
            );
        }
    }
    b.shutdown().await.unwrap();
    owner.shutdown().await.unwrap();
}
