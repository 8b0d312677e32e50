//! Real FUSE mounts of drives on the local-directory store, exercised with
//! the tools people use (see tests/common/scenarios.rs).

use crate::support::mount::{Home, daemon_log_with, local_store_bytes, sh};
use crate::support::scenarios;

fn local_drive(home: &Home) -> String {
    let store = home.new_dir("store").to_string_lossy().into_owned();
    home.init(&store);
    store
}

#[test]
fn tree_round_trip_to_an_empty_cache() {
    let home = Home::new();
    scenarios::tree_round_trip(&home, &local_drive(&home));
}

#[test]
fn cp_rsync_tar_mv_find_du_df() {
    let home = Home::new();
    scenarios::copy_tools(&home, &local_drive(&home));
}

#[test]
fn git_and_sqlite() {
    let home = Home::new();
    scenarios::git_and_sqlite(&home, &local_drive(&home));
}

#[test]
fn mmap_read_write() {
    let home = Home::new();
    scenarios::mmap_read_write(&home, &local_drive(&home));
}

#[test]
fn no_plaintext_in_the_store() {
    let home = Home::new();
    let store = local_drive(&home);
    let dir = std::path::PathBuf::from(&store);
    scenarios::no_plaintext(&home, &store, || local_store_bytes(&dir));
}

#[test]
fn kill_9_keeps_fsynced_files() {
    let home = Home::new();
    scenarios::kill_9_keeps_fsynced_files(&home, &local_drive(&home));
}

#[test]
fn status_sync_and_sigterm() {
    let home = Home::new();
    scenarios::status_sync_and_sigterm(&home, &local_drive(&home));
}

#[test]
fn guard_unmounts_on_drop() {
    let home = Home::new();
    scenarios::guard_cleans_up(&home, &local_drive(&home));
}

/// Every file under `dir` with its size.
fn files_with_sizes(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, u64> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), meta.len());
            }
        }
    }
    out
}

/// A tampered content object makes that file's reads fail with EIO and a
/// log line naming the object; the rest of the drive keeps working.
#[test]
fn tampered_object_fails_one_file_with_eio() {
    let home = Home::new();
    let store = local_drive(&home);
    let dir = std::path::PathBuf::from(&store);
    let m = home.mount(&store);
    std::fs::write(m.path("intact.bin"), crate::support::pattern(300_000, 1)).unwrap();
    assert!(
        m.cardfs(&["sync", &m.mnt.display().to_string()])
            .status
            .success()
    );
    let before = files_with_sizes(&dir);
    std::fs::write(m.path("victim.bin"), crate::support::pattern(1 << 20, 2)).unwrap();
    assert!(
        m.cardfs(&["sync", &m.mnt.display().to_string()])
            .status
            .success()
    );
    m.unmount();
    // The new large objects hold the victim's contents (metadata is small).
    let victims: Vec<_> = files_with_sizes(&dir)
        .into_iter()
        .filter(|(p, size)| !before.contains_key(p) && *size > 64 * 1024)
        .collect();
    assert!(
        !victims.is_empty(),
        "no content object found for victim.bin"
    );
    for (path, size) in &victims {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[(*size / 2) as usize] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }

    let again = home.mount(&store);
    let err = std::fs::read(again.path("victim.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        std::fs::read(again.path("intact.bin")).unwrap() == crate::support::pattern(300_000, 1)
    );
    std::fs::write(again.path("after.txt"), b"still writable").unwrap();
    assert_eq!(
        std::fs::read(again.path("after.txt")).unwrap(),
        b"still writable"
    );
    let names_a_victim = |l: &str| {
        victims.iter().any(|(p, _)| {
            let name = p.file_name().unwrap().to_string_lossy();
            l.contains("failed verification") && l.contains(name.as_ref())
        })
    };
    let log = daemon_log_with(&again.cache, names_a_victim);
    let named = log.lines().any(names_a_victim);
    assert!(named, "no log line names the tampered object:\n{log}");
    again.unmount();
}

/// `-o allow_other` lets other users in, with the kernel checking modes
/// (default_permissions); `--read-only` refuses every change with EROFS.
#[test]
fn allow_other_permissions_and_read_only() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let m = home.mount_at(&store, &mnt, &home.new_dir("cache"), &["-o", "allow_other"]);
    std::fs::write(m.path("public.txt"), b"for everyone\n").unwrap();
    std::fs::write(m.path("private.txt"), b"root only\n").unwrap();
    sh(
        &m.mnt,
        "chmod 644 public.txt && chmod 600 private.txt && chmod 755 .",
    );
    // The home directory (a private temp dir) must let nobody through.
    sh(home.path(), "chmod 711 .");
    let as_nobody = |file: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(m.path(file))
            .output()
            .unwrap()
    };
    let public = as_nobody("public.txt");
    assert!(public.status.success(), "{public:?}");
    assert_eq!(public.stdout, b"for everyone\n");
    let private = as_nobody("private.txt");
    assert!(!private.status.success());
    assert!(String::from_utf8_lossy(&private.stderr).contains("Permission denied"));
    m.unmount();

    let ro = home.mount_at(&store, &mnt, &home.new_dir("cache"), &["--read-only"]);
    assert_eq!(
        std::fs::read(ro.path("public.txt")).unwrap(),
        b"for everyone\n"
    );
    let err = std::fs::write(ro.path("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    ro.unmount();
}

/// `copy_file_range` on the mount reaches the daemon, which shares the
/// source's block objects: copying an 8 MiB file adds only metadata (under
/// 64 KiB) to the store, the copy reads the same, and a write to it leaves the source
/// as it was.
#[test]
fn copy_file_range_shares_blocks_on_the_mount() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    let data = crate::support::pattern(8 << 20, 3);
    std::fs::write(m.path("src.bin"), &data).unwrap();
    let sync = |m: &crate::support::mount::Mounted| {
        assert!(
            m.cardfs(&["sync", &m.mnt.display().to_string()])
                .status
                .success()
        )
    };
    sync(&m);
    let before = files_with_sizes(std::path::Path::new(&store));
    {
        let src = std::fs::File::open(m.path("src.bin")).unwrap();
        let dst = std::fs::File::create(m.path("copy.bin")).unwrap();
        let mut left = data.len();
        while left > 0 {
            let n = rustix::fs::copy_file_range(&src, None, &dst, None, left).unwrap();
            assert!(n > 0, "copy_file_range stopped with {left} bytes left");
            left -= n;
        }
    }
    sync(&m);
    // New objects: metadata only (content objects of this file are 1 MiB).
    let added: Vec<_> = files_with_sizes(std::path::Path::new(&store))
        .into_iter()
        .filter(|(p, _)| !before.contains_key(p))
        .collect();
    assert!(!added.is_empty(), "the copy committed nothing");
    let bytes: u64 = added.iter().map(|(_, s)| s).sum();
    assert!(bytes < 64 << 10, "{bytes} bytes added: {added:?}");
    assert!(std::fs::read(m.path("copy.bin")).unwrap() == data);
    std::fs::write(m.path("copy.bin"), b"the copy, rewritten").unwrap();
    sync(&m);
    assert!(std::fs::read(m.path("src.bin")).unwrap() == data);
    m.unmount();
}
