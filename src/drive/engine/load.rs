//! Loading a volume's state from the store: the verified starting state
//! (a checkpoint, the checkpoint the owner's newest log base names, or the
//! genesis entry) and the verified replay of the log after it. Every
//! reader of a volume's state goes through here: opening a volume
//! (`open`), catching up past a collection (`catch_up`), past states for
//! history and restore (`past`), and `fsck` (which starts from the log
//! bases it checks itself, or from genesis).
//!
//! Invariants:
//! - Nothing unverified is returned: a checkpoint only once its root and
//!   every page verified (`volume::checkpoint`), each entry only once its
//!   signature, place in the hash chain and generation did (the keys are
//!   reloaded once when an entry names a newer generation).
//! - The replay applies each entry with `apply_batch`, exactly as a commit
//!   does; the nodes it changed are gathered only when asked (`touched`:
//!   what the next checkpoint rewrites).
//! - On an error the tree and head passed to [`replay`] are those after
//!   the last entry applied (the caller can tell which entry failed).

use super::commit::apply_batch;
use crate::drive::error::Result;
use crate::drive::tree::Tree;
use crate::drive::volume::held_keys::HeldKeys;
use crate::drive::volume::{self, Base, Head, PageIndex};
use crate::format::meta::{Batch, Time};
use crate::store::ObjectStore;
use std::collections::HashSet;
use x25519_dalek::StaticSecret;

/// The log bases a load takes into account (once the owner collected the
/// log, it starts at the newest base: a checkpoint before it cannot be
/// replayed from).
pub(super) enum Collected<'a> {
    /// Looked up only when no checkpoint is found (an open: the newest
    /// checkpoint is never older than the newest base).
    Lazy,
    /// This newest base (or none): a checkpoint before it is passed over
    /// for the one it names.
    Known(Option<&'a Base>),
}

/// A loaded starting state.
pub(super) struct Start {
    pub tree: Tree,
    pub head: Head,
    /// The checkpoint's pages when it was found by listing (the newest at
    /// or before the position asked for: what the next checkpoint may
    /// reuse); `None` for a base's checkpoint or genesis.
    pub index: Option<PageIndex>,
    /// The genesis entry's time when the state is genesis.
    pub genesis_time: Option<Time>,
}

/// One entry of a [`replay`], about to be applied.
pub(super) struct Entry<'a> {
    /// The tree at `prev` (before the entry).
    pub before: &'a Tree,
    pub prev: &'a Head,
    /// The position after the entry.
    pub head: &'a Head,
    pub batch: &'a Batch,
    /// The card id that signed it.
    pub writer: &'a [u8; 32],
}

/// The state to replay from for a position at most `at`: the newest
/// checkpoint of the current keys at or before `at` (not one before the
/// newest log base, see [`Collected`]), else the checkpoint the newest log
/// base names (whatever generation sealed it: the owner vouched for it),
/// else the genesis entry applied to an empty tree.
pub(super) async fn start(
    source: &dyn ObjectStore,
    keys: &HeldKeys,
    me: &StaticSecret,
    at: u64,
    collected: Collected<'_>,
) -> Result<Start> {
    let k = keys.get();
    let found = volume::checkpoint_at_or_before(source, &k, at).await?;
    let looked_up;
    let base = match collected {
        Collected::Known(b) => b,
        Collected::Lazy if found.is_some() => None,
        Collected::Lazy => {
            looked_up = volume::newest_base(source, &k, keys.owner()).await?;
            looked_up.as_ref()
        }
    };
    if let Some(c) = found
        && base.is_none_or(|b| c.head.seq >= b.base.seq)
    {
        return Ok(Start {
            tree: c.tree,
            head: c.head,
            index: Some(c.index),
            genesis_time: None,
        });
    }
    if let Some(b) = base {
        let c = volume::attested_checkpoint(source, &k, b.base.seq, &b.base.root).await?;
        return Ok(Start {
            tree: c.tree,
            head: c.head,
            index: None,
            genesis_time: None,
        });
    }
    genesis(source, keys, me).await
}

/// The genesis entry applied to an empty tree; `Tampered` naming entry 0
/// when it is missing.
pub(super) async fn genesis(
    source: &dyn ObjectStore,
    keys: &HeldKeys,
    me: &StaticSecret,
) -> Result<Start> {
    let (batch, head) = keys.fetch_genesis(source, me).await?;
    let mut tree = Tree::default();
    apply_batch(&mut tree, &batch, &mut HashSet::new());
    Ok(Start {
        tree,
        head,
        index: None,
        genesis_time: Some(batch.time),
    })
}

