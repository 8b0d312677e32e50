//! Key rotation and re-encryption of one volume (owner only): moving the
//! volume to a new keyring generation, and rewriting its content under the
//! current generation.
//!
//! Invariants:
//! - A rotation settles this client's pending changes first, then writes
//!   the keyring, switches keys, and commits `Op::Rotate` so other clients
//!   reload their keys and never go back to the old generation in the log.
//! - A rotation makes its store calls in the caller's call: a transient
//!   store error retries the step that met it (`drive::retry`): the
//!   settles, the refresh, the keyring's put (a put that landed unseen is
//!   recognised by its bytes). Once the new keys are installed the
//!   rotation is done locally; if its commit still fails, the committer
//!   commits it later.
//! - Re-encryption replaces a file's blocks only if the file did not
//!   change meanwhile (same version, no unsealed writes). Its settles
//!   retry transient store errors as a rotation's do; any other failure
//!   ends it, and running it again goes on where it stopped (only blocks
//!   not under the current generation are rewritten).

use super::Engine;
use crate::drive::error::{DriveError, Result};
use crate::drive::retry::{RetryPuts, retry_transient};
use crate::drive::volume::genesis::{check_owner_listed, put_create};
use crate::drive::volume::{self, VolumeKeys};
use crate::format::crypto::{SecretKey, random_array};
use crate::format::meta::{KIND_FILE, Keyring, MemberRecord, Node, Op};

/// Re-encrypted bytes after which the pending changes are committed.
const REENCRYPT_SETTLE: u64 = 256 << 20;

impl Engine {
    /// Commits every pending change of this client (seals unsealed
    /// writes first): [`Engine::sync`] without progress reports.
    pub async fn settle(&self) -> Result<()> {
        self.sync(&|_, _| {}).await
    }

    /// Moves the volume to a new keyring generation with a fresh key for
    /// `members` (who must include this client's identity as owner) and
    /// display name `name`. Owner only. Returns the new generation.
    pub async fn rotate(&self, members: Vec<MemberRecord>, name: Vec<u8>) -> Result<u32> {
        self.keys.check_member()?;
        let me = self.me.card_id;
        if self.keys.get().role(&me) != Some(3) {
            return Err(DriveError::NotPermitted);
        }
        check_owner_listed(&self.me, &members)?;
        retry_transient("a key rotation: settling pending changes", || self.settle()).await?;
        let generation = {
            let _g = self.commit_lock.lock().await;
            retry_transient("a key rotation: reading the log", || self.refresh_locked()).await?;
            let old = self.keys.get();
            let next = old
                .current()
                .0
                .checked_add(1)
                .ok_or_else(|| DriveError::Invalid("no keyring generation left".into()))?;
            let key = SecretKey::random();
            let ring = Keyring {
                drive_id: old.drive_id,
                volume: old.volume,
                generation: next,
                owner_card_id: me,
                members: members.clone(),
                name: name.clone(),
                history: old
                    .generations
                    .iter()
                    .map(|(g, (k, _))| (*g, k.clone()))
                    .collect(),
            };
            let bytes = ring
                .seal(&key, &self.me.ed25519)
                .map_err(|e| DriveError::Invalid(format!("keyring: {e}")))?;
            match put_create(
                &RetryPuts(self.store.clone()),
                &volume::keyring_key(&old.volume, next),
                bytes,
            )
            .await
            {
                // Another client of the owner rotated meanwhile.
                Err(DriveError::Exists) => return Err(DriveError::Busy),
                r => r?,
            }
            let mut generations = old.generations.clone();
            generations.insert(next, (key, members));
            self.keys.install(VolumeKeys {
                drive_id: old.drive_id,
                volume: old.volume,
                generations,
                collected: old.collected.clone(),
                name,
            })?;
            next
        };
        self.save_state(true)?;
        tracing::info!(generation, "rotated the volume to a new keyring generation");
        self.lock().push(Op::Rotate { generation })?;
        self.wake.notify_one();
        retry_transient("a key rotation: committing it", || self.settle()).await?;
        // Snapshots of older generations are not used any more (a removed
        // writer could forge those): give new clients one of this one.
        self.snapshot(true).await;
        Ok(generation)
    }

    /// Rewrites every stored block of the volume's files that is not under
    /// the current generation: new block ids, sealed with the current
    /// epoch key, one `SetContent` per file. `progress` gets (done, total)
    /// plaintext bytes. A file changed meanwhile is retried; `Busy` if
    /// files keep changing.
    pub async fn reencrypt(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        self.writable()?;
        let settle = || retry_transient("re-encryption: committing", || self.settle());
        settle().await?;
        for _pass in 0..3 {
            let epoch = self.keys.generation();
            let todo: Vec<Node> = {
                let core = self.lock();
                core.view
                    .nodes
                    .values()
                    .filter(|n| n.kind == KIND_FILE && n.blocks.values().any(|b| b.epoch != epoch))
                    .map(|n| (**n).clone())
                    .collect()
            };
            if todo.is_empty() {
                return Ok(());
            }
            let total: u64 = todo
                .iter()
                .flat_map(|n| n.blocks.values())
                .map(|b| b.len as u64)
                .sum();
            let (mut done, mut unsettled) = (0u64, 0u64);
            progress(0, total);
            for n in todo {
                let mut refs = Vec::with_capacity(n.blocks.len());
                for (idx, b) in &n.blocks {
                    let plain = self.read_stored_block(*idx, b.clone()).await?;
                    refs.push((*idx, self.seal_stored_block(&plain)?));
                    done += b.len as u64;
                    unsettled += b.len as u64;
                    progress(done, total);
                }
                {
                    let mut core = self.lock();
                    let same = core
                        .view
                        .nodes
                        .get(&n.id)
                        .is_some_and(|c| c.version == n.version);
                    if !same || core.dirty.contains_key(&n.id) {
                        // Changed meanwhile: the next pass sees the new version.
                        // (Block versions in a pack stay there, named by
                        // nothing: the pack uploads with its other ones.)
                        for (_, b) in refs.iter().filter(|(_, b)| b.packed.is_none()) {
                            core.upload_done(&b.id);
                            self.cache.unpin(&b.id);
                        }
                        continue;
                    }
                    core.push(Op::SetContent {
                        node: n.id,
                        base: n.version,
                        version: u64::from_le_bytes(random_array()),
                        size: n.size,
                        drop_from: 0,
                        blocks: refs,
                        mtime: n.mtime,
                    })?;
                }
                if unsettled >= REENCRYPT_SETTLE {
                    settle().await?;
                    unsettled = 0;
                }
            }
            settle().await?;
        }
        Err(DriveError::Busy)
    }
}
