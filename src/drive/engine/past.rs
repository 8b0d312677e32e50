//! Past states of the volume: the tree at an earlier log position and the
//! time each entry was written, rebuilt from the newest usable snapshot at
//! or before that position plus a verified replay of the log (the loader
//! an open uses, `load`).
//!
//! Invariants:
//! - Every state returned lies on the chain that ends at the head this
//!   engine accepted: a walk goes on to that head and compares its hash
//!   (a store offering another past is a fork, `Rollback`).
//! - Past reads go to the store itself, not through the metadata mirror
//!   (old entries and snapshots would crowd out the ones an offline open
//!   needs).
//! - Nothing here changes the engine's state.

use super::Engine;
use super::load::{self, Collected};
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::hex8;
use crate::drive::tree::Tree;
use crate::drive::volume::{self, Head};
use crate::format::meta::{Batch, Time};
use std::collections::BTreeMap;

/// One step of a [`Engine::walk_log`] (`head` fields: read by
/// `state_at`, for the history commands).
#[cfg_attr(not(test), allow(dead_code))]
pub enum Step<'a> {
    /// The state the walk starts from (a snapshot, or genesis), and the
    /// time its last entry was written.
    Base {
        tree: &'a Tree,
        head: &'a Head,
        time: Time,
    },
    /// Entry `head.seq`, about to be applied to `before` (the tree at
    /// the entry before it); `head` is the position after it; `writer`
    /// the card id that signed it.
    Entry {
        before: &'a Tree,
        head: &'a Head,
        batch: &'a Batch,
        writer: &'a [u8; 32],
    },
}

/// The volume as it was after one log entry.
// Built for the history and restore commands (their own branch).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug)]
pub struct PastState {
    /// The tree after entry `head.seq`.
    pub tree: Tree,
    pub head: Head,
    /// The time (its writer's clock) of each entry the walk read, by seq:
    /// from the base snapshot's entry to the engine's head at the call.
    pub times: BTreeMap<u64, Time>,
}

impl Engine {
    /// The tree at log position `seq` (at most the head accepted now).
    #[cfg_attr(not(test), allow(dead_code))]
    pub async fn state_at(&self, seq: u64) -> Result<PastState> {
        let mut at: Option<(Tree, Head)> = None;
        let mut times = BTreeMap::new();
        let mut prev: Option<Head> = None;
        let (last, head) = self
            .walk_log(seq, |step| match step {
                Step::Base { tree, head, time } => {
                    times.insert(head.seq, time);
                    if head.seq == seq {
                        at = Some((tree.clone(), *head));
                    }
                    prev = Some(*head);
                }
                Step::Entry {
                    before,
                    head,
                    batch,
                    ..
                } => {
                    times.insert(head.seq, batch.time);
                    if head.seq == seq + 1 {
                        at = prev.map(|p| (before.clone(), p));
                    }
                    prev = Some(*head);
                }
            })
            .await?;
        let (tree, head) = match at {
            Some(at) => at,
            None if head.seq == seq => (last, head),
            None => {
                return Err(DriveError::Invalid(format!(
                    "log position {seq} was collected (the oldest state kept is after entry {})",
                    times.keys().next().copied().unwrap_or(head.seq)
                )));
            }
        };
        Ok(PastState { tree, head, times })
    }

