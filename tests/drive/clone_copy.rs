//! `copy_file_range` within a drive (engine level, MemoryStore): whole
//! aligned blocks share the source's block objects (the copy uploads only
//! metadata), partial blocks are copied as bytes, and writes to either copy
//! afterwards leave the other as it was.

use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;
use cardfs::store::ObjectStore;

/// (objects, bytes) stored under `prefix`.
async fn stored(store: &dyn ObjectStore, prefix: &str) -> (usize, u64) {
    let all = store.list_all(prefix).await.unwrap();
    (all.len(), all.iter().map(|o| o.size).sum())
}

async fn copy(d: &Drive, src: Ino, off_in: u64, dst: Ino, off_out: u64, len: u64) -> u64 {
    let fi = d.open(src, libc::O_RDONLY).await.unwrap();
    let fo = d.open(dst, libc::O_RDWR).await.unwrap();
    let n = d
        .copy_range((src, fi, off_in), (dst, fo, off_out), len)
        .await
        .unwrap();
    d.release(src, fi).await.unwrap();
    d.release(dst, fo).await.unwrap();
    n
}

async fn write_at(d: &Drive, ino: Ino, offset: u64, data: &[u8]) {
    let fh = d.open(ino, libc::O_RDWR).await.unwrap();
    d.write(ino, fh, offset, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_64_mib_uploads_only_metadata_and_the_copies_diverge() {
    let env = Env::new().await;
    let d = env.open().await;
    let data = pattern((64 << 20) + 12_345, 5);
    let src = put(&d, ROOT_INO, "big", &data).await;
    sync(&d).await;
    let (objects, content) = stored(env.store.as_ref(), "c/").await;
    let (_, meta_before) = stored(env.store.as_ref(), "v/").await;

    let dst = put(&d, ROOT_INO, "copy", b"").await;
    let n = copy(&d, src, 0, dst, 0, u64::MAX).await;
    assert_eq!(n, data.len() as u64);
    sync(&d).await;
    // No content object was written: the copy names the source's blocks.
    assert_eq!(stored(env.store.as_ref(), "c/").await, (objects, content));
    let (_, meta_after) = stored(env.store.as_ref(), "v/").await;
    let uploaded = meta_after - meta_before;
    assert!(uploaded < 64 << 10, "{uploaded} bytes of metadata");
    assert_eq!(read_all(&d, dst).await, data);

    // Writes to either copy leave the other as it was.
    write_at(&d, dst, (1 << 20) + 5, b"changed in the copy").await;
    write_at(&d, src, 3 << 20, b"changed in the source").await;
    let size = SetAttr {
        size: Some(40 << 20),
        ..Default::default()
    };
    d.setattr(src, None, size).await.unwrap();
    sync(&d).await;
    let mut want_copy = data.clone();
    want_copy[(1 << 20) + 5..(1 << 20) + 24].copy_from_slice(b"changed in the copy");
    let mut want_src = data[..40 << 20].to_vec();
    want_src[3 << 20..(3 << 20) + 21].copy_from_slice(b"changed in the source");
    // On a fresh client, from the store.
    d.shutdown().await.unwrap();
    let d = env.open_with("fresh").await;
    assert_eq!(read_all(&d, dst).await, want_copy);
    assert_eq!(read_all(&d, src).await, want_src);
    d.shutdown().await.unwrap();
}

#[tokio::test]
async fn unaligned_and_partial_copies_are_byte_exact() {
    let env = Env::new().await;
    let d = env.open().await;
    let data = pattern((3 << 20) + 777, 9);
    let src = put(&d, ROOT_INO, "src", &data).await;
    let old = pattern((5 << 20) + 3, 2);
    sync(&d).await;
    let cases: [(u64, u64, u64); 5] = [
        (0, 0, 1 << 20),              // one whole block
        (100, 100, 2 << 20),          // same phase, partial ends
        (100, 0, 3 << 20),            // different phase: bytes only
        (1 << 20, 2 << 20, u64::MAX), // to the source's end, inside old
        ((1 << 20) + 9, 5, 10),       // a few bytes
    ];
    for (i, (off_in, off_out, len)) in cases.into_iter().enumerate() {
        let dst = put(&d, ROOT_INO, &format!("dst{i}"), &old).await;
        let n = copy(&d, src, off_in, dst, off_out, len).await;
        let want_n = len.min(data.len() as u64 - off_in);
        assert_eq!(n, want_n, "case {i}");
        let mut want = old.clone();
        let (a, b) = (off_out as usize, (off_out + n) as usize);
        if want.len() < b {
            want.resize(b, 0);
        }
        want[a..b].copy_from_slice(&data[off_in as usize..(off_in + n) as usize]);
        sync(&d).await;
        assert_eq!(read_all(&d, dst).await, want, "case {i}");
    }
    assert_eq!(read_all(&d, src).await, data);
    d.shutdown().await.unwrap();
}
