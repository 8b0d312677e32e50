//! Checkpoints of a volume in the store: the signed root
//! `v/<volume>/s/<seq:016x>` (a `SNAPSHOT_MAGIC` box whose payload is a
//! [`CheckpointRoot`]) naming by hash one page per bucket of node ids,
//! each page the object `v/<volume>/p/<sha256 of its bytes>`.
//!
//! Writing: a writer keeps the [`PageIndex`] of the checkpoint it loaded or
//! wrote last and the ids of the nodes changed since ([`plan_pages`]); the
//! next checkpoint encodes only the buckets holding a changed id and names
//! the previous pages for the rest, so its cost follows the change, not the
//! volume. Pages are put (Create-only) before the root.
//!
//! Invariants:
//! - A checkpoint is used only once its root verifies (writer of the
//!   generation it names, the newest one; name, volume, seq and covered
//!   entry agree) and every page it names is present, hashes to the named
//!   hash and opens for its place (volume, generation, bucket, bucket
//!   count) with each node in its bucket and no id twice. Any failure is
//!   `Tampered` naming the object; a partial tree is never returned.
//! - Pages of a [`PageIndex`] are all in the store (written by this client
//!   or read from it): a plan reuses only pages of the same generation and
//!   bucket count.

use super::{Head, VolumeKeys, get, log_key, open_signed};
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::{IDS_PER_STEP, PageNodes, Tree};
use crate::format::hex::encode as hex;
use crate::format::meta::{
    self, CheckpointRoot, EMPTY_PAGE, ENTRY_MAGIC, MAX_BUCKET_BITS, Node, PagePlace,
    SNAPSHOT_MAGIC, SignedHead, bucket_of,
};
use crate::store::{GetOptions, ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The average encoded size of a page a checkpoint aims at while it has
/// fewer than 2^[`LARGE_FROM_BITS`] buckets (refitted when the average
/// leaves a quarter to twice the target). A small change rewrites one
/// page, padded to the next power of two, and 1/64 of the root (32 bytes
/// a bucket): 8 KiB keeps both small at 100k files (docs/ARCHITECTURE.md,
/// "Checkpoint policy").
pub const PAGE_TARGET: u64 = 8 << 10;
/// The target from 2^[`LARGE_FROM_BITS`] buckets on (about 300,000 small
/// files): a cold open fetches one object per page, and at a million files
/// 16,384 small pages cost it more than their bytes (each a file or a GET);
/// 8,192 pages twice the size halve that and still keep a small change
/// within its budget (a 32 KiB page and a 256 KiB root over 64 entries).
pub const LARGE_PAGE_TARGET: u64 = 2 * PAGE_TARGET;
/// The bucket bits from which [`LARGE_PAGE_TARGET`] applies.
pub const LARGE_FROM_BITS: u8 = 13;
/// Pages fetched or put at once.
const PAGES_IN_FLIGHT: usize = 16;

pub fn snapshot_key(vol: &[u8; 16], seq: u64) -> String {
    format!("{}{seq:016x}", snapshot_prefix(vol))
}
/// The prefix listing every checkpoint root of `vol`.
pub fn snapshot_prefix(vol: &[u8; 16]) -> String {
    format!("v/{}/s/", hex(vol))
}
/// The name of a page: its volume and the hash of its bytes.
pub fn page_key(vol: &[u8; 16], hash: &[u8; 32]) -> String {
    format!("{}{}", page_prefix(vol), hex(hash))
}
/// The prefix listing every checkpoint page of `vol`.
pub fn page_prefix(vol: &[u8; 16]) -> String {
    format!("v/{}/p/", hex(vol))
}

/// The pages of a checkpoint as written or loaded: what the next
/// checkpoint of the same generation reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageIndex {
    generation: u32,
    bits: u8,
    /// Per bucket, the page hash ([`EMPTY_PAGE`] for an empty bucket).
    pages: Vec<[u8; 32]>,
    /// Per bucket, the length of the encoded page body.
    sizes: Vec<u64>,
}

impl PageIndex {
    /// The file ids a fill position of an
    /// [`IdCursor`](crate::drive::tree::IdCursor) should take in
    /// this volume: [`IDS_PER_STEP`] per [`PAGE_TARGET`] of its pages'
    /// target, so that a burst of creates still fills one page before
    /// the next when the pages are larger.
    pub fn ids_per_step(&self) -> u32 {
        IDS_PER_STEP * (page_target(self.bits) / PAGE_TARGET) as u32
    }