    /// Replays the log from the newest usable snapshot at or before `from`
    /// (never before the newest log base: the log starts there once
    /// collected) to the head this engine holds now, calling `visit` for the base and
    /// for each entry before it is applied. Returns the tree at that head
    /// and the head. `InvalidArgument`-style `Invalid` for `from` past it.
    pub async fn walk_log(
        &self,
        from: u64,
        mut visit: impl FnMut(Step<'_>),
    ) -> Result<(Tree, Head)> {
        let target = self.lock().head;
        if from > target.seq {
            return Err(DriveError::Invalid(format!(
                "log position {from} is past the volume's head {}",
                target.seq
            )));
        }
        let source = self.unmirrored.as_ref();
        let keys = self.keys.get();
        // Once collected, the log starts at the newest log base: a walk
        // from before it starts there (the oldest state kept).
        let base = volume::newest_base(source, &keys, self.keys.owner()).await?;
        let from = base.as_ref().map_or(from, |b| from.max(b.base.seq));
        let x = &self.me.x25519;
        let start =
            load::start(source, &self.keys, x, from, Collected::Known(base.as_ref())).await?;
        let time = match start.genesis_time {
            Some(t) => t,
            None => self.entry_time(start.head.seq).await?,
        };
        let (mut tree, mut head) = (start.tree, start.head);
        visit(Step::Base {
            tree: &tree,
            head: &head,
            time,
        });
        // A past state writes no checkpoint: what changed is not kept.
        let (t, h) = (&mut tree, &mut head);
        load::replay(source, &self.keys, x, t, h, Some(target.seq), None, |e| {
            visit(Step::Entry {
                before: e.before,
                head: e.head,
                batch: e.batch,
                writer: e.writer,
            });
            Ok(())
        })
        .await?;
        if head.seq < target.seq {
            return Err(self.past_missing(head.seq + 1, target.seq));
        }
        if head.hash != target.hash {
            return Err(DriveError::Rollback {
                volume: hex8(&keys.volume),
                known: target.seq,
                offered: head.seq,
                reason: "log entry differs from the one this client accepted (fork)".into(),
            });
        }
        Ok((tree, head))
    }

    /// The time written in entry `seq` (signature and volume checked; its
    /// place in the chain is checked by the walk that asks).
    pub async fn entry_time(&self, seq: u64) -> Result<Time> {
        let key = volume::log_key(&self.keys.volume, seq);
        let bytes = volume::get(self.unmirrored.as_ref(), &key).await?;
        Ok(volume::open_entry(&self.keys.get(), &key, seq, &bytes)?.time)
    }

    fn past_missing(&self, seq: u64, head: u64) -> DriveError {
        DriveError::Rollback {
            volume: hex8(&self.keys.volume),
            known: head,
            offered: seq - 1,
            reason: "the store is missing log entries this client already accepted".into(),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::drive::engine::open::read_header;
    use crate::drive::identity::Identity;
    use crate::drive::types::{Caller, DriveOptions};
    use crate::store::{MemoryStore, ObjectStore};
    use std::ffi::OsStr;
    use std::sync::Arc;

    const ROOT: u64 = crate::drive::tree::ROOT;

    /// A new drive in memory, its root volume open (and its cache dir).
    pub(in crate::drive::engine) async fn new_drive()
    -> (Arc<dyn ObjectStore>, Arc<Engine>, tempfile::TempDir) {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let me = Identity::generate();
        Engine::create_drive(store.clone(), &me, b"card")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = open(&store, &me, dir.path()).await;
        (store, e, dir)
    }

    pub(in crate::drive::engine) async fn open(
        store: &Arc<dyn ObjectStore>,
        me: &Identity,
        dir: &std::path::Path,
    ) -> Arc<Engine> {
        let header = read_header(store.as_ref()).await.unwrap();
        let volume = header.header.root_volume;
        Engine::open_volume(
            store.clone(),
            me.clone(),
            DriveOptions::new(dir),
            &header,
            volume,
            false,
        )
        .await
        .unwrap()
    }

    /// Writes `text` as the whole of `name` and commits it (one entry).
    async fn put(e: &Engine, name: &str, text: &[u8]) {
        let who = Caller { uid: 0, gid: 0 };
        let ino = match e.lookup(ROOT, OsStr::new(name)) {
            Ok(a) => a.ino,
            Err(_) => {
                let (a, fh) = e
                    .create_file(ROOT, OsStr::new(name), 0o644, libc::O_RDWR, who)
                    .unwrap();
                e.release_handle(fh);
                a.ino
            }
        };
        let fh = e.open_file(ino, libc::O_RDWR | libc::O_TRUNC).unwrap().0;
        e.truncate(ino, 0).await.unwrap();
        e.write(ino, fh, 0, text).await.unwrap();
        e.flush(ino).unwrap();
        e.release_handle(fh);
        e.sync(&|_, _| {}).await.unwrap();
    }

    fn content(t: &Tree, name: &str) -> Option<u64> {
        let id = t.lookup(ROOT, name.as_bytes()).ok()?;
        Some(t.get(id).ok()?.size)
    }

    #[tokio::test]
    async fn past_states_replay_from_the_snapshot_at_or_before() {
        let (_store, e, _dir) = new_drive().await;
        // Entry n (n >= 1) leaves "f" with n bytes; force a snapshot in
        // the middle so that some states come from it and some from genesis.
        let mut heads = Vec::new();
        for n in 1..=6u64 {
            put(&e, "f", &vec![b'x'; n as usize]).await;
            heads.push(e.lock().head);
            if n == 3 {
                e.snapshot(true).await;
            }
        }
        let snap = heads[2].seq;
        for (i, h) in heads.iter().enumerate() {
            let p = e.state_at(h.seq).await.unwrap();
            assert_eq!(p.head, *h);
            assert_eq!(
                content(&p.tree, "f"),
                Some(i as u64 + 1),
                "state at {}",
                h.seq
            );
            // Times of every entry read, up to the current head.
            let last = heads.last().unwrap().seq;
            assert_eq!(p.times.keys().next_back(), Some(&last));
            let base = if h.seq >= snap { snap } else { 0 };
            assert_eq!(p.times.keys().next(), Some(&base), "state at {}", h.seq);
            assert!(p.times.values().all(|t| t.secs > 1_700_000_000));
        }
        // The genesis state: an empty root.
        let p = e.state_at(0).await.unwrap();
        assert_eq!(content(&p.tree, "f"), None);
        // Past the head: refused.
        assert!(matches!(
            e.state_at(heads[5].seq + 1).await,
            Err(DriveError::Invalid(_))
        ));
        e.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_rewritten_past_is_refused() {
        let (store, e, _dir) = new_drive().await;
        put(&e, "f", b"one").await;
        put(&e, "f", b"two").await;
        let h = e.lock().head;
        // The store swaps the last entry for a copy of the one before.
        let prev = store
            .get(&volume::log_key(&e.volume(), h.seq - 1), Default::default())
            .await
            .unwrap()
            .bytes;
        store
            .put(
                &volume::log_key(&e.volume(), h.seq),
                prev,
                crate::store::PutMode::Overwrite,
            )
            .await
            .unwrap();
        let err = e.state_at(1).await.unwrap_err();
        assert!(matches!(err, DriveError::Tampered { .. }), "{err:?}");
        // A missing entry is a rollback.
        store
            .delete(&volume::log_key(&e.volume(), h.seq))
            .await
            .unwrap();
        let err = e.state_at(1).await.unwrap_err();
        assert!(matches!(err, DriveError::Rollback { .. }), "{err:?}");
        e.abandon().await;
    }
}
