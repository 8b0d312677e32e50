//! POSIX completeness on real mounts with `allow_other` and a second uid:
//! special files (FIFO, socket, character and block devices) as nodes kept
//! across remounts on an empty cache, mount options in /proc/mounts and in
//! effect, the non-empty mountpoint refusal, `uid=`/`gid=`/`umask=`, inode
//! numbers below 2^53, and ownership on a member's mount.

use crate::support::mount::{Home, Mounted, sh};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

/// A second local user (not root) for the tests that switch uids.
const OTHER_UID: u32 = 1000;
const THIRD_UID: u32 = 1001;

fn local_drive(home: &Home) -> String {
    let store = home.new_dir("store").to_string_lossy().into_owned();
    home.init(&store);
    store
}

/// Runs a shell line in `dir` as `uid` (gid the same, no other groups).
fn run_as(uid: u32, dir: &Path, script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "bash",
            "-euc",
            script,
        ])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// [`run_as`] that must succeed; returns stdout.
fn sh_as(uid: u32, dir: &Path, script: &str) -> String {
    let out = run_as(uid, dir, script);
    assert!(
        out.status.success(),
        "as uid {uid}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `script` run as `uid` fails.
fn fails_as(uid: u32, dir: &Path, script: &str) -> bool {
    !run_as(uid, dir, script).status.success()
}

fn proc_mounts_options(mnt: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == mnt.to_str())
        .and_then(|l| l.split(' ').nth(3))
        .unwrap_or_else(|| panic!("{} not in /proc/mounts", mnt.display()))
        .to_string()
}

fn assert_special_nodes(m: &Mounted) {
    let d = m.path("d");
    let meta = |n: &str| std::fs::symlink_metadata(d.join(n)).unwrap();
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!(meta("fifo").mode() & 0o7777, 0o640);
    assert!(meta("sock").file_type().is_socket());
    let c = meta("null");
    assert!(c.file_type().is_char_device());
    assert_eq!((libc::major(c.rdev()), libc::minor(c.rdev())), (1, 3));
    let b = meta("loop");
    assert!(b.file_type().is_block_device());
    assert_eq!((libc::major(b.rdev()), libc::minor(b.rdev())), (7, 0));
    // Hard link and rename kept; chown and utimens too.
    assert_eq!(meta("fifo2").ino(), meta("fifo-renamed").ino());
    assert_eq!(meta("fifo2").nlink(), 2);
    assert_eq!((meta("null").uid(), meta("null").gid()), (OTHER_UID, 5));
    assert_eq!(meta("loop").mtime(), 1_000_000_000);
    assert!(meta("theirs").file_type().is_fifo());
    assert_eq!(meta("theirs").uid(), OTHER_UID);
    assert!(!d.join("gone").exists());
    for e in std::fs::read_dir(&d).unwrap() {
        let ino = e.unwrap().metadata().unwrap().ino();
        assert!(ino < 1 << 53, "inode number {ino} not below 2^53");
    }
}

#[test]
fn special_files_are_nodes_kept_across_remount_and_clients() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount_with(&store, &["-o", "allow_other"]);
    let root = m.path("");
    sh(
        &root,
        "mkdir -m 1777 d && cd d && mkfifo -m 640 fifo && mknod null c 1 3 && mknod loop b 7 0 \
         && python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.bind('sock')\" \
         && mkfifo fifo2 && ln fifo2 fifo-renamed.tmp && mv fifo-renamed.tmp fifo-renamed \
         && chown 1000:5 null && touch -h -d @1000000000 loop && mkfifo gone && rm gone",
    );
    // The second uid creates and changes its own special file.
    sh_as(
        OTHER_UID,
        &m.path("d"),
        "mkfifo theirs && chmod 600 theirs && touch -d @5 theirs",
    );
    // A FIFO carries data between processes (the kernel's pipe).
    let out = sh(
        &m.path("d"),
        "(echo through-the-fifo > fifo &) ; head -n1 fifo",
    );
    assert_eq!(out.trim(), "through-the-fifo");
    assert_special_nodes(&m);
    m.unmount();
    // A new mount on an empty cache reads them back from the store.
    let again = home.mount_with(&store, &["-o", "allow_other"]);
    assert_special_nodes(&again);
    assert_eq!(
        std::fs::symlink_metadata(again.path("d/theirs"))
            .unwrap()
            .mode()
            & 0o7777,
        0o600
    );
}

