//! Mount scenarios run against each store kind (tests/mount_local.rs,
//! tests/mount_s3.rs): real tools on a real FUSE mount of a drive.

use super::mount::{
    Home, Mounted, assert_ok, assert_same_tree, contains, is_mounted, sh, snapshot,
};
pub use super::pattern;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Builds the tree of the round-trip test under `root`.
pub fn build_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    std::fs::write(root.join("a/hello.txt"), b"hello, world\n").unwrap();
    std::fs::write(root.join("a/b/c/deep.bin"), pattern(70_000, 3)).unwrap();
    std::fs::write(root.join("big.bin"), pattern(100 << 20, 1)).unwrap();
    // Sparse: a hole, then data at 50 MiB, then a hole to 64 MiB.
    let mut sparse = std::fs::File::create(root.join("sparse.bin")).unwrap();
    sparse.seek(SeekFrom::Start(50 << 20)).unwrap();
    sparse.write_all(b"island in the middle").unwrap();
    sparse.set_len(64 << 20).unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("a/hello.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    std::fs::hard_link(root.join("a/hello.txt"), root.join("hard-link")).unwrap();
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("a/b/c/deep.bin", 0o600);
    mode("empty-file", 0o755);
    mode("a/b", 0o700);
    sh(
        root,
        "setfattr -n user.color -v blue a/hello.txt && \
         setfattr -n user.bin -v 0x00ff10 big.bin && \
         setfattr -n user.dir -v yes a/b",
    );
    // Times last: creating entries changes the directories' mtimes.
    sh(
        root,
        "touch -h -d '2001-02-03 04:05:06.123456789' a/hello.txt empty-file sparse.bin && \
         touch -d '1999-12-31 23:59:59' a/b/c a/b a empty-dir",
    );
}

/// Write a tree, unmount, mount again with an empty cache directory (a
/// fresh machine), and compare every byte and attribute.
pub fn tree_round_trip(home: &Home, store: &str) {
    let m = home.mount(store);
    build_tree(&m.mnt);
    let before = snapshot(&m.mnt);
    m.unmount();

    let again = home.mount(store);
    let after = snapshot(&again.mnt);
    assert_eq!(before.len(), after.len());
    for (path, want) in &before {
        assert_eq!(after.get(path), Some(want), "{} differs", path.display());
    }
    // The big file's bytes, against the generator rather than the snapshot.
    let big = std::fs::read(again.path("big.bin")).unwrap();
    assert!(big == pattern(100 << 20, 1), "big.bin contents differ");
    let mut sparse = std::fs::File::open(again.path("sparse.bin")).unwrap();
    let mut island = [0u8; 20];
    sparse.seek(SeekFrom::Start(50 << 20)).unwrap();
    sparse.read_exact(&mut island).unwrap();
    assert_eq!(&island, b"island in the middle");
    assert_eq!(sparse.metadata().unwrap().len(), 64 << 20);
    drop(sparse);
    again.unmount();
}

/// A local source tree for the tool tests: this crate's sources plus a
/// generated tree with odd names.
fn source_tree(home: &Home) -> std::path::PathBuf {
    let src = home.new_dir("source");
    let root = super::project_root();
    sh(
        &src,
        &format!(
            "cp -a {}/src {}/docs {}/Cargo.toml . && mkdir -p 'odd names/ü ñ' && \
             printf x > 'odd names/ü ñ/sp ace' && ln -s ../Cargo.toml 'odd names/link' && \
             chmod 640 Cargo.toml",
            root.display(),
            root.display(),
            root.display()
        ),
    );
    build_small_tree(&src.join("gen"));
    src
}

fn build_small_tree(root: &Path) {
    for d in 0..5 {
        let dir = root.join(format!("d{d}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            std::fs::write(
                dir.join(format!("f{f}")),
                pattern((f * 977) as usize, d * 100 + f),
            )
            .unwrap();
        }
    }
}

