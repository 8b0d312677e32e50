//! File operations of the drive engine over a MemoryStore: results,
//! errno values, and that reopening from the store gives the same tree.

use crate::support::drive::*;
use cardfs::drive::*;

fn errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

#[tokio::test]
async fn create_write_read_reopen() {
    let env = Env::new().await;
    let d = env.open().await;
    let dir = d.mkdir(ROOT_INO, os("docs"), 0o755, WHO).await.unwrap();
    assert_eq!(dir.kind, FileKind::Dir);
    assert_eq!(dir.uid, 1000);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let ino = put(&d, dir.ino, "big.bin", &data).await;
    put(&d, ROOT_INO, "small", b"hello").await;
    assert_eq!(read_all(&d, ino).await, data);
    assert_eq!(d.getattr(ino).await.unwrap().size, data.len() as u64);
    sync(&d).await;
    d.shutdown().await.unwrap();

    // A second client with an empty cache sees the same tree and bytes.
    let d2 = env.open_with("other").await;
    assert_eq!(names(&d2, ROOT_INO).await, vec!["docs", "small"]);
    let ino2 = lookup(&d2, "docs/big.bin").await.unwrap();
    assert_eq!(ino2, ino, "inode numbers are stable node ids");
    assert_eq!(read_all(&d2, ino2).await, data);
    assert_eq!(
        read_all(&d2, lookup(&d2, "small").await.unwrap()).await,
        b"hello"
    );
}

#[tokio::test]
async fn errno_values() {
    let env = Env::new().await;
    let d = env.open().await;
    let f = put(&d, ROOT_INO, "f", b"x").await;
    let dir = d.mkdir(ROOT_INO, os("d"), 0o755, WHO).await.unwrap().ino;
    put(&d, dir, "inner", b"").await;
    assert_eq!(errno(d.lookup(ROOT_INO, os("missing")).await), libc::ENOENT);
    assert_eq!(
        errno(d.mkdir(ROOT_INO, os("f"), 0o755, WHO).await),
        libc::EEXIST
    );
    assert_eq!(
        errno(d.create(ROOT_INO, os("d"), 0o644, 0, WHO).await),
        libc::EEXIST
    );
    assert_eq!(errno(d.lookup(f, os("x")).await), libc::ENOTDIR);
    assert_eq!(errno(d.mkdir(f, os("x"), 0o755, WHO).await), libc::ENOTDIR);
    assert_eq!(errno(d.unlink(ROOT_INO, os("d")).await), libc::EISDIR);
    assert_eq!(errno(d.rmdir(ROOT_INO, os("f")).await), libc::ENOTDIR);
    assert_eq!(errno(d.rmdir(ROOT_INO, os("d")).await), libc::ENOTEMPTY);
    let long = "n".repeat(256);
    assert_eq!(
        errno(d.create(ROOT_INO, os(&long), 0o644, 0, WHO).await),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(d.lookup(ROOT_INO, os(&long)).await),
        libc::ENAMETOOLONG
    );
    assert!(
        d.create(ROOT_INO, os(&"n".repeat(255)), 0o644, 0, WHO)
            .await
            .is_ok()
    );
    assert_eq!(errno(d.open(dir, libc::O_WRONLY).await), libc::EISDIR);
    assert_eq!(errno(d.readlink(f).await), libc::EINVAL);
    assert_eq!(errno(d.link(dir, ROOT_INO, os("dl")).await), libc::EPERM);
    assert_eq!(errno(d.getxattr(f, os("user.none")).await), libc::ENODATA);
    assert_eq!(
        errno(
            d.setattr(
                dir,
                None,
                SetAttr {
                    size: Some(0),
                    ..Default::default()
                }
            )
            .await
        ),
        libc::EISDIR
    );
    // Moving a directory into itself.
    let sub = d.mkdir(dir, os("sub"), 0o755, WHO).await.unwrap().ino;
    assert_eq!(
        errno(
            d.rename(ROOT_INO, os("d"), sub, os("x"), RenameFlags::default())
                .await
        ),
        libc::EINVAL
    );
    // Directory over file and file over directory.
    assert_eq!(
        errno(
            d.rename(ROOT_INO, os("d"), ROOT_INO, os("f"), RenameFlags::default())
                .await
        ),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(
            d.rename(ROOT_INO, os("f"), ROOT_INO, os("d"), RenameFlags::default())
                .await
        ),
        libc::EISDIR
    );
    // Over a non-empty directory.
    let e = d.mkdir(ROOT_INO, os("e"), 0o755, WHO).await.unwrap().ino;
    assert_eq!(
        errno(
            d.rename(ROOT_INO, os("e"), ROOT_INO, os("d"), RenameFlags::default())
                .await
        ),
        libc::ENOTEMPTY
    );
    let _ = e;
}

