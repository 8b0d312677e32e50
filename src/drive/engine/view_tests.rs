//! The engine's view as an overlay of the committed tree's node table
//! (`Core::fold_committed`, `node_table`): after an open, local changes, a
//! commit, a refresh with and without pending changes (the rebase), the
//! view reads as the committed tree with the pending ops applied, through
//! the committed tree's table, and holds nothing of its own once nothing
//! is pending.

use super::Engine;
use super::past::tests::open;
use super::state::Core;
use crate::drive::identity::Identity;
use crate::drive::tree::ROOT;
use crate::drive::types::Caller;
use crate::store::{MemoryStore, ObjectStore};
use std::ffi::OsStr;
use std::sync::Arc;

const WHO: Caller = Caller { uid: 0, gid: 0 };

/// The view is committed + pending, read through the committed table;
/// with nothing pending it holds no node of its own.
fn check(core: &Core) {
    assert!(
        core.view.nodes.shares_base(&core.committed.nodes),
        "the view has a table of its own"
    );
    assert_eq!(core.committed.nodes.overlay_len(), 0);
    let mut replayed = core.committed.clone();
    for (_, op) in &core.pending {
        replayed.apply(op).unwrap();
    }
    assert_eq!(core.view.all_nodes(), replayed.all_nodes());
    if core.pending.is_empty() {
        assert_eq!(core.view.nodes.overlay_len(), 0);
    }
}

fn create(e: &Engine, parent: u64, name: &str) -> u64 {
    let (attr, fh) = e
        .create_file(parent, OsStr::new(name), 0o644, libc::O_RDWR, WHO)
        .unwrap();
    e.release_handle(fh);
    attr.ino
}

#[tokio::test]
async fn the_view_reads_through_the_committed_table() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let me = Identity::generate();
    Engine::create_drive(store.clone(), &me, b"card")
        .await
        .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&store, &me, dir_a.path()).await;
    let b = open(&store, &me, dir_b.path()).await;
    check(&a.lock());

    // Local changes, then their commit.
    let d = a.mkdir(ROOT, OsStr::new("d"), 0o755, WHO).unwrap().ino;
    for i in 0..20 {
        create(&a, d, &format!("f{i}"));
    }
    {
        let core = a.lock();
        assert!(core.has_pending());
        check(&core);
        assert!(core.view.nodes.overlay_len() >= 21);
    }
    a.sync(&|_, _| {}).await.unwrap();
    check(&a.lock());

    // Another client's changes reach a view with pending changes of its
    // own (a rebase), one of them on a name the other client took.
    b.refresh().await.unwrap();
    for i in 0..5 {
        create(&b, d, &format!("b{i}"));
    }
    b.unlink(d, OsStr::new("f3"), false).unwrap();
    b.sync(&|_, _| {}).await.unwrap();
    create(&a, d, "b0");
    a.unlink(d, OsStr::new("f4"), false).unwrap();
    a.refresh().await.unwrap();
    {
        let core = a.lock();
        check(&core);
        let view = core.view();
        assert!(view.lookup(d, b"f3").is_err() && view.lookup(d, b"f4").is_err());
        assert!(view.lookup(d, b"b4").is_ok());
        let conflict = view
            .dir(d)
            .unwrap()
            .entries
            .keys()
            .filter(|n| n.starts_with(b"b0.conflict-"))
            .count();
        assert_eq!(conflict, 1);
    }
    a.sync(&|_, _| {}).await.unwrap();
    check(&a.lock());

    // A refresh with nothing pending here (the view takes the ops too).
    b.refresh().await.unwrap();
    b.rename(
        d,
        OsStr::new("f5"),
        ROOT,
        OsStr::new("moved"),
        Default::default(),
    )
    .unwrap();
    b.sync(&|_, _| {}).await.unwrap();
    a.refresh().await.unwrap();
    {
        let core = a.lock();
        check(&core);
        assert!(core.view().lookup(ROOT, b"moved").is_ok());
    }
    // Both clients read the same tree.
    b.refresh().await.unwrap();
    assert_eq!(
        a.lock().committed.all_nodes(),
        b.lock().committed.all_nodes()
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