/// `user.*` attributes are kept; `security.*` and `system.*` are refused
/// with EOPNOTSUPP (not "no such attribute"), which is what lets `ls -l`
/// stop asking every file for `security.selinux`.
#[test]
fn xattr_namespaces_user_kept_security_and_system_refused() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    sh(&m.mnt, "echo x > f");
    let script = r#"
import errno, os
os.setxattr("f", "user.tag", b"blue")
# (The kernel itself refuses setting a malformed capability or ACL: EINVAL.)
for name, can_set in (("security.selinux", True), ("security.ima", True),
                      ("security.capability", False), ("system.posix_acl_access", False)):
    ops = [lambda: os.getxattr("f", name), lambda: os.removexattr("f", name)]
    if can_set:
        ops.append(lambda: os.setxattr("f", name, b"v"))
    for op in ops:
        try:
            op()
            raise SystemExit(f"{name}: accepted")
        except OSError as e:
            if e.errno != errno.EOPNOTSUPP:
                raise SystemExit(f"{name}: {errno.errorcode[e.errno]}, not EOPNOTSUPP")
print(os.getxattr("f", "user.tag").decode(), ",".join(os.listxattr("f")))
"#;
    let out = sh(&m.mnt, &format!("python3 -c '{script}'"));
    assert_eq!(out.trim(), "blue user.tag");
    // `ls -l` still lists (no SELinux context shown, no error).
    assert!(sh(&m.mnt, "ls -l f").starts_with("-rw"));
}

#[test]
fn noexec_nodev_and_the_defaults_are_in_effect() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount_with(&store, &["-o", "noexec,noatime"]);
    let opts = proc_mounts_options(&m.mnt);
    for want in [
        "noexec",
        "nodev",
        "nosuid",
        "noatime",
        "default_permissions",
    ] {
        assert!(opts.split(',').any(|o| o == want), "{want} not in {opts}");
    }
    sh(
        &m.mnt,
        "printf '#!/bin/sh\\necho ran\\n' > s.sh && chmod 755 s.sh && mknod zero c 1 5",
    );
    let run = Command::new(m.path("s.sh")).output();
    assert_eq!(
        run.unwrap_err().raw_os_error(),
        Some(libc::EACCES),
        "a script ran on a noexec mount"
    );
    let dev = std::fs::File::open(m.path("zero"));
    assert_eq!(
        dev.unwrap_err().raw_os_error(),
        Some(libc::EACCES),
        "a device opened on a nodev mount"
    );
    m.unmount();
    // `exec,dev`: both work.
    let m = home.mount_with(&store, &["-o", "exec,dev"]);
    let opts = proc_mounts_options(&m.mnt);
    assert!(
        !opts.contains("noexec") && !opts.contains("nodev"),
        "{opts}"
    );
    assert_eq!(sh(&m.mnt, "./s.sh").trim(), "ran");
    assert_eq!(
        sh(&m.mnt, "head -c 4 zero | od -An -tx1").trim(),
        "00 00 00 00"
    );
}

