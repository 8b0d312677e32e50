//! What a journal replayed at open is rebased with: the tree at the head
//! this client had accepted when it journalled its ops (its base: what a
//! conflict copy keeps), and the names other clients' entries took since
//! (a journalled rename onto one of them must not replace what this
//! client never saw there; see `rebase`).
//!
//! Invariants:
//! - Only entries after the accepted head, written by another client
//!   instance, take names: this client's own entries committed before the
//!   crash are part of what it saw.
//! - When the checkpoint the open started from lies past the accepted
//!   head, the state there is loaded again from the newest checkpoint at
//!   or before it and the verified log after it; the replay must pass the
//!   accepted head with the hash accepted and end on the open's start.
//!   When a collection removed them from the store, the state at the
//!   accepted head is loaded from this client's metadata mirror, read in
//!   place (the checkpoint and entries it had fetched before the crash:
//!   the open's copies leave them there until it is verified), verified
//!   the same way and required to meet the accepted head's hash; the
//!   names taken since are then every name that links to another node in
//!   the open's tree than there (`names_changed`: the entries between are
//!   gone). When neither holds it, the base is unknown: the ops replay on
//!   the committed tree with no names known to be taken, as the log line
//!   says. A transient store error fails the open (it is retried) rather
//!   than replaying blind.

use super::load::{self, Collected, Entry};
use super::rebase::{Taken, names_changed, names_taken};
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::Tree;
use crate::drive::volume::Head;
use crate::drive::volume::held_keys::HeldKeys;
use crate::store::{ObjectStore, StoreError};
use x25519_dalek::StaticSecret;

/// The base and taken names gathered while an open replays the log.
#[derive(Debug)]
pub(super) struct JournalBase {
    /// The tree at the accepted head, once passed.
    pub(super) tree: Option<Tree>,
    /// Names other clients' entries after the accepted head took.
    pub(super) taken: Taken,
    client: [u8; 16],
    /// The accepted head: seq and hash.
    known: (u64, [u8; 32]),
}

impl JournalBase {
    pub(super) fn new(client: [u8; 16], known: (u64, [u8; 32])) -> Self {
        Self {
            tree: None,
            taken: Taken::new(),
            client,
            known,
        }
    }

    /// Notes one entry of the open's replay (before it is applied).
    pub(super) fn visit(&mut self, e: &Entry<'_>) {
        if e.prev.seq < self.known.0 {
            return;
        }
        if e.prev.seq == self.known.0 && self.tree.is_none() {
            self.tree = Some(e.before.clone());
        }
        if e.batch.client != self.client {
            self.taken.extend(names_taken(&e.batch.ops));
        }
    }

    /// The replay ended at `head` with `tree`.
    pub(super) fn at_end(&mut self, tree: &Tree, head: &Head) {
        if head.seq == self.known.0 && self.tree.is_none() {
            self.tree = Some(tree.clone());
        }
    }

    /// The accepted head lies before `start`, the checkpoint the open
    /// started from: loads the state there and the entries up to `start`,
    /// else the state there from `earlier` (the mirror, holding what it
    /// held before the open) and compares it with `now`, the open's tree (see the
    /// module doc).
    pub(super) async fn behind(
        &mut self,
        source: &dyn ObjectStore,
        earlier: Option<&dyn ObjectStore>,
        keys: &HeldKeys,
        me: &StaticSecret,
        start: &Head,
        now: &Tree,
    ) -> Result<()> {
        if self.known.0 >= start.seq {
            return Ok(());
        }
        let why = match self.load_behind(source, keys, me, start).await {
            Ok(Some(older)) => {
                self.tree = older.tree;
                self.taken.extend(older.taken);
                return Ok(());
            }
            Ok(None) => "the log there does not lead to the newest checkpoint".to_string(),
            Err(DriveError::Store(e @ StoreError::Transient { .. })) => {
                return Err(DriveError::Store(e));
            }
            Err(e) => e.to_string(),
        };
        if let Some(earlier) = earlier
            && let Ok(Some((tree, _))) = self.load_known(earlier, keys, me).await
        {
            tracing::info!(
                head = self.known.0,
                "the state this client had accepted before its crash was collected from the store; its journalled changes are rebased from the copy in its metadata mirror"
            );
            self.taken.extend(names_changed(&tree, now));
            self.tree = Some(tree);
            return Ok(());
        }
        self.unknown(&why);
        Ok(())
    }