    /// The names of the page objects it names (empty buckets have none).
    pub fn page_keys(&self, vol: &[u8; 16]) -> HashSet<String> {
        self.pages
            .iter()
            .filter(|h| **h != EMPTY_PAGE)
            .map(|h| page_key(vol, h))
            .collect()
    }
}

/// What a checkpoint writes: the page bodies to seal (bucket, encoded
/// body) and, for the other buckets, the previous checkpoint's pages.
#[derive(Debug)]
pub struct PagePlan {
    index: PageIndex,
    fresh: Vec<(u32, Vec<u8>)>,
}

impl PagePlan {
    /// Number of pages this checkpoint encodes afresh.
    pub fn fresh_pages(&self) -> usize {
        self.fresh.len()
    }
}

/// The average page a checkpoint of `2^bits` buckets aims at.
fn page_target(bits: u8) -> u64 {
    if bits >= LARGE_FROM_BITS {
        LARGE_PAGE_TARGET
    } else {
        PAGE_TARGET
    }
}

/// The smallest bucket count (as bits) whose average page holds at most
/// its [`page_target`] in bytes of `total`.
fn fit_bits(total: u64) -> u8 {
    let mut bits = 0;
    while bits < MAX_BUCKET_BITS && total > page_target(bits) << bits {
        bits += 1;
    }
    bits
}

/// Encodes `nodes` (sorted here) as one page body per bucket.
fn encode_buckets<'a>(groups: impl Iterator<Item = (u32, Vec<&'a Node>)>) -> Vec<(u32, Vec<u8>)> {
    groups
        .map(|(b, mut nodes)| {
            nodes.sort_unstable_by_key(|n| n.id);
            (b, meta::encode_page_body(nodes.into_iter()))
        })
        .collect()
}

/// Whether pages averaging `total >> bits` bytes are within the band
/// that keeps `bits`: a quarter to twice its [`page_target`] (hysteresis:
/// a fitted count sits inside it, so a drive refits once per doubling or
/// halving, never at every checkpoint).
fn in_band(total: u64, bits: u8) -> bool {
    let average = total >> bits;
    let target = page_target(bits);
    (average <= 2 * target || bits == MAX_BUCKET_BITS) && (average >= target / 4 || bits == 0)
}

/// A plan writing every page of `nodes` under `generation`, with the
/// bucket count of the last checkpoint (`keep`) while the pages stay in
/// its band, else fitted afresh: the count a drive grew into does not
/// change because its pages are rewritten (a new generation, or pages
/// too old to reuse).
fn plan_all<'a>(
    nodes: impl Iterator<Item = &'a Node> + Clone,
    generation: u32,
    keep: Option<u8>,
) -> PagePlan {
    let total: u64 = nodes.clone().map(|n| n.encoded_len() as u64).sum();
    let bits = keep
        .filter(|b| in_band(total, *b))
        .unwrap_or_else(|| fit_bits(total));
    let mut groups: Vec<Vec<&Node>> = vec![Vec::new(); 1 << bits];
    for n in nodes {
        groups[bucket_of(n.id, bits) as usize].push(n);
    }
    let fresh = encode_buckets(groups.into_iter().enumerate().map(|(b, g)| (b as u32, g)));
    let sizes = fresh.iter().map(|(_, body)| body.len() as u64).collect();
    PagePlan {
        index: PageIndex {
            generation,
            bits,
            pages: vec![EMPTY_PAGE; 1 << bits],
            sizes,
        },
        fresh,
    }
}

