//! The command line as a user meets it, through the real binary: unmount
//! from another `$CARDFS_HOME`, passwords kept out of the daemon's
//! environment, the daemon's log, S3 errors in one sentence, exit codes,
//! `--json`, man page and completions.

mod common;

use common::mount::{Home, assert_ok, is_mounted};
use std::path::{Path, PathBuf};
use std::process::Output;

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited by signal")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit code `want` and that stderr is one `cardfs:` sentence
/// containing `phrase`.
fn expect_error(out: &Output, want: i32, phrase: &str) {
    let err = stderr(out);
    assert_eq!(code(out), want, "stderr: {err}");
    assert!(err.contains(phrase), "expected {phrase:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("cardfs: "), "{err}");
}

fn local_drive(home: &Home) -> String {
    let store = home.new_dir("store");
    let store = store.to_string_lossy().into_owned();
    home.init(&store);
    store
}

/// The record a daemon leaves for other homes (see src/cli/mount_record.rs).
fn mount_record(mnt: &Path) -> Option<PathBuf> {
    let uid = unsafe { libc::getuid() };
    let dirs = [
        PathBuf::from(format!("/run/user/{uid}/cardfs/mounts")),
        PathBuf::from(format!("/tmp/cardfs-{uid}/mounts")),
    ];
    let needle = format!("\"mountpoint\":{}", serde_json::json!(mnt));
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.contains(&needle))
                .unwrap_or(false)
        })
}

#[test]
fn unmount_from_another_home_commits_through_the_daemon_it_finds() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::fs::write(m.path("kept.txt"), b"written before a foreign unmount").unwrap();
    assert!(mount_record(&m.mnt).is_some(), "the daemon left no record");

    // Another home on the same machine: no socket of its own for this
    // mount, but the daemon is found from the mountpoint and commits first.
    let other = Home::named("other");
    let out = other.run(&["unmount", m.mnt.to_str().unwrap()]);
    assert_ok(&out, "cardfs unmount from another home");
    let said = stdout(&out);
    assert!(said.contains("every change is in the store"), "{said}");
    assert!(
        said.contains(&format!("pid {}", m.pid)) && said.contains(&*alice.path().to_string_lossy()),
        "does not say whose mount it was: {said}"
    );
    assert!(!is_mounted(&m.mnt));
    common::mount::wait_gone(m.pid);
    assert!(mount_record(&m.mnt).is_none(), "record left behind");
    std::mem::forget(m);

    let again = alice.mount(&store);
    assert_eq!(
        std::fs::read(again.path("kept.txt")).unwrap(),
        b"written before a foreign unmount"
    );
    again.unmount();
}

#[test]
fn unmount_refuses_a_live_mount_whose_daemon_it_cannot_reach() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::fs::write(m.path("alive.txt"), b"still here").unwrap();
    // Without the record (a daemon that could not write it), another home
    // has no way to reach this daemon: it must refuse, not detach.
    std::fs::remove_file(mount_record(&m.mnt).expect("record")).unwrap();

    let other = Home::named("other");
    let out = other.run(&["unmount", m.mnt.to_str().unwrap()]);
    expect_error(&out, 32, "is served by a running cardfs daemon");
    assert!(stderr(&out).contains("CARDFS_HOME"), "{}", stderr(&out));
    assert!(is_mounted(&m.mnt), "the live mount was detached");
    assert_eq!(std::fs::read(m.path("alive.txt")).unwrap(), b"still here");
    // Its own home still unmounts it, committing first.
    m.unmount();
}

#[test]
fn unmount_from_another_home_clears_a_mount_whose_daemon_died() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::process::Command::new("kill")
        .args(["-KILL", &m.pid.to_string()])
        .status()
        .unwrap();
    common::mount::wait_gone(m.pid);
    let other = Home::named("other");
    let out = other.run(&["unmount", m.mnt.to_str().unwrap()]);
    assert_ok(&out, "cardfs unmount of a dead mount");
    assert!(
        stdout(&out).contains("its daemon was gone"),
        "{}",
        stdout(&out)
    );
    assert!(!is_mounted(&m.mnt));
    std::mem::forget(m);
}
