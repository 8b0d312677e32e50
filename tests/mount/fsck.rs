//! `cardfs fsck` through the real binary: a clean drive (exit 0, text and
//! JSON), a content object deleted from the store (exit 50, naming the
//! file), and a member's mount, which cannot check the drive (exit 51)
//! nor collect garbage (exit 46).

use crate::support::mount::exit_code as code;
use crate::support::mount::{Home, assert_ok, expect_error, local_drive};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn fsck_reports_a_clean_drive_a_missing_object_and_refuses_a_member() {
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    let store = local_drive(&alice);
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    let a = alice.mount(&store);
    let mnt = s(&a.mnt).to_string();
    std::fs::create_dir(a.path("team")).unwrap();
    std::fs::write(a.path("team/plan.txt"), b"the plan").unwrap();
    assert_ok(&alice.run(&["sync", &mnt]), "sync");
    let content = Path::new(&store).join("objects/c~");
    let before = files(&content);
    std::fs::write(a.path("report.bin"), vec![7u8; 3 << 20]).unwrap();
    assert_ok(&alice.run(&["sync", &mnt]), "sync");
    let report_objects: Vec<PathBuf> = files(&content)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(report_objects.len(), 3, "one object per 1 MiB block");

    let out = alice.run(&["fsck", &mnt]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no missing or damaged objects"), "{text}");
    assert!(text.contains("4 objects"), "{text}");
    let out = alice.run(&["fsck", "--json", "--verify-content", &mnt]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["clean"], true, "{r}");
    assert_eq!(r["content_verified"], true);
    assert_eq!(r["referenced_objects"], 4);
    assert_eq!(r["orphan_objects"], 0);
    assert_eq!(r["volumes"][0]["path"], "", "{r}");
    assert_eq!(r["volumes"][0]["failed"], false);

    // The store loses one block of report.bin.
    std::fs::remove_file(&report_objects[1]).unwrap();
    let out = alice.run(&["fsck", &mnt]);
    assert_eq!(code(&out), 50, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("missing c/"), "{text}");
    assert!(
        text.contains(&format!("      {mnt}/report.bin")),
        "the file is named: {text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 missing or damaged object"), "{err}");
    let out = alice.run(&["fsck", "--json", &mnt]);
    assert_eq!(code(&out), 50, "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["clean"], false);
    assert_eq!(r["problems"][0]["kind"], "missing", "{r}");
    assert_eq!(r["problems"][0]["paths"][0], "report.bin");

    // A member cannot check the drive: the check does not run.
    let folder = a.path("team");
    let (fp, id) = (bob.fingerprint(), bob.identity());
    let args = [
        "share",
        "add",
        s(&folder),
        "--with",
        &id,
        "--fingerprint",
        &fp,
    ];
    alice.ok(&args);
    assert_ok(&alice.run(&["sync", &mnt]), "sync");
    let owner_fp = alice.fingerprint();
    let b = bob.mount_at(
        &store,
        &bob.new_dir("mnt"),
        &bob.new_dir("cache"),
        &["--owner-fingerprint", &owner_fp],
    );
    let out = bob.run(&["fsck", s(&b.mnt)]);
    assert_eq!(code(&out), 51, "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only the drive's owner"), "{err}");
    // Nor collect garbage.
    let out = bob.run(&["gc", s(&b.mnt), "--dry-run"]);
    expect_error(&out, 46, "only the drive's owner can collect garbage");
    b.unmount();
    a.unmount();
}