/// Plans a checkpoint of `tree` under `generation` after the checkpoint
/// `last`: when its pages may be reused (`reuse`) and are of the same
/// generation, only the buckets holding an id of `touched` (nodes changed,
/// added or removed since `last`) are encoded, unless the average page has
/// left its band ([`in_band`]: then the bucket count is fitted again and
/// every page rewritten). Otherwise every page is written, in `last`'s
/// bucket count while the pages stay in its band.
pub fn plan_pages(
    tree: &Tree,
    last: Option<&PageIndex>,
    reuse: bool,
    touched: &HashSet<u64>,
    generation: u32,
) -> PagePlan {
    let nodes = || tree.nodes.values().map(|n| &**n);
    let Some(prev) = last.filter(|p| reuse && p.generation == generation) else {
        return plan_all(nodes(), generation, last.map(|p| p.bits));
    };
    let bits = prev.bits;
    let mut groups: HashMap<u32, Vec<&Node>> = touched
        .iter()
        .map(|id| (bucket_of(*id, bits), Vec::new()))
        .collect();
    if !groups.is_empty() {
        for n in tree.nodes.values() {
            if let Some(g) = groups.get_mut(&bucket_of(n.id, bits)) {
                g.push(n);
            }
        }
    }
    let fresh = encode_buckets(groups.into_iter());
    let mut index = prev.clone();
    for (b, body) in &fresh {
        index.sizes[*b as usize] = body.len() as u64;
        index.pages[*b as usize] = EMPTY_PAGE;
    }
    if !in_band(index.sizes.iter().sum(), bits) {
        return plan_all(nodes(), generation, None);
    }
    PagePlan { index, fresh }
}

