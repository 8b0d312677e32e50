//! The keys of the volume an engine serves, as the engine holds them:
//! replaced when the log names a newer keyring generation (or this client
//! rotates), checked against the highest generation accepted before.
//!
//! Invariants:
//! - The held newest generation never decreases, and a generation's key
//!   never changes once accepted (either would be the store rolling back or
//!   swapping keyrings: `Rollback` / `Tampered`).
//! - Once this identity is found removed from the volume (`NotMember` on a
//!   reload) the keys stay revoked for the engine's life: no more reads of
//!   content, writes or commits.

use super::{Fetched, Head, VolumeKeys};
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::hex8;
use crate::format::meta::Batch;
use crate::store::ObjectStore;
use ed25519_dalek::VerifyingKey;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use x25519_dalek::StaticSecret;

/// A volume's keys behind a lock, reloadable.
#[derive(Debug)]
pub struct HeldKeys {
    pub(in crate::drive) drive_id: [u8; 16],
    pub(in crate::drive) volume: [u8; 16],
    owner: VerifyingKey,
    held: RwLock<Arc<VolumeKeys>>,
    revoked: AtomicBool,
}

impl HeldKeys {
    /// Loads every keyring generation of `volume`; `accepted` is the
    /// highest generation this client accepted before (local state).
    pub async fn load(
        store: &dyn ObjectStore,
        drive_id: [u8; 16],
        volume: [u8; 16],
        owner: VerifyingKey,
        me: &StaticSecret,
        accepted: u32,
    ) -> Result<HeldKeys> {
        let k = VolumeKeys::load(store, drive_id, volume, &owner, me).await?;
        not_rolled_back(&k, accepted)?;
        Ok(Self::new(k, owner))
    }

    pub fn new(k: VolumeKeys, owner: VerifyingKey) -> HeldKeys {
        HeldKeys {
            drive_id: k.drive_id,
            volume: k.volume,
            owner,
            held: RwLock::new(Arc::new(k)),
            revoked: AtomicBool::new(false),
        }
    }

    /// The drive owner's key (the signer of keyrings and log bases).
    pub fn owner(&self) -> &VerifyingKey {
        &self.owner
    }

    /// The keys held now.
    pub fn get(&self) -> Arc<VolumeKeys> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The newest generation held.
    pub fn generation(&self) -> u32 {
        self.get().current().0
    }

    /// Whether this identity was removed from the volume.
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }

    /// `NotMember` once revoked.
    pub fn check_member(&self) -> Result<()> {
        if self.revoked() {
            return Err(DriveError::NotMember);
        }
        Ok(())
    }

    /// Whether `card` may write in the newest generation.
    pub fn can_write(&self, card: &[u8; 32]) -> bool {
        self.get().role(card).is_some_and(|r| r >= 2)
    }

    /// Installs keys this client made (a rotation), after the same checks
    /// as a reload.
    pub fn install(&self, k: VolumeKeys) -> Result<Arc<VolumeKeys>> {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        consistent(&held, &k)?;
        *held = Arc::new(k);
        Ok(held.clone())
    }

    /// Reads the keyrings again (a newer generation appeared).
    pub async fn reload(&self, store: &dyn ObjectStore, me: &StaticSecret) -> Result<()> {
        self.check_member()?;
        let old = self.get();
        let r = VolumeKeys::load_reusing(
            store,
            self.drive_id,
            self.volume,
            &self.owner,
            me,
            Some(&old),
        )
        .await;
        match r {
            Ok(k) => {
                let k = self.install(k)?;
                if k.current().0 == old.current().0 {
                    return Ok(());
                }
                tracing::info!(
                    volume = %hex8(&self.volume),
                    generation = k.current().0,
                    "loaded a new keyring generation"
                );
                Ok(())
            }
            Err(DriveError::NotMember) => {
                self.revoked.store(true, Ordering::SeqCst);
                tracing::error!(
                    volume = %hex8(&self.volume),
                    "this identity was removed from the volume: it stops serving (EACCES)"
                );
                Err(DriveError::NotMember)
            }
            Err(e) => Err(e),
        }
    }

    /// Entry 0 (the volume's genesis), verified; `Tampered` when missing.
    pub async fn fetch_genesis(
        &self,
        store: &dyn ObjectStore,
        me: &StaticSecret,
    ) -> Result<(Batch, Head)> {
        let (batch, head, _) = self
            .fetch_entry(store, me, 0, &[0; 32], 0)
            .await?
            .ok_or_else(|| {
                DriveError::tampered(super::log_key(&self.volume, 0), "genesis entry missing")
            })?;
        Ok((batch, head))
    }

    /// [`super::fetch_entry`], reloading the keys once when the entry is
    /// sealed under a generation not held yet.
    pub async fn fetch_entry(
        &self,
        store: &dyn ObjectStore,
        me: &StaticSecret,
        seq: u64,
        prev: &[u8; 32],
        prev_generation: u32,
    ) -> Result<Option<(Batch, Head, [u8; 32])>> {
        self.check_member()?;
        let mut reloaded = false;
        loop {
            let k = self.get();
            match super::fetch_entry(store, &k, seq, prev, prev_generation).await? {
                Fetched::End => return Ok(None),
                Fetched::Entry(batch, head, writer) => return Ok(Some((batch, head, writer))),
                Fetched::NeedKeys(g) if reloaded => {
                    return Err(DriveError::tampered(
                        super::log_key(&self.volume, seq),
                        format!(
                            "sealed under keyring generation {g}, which the store does not hold"
                        ),
                    ));
                }
                Fetched::NeedKeys(_) => {
                    self.reload(store, me).await?;
                    reloaded = true;
                }
            }
        }
    }
}