#[test]
fn bad_options_and_non_empty_mountpoints_are_refused() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let cache = home.new_dir("cache");
    for bad in ["frobnicate", "uid=alice", "umask=9", "noexec=1"] {
        let out = home.try_mount(&store, &mnt, &cache, &["-o", bad]);
        assert_eq!(crate::support::mount::exit_code(&out), 2, "-o {bad}");
    }
    std::fs::write(mnt.join("hidden"), b"x").unwrap();
    let out = home.try_mount(&store, &mnt, &cache, &[]);
    let code = crate::support::mount::exit_code;
    assert_eq!(code(&out), 17, "a non-empty mountpoint");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // fstab words and nonempty: mounted, hiding the file.
    let m = home.mount_at(
        &store,
        &mnt,
        &cache,
        &[
            "-o",
            "defaults,noauto,_netdev,nofail,x-systemd.automount,nonempty",
        ],
    );
    assert!(!m.path("hidden").exists());
    m.unmount();
    assert!(mnt.join("hidden").exists());
}

#[test]
fn uid_gid_umask_present_every_node() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount_with(&store, &["-o", "allow_other,uid=1000,gid=1000,umask=027"]);
    sh(&m.mnt, "mkdir -m 777 dir && echo x > f && chmod 666 f");
    for (p, mode) in [("dir", 0o750), ("f", 0o640)] {
        let md = std::fs::metadata(m.path(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (OTHER_UID, OTHER_UID), "{p}");
        assert_eq!(md.mode() & 0o7777, mode, "{p}");
    }
    // uid 1000 owns them as far as the kernel's checks go.
    sh_as(OTHER_UID, &m.mnt, "echo more >> f && touch dir/new");
    assert!(fails_as(THIRD_UID, &m.mnt, "echo no >> f"));
}

/// Alice's `team` folder, written by her local uid 1000, shared with Bob
/// as a writer: on Bob's mount the files are presented as owned by the
/// mounting user (here `uid=1001`, the account root mounts it for), so
/// his uid 1001 can append; `keep_ownership` shows the stored uid 1000.
#[test]
fn a_member_writer_can_write_files_another_machines_uid_created() {
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    let store = local_drive(&alice);
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    let a = alice.mount_with(&store, &["-o", "allow_other"]);
    sh(&a.mnt, "mkdir -m 777 team");
    sh_as(
        OTHER_UID,
        &a.path("team"),
        "umask 022 && echo from-1000 > u1000.txt",
    );
    let md = std::fs::metadata(a.path("team/u1000.txt")).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (OTHER_UID, 0o644));
    let fp = bob.fingerprint();
    let team = a.path("team");
    alice.ok(&[
        "share",
        "add",
        team.to_str().unwrap(),
        "--with",
        &bob.identity(),
        "--fingerprint",
        &fp,
    ]);
    // The owner's mount presents the shared folder as the mounting user's.
    let md = std::fs::metadata(a.path("team/u1000.txt")).unwrap();
    assert_eq!(md.uid(), 0, "shared folder files show as the mounting user");
    alice.ok(&["sync", a.mnt.to_str().unwrap()]);
    let owner_fp = alice.fingerprint();
    let b = bob.mount_with(
        &store,
        &[
            "--owner-fingerprint",
            &owner_fp,
            "-o",
            "allow_other,uid=1001,gid=1001",
        ],
    );
    let file = b.path("team/u1000.txt");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), THIRD_UID);
    sh_as(THIRD_UID, &b.path("team"), "echo from-1001 >> u1000.txt");
    assert!(fails_as(OTHER_UID, &b.path("team"), "echo no >> u1000.txt"));
    bob.ok(&["sync", b.mnt.to_str().unwrap()]);
    b.unmount();
    // keep_ownership: the stored owner, so uid 1001 is refused.
    let b = bob.mount_with(
        &store,
        &[
            "--owner-fingerprint",
            &owner_fp,
            "-o",
            "allow_other,keep_ownership",
        ],
    );
    let file = b.path("team/u1000.txt");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), OTHER_UID);
    assert!(fails_as(THIRD_UID, &b.path("team"), "echo no >> u1000.txt"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "from-1000\nfrom-1001\n"
    );
}
