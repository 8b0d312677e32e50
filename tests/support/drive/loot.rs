//! What a card holder can take from a store that hands him every object:
//! every keyring generation his key opens (and the earlier generations'
//! keys their histories give), every log entry and snapshot those keys
//! decrypt, and every block ref (id, length, key) inside them. Used to
//! check which content objects he can decrypt: every object tried with
//! every key he can reach.

use super::{keys_under, object_bytes};
use cardfs::format::content;
use cardfs::format::crypto::SecretKey;
use cardfs::format::meta::{
    self, Batch, BlockRef, ENTRY_MAGIC, Keyring, MemberRecord, Op, SNAPSHOT_MAGIC,
};
use cardfs::store::ObjectStore;
use ed25519_dalek::VerifyingKey;
use std::collections::BTreeMap;

/// Keys and block refs a card holder can reach.
#[derive(Default)]
pub struct Loot {
    /// `(volume hex, generation)` → volume key.
    pub gen_keys: BTreeMap<(String, u32), SecretKey>,
    /// `(volume hex, generation)` → members (to find a box's writer key).
    pub members: BTreeMap<(String, u32), Vec<MemberRecord>>,
    /// Every block ref in metadata the keys decrypt.
    pub blocks: Vec<BlockRef>,
}

impl Loot {
    /// Everything `me` (an X25519 secret) can open in `store`, whose
    /// keyrings the drive owner `owner` signed.
    pub async fn take(
        store: &dyn ObjectStore,
        owner: &VerifyingKey,
        me: &x25519_dalek::StaticSecret,
    ) -> Loot {
        let mut loot = Loot::default();
        for name in keys_under(store, "k/").await {
            let bytes = object_bytes(store, &name).await;
            if let Ok((ring, key)) = Keyring::open(&bytes, owner, me) {
                let vol = cardfs::format::hex::encode(&ring.volume);
                for (g, k) in ring.history {
                    loot.gen_keys.insert((vol.clone(), g), k);
                }
                loot.members
                    .insert((vol.clone(), ring.generation), ring.members);
                loot.gen_keys.insert((vol, ring.generation), key);
            }
        }
        // Member lists of generations known only through a history.
        for name in keys_under(store, "k/").await {
            let bytes = object_bytes(store, &name).await;
            for ((vol, _), k) in &loot.gen_keys {
                if let Ok(ring) = Keyring::open_with_key(&bytes, owner, k) {
                    loot.members
                        .insert((vol.clone(), ring.generation), ring.members);
                }
            }
        }
        for name in keys_under(store, "v/").await {
            let bytes = object_bytes(store, &name).await;
            let magic = if name.contains("/l/") {
                ENTRY_MAGIC
            } else {
                SNAPSHOT_MAGIC
            };
            let Ok(head) = meta::peek_signed(magic, &bytes) else {
                continue;
            };
            let at = (cardfs::format::hex::encode(&head.volume), head.generation);
            let (Some(key), Some(members)) = (loot.gen_keys.get(&at), loot.members.get(&at)) else {
                continue;
            };
            let Some(writer) = members.iter().find(|m| m.card_id == head.writer) else {
                continue;
            };
            let vk = writer.verifying_key().unwrap();
            if let Ok((_, payload)) = meta::open_signed(magic, &bytes, &vk, key) {
                loot.blocks
                    .extend(block_refs_in(store, magic, &head, key, &payload).await);
            }
        }
        loot
    }

    /// Whether any key reached opens content object `c/<id>` (`sealed`).
    pub fn opens(&self, object: &str, sealed: &[u8]) -> bool {
        try_keys(object, sealed, &self.blocks, self.gen_keys.values())
    }
}

