//! The local journal of pending ops and the persisted local state: what
//! `fsync` makes durable, and what the next open replays.
//!
//! Invariant: an op is journalled at most once (appends are serialised by
//! `journal_lock` and track `journaled_upto`); replay skips ops the log
//! already holds (same client seq).

use super::Engine;
use super::cache::LocalState;
use crate::drive::error::Result;
use crate::format::meta::Op;

impl Engine {
    /// Re-applies journalled ops that are not yet in the log.
    pub(super) fn replay_journal(&self) -> Result<()> {
        let records = self.cache.journal_read()?;
        let client = self.cache.client_id();
        let mut core = self.lock();
        let done = core.committed.clients.get(&client).copied().unwrap_or(0);
        let mut replayed = Vec::new();
        let mut last_seen = done;
        for (seq, op) in records {
            // Committed already, or a duplicate record: skip.
            if seq <= last_seen {
                continue;
            }
            last_seen = seq;
            for id in op_blocks(&op) {
                self.cache.pin(&id);
                if let Ok(Some(b)) = self.cache.read_object(&id, None) {
                    core.uploads.insert(id, b.len() as u64);
                }
            }
            core.next_client_seq = core.next_client_seq.max(seq + 1);
            replayed.push((seq, op));
        }
        if !replayed.is_empty() {
            tracing::info!(ops = replayed.len(), "replaying journalled changes");
        }
        let last = replayed.last().map(|(s, _)| *s).unwrap_or(0);
        core.pending = replayed.into();
        core.journaled_upto = last;
        core.rebase(&self.me.card_id);
        Ok(())
    }

    pub fn save_state(&self, durable: bool) -> Result<()> {
        let core = self.lock();
        let s = LocalState {
            header_hash: self.header_hash,
            head_seq: core.head.seq,
            head_hash: core.head.hash,
            next_client_seq: core.next_client_seq,
            generation: self.keys.generation(),
        };
        drop(core);
        self.cache.save_state(&s, durable)
    }

    /// Writes not-yet-journalled pending ops to the journal.
    pub fn journal_pending(&self, durable: bool) -> Result<()> {
        // One writer at a time, so no op is appended twice.
        let _j = self.journal_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (ops, upto) = {
            let core = self.lock();
            let ops: Vec<(u64, Op)> = core
                .pending
                .iter()
                .filter(|(s, _)| *s > core.journaled_upto)
                .cloned()
                .collect();
            (
                ops,
                core.pending
                    .back()
                    .map(|(s, _)| *s)
                    .unwrap_or(core.journaled_upto),
            )
        };
        if ops.is_empty() && !durable {
            return Ok(());
        }
        self.cache.journal_append(&ops, durable)?;
        let mut core = self.lock();
        core.journaled_upto = core.journaled_upto.max(upto);
        Ok(())
    }
}

/// Content block ids named by an op.
pub fn op_blocks(op: &Op) -> Vec<[u8; 16]> {
    match op {
        Op::SetContent { blocks, .. } => blocks.iter().map(|(_, b)| b.id).collect(),
        Op::Create { node, .. } => node.blocks.values().map(|b| b.id).collect(),
        _ => Vec::new(),
    }
}