/// Seals and puts (Create-only) the plan's fresh pages under the key of
/// its generation; returns the complete index.
async fn put_pages(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    plan: PagePlan,
) -> Result<PageIndex> {
    let PagePlan { mut index, fresh } = plan;
    let key = keys.key(index.generation).ok_or_else(|| {
        DriveError::Invalid(format!("no key for generation {}", index.generation))
    })?;
    let (volume, generation, bits) = (keys.volume, index.generation, index.bits);
    let sealed = stream::iter(fresh)
        .map(|(bucket, body)| async move {
            let place = PagePlace {
                volume,
                generation,
                bucket,
                bucket_bits: bits,
            };
            if body == meta::encode_page_body(std::iter::empty()) {
                return Ok((bucket, EMPTY_PAGE));
            }
            let bytes = meta::seal_page(&place, key, &body);
            let hash = meta::sha256(&bytes);
            match store
                .put(
                    &page_key(&volume, &hash),
                    Bytes::from(bytes),
                    PutMode::Create,
                )
                .await
            {
                Ok(_) | Err(StoreError::PreconditionFailed { .. }) => Ok((bucket, hash)),
                Err(e) => Err(DriveError::from(e)),
            }
        })
        .buffer_unordered(PAGES_IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    for (bucket, hash) in sealed {
        index.pages[bucket as usize] = hash;
    }
    Ok(index)
}

/// Writes a checkpoint of the state after entry `head`: the plan's pages,
/// then the root signed by `signer` (Create-only: a root that already
/// exists is left alone). Returns the new index and whether this call
/// wrote the root.
#[allow(clippy::too_many_arguments)]
pub async fn write_checkpoint(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    signer: &SigningKey,
    card: &[u8; 32],
    head: Head,
    clients: BTreeMap<[u8; 16], u64>,
    plan: PagePlan,
) -> Result<(PageIndex, bool)> {
    let index = put_pages(store, keys, plan).await?;
    let key = keys.key(index.generation).expect("checked by put_pages");
    let sh = SignedHead {
        volume: keys.volume,
        seq: head.seq,
        generation: index.generation,
        writer: *card,
        chain: head.hash,
    };
    let root = CheckpointRoot {
        clients,
        bucket_bits: index.bits,
        pages: index.pages.clone(),
    };
    let bytes = meta::seal_signed(SNAPSHOT_MAGIC, &sh, key, signer, &root.encode());
    match store
        .put(
            &snapshot_key(&keys.volume, head.seq),
            Bytes::from(bytes),
            PutMode::Create,
        )
        .await
    {
        Ok(_) => Ok((index, true)),
        Err(StoreError::PreconditionFailed { .. }) => Ok((index, false)),
        Err(e) => Err(e.into()),
    }
}

/// Writes a checkpoint of `tree` after entry `head`, every page afresh
/// under the current generation.
pub async fn write_snapshot(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    signer: &SigningKey,
    card: &[u8; 32],
    head: Head,
    tree: &Tree,
) -> Result<()> {
    let plan = plan_all(tree.nodes.values().map(|n| &**n), keys.current().0, None);
    write_checkpoint(store, keys, signer, card, head, tree.clients.clone(), plan).await?;
    Ok(())
}

/// A checkpoint as loaded: the head it covers, the tree it holds (nodes
/// and clients' progress) and its pages.
#[derive(Debug)]
pub struct Checkpoint {
    pub head: Head,
    pub tree: Tree,
    pub index: PageIndex,
}

/// [`checkpoint_at_or_before`] without the pages' index (the state only).
pub async fn snapshot_at_or_before(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    seq: u64,
) -> Result<Option<(Head, Tree)>> {
    Ok(checkpoint_at_or_before(store, keys, seq)
        .await?
        .map(|c| (c.head, c.tree)))
}

/// The newest checkpoint covering no entry after `seq`, verified with its
/// pages. One that fails verification is an error (never silently
/// skipped: skipping would let the store choose which state we see). One
/// sealed under another generation than the newest keyring is not used
/// (`None`: replay the log from the start): only current writers vouch for
/// a state.
pub async fn checkpoint_at_or_before(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    seq: u64,
) -> Result<Option<Checkpoint>> {
    let prefix = snapshot_prefix(&keys.volume);
    let list = store.list_all(&prefix).await?;
    let Some(meta) = list.iter().rev().find(|m| {
        m.key
            .strip_prefix(&prefix)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .is_none_or(|s| s <= seq)
    }) else {
        return Ok(None);
    };
    let bytes = get(store, &meta.key).await?;
    let current = keys.current().0;
    match meta::peek_signed(SNAPSHOT_MAGIC, &bytes) {
        Ok(h) if h.generation < current => {
            // Written before the newest rotation (older ones too): a member
            // removed since could have signed it. Replay the log instead.
            tracing::info!(snapshot = %meta.key, "snapshot predates the current keyring generation; not used");
            return Ok(None);
        }
        Ok(h) if h.generation > current => {
            // A rotation newer than our keys (or a forged generation):
            // replaying the log meets it and reloads the keys.
            tracing::info!(snapshot = %meta.key, "snapshot of a keyring generation not loaded yet; replaying the log");
            return Ok(None);
        }
        _ => {}
    }
    open_checkpoint(store, keys, &meta.key, &bytes)
        .await
        .map(Some)
}

/// The checkpoint root `v/<volume>/s/<seq>` whose SHA-256 is `hash` (the
/// one a log base names), loaded whatever keyring generation sealed it:
/// the drive owner vouched for it when collecting the log before it.
pub async fn attested_checkpoint(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    seq: u64,
    hash: &[u8; 32],
) -> Result<Checkpoint> {
    let key = snapshot_key(&keys.volume, seq);
    let bytes = get(store, &key).await?;
    if meta::sha256(&bytes) != *hash {
        return Err(DriveError::tampered(
            &key,
            "checkpoint differs from the one the log base names",
        ));
    }
    open_checkpoint(store, keys, &key, &bytes).await
}

/// The page hashes a checkpoint root names (signature, name and layout
/// checked; the pages themselves are not read).
pub fn root_pages(keys: &VolumeKeys, key: &str, bytes: &[u8]) -> Result<Vec<[u8; 32]>> {
    Ok(open_root(keys, key, bytes)?.1.pages)
}

/// Opens the signed root `key` holding `bytes`: signature, name, layout.
fn open_root(keys: &VolumeKeys, key: &str, bytes: &[u8]) -> Result<(SignedHead, CheckpointRoot)> {
    let (head, payload) = open_signed(keys, SNAPSHOT_MAGIC, key, bytes)?;
    if key != snapshot_key(&keys.volume, head.seq) {
        return Err(DriveError::tampered(
            key,
            "snapshot stored under another name",
        ));
    }
    // An unknown payload layout is refused as a format this build does
    // not read (layout 1, the single-object snapshot, was never released).
    let root = CheckpointRoot::decode(&payload).map_err(|e| DriveError::unreadable(key, e))?;
    Ok((head, root))
}

/// Verifies and loads the checkpoint whose root `key` holds `bytes`.
async fn open_checkpoint(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    key: &str,
    bytes: &[u8],
) -> Result<Checkpoint> {
    let (head, root) = open_root(keys, key, bytes)?;
    // The generation of the covered entry bounds the next one's.
    let entry_key = log_key(&keys.volume, head.seq);
    let entry = get(store, &entry_key).await?;
    if meta::sha256(&entry) != head.chain {
        return Err(DriveError::tampered(
            &entry_key,
            format!("log entry differs from the one snapshot {key} covers"),
        ));
    }
    let entry_generation = meta::peek_signed(ENTRY_MAGIC, &entry)
        .map_err(|e| DriveError::tampered(&entry_key, e.to_string()))?
        .generation;
    let (pages, sizes) = load_pages(store, keys, key, head.generation, &root).await?;
    // Filling the node tables (sized once) is the one serial step: off
    // the async thread too.
    let clients = root.clients;
    let tree = tokio::task::spawn_blocking(move || Tree::from_pages(pages, clients))
        .await
        .map_err(|e| DriveError::Invalid(format!("building a checkpoint's tree: {e}")))?;
    Ok(Checkpoint {
        head: Head {
            seq: head.seq,
            hash: head.chain,
            generation: entry_generation,
        },
        index: PageIndex {
            generation: head.generation,
            bits: root.bucket_bits,
            pages: root.pages,
            sizes,
        },
        tree,
    })
}

/// Fetches and opens every page `root` (the object `root_key`, sealed
/// under `generation`) names, `PAGES_IN_FLIGHT` at a time: each page's
/// nodes made ready for a tree ([`PageNodes`], beside the decode on the
/// blocking pool), and each bucket's encoded body length.
async fn load_pages(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    root_key: &str,
    generation: u32,
    root: &CheckpointRoot,
) -> Result<(Vec<PageNodes>, Vec<u64>)> {
    let key = keys.key(generation).expect("the root opened with it");
    let volume = keys.volume;
    let bits = root.bucket_bits;
    let empty_len = meta::encode_page_body(std::iter::empty()).len() as u64;
    let mut sizes = vec![empty_len; root.pages.len()];
    let named: Vec<(usize, [u8; 32])> = (root.pages.iter().copied().enumerate())
        .filter(|(_, h)| *h != EMPTY_PAGE)
        .collect();
    let mut pages = stream::iter(named)
        .map(|(bucket, hash)| async move {
            let name = page_key(&volume, &hash);
            let bytes = match store.get(&name, GetOptions::default()).await {
                Ok(r) => r.bytes,
                Err(StoreError::NotFound { .. }) => {
                    return Err(DriveError::tampered(
                        &name,
                        format!("page of checkpoint {root_key} missing"),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            // Hashing, decrypting and decoding on the blocking pool: the
            // pages in flight are opened side by side on every core.
            let (key, root_key) = (key.clone(), root_key.to_string());
            let open = move || {
                if meta::sha256(&bytes) != hash {
                    return Err(DriveError::tampered(
                        &name,
                        format!("page differs from the one checkpoint {root_key} names"),
                    ));
                }
                let place = PagePlace {
                    volume,
                    generation,
                    bucket: bucket as u32,
                    bucket_bits: bits,
                };
                let page = meta::open_page(&place, &key, &bytes).map_err(|e| {
                    DriveError::tampered(&name, format!("page {bucket} of {root_key}: {e}"))
                })?;
                let size = page.iter().map(|n| n.encoded_len() as u64).sum::<u64>() + empty_len;
                Ok((bucket, PageNodes::new(page), size))
            };
            tokio::task::spawn_blocking(open)
                .await
                .map_err(|e| DriveError::Invalid(format!("opening a checkpoint page: {e}")))?
        })
        .buffer_unordered(PAGES_IN_FLIGHT);
    let mut nodes = Vec::with_capacity(root.pages.len());
    while let Some(r) = pages.next().await {
        let (bucket, page, size) = r?;
        sizes[bucket] = size;
        nodes.push(page);
    }
    Ok((nodes, sizes))
}

#[cfg(test)]
mod tests {
    use super::super::{VolumeKeys, seal_entry};
    use super::*;
    use crate::drive::identity::{Identity, Role};
    use crate::drive::tree::{IdCursor, ROOT};
    use crate::format::crypto::SecretKey;
    use crate::format::meta::{AttrChange, Batch, KIND_DIR, KIND_FILE, Op, Time};
    use crate::store::MemoryStore;

    /// A volume of one generation whose owner is `me`.
    fn keys(me: &Identity) -> VolumeKeys {
        VolumeKeys {
            drive_id: [1; 16],
            volume: [2; 16],
            generations: [(
                0,
                (SecretKey::random(), vec![me.member(Role::Owner).record()]),
            )]
            .into(),
            collected: Default::default(),
            name: b"v".to_vec(),
        }
    }

    /// Puts log entry `seq` (empty) and returns the head after it.
    async fn entry(store: &MemoryStore, keys: &VolumeKeys, me: &Identity, seq: u64) -> Head {
        let batch = Batch {
            client: [3; 16],
            client_seq: seq,
            time: Time::default(),
            ops: Vec::new(),
        };
        let bytes = seal_entry(keys, &me.ed25519, &me.card_id, seq, &[0; 32], &batch);
        let hash = meta::sha256(&bytes);
        store
            .put(&log_key(&keys.volume, seq), bytes.into(), PutMode::Create)
            .await
            .unwrap();
        Head {
            seq,
            hash,
            generation: 0,
        }
    }

    fn node(id: u64, kind: u8) -> Node {
        Node {
            id,
            kind,
            perm: 0o644,
            ..Default::default()
        }
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A random op on `tree`: create, change, rename (over existing names
    /// too, or exchanging two), link or remove files and directories.
    fn random_op(tree: &Tree, rng: &mut Rng) -> Op {
        let mut dirs: Vec<u64> = tree
            .nodes
            .values()
            .filter(|n| n.kind == KIND_DIR)
            .map(|n| n.id)
            .collect();
        dirs.sort_unstable();
        let dir = dirs[rng.below(dirs.len())];
        let entries: Vec<(Vec<u8>, u64)> = tree.nodes[&dir]
            .entries
            .iter()
            .map(|(k, l)| (k.to_vec(), l.node))
            .collect();
        let name = format!("n{}", rng.below(40)).into_bytes();
        let t = Time {
            secs: rng.below(1000) as i64,
            nanos: 0,
        };
        let pick = rng.below(11);
        if entries.is_empty() || pick < 3 {
            let kind = if pick == 0 { KIND_DIR } else { KIND_FILE };
            return Op::Create {
                parent: dir,
                name,
                node: Box::new(node(
                    IdCursor::default().fresh(kind, |id| tree.nodes.contains_key(&id)),
                    kind,
                )),
            };
        }
        let (old, id) = entries[rng.below(entries.len())].clone();
        match pick {
            3 => Op::SetAttr {
                node: id,
                change: AttrChange {
                    perm: Some(rng.below(0o777) as u16),
                    ..Default::default()
                },
            },
            4 => Op::SetXattr {
                node: id,
                name: b"user.x".to_vec(),
                value: Some(vec![1; rng.below(300)]),
                ctime: t,
            },
            5 | 6 => Op::Rename {
                parent: dir,
                name: old,
                newparent: dirs[rng.below(dirs.len())],
                newname: name,
                exchange: false,
                time: t,
            },
            8 => {
                // With an entry of any directory that has one.
                let dir2 = dirs[rng.below(dirs.len())];
                let (dir2, names2) = match tree.nodes[&dir2].entries.keys().next() {
                    Some(_) => (dir2, &tree.nodes[&dir2].entries),
                    None => (dir, &tree.nodes[&dir].entries),
                };
                let other = names2.keys().nth(rng.below(names2.len())).unwrap().to_vec();
                Op::Rename {
                    parent: dir,
                    name: old,
                    newparent: dir2,
                    newname: other,
                    exchange: true,
                    time: t,
                }
            }
            7 => Op::Link {
                parent: dirs[rng.below(dirs.len())],
                name,
                node: id,
                ctime: t,
            },
            _ => Op::Unlink {
                parent: dir,
                name: old,
                node: id,
                time: t,
            },
        }
    }

    /// Checkpoints written after random changes, each reusing the pages
    /// of the one before, load to exactly the tree they were taken of;
    /// a small change rewrites only the pages holding what it touched.
    #[tokio::test]
    async fn incremental_checkpoints_load_to_the_tree() {
        let store = MemoryStore::new();
        let me = Identity::generate();
        let keys = keys(&me);
        let mut tree = Tree::default();
        let mut touched = HashSet::new();
        let root = Op::Create {
            parent: 0,
            name: Vec::new(),
            node: Box::new(node(ROOT, KIND_DIR)),
        };
        tree.apply_tracked(&root, &mut touched).unwrap();
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for _ in 0..3000 {
            let op = random_op(&tree, &mut rng);
            let _ = tree.apply_tracked(&op, &mut touched);
        }
        let mut prev: Option<PageIndex> = None;
        for seq in 0..12 {
            let head = entry(&store, &keys, &me, seq).await;
            let plan = plan_pages(&tree, prev.as_ref(), true, &touched, 0);
            let buckets: HashSet<u32> = prev
                .as_ref()
                .map(|p| touched.iter().map(|id| bucket_of(*id, p.bits)).collect())
                .unwrap_or_default();
            if prev.is_some() && plan.index.bits == prev.as_ref().unwrap().bits {
                assert_eq!(plan.fresh_pages(), buckets.len(), "round {seq}");
            }
            let (index, written) = write_checkpoint(
                &store,
                &keys,
                &me.ed25519,
                &me.card_id,
                head,
                tree.clients.clone(),
                plan,
            )
            .await
            .unwrap();
            assert!(written);
            touched.clear();
            let c = checkpoint_at_or_before(&store, &keys, u64::MAX)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(c.head, head);
            assert_eq!(c.index, index);
            assert_eq!(c.tree.all_nodes(), tree.all_nodes(), "round {seq}");
            assert_eq!(c.tree.clients, tree.clients, "round {seq}");
            assert!(index.bits >= 3, "{} buckets", index.pages.len());
            prev = Some(index);
            let changes = if seq % 4 == 3 { 400 } else { 1 + seq as usize };
            for _ in 0..changes {
                let op = random_op(&tree, &mut rng);
                let _ = tree.apply_tracked(&op, &mut touched);
            }
        }
        // The checkpoint at or before an older seq is that one.
        let c = checkpoint_at_or_before(&store, &keys, 4)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.head.seq, 4);
    }

    /// A rewrite of every page (a new generation, or pages too old to
    /// reuse) keeps the bucket count the drive grew into while its pages
    /// stay in that count's band, and fits the count afresh once they
    /// leave it (or with no checkpoint before).
    #[test]
    fn a_full_rewrite_keeps_the_bucket_count_while_in_band() {
        let nodes: Vec<Node> = (1..=200u64).map(|i| node(i, KIND_FILE)).collect();
        let total: u64 = nodes.iter().map(|n| n.encoded_len() as u64).sum();
        let tree = Tree::from_pages(vec![PageNodes::new(nodes)], BTreeMap::new());
        let fitted = fit_bits(total);
        let kept = fitted + 1;
        assert!(in_band(total, kept), "{total} bytes in band at {kept} bits");
        let last = |bits: u8| PageIndex {
            generation: 0,
            bits,
            pages: vec![EMPTY_PAGE; 1 << bits],
            sizes: vec![0; 1 << bits],
        };
        let none = HashSet::new();
        for (reuse, generation) in [(false, 0), (true, 1)] {
            let plan = plan_pages(&tree, Some(&last(kept)), reuse, &none, generation);
            assert_eq!(
                plan.index.bits, kept,
                "reuse {reuse}, generation {generation}"
            );
            assert_eq!(plan.fresh_pages(), 1 << kept);
        }
        let far = kept + 4;
        assert!(!in_band(total, far));
        let plan = plan_pages(&tree, Some(&last(far)), false, &none, 0);
        assert_eq!(plan.index.bits, fitted);
        let plan = plan_pages(&tree, None, true, &none, 0);
        assert_eq!(plan.index.bits, fitted);
    }

    /// A volume of larger pages has its ids' fill positions take as many
    /// more files.
    #[test]
    fn ids_per_step_follow_the_page_target() {
        let index = |bits: u8| PageIndex {
            generation: 0,
            bits,
            pages: Vec::new(),
            sizes: Vec::new(),
        };
        assert_eq!(index(0).ids_per_step(), IDS_PER_STEP);
        assert_eq!(index(LARGE_FROM_BITS - 1).ids_per_step(), IDS_PER_STEP);
        assert_eq!(index(LARGE_FROM_BITS).ids_per_step(), 2 * IDS_PER_STEP);
        assert_eq!(index(MAX_BUCKET_BITS).ids_per_step(), 2 * IDS_PER_STEP);
    }

    #[test]
    fn bucket_bits_fit_the_page_target() {
        assert_eq!(fit_bits(0), 0);
        assert_eq!(fit_bits(PAGE_TARGET), 0);
        assert_eq!(fit_bits(PAGE_TARGET + 1), 1);
        assert_eq!(fit_bits(PAGE_TARGET << 12), 12);
        assert_eq!(fit_bits((PAGE_TARGET << 12) + 1), 13);
        assert_eq!(fit_bits(LARGE_PAGE_TARGET << 13), 13);
        assert_eq!(fit_bits((LARGE_PAGE_TARGET << 13) + 1), 14);
        assert_eq!(fit_bits(66 << 20), 13);
        assert_eq!(fit_bits(211 << 20), 14);
        assert_eq!(fit_bits(u64::MAX), MAX_BUCKET_BITS);
    }
}
