//! Sharing in two steps: `share add` prints an invitation line, and the
//! member's `cardfs join INVITATION MOUNTPOINT` shows the owner's
//! fingerprint, pins the owner's card and mounts; an invitation whose
//! fingerprint is not the drive owner's mounts nothing (exit 41).

use crate::support::mount::{
    Home, assert_ok, exit_code, expect_error, is_mounted, local_drive, wait_gone,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::path::{Path, PathBuf};

/// A mount made by `join`: detached and its daemon killed if the test fails.
struct Joined {
    mnt: PathBuf,
    pid: u32,
}

impl Drop for Joined {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mnt)
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

fn daemon_pid(stdout: &str) -> u32 {
    stdout
        .split("daemon pid ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no daemon pid in: {stdout}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn share_add_prints_an_invitation_that_join_mounts() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::fs::create_dir(m.path("projects")).unwrap();
    std::fs::write(m.path("projects/plan.txt"), b"the plan").unwrap();
    std::fs::write(m.path("private.txt"), b"not shared").unwrap();

    let bob = Home::named("bob");
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    // `--with bob` names no identity exactly: the close one is suggested.
    let out = alice.run(&["share", "add", s(&m.path("projects")), "--with", "bob"]);
    expect_error(&out, 42, "did you mean bob@test?");
    let said = alice.ok(&[
        "share",
        "add",
        s(&m.path("projects")),
        "--with",
        "bob@test",
        "--fingerprint",
        &bob.fingerprint(),
    ]);
    let invitation = said
        .lines()
        .find(|l| l.starts_with("cardfs-invite:"))
        .unwrap_or_else(|| panic!("share add printed no invitation: {said}"))
        .to_string();

    // A forged invitation (another fingerprint) mounts nothing.
    let json = URL_SAFE_NO_PAD
        .decode(&invitation["cardfs-invite:".len()..])
        .unwrap();
    let mut fields: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(fields["store"], store.as_str());
    assert_eq!(fields["folder"], "projects");
    assert_eq!(fields["owner"], "alice@test");
    fields["owner_fingerprint"] = bob.fingerprint().into();
    let forged = format!(
        "cardfs-invite:{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&fields).unwrap())
    );
    let mnt = bob.new_dir("mnt");
    let out = bob.run(&["join", &forged, s(&mnt)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), 41, "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(
        last.starts_with("cardfs: ") && last.contains("refusing the card offered for alice@test"),
        "{err}"
    );
    // The fingerprint to compare was shown before anything was mounted.
    assert!(err.contains(&bob.fingerprint()), "{err}");
    assert!(!is_mounted(&mnt));

    let out = bob.run(&["join", &invitation, s(&mnt)]);
    assert_ok(&out, "cardfs join");
    let joined = Joined {
        mnt: mnt.clone(),
        pid: daemon_pid(&String::from_utf8_lossy(&out.stdout)),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&alice.fingerprint()),
        "no fingerprint shown: {err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(s(&mnt.join("projects"))),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read(mnt.join("projects/plan.txt")).unwrap(),
        b"the plan"
    );
    assert!(!mnt.join("private.txt").exists());
    // Alice's card is pinned now: a plain mount needs no fingerprint.
    assert!(bob.ok(&["card", "list"]).contains("alice@test\t"));
    assert_ok(&bob.run(&["unmount", s(&mnt)]), "unmount");
    wait_gone(joined.pid);
    m.unmount();
}