/// `Rollback` when the store offers fewer generations than accepted.
pub fn not_rolled_back(k: &VolumeKeys, accepted: u32) -> Result<()> {
    let offered = k.current().0;
    if offered < accepted {
        let e = DriveError::Rollback {
            volume: hex8(&k.volume),
            known: accepted.into(),
            offered: offered.into(),
            reason: "the store hides keyring generations this client accepted".into(),
        };
        tracing::error!(error = %e, "refusing rolled-back keyrings");
        return Err(e);
    }
    Ok(())
}

/// New keys must keep every generation held with the same key, and not go
/// back.
fn consistent(old: &VolumeKeys, new: &VolumeKeys) -> Result<()> {
    not_rolled_back(new, old.current().0)?;
    for (g, (key, _)) in &old.generations {
        if new.key(*g) != Some(key) {
            return Err(DriveError::tampered(
                super::keyring_key(&old.volume, *g),
                "keyring generation changed after this client accepted it",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::SecretKey;
    use std::collections::BTreeMap;

    fn keys(gens: &[(u32, [u8; 32])]) -> VolumeKeys {
        VolumeKeys {
            drive_id: [1; 16],
            volume: [2; 16],
            generations: gens
                .iter()
                .map(|(g, k)| (*g, (SecretKey::from_bytes(*k), Vec::new())))
                .collect::<BTreeMap<_, _>>(),
            collected: Default::default(),
            name: Vec::new(),
        }
    }

    #[test]
    fn generations_only_grow_and_keep_their_keys() {
        let vk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let held = HeldKeys::new(keys(&[(0, [1; 32]), (1, [2; 32])]), vk);
        assert_eq!(held.generation(), 1);
        // Fewer generations: rollback.
        match held.install(keys(&[(0, [1; 32])])) {
            Err(DriveError::Rollback { known, offered, .. }) => {
                assert_eq!((known, offered), (1, 0))
            }
            other => panic!("expected Rollback, got {other:?}"),
        }
        // An accepted generation with another key: tampering.
        match held.install(keys(&[(0, [1; 32]), (1, [9; 32]), (2, [3; 32])])) {
            Err(DriveError::Tampered { object, .. }) => {
                assert_eq!(object, crate::drive::volume::keyring_key(&[2; 16], 1))
            }
            other => panic!("expected Tampered, got {other:?}"),
        }
        assert_eq!(held.generation(), 1);
        // A newer generation with the old keys kept: accepted.
        held.install(keys(&[(0, [1; 32]), (1, [2; 32]), (2, [3; 32])]))
            .unwrap();
        assert_eq!(held.generation(), 2);
        assert!(not_rolled_back(&held.get(), 3).is_err());
        assert!(not_rolled_back(&held.get(), 2).is_ok());
    }

    #[test]
    fn revoked_keys_refuse_everything() {
        let vk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let held = HeldKeys::new(keys(&[(0, [1; 32])]), vk);
        assert!(held.check_member().is_ok());
        held.revoked.store(true, Ordering::SeqCst);
        assert!(matches!(held.check_member(), Err(DriveError::NotMember)));
    }
}