/// Every block ref a decrypted log entry or checkpoint root payload
/// holds (a root's: those of the pages it names, fetched from `store` and
/// opened with `key`, the key of the root's generation).
pub async fn block_refs_in(
    store: &dyn ObjectStore,
    magic: &[u8; 4],
    head: &meta::SignedHead,
    key: &SecretKey,
    payload: &[u8],
) -> Vec<BlockRef> {
    if magic == ENTRY_MAGIC {
        Batch::decode(payload)
            .unwrap()
            .ops
            .into_iter()
            .flat_map(|op| match op {
                Op::Create { node, .. } => node.blocks.into_values().collect(),
                Op::SetContent { blocks, .. } => blocks.into_iter().map(|(_, b)| b).collect(),
                _ => Vec::new(),
            })
            .collect()
    } else {
        let root = meta::CheckpointRoot::decode(payload).unwrap();
        let mut refs = Vec::new();
        for (bucket, hash) in root.pages.iter().enumerate() {
            if *hash == meta::EMPTY_PAGE {
                continue;
            }
            let vol = cardfs::format::hex::encode(&head.volume);
            let name = format!("v/{vol}/p/{}", cardfs::format::hex::encode(hash));
            let bytes = object_bytes(store, &name).await;
            let place = meta::PagePlace {
                volume: head.volume,
                generation: head.generation,
                bucket: bucket as u32,
                bucket_bits: root.bucket_bits,
            };
            let nodes = meta::open_page(&place, key, &bytes).unwrap();
            refs.extend(nodes.into_iter().flat_map(|n| n.blocks.into_values()));
        }
        refs
    }
}

/// Whether any of `keys` (the block refs' keys and `extra`, as if they
/// were block keys) opens `sealed`, the object `c/<id>`, at any of the
/// refs' lengths, as a whole object or at any place in it a ref names (a
/// pack).
pub fn try_keys<'a>(
    object: &str,
    sealed: &[u8],
    refs: &[BlockRef],
    extra: impl Iterator<Item = &'a SecretKey>,
) -> bool {
    let block_id: [u8; 16] = cardfs::format::hex::decode(&object[2..]).unwrap();
    let mut keys: Vec<[u8; 32]> = refs.iter().map(|b| *b.key.as_bytes()).collect();
    keys.extend(extra.map(|k| *k.expose()));
    let mut lens: Vec<usize> = refs.iter().map(|b| b.len as usize).collect();
    lens.sort_unstable();
    lens.dedup();
    let mut places = vec![content::Place::whole(block_id)];
    places.extend(
        refs.iter()
            .filter(|b| b.packed.is_some())
            .map(|b| content::Place {
                id: block_id,
                packed: b.packed,
            }),
    );
    keys.iter().any(|key| {
        let c = content::block_cipher(key);
        lens.iter().any(|len| {
            let all = 0..content::chunk_count(*len);
            places.iter().any(|place| {
                let start = place.start() as usize;
                let bytes = match place.packed {
                    None => sealed,
                    Some(_) => sealed
                        .get(start..start + content::sealed_len(*len))
                        .unwrap_or_default(),
                };
                content::open_chunks(&c, place, *len, all.clone(), bytes).is_ok()
            })
        })
    })
}

impl Loot {
    /// Whether anything reached opens the object `name` (bytes `sealed`),
    /// whatever its name says it is: as a keyring (with `me` or any
    /// generation key), as a signed log entry or checkpoint root (any
    /// generation key, signed by any member known), as a checkpoint page
    /// (any generation key at any small place of any volume reached), and
    /// for a content name as a block ([`Loot::opens`]).
    pub fn opens_object(
        &self,
        owner: &VerifyingKey,
        me: &x25519_dalek::StaticSecret,
        name: &str,
        sealed: &[u8],
    ) -> bool {
        if name.starts_with("c/") && self.opens(name, sealed) {
            return true;
        }
        if Keyring::open(sealed, owner, me).is_ok()
            || self
                .gen_keys
                .values()
                .any(|k| Keyring::open_with_key(sealed, owner, k).is_ok())
        {
            return true;
        }
        let mut signers: Vec<VerifyingKey> = vec![*owner];
        for m in self.members.values().flatten() {
            signers.extend(m.verifying_key().ok());
        }
        for magic in [ENTRY_MAGIC, SNAPSHOT_MAGIC] {
            for vk in &signers {
                if self
                    .gen_keys
                    .values()
                    .any(|k| meta::open_signed(magic, sealed, vk, k).is_ok())
                {
                    return true;
                }
            }
        }
        let top = self.gen_keys.keys().map(|(_, g)| *g).max().unwrap_or(0) + 3;
        for (vol, _) in self.gen_keys.keys() {
            let volume: [u8; 16] = cardfs::format::hex::decode(vol).unwrap();
            for generation in 0..=top {
                for bucket_bits in 0..=3u8 {
                    for bucket in 0..(1u32 << bucket_bits) {
                        let place = meta::PagePlace {
                            volume,
                            generation,
                            bucket,
                            bucket_bits,
                        };
                        if self
                            .gen_keys
                            .values()
                            .any(|k| meta::open_page(&place, k, sealed).is_ok())
                        {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }
}
