//! The same drive on a second machine (two `CARDFS_HOME`s): `key export`
//! writes the key and its card as one bundle, `key import` restores both,
//! and the second home mounts the drive; the errors on that path name the
//! fix that works (never `card create` for a key whose card exists).

use crate::support::mount::{Home, expect_error, local_drive};
use std::os::unix::fs::PermissionsExt;

const TEXT: &[u8] = b"written on the first machine";

/// A drive of `first`'s key holding `f.txt`.
fn drive_with_a_file(first: &Home) -> String {
    let store = local_drive(first);
    let m = first.mount(&store);
    std::fs::write(m.path("f.txt"), TEXT).unwrap();
    m.unmount();
    store
}

#[test]
fn export_import_and_mount_on_a_second_home() {
    let first = Home::new();
    let store = drive_with_a_file(&first);
    let bundle = first.path().join("tester.bundle");
    first.ok(&["key", "export", "tester", "-o", bundle.to_str().unwrap()]);
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "bundle mode {mode:o}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.starts_with("cardfs-key:"), "{text}");
    assert!(text.contains("\ncardfs-card:"), "no card in the bundle");

    // A home holding another key of the same name keeps it.
    let clash = Home::new();
    let before = std::fs::read(clash.path().join("keys/tester.key")).unwrap();
    let out = clash.run(&["key", "import", bundle.to_str().unwrap()]);
    expect_error(&out, 18, "a different key named \"tester\"");
    assert_eq!(
        std::fs::read(clash.path().join("keys/tester.key")).unwrap(),
        before
    );

    // The second machine: one import, then the drive mounts.
    let mut second = Home::named("other");
    let said = second.ok(&["key", "import", bundle.to_str().unwrap()]);
    assert!(said.contains("Imported key tester"), "{said}");
    assert!(said.contains("Pinned its card tester@test"), "{said}");
    assert_eq!(
        std::fs::read(second.path().join("keys/tester.key")).unwrap(),
        std::fs::read(first.path().join("keys/tester.key")).unwrap()
    );
    second.key = "tester".into();
    let m = second.mount(&store);
    assert_eq!(std::fs::read(m.path("f.txt")).unwrap(), TEXT);
    std::fs::write(m.path("g.txt"), b"from the second machine").unwrap();
    m.unmount();
    let back = first.mount(&store);
    assert_eq!(
        std::fs::read(back.path("g.txt")).unwrap(),
        b"from the second machine"
    );
    back.unmount();
}

#[test]
fn a_key_without_its_card_still_mounts_its_drive_and_errors_name_the_bundle() {
    let first = Home::new();
    let store = drive_with_a_file(&first);
    // A key exported alone (as cardfs did before bundles).
    let bundle = first.ok(&["key", "export", "tester"]);
    let key_only = first.path().join("tester.key.txt");
    std::fs::write(&key_only, bundle.lines().next().unwrap()).unwrap();

    let mut second = Home::named("other");
    second.ok(&["key", "import", key_only.to_str().unwrap()]);
    // Making a new drive needs the card: the error names the export
    // bundle before `card create`.
    let out = second.try_init(&second.new_dir("new-store").to_string_lossy(), "tester");
    expect_error(&out, 12, "`cardfs key import FILE` here");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.find("key import") < err.find("card create"),
        "the bundle is not the first fix named: {err}"
    );
    // The drive this key owns carries its card: mounting it pins the card.
    second.key = "tester".into();
    let m = second.mount(&store);
    assert_eq!(std::fs::read(m.path("f.txt")).unwrap(), TEXT);
    m.unmount();
    let cards = second.ok(&["card", "list"]);
    assert!(cards.contains("tester@test\t"), "{cards}");
}