    /// The state at the accepted head as `source` holds it: the newest
    /// checkpoint at or before it and the verified entries up to it, which
    /// must end on the accepted hash; `None` when they do not.
    async fn load_known(
        &self,
        source: &dyn ObjectStore,
        keys: &HeldKeys,
        me: &StaticSecret,
    ) -> Result<Option<(Tree, Head)>> {
        let (seq, hash) = self.known;
        let mut s = load::start(source, keys, me, seq, Collected::Lazy).await?;
        if s.head.seq > seq {
            return Ok(None);
        }
        let (tree, head) = (&mut s.tree, &mut s.head);
        load::replay(source, keys, me, tree, head, Some(seq), None, |_| Ok(())).await?;
        Ok((s.head.seq == seq && s.head.hash == hash).then_some((s.tree, s.head)))
    }

    /// The state at the accepted head as `source` holds it
    /// (`load_known`), and the names taken by the entries from there to
    /// `start`, which must end on it.
    async fn load_behind(
        &self,
        source: &dyn ObjectStore,
        keys: &HeldKeys,
        me: &StaticSecret,
        start: &Head,
    ) -> Result<Option<JournalBase>> {
        let Some((mut tree, mut head)) = self.load_known(source, keys, me).await? else {
            return Ok(None);
        };
        let mut older = JournalBase::new(self.client, self.known);
        older.tree = Some(tree.clone());
        let until = Some(start.seq);
        load::replay(source, keys, me, &mut tree, &mut head, until, None, |e| {
            older.visit(&e);
            Ok(())
        })
        .await?;
        let ends = head.seq == start.seq && head.hash == start.hash;
        Ok(ends.then_some(older))
    }

    fn unknown(&mut self, why: &str) {
        self.tree = None;
        tracing::warn!(
            head = self.known.0,
            reason = why,
            "the state this client had accepted before its crash is no longer in the store: its journalled changes replay on the newest state, and a rename among them may replace a file another client put at its target since"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::meta::{Batch, Op, Time};

    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: [seq as u8; 32],
            generation: 0,
        }
    }

    fn creates(client: u8, name: &str) -> Batch {
        Batch {
            client: [client; 16],
            client_seq: 1,
            time: Time::default(),
            ops: vec![Op::Link {
                parent: 1,
                name: name.as_bytes().to_vec(),
                node: 5,
                ctime: Time::default(),
            }],
        }
    }

    /// Entries up to the accepted head take nothing, and neither do this
    /// client's own entries after it; the tree before the first entry
    /// after the head is the base.
    #[test]
    fn only_other_clients_entries_after_the_accepted_head_take_names() {
        let me = 7;
        let mut b = JournalBase::new([me; 16], (2, [2; 32]));
        // Tree i (before entry i + 1) is told apart by a client seq.
        let trees: Vec<Tree> = (0..4)
            .map(|i| {
                let mut t = Tree::default();
                t.clients.insert([0; 16], i);
                t
            })
            .collect();
        let entries = [
            creates(9, "before"),
            creates(9, "at"),
            creates(me, "mine"),
            creates(9, "theirs"),
        ];
        for (i, batch) in entries.iter().enumerate() {
            let (prev, next) = (head(i as u64), head(i as u64 + 1));
            b.visit(&Entry {
                before: &trees[i],
                prev: &prev,
                head: &next,
                batch,
                writer: &[0; 32],
            });
        }
        let names: Vec<&[u8]> = b.taken.iter().map(|(_, n)| n.as_slice()).collect();
        assert_eq!(names, [b"theirs".as_slice()]);
        let base = b.tree.expect("the accepted head was passed");
        assert_eq!(base.clients.get(&[0; 16]), Some(&2));
    }
}
