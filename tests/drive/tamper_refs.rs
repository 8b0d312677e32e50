//! Block refs named in signed metadata by a writer (here the owner, who
//! holds every key): a block ref copied with its key into another file
//! reads the same bytes there (what clone copies rely on), and a ref whose
//! key belongs to another block is `Tampered` naming the object, never
//! wrong bytes.

use crate::support::drive::*;
use cardfs::drive::*;
use cardfs::format::meta::{self, Batch, BlockRef, ENTRY_MAGIC, Keyring, Op, SignedHead, Time};
use cardfs::store::PutMode;

/// The owner's view of the root volume's log: the volume key, the
/// entries' bytes, and the newest block refs of each named file.
struct Log {
    volume: [u8; 16],
    key: cardfs::format::crypto::SecretKey,
    entries: Vec<Vec<u8>>,
    /// name → (node id, size, block 0).
    files: std::collections::BTreeMap<Vec<u8>, (u64, u64, BlockRef)>,
}

async fn read_log(env: &Env) -> Log {
    let store = env.store.as_ref();
    let owner = env.id.ed25519.verifying_key();
    let ring = &keys_under(store, "k/").await[0];
    let (ring, key) =
        Keyring::open(&object_bytes(store, ring).await, &owner, &env.id.x25519).unwrap();
    let prefix = format!("v/{}/l/", cardfs::format::hex::encode(&ring.volume));
    let mut log = Log {
        volume: ring.volume,
        key,
        entries: Vec::new(),
        files: Default::default(),
    };
    let mut names = std::collections::BTreeMap::new();
    for name in keys_under(store, &prefix).await {
        let bytes = object_bytes(store, &name).await;
        let (_, payload) = meta::open_signed(ENTRY_MAGIC, &bytes, &owner, &log.key).unwrap();
        for op in Batch::decode(&payload).unwrap().ops {
            match op {
                Op::Create { name, node, .. } => {
                    names.insert(node.id, name);
                }
                Op::SetContent {
                    node, size, blocks, ..
                } => {
                    let name = names[&node].clone();
                    log.files.insert(name, (node, size, blocks[0].1.clone()));
                }
                _ => {}
            }
        }
        log.entries.push(bytes);
    }
    log
}

/// Appends an entry by the owner setting block 0 of each `(node, size,
/// block)`.
async fn append(env: &Env, log: &Log, edits: Vec<(u64, u64, BlockRef)>) {
    let seq = log.entries.len() as u64;
    let head = SignedHead {
        volume: log.volume,
        seq,
        generation: 0,
        writer: env.id.card_id,
        chain: meta::sha256(log.entries.last().unwrap()),
    };
    let ops = edits
        .into_iter()
        .map(|(node, size, block)| Op::SetContent {
            node,
            base: 0,
            version: 1000 + node,
            size,
            drop_from: 0,
            blocks: vec![(0, block)],
            mtime: Time { secs: 5, nanos: 0 },
        })
        .collect();
    let batch = Batch {
        client: [7; 16],
        client_seq: 1,
        time: Time { secs: 5, nanos: 0 },
        ops,
    };
    let bytes = meta::seal_signed(
        ENTRY_MAGIC,
        &head,
        &log.key,
        &env.id.ed25519,
        &batch.encode(),
    );
    let name = format!(
        "v/{}/l/{seq:016x}",
        cardfs::format::hex::encode(&log.volume)
    );
    env.store
        .put(&name, bytes.into(), PutMode::Create)
        .await
        .unwrap();
}

#[tokio::test]
async fn block_refs_copy_between_files_and_a_swapped_key_is_tampered() {
    let env = Env::new().await;
    let d = env.open().await;
    let (a, b) = (
        put(&d, ROOT_INO, "a", &vec![b'a'; 200_000]).await,
        put(&d, ROOT_INO, "b", &vec![b'b'; 200_000]).await,
    );
    let c = put(&d, ROOT_INO, "c", b"c").await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    let log = read_log(&env).await;
    let (na, sa, ra) = log.files[&b"a".to_vec()].clone();
    let (nb, sb, rb) = log.files[&b"b".to_vec()].clone();
    let (nc, _, _) = log.files[&b"c".to_vec()].clone();

    // File c takes a's block ref as is: it reads a's bytes, with no new
    // object in the store.
    let objects = keys_under(env.store.as_ref(), "c/").await;
    append(&env, &log, vec![(nc, sa, ra.clone())]).await;
    let d = env.open_with("copy").await;
    assert_eq!(read_all(&d, c).await, vec![b'a'; 200_000]);
    assert_eq!(read_all(&d, a).await, vec![b'a'; 200_000]);
    d.shutdown().await.unwrap();
    assert_eq!(keys_under(env.store.as_ref(), "c/").await, objects);

    // Keys swapped: a's ref names a's object with b's key and the reverse.
    let log = read_log(&env).await;
    let swapped_a = BlockRef {
        key: rb.key.clone(),
        ..ra.clone()
    };
    let swapped_b = BlockRef {
        key: ra.key.clone(),
        ..rb.clone()
    };
    append(&env, &log, vec![(na, sa, swapped_a), (nb, sb, swapped_b)]).await;
    let d = env.open_with("swapped").await;
    for (ino, block) in [(a, &ra), (b, &rb)] {
        let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
        let err = d.read(ino, fh, 0, 4096).await.unwrap_err();
        d.release(ino, fh).await.unwrap();
        let want = format!("c/{}", cardfs::format::hex::encode(&block.id));
        assert_eq!(tampered_object(err), want);
    }
    d.shutdown().await.unwrap();
}