/// cp -a, rsync -a then rsync -c, tar x / tar c, mv of directories, find,
/// du and df on one mount.
pub fn copy_tools(home: &Home, store: &str) {
    let src = source_tree(home);
    let m = home.mount(store);
    let mnt = m.mnt.display().to_string();
    let s = src.display().to_string();

    // cp -a keeps contents, modes, times, links, xattrs.
    sh(
        &src,
        &format!("setfattr -n user.k -v v Cargo.toml && cp -a {s} {mnt}/cp"),
    );
    assert_eq!(
        snapshot(&src),
        snapshot(&m.path("cp")),
        "cp -a copy differs"
    );

    // rsync -a, then a checksum comparison finds nothing to do.
    sh(&src, &format!("rsync -a {s}/ {mnt}/rs/"));
    let changes = sh(
        &src,
        &format!("rsync -a -c -n --itemize-changes {s}/ {mnt}/rs/"),
    );
    assert_eq!(changes.trim(), "", "rsync -c finds differences");

    // tar x of a tarball, then tar c of the extracted tree: identical.
    let tar_opts = "--sort=name --owner=0 --group=0 --numeric-owner --format=gnu";
    sh(
        &src,
        &format!(
            "tar {tar_opts} -cf {home}/a.tar -C {s} . && mkdir {mnt}/tar && \
             tar -xf {home}/a.tar -C {mnt}/tar && tar {tar_opts} -cf {home}/b.tar -C {mnt}/tar . && \
             cmp {home}/a.tar {home}/b.tar",
            home = home.path().display()
        ),
    );

    // mv of directories across the tree, then the moved trees are intact.
    sh(
        &m.mnt,
        "mkdir -p x/y && mv cp/gen x/y/gen && mv cp/src tar/moved-src && mv x z",
    );
    assert_same_tree(&src.join("gen"), &m.path("z/y/gen"));
    assert_same_tree(&src.join("src"), &m.path("tar/moved-src"));
    assert!(!m.path("cp/gen").exists() && !m.path("x").exists());

    // find, du, df see the tree.
    let found = sh(&m.mnt, "find . -name 'f7' -type f | sort | wc -l");
    let expected = sh(&src, "find . -name 'f7' -type f | wc -l");
    let per_tree: usize = expected.trim().parse().unwrap();
    assert_eq!(found.trim().parse::<usize>().unwrap(), per_tree * 3);
    // du over the files (directory sizes are filesystem-specific).
    let du_files = "find DIR -type f -print0 | du -cb --files0-from=- | tail -1 | cut -f1";
    let du: u64 = sh(&m.mnt, &du_files.replace("DIR", "z"))
        .trim()
        .parse()
        .unwrap();
    let du_src: u64 = sh(&src, &du_files.replace("DIR", "gen"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(du, du_src, "du differs");
    sh(&m.mnt, "du -s . >/dev/null");
    let df = sh(&m.mnt, "df -P . | tail -1");
    assert!(df.contains(&mnt), "df does not show the mount: {df}");
    m.unmount();
}

/// git and sqlite3 on the mount, checked again after a remount with an
/// empty cache.
pub fn git_and_sqlite(home: &Home, store: &str) {
    let m = home.mount(store);
    sh(
        &m.mnt,
        "mkdir repo && cd repo && git init -q && git config user.email t@example.com && \
         git config user.name Tester && printf 'one\\n' > a.txt && mkdir d && \
         printf 'two\\n' > d/b.txt && git add -A && git commit -q -m first && \
         printf 'three\\n' >> a.txt && git commit -q -am second && git gc -q",
    );
    let sql = "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); \
               BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<20000) \
               INSERT INTO t(v) SELECT hex(randomblob(40)) FROM n; COMMIT; \
               BEGIN; DELETE FROM t WHERE id % 3 = 0; ROLLBACK; \
               BEGIN; UPDATE t SET v = 'x' || v WHERE id % 7 = 0; COMMIT; \
               PRAGMA wal_checkpoint(TRUNCATE);";
    sh(&m.mnt, &format!("sqlite3 db.sqlite \"{sql}\""));
    m.unmount();

    let again = home.mount(store);
    let repo = again.path("repo");
    let log = sh(&repo, "git log --format=%s");
    assert_eq!(log.lines().collect::<Vec<_>>(), ["second", "first"]);
    let status = sh(&repo, "git status --porcelain");
    assert_eq!(status, "", "git status after remount");
    sh(&repo, "git fsck --strict --no-progress");
    let check = sh(
        &again.mnt,
        "sqlite3 db.sqlite 'PRAGMA integrity_check; SELECT count(*) FROM t; \
         SELECT count(*) FROM t WHERE v LIKE \"x%\";'",
    );
    assert_eq!(check.lines().collect::<Vec<_>>(), ["ok", "20000", "2857"]);
    again.unmount();
}

/// A program that reads and writes a file through `mmap`.
pub fn mmap_read_write(home: &Home, store: &str) {
    let m = home.mount(store);
    let path = m.path("mapped.bin");
    let len = 3 << 20;
    std::fs::write(&path, pattern(len, 9)).unwrap();
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut map = Map::new(&file, len);
        let bytes = map.bytes();
        assert!(bytes == pattern(len, 9).as_slice(), "mmap read differs");
        for i in (0..len).step_by(4096) {
            bytes[i] = bytes[i].wrapping_add(1);
        }
        map.sync();
    }
    let mut want = pattern(len, 9);
    for i in (0..len).step_by(4096) {
        want[i] = want[i].wrapping_add(1);
    }
    assert!(
        std::fs::read(&path).unwrap() == want,
        "mmap write not visible"
    );
    m.unmount();
    let again = home.mount(store);
    assert!(
        std::fs::read(again.path("mapped.bin")).unwrap() == want,
        "mmap write lost after remount"
    );
    again.unmount();
}

/// A shared read-write mapping of a whole file.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(file: &std::fs::File, len: usize) -> Map {
        use std::os::fd::AsRawFd;
        // SAFETY: maps `len` bytes of an open file we own, shared, for
        // reading and writing; the mapping is unmapped in Drop and no other
        // code holds a reference into it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Map {
            ptr: ptr.cast(),
            len,
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: ptr is a live mapping of exactly len bytes, borrowed
        // mutably through &mut self only.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    fn sync(&mut self) {
        // SAFETY: msync on the live mapping.
        let rc = unsafe { libc::msync(self.ptr.cast(), self.len, libc::MS_SYNC) };
        assert_eq!(rc, 0, "msync: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping created in new, once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Names and contents carrying a marker never appear in the store.
pub fn no_plaintext(home: &Home, store: &str, store_bytes: impl Fn() -> Vec<u8>) {
    const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";
    let m = home.mount(store);
    std::fs::create_dir(m.path(&format!("dir-{MARKER}"))).unwrap();
    let body = format!("{MARKER} ").repeat(50_000);
    std::fs::write(m.path(&format!("dir-{MARKER}/file-{MARKER}.txt")), &body).unwrap();
    std::fs::write(m.path("small.txt"), MARKER).unwrap();
    std::os::unix::fs::symlink(MARKER, m.path("link")).unwrap();
    sh(
        &m.mnt,
        &format!("setfattr -n user.{MARKER} -v {MARKER} small.txt"),
    );
    m.unmount();
    let all = store_bytes();
    assert!(!all.is_empty(), "the store holds nothing");
    assert!(
        !contains(&all, MARKER.as_bytes()),
        "plaintext marker found in the store"
    );
    let lower = MARKER.to_lowercase();
    assert!(
        !contains(&all, lower.as_bytes()),
        "lower-cased marker found in the store"
    );
}

/// Kill -9 the daemon while a writer fsyncs files one after another; after
/// a remount on the same cache directory every fsynced file is complete.
pub fn kill_9_keeps_fsynced_files(home: &Home, store: &str) {
    let m = home.mount(store);
    let log = home.path().join("fsynced.log");
    let script = format!(
        "i=0; while [ $i -lt 400 ]; do \
           head -c $((100000 + i * 1000)) /dev/urandom > {mnt}/f$i.tmp || exit 0; \
           sha256sum < {mnt}/f$i.tmp | cut -d' ' -f1 > {mnt}/f$i.sum || exit 0; \
           sync {mnt}/f$i.tmp {mnt}/f$i.sum || exit 0; \
           mv {mnt}/f$i.tmp {mnt}/f$i || exit 0; sync {mnt} || exit 0; \
           echo $i >> {log}; i=$((i+1)); done",
        mnt = m.mnt.display(),
        log = log.display()
    );
    let mut writer = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .spawn()
        .unwrap();
    // Kill once some files are durable, while the writer is still going.
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
        < 20
    {
        assert!(writer.try_wait().unwrap().is_none(), "writer ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (mnt, cache) = (m.mnt.clone(), m.cache.clone());
    m.kill9_then(|| {
        let _ = writer.wait();
    });
    assert!(!is_mounted(&mnt));

    let done: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let again = home.mount_at(store, &mnt, &cache, &[]);
    for i in &done {
        let data = std::fs::read(again.path(&format!("f{i}")))
            .unwrap_or_else(|e| panic!("fsynced file f{i} lost: {e}"));
        let sum = std::fs::read_to_string(again.path(&format!("f{i}.sum"))).unwrap();
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sum.trim(), hex, "f{i} is incomplete");
    }
    again.unmount();
    // And the same from a fresh machine: the journal reached the store.
    let fresh = home.mount(store);
    for i in &done {
        assert!(
            fresh.path(&format!("f{i}")).exists(),
            "f{i} not in the store"
        );
    }
    fresh.unmount();
}

/// `cardfs status` and `cardfs sync` on a mount, then SIGTERM unmounts.
pub fn status_sync_and_sigterm(home: &Home, store: &str) {
    let m = home.mount(store);
    std::fs::write(m.path("pending.bin"), pattern(5 << 20, 4)).unwrap();
    let out = m.cardfs(&["status", &m.mnt.display().to_string()]);
    assert_ok(&out, "cardfs status");
    let text = String::from_utf8_lossy(&out.stdout);
    for field in [
        "pending uploads:",
        "last commit:",
        "store reachable:",
        store,
    ] {
        assert!(text.contains(field), "status lacks {field:?}: {text}");
    }
    assert_ok(
        &m.cardfs(&["sync", &m.mnt.display().to_string()]),
        "cardfs sync",
    );
    let out = m.cardfs(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 changes, 0 bytes"), "after sync: {text}");
    assert!(text.contains("store reachable: yes"), "after sync: {text}");
    let mnt = m.mnt.clone();
    m.signal_and_wait("TERM");
    let again = home.mount_at(store, &mnt, &home.new_dir("cache"), &[]);
    assert!(std::fs::read(again.path("pending.bin")).unwrap() == pattern(5 << 20, 4));
    again.unmount();
}

/// Mounts on the given mount guard must be gone after its drop.
pub fn guard_cleans_up(home: &Home, store: &str) {
    let m: Mounted = home.mount(store);
    let mnt = m.mnt.clone();
    let pid = m.pid;
    drop(m);
    super::mount::wait_gone(pid);
    assert!(!is_mounted(&mnt));
}