#[tokio::test]
async fn read_only_drive_refuses_changes() {
    let env = Env::new().await;
    let d = env.open().await;
    let f = put(&d, ROOT_INO, "f", b"x").await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    let mut opts = env.opts("ro");
    opts.read_only = true;
    let ro = Drive::open_drive(env.store.clone(), env.id.clone(), opts)
        .await
        .unwrap();
    assert_eq!(read_all(&ro, f).await, b"x");
    assert_eq!(
        errno(ro.create(ROOT_INO, os("g"), 0o644, 0, WHO).await),
        libc::EROFS
    );
    assert_eq!(
        errno(ro.mkdir(ROOT_INO, os("g"), 0o755, WHO).await),
        libc::EROFS
    );
    assert_eq!(errno(ro.unlink(ROOT_INO, os("f")).await), libc::EROFS);
    assert_eq!(errno(ro.open(f, libc::O_WRONLY).await), libc::EROFS);
    assert_eq!(
        errno(ro.setxattr(f, os("user.a"), b"1", XattrSet::Any).await),
        libc::EROFS
    );
    assert_eq!(
        errno(
            ro.rename(ROOT_INO, os("f"), ROOT_INO, os("g"), RenameFlags::default())
                .await
        ),
        libc::EROFS
    );
}

#[tokio::test]
async fn rename_semantics() {
    let env = Env::new().await;
    let d = env.open().await;
    let a = put(&d, ROOT_INO, "a", b"A").await;
    let b = put(&d, ROOT_INO, "b", b"B").await;
    // Plain rename replaces the target.
    d.rename(ROOT_INO, os("a"), ROOT_INO, os("b"), RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(names(&d, ROOT_INO).await, vec!["b"]);
    assert_eq!(lookup(&d, "b").await.unwrap(), a);
    assert_eq!(errno(d.getattr(b).await), libc::ENOENT);
    // NOREPLACE refuses an existing target.
    put(&d, ROOT_INO, "c", b"C").await;
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    assert_eq!(
        errno(
            d.rename(ROOT_INO, os("b"), ROOT_INO, os("c"), noreplace)
                .await
        ),
        libc::EEXIST
    );
    d.rename(ROOT_INO, os("b"), ROOT_INO, os("new"), noreplace)
        .await
        .unwrap();
    // EXCHANGE swaps, across directories, files and directories.
    let dir = d.mkdir(ROOT_INO, os("dir"), 0o755, WHO).await.unwrap().ino;
    put(&d, dir, "inside", b"I").await;
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    assert_eq!(
        errno(
            d.rename(ROOT_INO, os("new"), ROOT_INO, os("nothing"), exchange)
                .await
        ),
        libc::ENOENT
    );
    d.rename(ROOT_INO, os("new"), ROOT_INO, os("dir"), exchange)
        .await
        .unwrap();
    assert_eq!(lookup(&d, "new").await.unwrap(), dir);
    assert_eq!(lookup(&d, "dir").await.unwrap(), a);
    assert_eq!(
        read_all(&d, lookup(&d, "new/inside").await.unwrap()).await,
        b"I"
    );
    // Directory moves update "..", link counts.
    let p = d.mkdir(ROOT_INO, os("p"), 0o755, WHO).await.unwrap().ino;
    let root_links = d.getattr(ROOT_INO).await.unwrap().nlink;
    d.rename(ROOT_INO, os("new"), p, os("moved"), RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(d.getattr(ROOT_INO).await.unwrap().nlink, root_links - 1);
    assert_eq!(d.getattr(p).await.unwrap().nlink, 3);
    assert_eq!(d.lookup(dir, os("..")).await.unwrap().ino, p);
    // Rename onto itself and onto another link of the same file: no-op.
    d.rename(
        ROOT_INO,
        os("dir"),
        ROOT_INO,
        os("dir"),
        RenameFlags::default(),
    )
    .await
    .unwrap();
    d.link(a, ROOT_INO, os("hard")).await.unwrap();
    d.rename(
        ROOT_INO,
        os("dir"),
        ROOT_INO,
        os("hard"),
        RenameFlags::default(),
    )
    .await
    .unwrap();
    assert_eq!(names(&d, ROOT_INO).await, vec!["c", "dir", "hard", "p"]);
    // Replacing an empty directory with a directory.
    d.mkdir(ROOT_INO, os("empty"), 0o755, WHO).await.unwrap();
    d.rename(
        ROOT_INO,
        os("p"),
        ROOT_INO,
        os("empty"),
        RenameFlags::default(),
    )
    .await
    .unwrap();
    assert!(lookup(&d, "empty/moved/inside").await.is_ok());
    sync(&d).await;
    d.shutdown().await.unwrap();
    let d2 = env.open_with("again").await;
    assert_eq!(
        names(&d2, ROOT_INO).await,
        vec!["c", "dir", "empty", "hard"]
    );
    assert_eq!(
        read_all(&d2, lookup(&d2, "empty/moved/inside").await.unwrap()).await,
        b"I"
    );
}

#[tokio::test]
async fn hard_links_and_unlink_while_open() {
    let env = Env::new().await;
    let d = env.open().await;
    let f = put(&d, ROOT_INO, "f", b"shared").await;
    let dir = d.mkdir(ROOT_INO, os("d"), 0o755, WHO).await.unwrap().ino;
    let attr = d.link(f, dir, os("g")).await.unwrap();
    assert_eq!(attr.nlink, 2);
    assert_eq!(errno(d.link(f, dir, os("g")).await), libc::EEXIST);
    d.unlink(ROOT_INO, os("f")).await.unwrap();
    assert_eq!(d.getattr(f).await.unwrap().nlink, 1);
    assert_eq!(
        read_all(&d, lookup(&d, "d/g").await.unwrap()).await,
        b"shared"
    );

    // Unlink while open: the handle keeps reading and writing.
    let fh = d.open(f, libc::O_RDWR).await.unwrap();
    d.unlink(dir, os("g")).await.unwrap();
    assert_eq!(errno(d.lookup(dir, os("g")).await), libc::ENOENT);
    assert_eq!(d.read(f, fh, 0, 100).await.unwrap(), b"shared");
    d.write(f, fh, 6, b"!").await.unwrap();
    assert_eq!(d.read(f, fh, 0, 100).await.unwrap(), b"shared!");
    assert_eq!(d.getattr(f).await.unwrap().nlink, 0);
    d.release(f, fh).await.unwrap();
    assert_eq!(errno(d.getattr(f).await), libc::ENOENT);
    sync(&d).await;
}

#[tokio::test]
async fn sparse_files_truncate_and_append() {
    let env = Env::new().await;
    let d = env.open().await;
    let (attr, fh) = d
        .create(ROOT_INO, os("s"), 0o600, libc::O_RDWR, WHO)
        .await
        .unwrap();
    let ino = attr.ino;
    let far = 5 * 1024 * 1024 + 123;
    d.write(ino, fh, far, b"end").await.unwrap();
    assert_eq!(d.getattr(ino).await.unwrap().size, far + 3);
    let hole = d.read(ino, fh, 1000, 4096).await.unwrap();
    assert_eq!(hole, vec![0u8; 4096]);
    d.fsync(ino, fh, false).await.unwrap();
    let a = d.getattr(ino).await.unwrap();
    assert!(
        a.blocks * 512 < 2 * 1024 * 1024,
        "holes take no space: {} blocks",
        a.blocks
    );
    // Truncate down into the middle of data, then up: the cut bytes are zeros.
    d.write(ino, fh, 0, &[7u8; 3000]).await.unwrap();
    d.setattr(
        ino,
        Some(fh),
        SetAttr {
            size: Some(1000),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    d.setattr(
        ino,
        Some(fh),
        SetAttr {
            size: Some(4000),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = d.read(ino, fh, 0, 5000).await.unwrap();
    assert_eq!(got.len(), 4000);
    assert!(got[..1000].iter().all(|b| *b == 7));
    assert!(got[1000..].iter().all(|b| *b == 0));
    d.release(ino, fh).await.unwrap();
    // Append mode writes at the end.
    let fh = d.open(ino, libc::O_WRONLY | libc::O_APPEND).await.unwrap();
    d.write(ino, fh, 0, b"tail").await.unwrap();
    d.release(ino, fh).await.unwrap();
    let all = read_all(&d, ino).await;
    assert_eq!(&all[4000..], b"tail");
    // O_TRUNC empties.
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.release(ino, fh).await.unwrap();
    assert_eq!(d.getattr(ino).await.unwrap().size, 0);
    sync(&d).await;
    d.shutdown().await.unwrap();
    let d2 = env.open_with("b").await;
    assert_eq!(d2.getattr(ino).await.unwrap().size, 0);
}

#[tokio::test]
async fn setattr_symlink_xattr() {
    let env = Env::new().await;
    let d = env.open().await;
    let f = put(&d, ROOT_INO, "f", b"x").await;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let a = d
        .setattr(
            f,
            None,
            SetAttr {
                mode: Some(0o100600),
                uid: Some(5),
                gid: Some(6),
                mtime: Some(TimeSet::At(t)),
                atime: Some(TimeSet::At(t)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.mtime, a.atime),
        (0o600, 5, 6, t, t)
    );
    let s = d
        .symlink(ROOT_INO, os("ln"), std::path::Path::new("../target/x"), WHO)
        .await
        .unwrap();
    assert_eq!(s.kind, FileKind::Symlink);
    assert_eq!(s.size, 11);
    assert_eq!(d.readlink(s.ino).await.unwrap(), b"../target/x");
    d.setxattr(f, os("user.k"), b"v1", XattrSet::Any)
        .await
        .unwrap();
    assert_eq!(
        errno(
            d.setxattr(f, os("user.k"), b"v", XattrSet::CreateOnly)
                .await
        ),
        libc::EEXIST
    );
    assert_eq!(
        errno(
            d.setxattr(f, os("user.n"), b"v", XattrSet::ReplaceOnly)
                .await
        ),
        libc::ENODATA
    );
    d.setxattr(f, os("user.k"), b"v2", XattrSet::ReplaceOnly)
        .await
        .unwrap();
    d.setxattr(f, os("user.z"), b"", XattrSet::CreateOnly)
        .await
        .unwrap();
    assert_eq!(
        errno(
            d.setxattr(f, os("user.big"), &vec![0; 65537], XattrSet::Any)
                .await
        ),
        libc::E2BIG
    );
    assert_eq!(d.getxattr(f, os("user.k")).await.unwrap(), b"v2");
    assert_eq!(
        d.listxattr(f).await.unwrap(),
        vec![os("user.k").to_owned(), os("user.z").to_owned()]
    );
    d.removexattr(f, os("user.z")).await.unwrap();
    assert_eq!(errno(d.removexattr(f, os("user.z")).await), libc::ENODATA);
    sync(&d).await;
    d.shutdown().await.unwrap();
    let d2 = env.open_with("b").await;
    let a2 = d2.getattr(f).await.unwrap();
    assert_eq!((a2.perm, a2.uid, a2.gid, a2.mtime), (0o600, 5, 6, t));
    assert_eq!(d2.getxattr(f, os("user.k")).await.unwrap(), b"v2");
    assert_eq!(d2.readlink(s.ino).await.unwrap(), b"../target/x");
}

#[tokio::test]
async fn readdir_offsets_are_stable() {
    let env = Env::new().await;
    let d = env.open().await;
    for i in 0..10 {
        put(&d, ROOT_INO, &format!("f{i}"), b"").await;
    }
    let fh = d.opendir(ROOT_INO).await.unwrap();
    let first = d.readdir(ROOT_INO, fh, 0).await.unwrap();
    assert_eq!(first.len(), 12);
    assert_eq!(first[0].name, ".");
    assert_eq!(first[1].name, "..");
    // Continue from the middle after removing an earlier entry and adding one.
    let mid = first[6].next_offset;
    d.unlink(ROOT_INO, os("f0")).await.unwrap();
    put(&d, ROOT_INO, "late", b"").await;
    let rest = d.readdir(ROOT_INO, fh, mid).await.unwrap();
    let rest_names: Vec<_> = rest
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    let expect: Vec<String> = first[7..]
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .chain(["late".to_string()])
        .collect();
    assert_eq!(rest_names, expect);
    assert!(
        d.readdir(ROOT_INO, fh, rest.last().unwrap().next_offset)
            .await
            .unwrap()
            .is_empty()
    );
    d.releasedir(ROOT_INO, fh).await.unwrap();
    let st = d.statfs().await.unwrap();
    assert_eq!(st.namelen, 255);
    assert!(st.bavail > 0);
}

/// READDIRPLUS lists what readdir lists, page by page, each entry with
/// the attributes lookup gives it.
#[tokio::test]
async fn readdirplus_pages_carry_lookup_attributes() {
    let env = Env::new().await;
    let d = env.open().await;
    for i in 0..9 {
        put(&d, ROOT_INO, &format!("f{i}"), &vec![7; i * 100]).await;
    }
    d.mkdir(ROOT_INO, os("sub"), 0o750, WHO).await.unwrap();
    let fh = d.opendir(ROOT_INO).await.unwrap();
    let plain = d.readdir(ROOT_INO, fh, 0).await.unwrap();
    let mut plus = Vec::new();
    let mut offset = 0;
    loop {
        let page = d.readdirplus(ROOT_INO, fh, offset, 4).await.unwrap();
        assert!(page.len() <= 4, "{} entries in a page of 4", page.len());
        let Some((last, _)) = page.last() else { break };
        offset = last.next_offset;
        plus.extend(page);
    }
    let names = |v: Vec<&DirEntry>| -> Vec<(u64, std::ffi::OsString, u64)> {
        v.into_iter()
            .map(|e| (e.ino, e.name.clone(), e.next_offset))
            .collect()
    };
    assert_eq!(
        names(plus.iter().map(|(e, _)| e).collect()),
        names(plain.iter().collect())
    );
    assert_eq!(plus.len(), 12);
    for (e, attr) in &plus[2..] {
        assert_eq!(*attr, d.lookup(ROOT_INO, &e.name).await.unwrap(), "{e:?}");
        assert_eq!(attr.ino, e.ino);
    }
    assert_eq!(plus[0].1.ino, ROOT_INO);
    d.releasedir(ROOT_INO, fh).await.unwrap();
}

#[tokio::test]
async fn small_write_into_large_file_touches_one_block() {
    let env = Env::new().await;
    let d = env.open().await;
    let data = vec![1u8; 8 * 1024 * 1024];
    let ino = put(&d, ROOT_INO, "large", &data).await;
    sync(&d).await;
    let before = env.object_count().await;
    let fh = d.open(ino, libc::O_RDWR).await.unwrap();
    d.write(ino, fh, 3 * 1024 * 1024 + 5, b"Z").await.unwrap();
    d.release(ino, fh).await.unwrap();
    sync(&d).await;
    // One new content object and one log entry.
    assert_eq!(env.object_count().await, before + 2);
    let all = read_all(&d, ino).await;
    assert_eq!(all[3 * 1024 * 1024 + 5], b'Z');
    assert_eq!(all.iter().filter(|b| **b != 1).count(), 1);
}

#[tokio::test]
async fn large_directory_pages_through_readdir() {
    let env = Env::new().await;
    let d = env.open().await;
    let dir = d.mkdir(ROOT_INO, os("big"), 0o755, WHO).await.unwrap().ino;
    for i in 0..9000 {
        d.mkdir(dir, os(&format!("e{i:05}")), 0o755, WHO)
            .await
            .unwrap();
    }
    let got = names(&d, dir).await;
    assert_eq!(got.len(), 9000);
    assert_eq!(got[8999], "e08999");
    assert_eq!(d.getattr(dir).await.unwrap().nlink, 9002);
    sync(&d).await;
    d.shutdown().await.unwrap();
    // Reopened from a snapshot plus log, by a client with an empty cache.
    let d2 = env.open_with("other").await;
    assert_eq!(names(&d2, dir).await, got);
}

#[tokio::test]
async fn opening_a_large_drive_needs_few_requests() {
    let env = Env::new().await;
    let d = env.open().await;
    // Many separate commits, so the log is long and snapshots exist.
    for i in 0..(3 * SNAPSHOT_EVERY + 10) {
        put(&d, ROOT_INO, &format!("f{i}"), b"x").await;
        sync(&d).await;
    }
    d.shutdown().await.unwrap();
    let counting = faulty(env.store.clone());
    let d2 = Drive::open_drive(counting.clone(), env.id.clone(), env.opts("fresh"))
        .await
        .unwrap();
    let reads = counting.counts().reads;
    assert_eq!(
        names(&d2, ROOT_INO).await.len() as u64,
        3 * SNAPSHOT_EVERY + 10
    );
    // Header, keyring list + get, snapshot list + get, the checkpoint's
    // pages (two at most in a drive this small), at most SNAPSHOT_EVERY
    // entries after the snapshot, the end probe (+ list).
    assert!(reads <= 8 + SNAPSHOT_EVERY, "{reads} store reads to open");
}

/// Random reads of a stored file, as a client with an empty cache: the
/// store requests they cost. With `whole_blocks_on_random_reads` (what
/// the mount sets for S3) the first read of a block fetches its range and
/// then the whole block behind it, so later reads of that block need no
/// request; without it (a local store) every read is one ranged request.
#[tokio::test]
async fn random_reads_fetch_the_whole_block_behind_them_when_asked() {
    let env = Env::new().await;
    let d = env.open().await;
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect();
    put(&d, ROOT_INO, "big", &data).await;
    sync(&d).await;
    d.shutdown().await.unwrap();

    for whole in [false, true] {
        let counting = faulty(env.store.clone());
        let mut opts = env.opts(if whole { "whole" } else { "ranged" });
        opts.whole_blocks_on_random_reads = whole;
        let d = Drive::open_drive(counting.clone(), env.id.clone(), opts)
            .await
            .unwrap();
        let ino = lookup(&d, "big").await.unwrap();
        let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
        let read_at = |off: usize| {
            let d = d.clone();
            async move { d.read(ino, fh, off as u64, 4096).await.unwrap() }
        };
        // Offsets in block 1 (1 MiB blocks), none following the one before.
        let offs = [(1 << 20) + 40_960, (1 << 20) + 500_000, (1 << 20) + 900_000];
        let before = counting.counts().reads;
        assert_eq!(read_at(offs[0]).await, data[offs[0]..offs[0] + 4096]);
        let expected = if whole { 2 } else { 1 };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while counting.counts().reads - before < expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(counting.counts().reads - before, expected, "whole: {whole}");
        let mid = counting.counts().reads;
        for off in &offs[1..] {
            assert_eq!(
                read_at(*off).await,
                data[*off..*off + 4096],
                "whole: {whole}"
            );
        }
        let later = counting.counts().reads - mid;
        if whole {
            assert_eq!(
                later, 0,
                "served from the block fetched behind the first read"
            );
        } else {
            assert_eq!(later, 2, "one ranged request per read");
        }
        d.release(ino, fh).await.unwrap();
        d.shutdown().await.unwrap();
    }
}