/// Replays the verified log after `head` onto `tree`, to the end of the
/// log or until `head` reaches `until`, calling `visit` for each entry
/// before it is applied (an error from it stops the replay). The ids of
/// the nodes changed go to `touched` when given.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replay(
    source: &dyn ObjectStore,
    keys: &HeldKeys,
    me: &StaticSecret,
    tree: &mut Tree,
    head: &mut Head,
    until: Option<u64>,
    mut touched: Option<&mut HashSet<u64>>,
    mut visit: impl FnMut(Entry<'_>) -> Result<()>,
) -> Result<()> {
    let mut scratch = HashSet::new();
    while until.is_none_or(|u| head.seq < u) {
        let Some((batch, next, writer)) = keys
            .fetch_entry(source, me, head.seq + 1, &head.hash, head.generation)
            .await?
        else {
            break;
        };
        visit(Entry {
            before: tree,
            prev: head,
            head: &next,
            batch: &batch,
            writer: &writer,
        })?;
        let into = match touched.as_deref_mut() {
            Some(t) => t,
            None => {
                scratch.clear();
                &mut scratch
            }
        };
        apply_batch(tree, &batch, into);
        *head = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::engine::Engine;
    use crate::drive::engine::past::tests::new_drive;
    use crate::drive::error::DriveError;
    use crate::drive::types::Caller;
    use std::ffi::OsStr;

    const WHO: Caller = Caller { uid: 0, gid: 0 };

    /// Replays `s` to the end of the log (or to `until`), nothing gathered.
    async fn replay_to(e: &Engine, s: &mut Start, until: Option<u64>) {
        let (t, h) = (&mut s.tree, &mut s.head);
        let store = e.store.as_ref();
        replay(store, &e.keys, &e.me.x25519, t, h, until, None, |_| Ok(()))
            .await
            .unwrap();
    }

    /// A replay from a checkpoint reaches the same tree and head as one
    /// from genesis and as the open engine holds; one stopped at a
    /// position is the tree there, and going on from it ends the same.
    #[tokio::test]
    async fn replay_from_a_checkpoint_equals_a_full_replay() {
        let (_store, e, _dir) = new_drive().await;
        let mut heads = Vec::new();
        for i in 0..6 {
            let name = format!("f{i}");
            let (_, fh) = e
                .create_file(1, OsStr::new(&name), 0o644, libc::O_RDWR, WHO)
                .unwrap();
            e.release_handle(fh);
            e.sync(&|_, _| {}).await.unwrap();
            heads.push(e.lock().head);
            if i == 2 {
                e.snapshot(true).await;
            }
        }
        let (committed, last) = {
            let core = e.lock();
            (core.committed.all_nodes(), core.head)
        };
        let (source, keys, x) = (e.store.as_ref(), &e.keys, &e.me.x25519);

        // From genesis, every entry: touched names every node created.
        let mut full = genesis(source, keys, x).await.unwrap();
        let mut touched = HashSet::new();
        let mut seen = Vec::new();
        let (t, h) = (&mut full.tree, &mut full.head);
        replay(source, keys, x, t, h, None, Some(&mut touched), |en| {
            assert_eq!(en.prev.seq + 1, en.head.seq);
            seen.push(en.head.seq);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(full.head, last);
        assert_eq!(full.tree.all_nodes(), committed);
        assert_eq!(seen, (1..=last.seq).collect::<Vec<_>>());
        for n in committed.iter().filter(|n| n.id != 1) {
            assert!(touched.contains(&n.id), "node {} not touched", n.id);
        }

        // From the checkpoint (taken after the third file): the same.
        let mut from = start(source, keys, x, u64::MAX, Collected::Lazy)
            .await
            .unwrap();
        assert_eq!(from.head, heads[2]);
        assert!(from.index.is_some() && from.genesis_time.is_none());
        replay_to(&e, &mut from, None).await;
        assert_eq!(from.head, last);
        assert_eq!(from.tree.all_nodes(), committed);

        // Stopped at a position before the checkpoint, then on to the end.
        let mut part = start(source, keys, x, heads[1].seq, Collected::Known(None))
            .await
            .unwrap();
        assert!(part.genesis_time.is_some());
        replay_to(&e, &mut part, Some(heads[1].seq)).await;
        assert_eq!(part.head, heads[1]);
        assert!(part.tree.lookup(1, b"f1").is_ok());
        assert!(part.tree.lookup(1, b"f2").is_err());
        replay_to(&e, &mut part, None).await;
        assert_eq!(part.tree.all_nodes(), committed);

        // An error from the visitor stops the replay at the entry before.
        let mut stop = genesis(source, keys, x).await.unwrap();
        let (t, h) = (&mut stop.tree, &mut stop.head);
        let err = replay(source, keys, x, t, h, None, None, |en| match en.head.seq {
            3 => Err(DriveError::NotFound),
            _ => Ok(()),
        })
        .await
        .unwrap_err();
        assert!(matches!(err, DriveError::NotFound));
        assert_eq!(stop.head.seq, 2);
        e.shutdown().await.unwrap();
    }
}
