//! Folder sharing through the command line, on real FUSE mounts: Alice
//! owns a drive and shares one folder with Bob (writer) and Carol
//! (reader), each with their own `CARDFS_HOME`, key and cache directory,
//! over the real S3 server (fails, never skips, without one) and the
//! local-directory store. Covers the trust decisions (cards found in the
//! store, the drive owner's card at mount) and revocation.

use crate::support::mount::exit_code as code;
use crate::support::mount::{Home, Mounted, bucket_bytes, contains, local_store_bytes, new_bucket};
use crate::support::{Operator, pattern, s3};
use cardfs::format::meta::DriveHeader;
use cardfs::identity::directory::{card_key, id_key};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Names and contents that must never appear in the store.
const SHARED: &str = "shared-folder-marker-q1";
const SHARED_FILE: &str = "shared-name-marker-w2.txt";
const SHARED_TEXT: &[u8] = b"SHARED-CONTENT-MARKER-e3: the plan\n";
const PRIVATE: &str = "unshared-folder-marker-r4";
const PRIVATE_FILE: &str = "private-name-marker-t5.txt";
const PRIVATE_TEXT: &[u8] = b"PRIVATE-CONTENT-MARKER-y6\n";
const KEPT: &str = "kept-folder-marker-a1";
const BOB_FILE: &str = "bob-name-marker-u7.txt";
const BOB_TEXT: &[u8] = b"BOB-CONTENT-MARKER-i8\n";
const AFTER_FILE: &str = "after-removal-marker-o9.txt";
const AFTER_TEXT: &[u8] = b"AFTER-REMOVAL-CONTENT-MARKER-p0\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with exit code `want` and one sentence holding
/// `phrase` (after any `warning:` lines).
fn expect_error(out: &Output, want: i32, phrase: &str) {
    let err = stderr(out);
    assert_eq!(code(out), want, "exit code; stderr: {err}");
    let lines: Vec<&str> = err.trim().lines().collect();
    let (last, warnings) = lines.split_last().expect("an error sentence");
    assert!(
        warnings.iter().all(|l| l.starts_with("warning: ")),
        "one error sentence expected: {err}"
    );
    assert!(last.contains(phrase), "{phrase:?} not in: {err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Sorted names in a directory.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Alice's drive content: the folder she shares and one she keeps.
fn build_alice_tree(m: &Mounted) {
    let shared = m.path(SHARED);
    std::fs::create_dir_all(shared.join("sub")).unwrap();
    std::fs::write(shared.join(SHARED_FILE), SHARED_TEXT).unwrap();
    std::fs::write(shared.join("sub/big.bin"), pattern(3 << 20, 71)).unwrap();
    std::fs::write(shared.join("empty"), b"").unwrap();
    std::fs::create_dir(m.path(PRIVATE)).unwrap();
    std::fs::write(m.path(PRIVATE).join(PRIVATE_FILE), PRIVATE_TEXT).unwrap();
    std::fs::write(m.path("top-level.txt"), PRIVATE_TEXT).unwrap();
}

/// Checks that `m` (a member's mount) shows exactly Alice's shared folder,
/// byte for byte.
fn assert_sees_shared_folder(m: &Mounted) {
    assert_eq!(names(&m.mnt), [SHARED], "a member sees only what is shared");
    let shared = m.path(SHARED);
    assert_eq!(names(&shared), ["empty", SHARED_FILE, "sub"]);
    assert_eq!(
        std::fs::read(shared.join(SHARED_FILE)).unwrap(),
        SHARED_TEXT
    );
    assert!(std::fs::read(shared.join("sub/big.bin")).unwrap() == pattern(3 << 20, 71));
    assert_eq!(std::fs::read(shared.join("empty")).unwrap(), b"");
}

fn sync(home: &Home, m: &Mounted) {
    home.ok(&["sync", s(&m.mnt)]);
}

/// `share list` output of `home` for the mount `m`.
fn share_list(home: &Home, m: &Mounted) -> String {
    home.ok(&["share", "list", s(&m.mnt)])
}

/// `share add` of Alice's shared folder with `member` (by identity, after
/// comparing its fingerprint), as a reader when `read_only`.
fn share_with(alice: &Home, a: &Mounted, member: &Home, read_only: bool) {
    let folder = a.path(SHARED);
    let out = alice.share_folder(&folder, member, read_only);
    assert!(
        out.contains(&format!("shared {}", folder.display())),
        "{out}"
    );
}

#[test]
fn alice_shares_with_a_writer_and_a_reader_over_s3() {
    let env = s3();
    let store = new_bucket(env);
    let alice = Home::named_with_s3("alice", env);
    let bob = Home::named_with_s3("bob", env);
    let carol = Home::named_with_s3("carol", env);
    alice.init(&store);
    for user in [&bob, &carol] {
        user.ok(&["card", "publish", "--key", &user.key, "--store", &store]);
    }
    let a = alice.mount(&store);
    build_alice_tree(&a);
    let folder = a.path(SHARED);

    // Bob's card is in the store's card directory, but Alice has not
    // vouched for it: the command stops and shows the fingerprint.
    let out = alice.run(&["share", "add", s(&folder), "--with", "bob@test"]);
    expect_error(&out, 40, &bob.fingerprint());
    let out = alice.run(&["share", "add", s(&folder), "--with", "dave@test"]);
    expect_error(&out, 42, "no card for dave@test");
    share_with(&alice, &a, &bob, false);
    // The folder, now its own volume, stays usable at once on Alice's
    // mount (the kernel's cached entry for it is dropped).
    assert_eq!(names(&folder), ["empty", SHARED_FILE, "sub"]);
    share_with(&alice, &a, &carol, true);
    let listed = share_list(&alice, &a);
    for want in [
        format!("owner\talice@test\t{}", alice.fingerprint()),
        format!("writer\tbob@test\t{}", bob.fingerprint()),
        format!("reader\tcarol@test\t{}", carol.fingerprint()),
    ] {
        assert!(listed.contains(&want), "{want:?} not in:\n{listed}");
    }
    sync(&alice, &a);

    // Bob's first mount stops until Alice's card is vouched for.
    let out = bob.try_mount(&store, &bob.new_dir("mnt"), &bob.new_dir("cache"), &[]);
    expect_error(&out, 40, &alice.fingerprint());
    let b = bob.mount_with(&store, &["--owner-fingerprint", &alice.fingerprint()]);
    assert_sees_shared_folder(&b);
    let listed = share_list(&bob, &b);
    assert!(listed.contains("(you: writer"), "{listed}");
    // Members do not share further.
    let carol_fp = carol.fingerprint();
    let bobs_view = b.path(SHARED);
    let out = bob.run(&[
        "share",
        "add",
        s(&bobs_view),
        "--with",
        "carol@test",
        "--fingerprint",
        &carol_fp,
    ]);
    expect_error(&out, 43, "only the owner");

    // Bob writes a new file and extends one Alice has read; after his sync
    // and a refresh on Alice's mount she reads both.
    assert_eq!(
        std::fs::read(folder.join(SHARED_FILE)).unwrap(),
        SHARED_TEXT
    );
    let extended = [SHARED_TEXT, BOB_TEXT].concat();
    std::fs::write(b.path(SHARED).join(BOB_FILE), BOB_TEXT).unwrap();
    std::fs::write(b.path(SHARED).join(SHARED_FILE), &extended).unwrap();
    sync(&bob, &b);
    sync(&alice, &a);
    assert_eq!(std::fs::read(folder.join(BOB_FILE)).unwrap(), BOB_TEXT);
    assert_eq!(std::fs::read(folder.join(SHARED_FILE)).unwrap(), extended);

    // Carol reads (Alice's card pinned beforehand this time) and cannot write.
    let alice_card = alice.ok(&["card", "export", "alice@test"]);
    let card_file = carol.path().join("alice.card");
    std::fs::write(&card_file, alice_card).unwrap();
    carol.ok(&["card", "import", s(&card_file)]);
    let c = carol.mount(&store);
    assert_sees_bobs_changes(&c, &extended);
    let erofs = |r: std::io::Result<()>| {
        let e = r.expect_err("a reader's write must fail");
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    };
    erofs(std::fs::write(c.path(SHARED).join("carol.txt"), b"no"));
    erofs(std::fs::write(c.path(SHARED).join(SHARED_FILE), b"no"));
    erofs(std::fs::create_dir(c.path(SHARED).join("carol-dir")));
    erofs(std::fs::remove_file(c.path(SHARED).join(SHARED_FILE)));
    erofs(std::fs::write(c.path("carol-at-root.txt"), b"no"));
    assert!(share_list(&carol, &c).contains("(you: reader"));

    // Nothing of the names or contents is in the store.
    let all = bucket_bytes(env, &store);
    for marker in [
        SHARED.as_bytes(),
        SHARED_FILE.as_bytes(),
        SHARED_TEXT,
        PRIVATE.as_bytes(),
        PRIVATE_FILE.as_bytes(),
        PRIVATE_TEXT,
        BOB_FILE.as_bytes(),
        BOB_TEXT,
        b"top-level.txt",
    ] {
        assert!(
            !contains(&all, marker),
            "{} is in the store",
            String::from_utf8_lossy(marker)
        );
    }
    c.unmount();
    b.unmount();
    a.unmount();
}

/// [`assert_sees_shared_folder`] after Bob's changes: his new file, and
/// `shared_text` in [`SHARED_FILE`].
fn assert_sees_bobs_changes(m: &Mounted, shared_text: &[u8]) {
    assert_eq!(names(&m.mnt), [SHARED]);
    let shared = m.path(SHARED);
    assert_eq!(std::fs::read(shared.join(BOB_FILE)).unwrap(), BOB_TEXT);
    assert_eq!(
        std::fs::read(shared.join(SHARED_FILE)).unwrap(),
        shared_text
    );
    assert!(std::fs::read(shared.join("sub/big.bin")).unwrap() == pattern(3 << 20, 71));
}

/// A local-directory store holding Alice's drive.
fn local_drive(alice: &Home) -> (PathBuf, String) {
    let dir = alice.new_dir("store");
    let store = dir.to_string_lossy().into_owned();
    alice.init(&store);
    (dir, store)
}

#[test]
fn a_removed_member_cannot_read_what_is_written_afterwards() {
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    let (dir, store) = local_drive(&alice);
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    let a = alice.mount(&store);
    build_alice_tree(&a);
    share_with(&alice, &a, &bob, false);
    // The root, and folders inside a shared folder, are not shared.
    let bob_fp = bob.fingerprint();
    for (path, phrase) in [
        (a.mnt.clone(), "root cannot be shared"),
        (a.path(SHARED).join("sub"), "do not nest"),
    ] {
        let args = ["share", "add", s(&path), "--with", "bob@test"];
        let out = alice.run(&args);
        expect_error(&out, 1, phrase);
    }
    // A second folder stays shared with Bob, so he can still mount.
    std::fs::create_dir(a.path(KEPT)).unwrap();
    std::fs::write(a.path(KEPT).join("note"), b"still yours\n").unwrap();
    let kept = a.path(KEPT);
    alice.ok(&[
        "share",
        "add",
        s(&kept),
        "--with",
        "bob@test",
        "--fingerprint",
        &bob_fp,
    ]);
    sync(&alice, &a);
    let bob_cache = bob.new_dir("cache");
    let fp = alice.fingerprint();
    let b = bob.mount_at(
        &store,
        &bob.new_dir("mnt"),
        &bob_cache,
        &["--owner-fingerprint", &fp],
    );
    assert_eq!(names(&b.mnt), [KEPT, SHARED]);
    assert_eq!(
        std::fs::read(b.path(SHARED).join(SHARED_FILE)).unwrap(),
        SHARED_TEXT
    );

    // Alice removes Bob, then writes a new file and changes an old one.
    let folder = a.path(SHARED);
    let out = alice.ok(&["share", "remove", s(&folder), "--with", "bob@test"]);
    assert!(out.contains("removed bob@test"), "{out}");
    let listed = alice.ok(&["share", "list", s(&folder)]);
    assert!(
        !listed.contains("bob@test") && !listed.contains(KEPT),
        "{listed}"
    );
    assert!(listed.contains("key generation 1"), "{listed}");
    std::fs::write(folder.join(AFTER_FILE), AFTER_TEXT).unwrap();
    std::fs::write(folder.join(SHARED_FILE), AFTER_TEXT).unwrap();
    sync(&alice, &a);

    // Bob's running mount, once refreshed, no longer shows the folder.
    sync(&bob, &b);
    assert_eq!(names(&b.mnt), [KEPT]);
    assert!(std::fs::read(b.path(SHARED).join(AFTER_FILE)).is_err());
    b.unmount();

    // Bob mounts again with his key, with the cache he kept and with a
    // fresh one: only the folder still shared with him is there.
    for cache in [bob_cache.clone(), bob.new_dir("cache")] {
        let b = bob.mount_at(&store, &bob.new_dir("mnt"), &cache, &[]);
        assert_eq!(names(&b.mnt), [KEPT]);
        assert!(std::fs::read(b.path(SHARED).join(AFTER_FILE)).is_err());
        assert_eq!(
            std::fs::read(b.path(KEPT).join("note")).unwrap(),
            b"still yours\n"
        );
        b.unmount();
    }
    // Removed from every folder, he has nothing to mount.
    alice.ok(&["share", "remove", s(&kept), "--with", "bob@test"]);
    sync(&alice, &a);
    let out = bob.try_mount(&store, &bob.new_dir("mnt"), &bob_cache, &[]);
    expect_error(&out, 45, "shares no folder with your key");

    // Re-encrypting rewrites every block; Alice still reads everything,
    // also from a fresh cache.
    alice.ok(&["share", "rotate", "--reencrypt", s(&folder)]);
    sync(&alice, &a);
    assert!(std::fs::read(folder.join("sub/big.bin")).unwrap() == pattern(3 << 20, 71));
    a.unmount();
    let again = alice.mount(&store);
    let folder = again.path(SHARED);
    assert_eq!(std::fs::read(folder.join(AFTER_FILE)).unwrap(), AFTER_TEXT);
    assert_eq!(std::fs::read(folder.join(SHARED_FILE)).unwrap(), AFTER_TEXT);
    assert!(std::fs::read(folder.join("sub/big.bin")).unwrap() == pattern(3 << 20, 71));
    again.unmount();
    let all = local_store_bytes(&dir);
    for marker in [
        AFTER_FILE.as_bytes(),
        AFTER_TEXT,
        SHARED.as_bytes(),
        KEPT.as_bytes(),
    ] {
        assert!(!contains(&all, marker));
    }
}

#[test]
fn a_store_that_swaps_bobs_card_gets_no_share() {
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    // The attacker's own keys, under Bob's identity.
    let mallory = Home::named("bob");
    let (_dir, store) = local_drive(&alice);
    let operator = Operator::new(&store);
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    let a = alice.mount(&store);
    build_alice_tree(&a);
    let folder = a.path(SHARED);
    let (real, forged) = (bob.card(), mallory.card());

    // 1. The bytes of Bob's published objects swapped for the forged card:
    //    the objects are skipped as invalid and no card is left to use.
    operator.put(&card_key("bob@test", real.id()).unwrap(), forged.to_bytes());
    operator.put(&id_key(real.id()), forged.to_bytes());
    let add = |extra: &[&str]| {
        let mut args = vec!["share", "add", s(&folder), "--with"];
        args.extend_from_slice(extra);
        alice.run(&args)
    };
    let out = add(&["bob@test"]);
    expect_error(&out, 42, "no card for bob@test");
    assert!(
        stderr(&out).contains("warning: skipped store object"),
        "{}",
        stderr(&out)
    );
    expect_error(
        &add(&["bob@test", "--fingerprint", &real.fingerprint()]),
        42,
        "no card",
    );
    expect_error(&add(&[&real.id().to_string()]), 42, "no card");

    // 2. The forged card published properly under its own name, Bob's
    //    removed: only the attacker's card is on offer. Without a
    //    fingerprint Alice is shown the forged one (which Bob would not
    //    confirm); with Bob's real fingerprint it is refused.
    operator.delete(&card_key("bob@test", real.id()).unwrap());
    operator.delete(&id_key(real.id()));
    mallory.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    let out = add(&["bob@test"]);
    expect_error(&out, 40, &forged.fingerprint());
    assert!(!stderr(&out).contains(&real.fingerprint()));
    let out = add(&["bob@test", "--fingerprint", &real.fingerprint()]);
    expect_error(&out, 41, "key-substitution");
    // Nothing was pinned or shared on the way.
    assert!(alice.run(&["card", "show", "bob@test"]).status.code() != Some(0));
    assert!(!share_list(&alice, &a).contains("bob@test"));

    // 3. Once Alice pinned Bob's real card, the swapped directory does not
    //    matter: the pin is used, and Bob (not Mallory) gets the folder.
    let card_file = alice.path().join("bob.card");
    std::fs::write(&card_file, real.to_text()).unwrap();
    alice.ok(&["card", "import", s(&card_file)]);
    alice.ok(&["share", "add", s(&folder), "--with", "bob@test"]);
    sync(&alice, &a);
    let fp = alice.fingerprint();
    let b = bob.mount_with(&store, &["--owner-fingerprint", &fp]);
    assert_sees_shared_folder(&b);
    b.unmount();
    let out = mallory.try_mount(
        &store,
        &mallory.new_dir("mnt"),
        &mallory.new_dir("cache"),
        &["--owner-fingerprint", &fp],
    );
    expect_error(&out, 45, "shares no folder with your key");
    a.unmount();
}

#[test]
fn a_drive_with_a_forged_owner_is_not_mounted() {
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    let dave = Home::named("dave");
    let mallory = Home::named("alice");
    let (_dir, store) = local_drive(&alice);
    // Bob pinned Alice's real card (exchanged by hand).
    let card_file = bob.path().join("alice.card");
    std::fs::write(&card_file, alice.card().to_text()).unwrap();
    bob.ok(&["card", "import", s(&card_file)]);

    // The store replaces the drive header with one of Mallory's own drive
    // (validly signed, naming Mallory's "alice" card as the owner).
    let (_other_dir, other) = local_drive(&mallory);
    let (operator, other) = (Operator::new(&store), Operator::new(&other));
    let genuine = operator.get("drive");
    operator.put("drive", other.get("drive"));
    let try_mount = |user: &Home, extra: &[&str]| {
        user.try_mount(&store, &user.new_dir("mnt"), &user.new_dir("cache"), extra)
    };
    let out = try_mount(&bob, &[]);
    expect_error(&out, 41, "key-substitution");
    assert!(stderr(&out).contains(&mallory.fingerprint()));
    // Dave never pinned Alice: he is shown the forged fingerprint, and
    // Alice's real one (told to him by Alice) does not match it.
    expect_error(&try_mount(&dave, &[]), 40, &mallory.fingerprint());
    let real_fp = alice.fingerprint();
    expect_error(
        &try_mount(&dave, &["--owner-fingerprint", &real_fp]),
        41,
        "not the",
    );
    // Alice herself does not take the forged drive for hers.
    expect_error(&try_mount(&alice, &[]), 41, "key-substitution");

    // A header signed by Mallory's key but carrying Alice's real card:
    // the card does not hold the owner keys the header names.
    let mut header = DriveHeader::open(&other.get("drive")).unwrap();
    header.owner_card = alice.card().to_bytes();
    let key = mallory.unlock_key("alice");
    operator.put("drive", header.seal(key.signing_key()));
    expect_error(&try_mount(&bob, &[]), 44, "not consistent");
    expect_error(&try_mount(&alice, &[]), 44, "not consistent");

    // The genuine header back: Alice mounts her drive again.
    operator.put("drive", genuine);
    alice.mount(&store).unmount();
}

/// Contents of `dir/NAME` and of its conflict copies (`NAME.conflict-...`).
fn versions(dir: &Path, name: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = names(dir)
        .iter()
        .filter(|n| n.as_str() == name || n.starts_with(&format!("{name}.conflict-")))
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn concurrent_edits_by_two_members_keep_both_versions() {
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    let (_dir, store) = local_drive(&alice);
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    // No timed pulls: each mount sees the other's changes only when told.
    let quiet = ["--refresh", "3600"];
    let a = alice.mount_with(&store, &quiet);
    build_alice_tree(&a);
    std::fs::write(a.path(SHARED).join("doc.txt"), b"base\n").unwrap();
    share_with(&alice, &a, &bob, false);
    sync(&alice, &a);
    let fp = alice.fingerprint();
    let b = bob.mount_with(&store, &["--refresh", "3600", "--owner-fingerprint", &fp]);
    assert_eq!(
        std::fs::read(b.path(SHARED).join("doc.txt")).unwrap(),
        b"base\n"
    );

    // Both change the file from the same version before seeing the other's.
    let (mine, theirs) = (
        b"alice's version\n".to_vec(),
        b"bob's longer version\n".to_vec(),
    );
    std::fs::write(a.path(SHARED).join("doc.txt"), &mine).unwrap();
    std::fs::write(b.path(SHARED).join("doc.txt"), &theirs).unwrap();
    sync(&alice, &a);
    sync(&bob, &b);
    sync(&alice, &a);
    let mut both = vec![mine, theirs];
    both.sort();
    assert_eq!(versions(&a.path(SHARED), "doc.txt"), both);
    assert_eq!(versions(&b.path(SHARED), "doc.txt"), both);
    b.unmount();
    a.unmount();
}

/// The objects of the one shared volume: its newest keyring and its log.
fn shared_volume(op: &Operator) -> (String, String, Vec<String>) {
    let header = DriveHeader::open(&op.get("drive")).unwrap();
    let root: String = header
        .root_volume
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let rings = op.list("k/");
    let newest = rings
        .iter()
        .rfind(|k| !k.starts_with(&format!("k/{root}/")))
        .expect("a shared folder's keyring")
        .clone();
    let vhex = newest.split('/').nth(1).unwrap().to_string();
    let log = op.list(&format!("v/{vhex}/l/"));
    (vhex, newest, log)
}

/// Bob, removed from the folder, writes a change to it with the keys he
/// had (his signing key, the folder key of his last generation), and the
/// store swaps the folder's keyring: Alice's mount never applies either,
/// and her other folders keep working.
#[test]
fn a_removed_writers_forged_change_and_a_forged_keyring_are_refused() {
    use cardfs::format::meta::Keyring;
    let alice = Home::named("alice");
    let bob = Home::named("bob");
    let (_dir, store) = local_drive(&alice);
    bob.ok(&["card", "publish", "--key", "bob", "--store", &store]);
    let a = alice.mount(&store);
    build_alice_tree(&a);
    share_with(&alice, &a, &bob, false);
    sync(&alice, &a);
    let op = Operator::new(&store);

    // What Bob holds while he is a writer: the folder key of this generation.
    let (vhex, ring_name, _) = shared_volume(&op);
    let alice_vk = alice.unlock_key("alice").ed25519_public();
    let bob_key = bob.unlock_key("bob");
    let (ring, bob_folder_key) =
        Keyring::open(&op.get(&ring_name), &alice_vk, bob_key.x25519_secret()).unwrap();

    let folder = a.path(SHARED);
    alice.ok(&["share", "remove", s(&folder), "--with", "bob@test"]);
    sync(&alice, &a);
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o7777
    };
    let mode_before = mode(&folder);

    // Bob's forged change: the next log entry, signed by him, under the
    // generation in which he was a writer.
    let (_, _, log) = shared_volume(&op);
    let last = log.last().unwrap();
    let seq = log.len() as u64;
    let forged = crate::support::forge::chmod_root_entry(
        ring.volume,
        seq,
        ring.generation,
        bob.card().id().0,
        &op.get(last),
        &bob_folder_key,
        bob_key.signing_key(),
    );
    let forged_name = format!("v/{vhex}/l/{seq:016x}");
    op.put(&forged_name, forged);

    // Alice's running mount pulls, refuses the entry, and keeps the folder
    // as it was; a fresh mount refuses the folder (EIO) but not the rest.
    let out = alice.run(&["sync", s(&a.mnt)]);
    assert!(
        !out.status.success() && stderr(&out).contains(&forged_name),
        "sync must report the forged entry: {}",
        stderr(&out)
    );
    assert_eq!(mode(&folder), mode_before, "forged change applied");
    a.unmount();
    let fresh = alice.mount(&store);
    let err = std::fs::read(fresh.path(SHARED).join(SHARED_FILE)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        std::fs::read(fresh.path(PRIVATE).join(PRIVATE_FILE)).unwrap(),
        PRIVATE_TEXT
    );
    fresh.unmount();

    // The store removes the forged entry and instead swaps the keyring for
    // one wrapping a key of its own to every member, signed by itself.
    op.delete(&forged_name);
    let (_, newest, _) = shared_volume(&op);
    let good = op.get(&newest);
    let attacker = cardfs::format::key::UserKey::generate("mallory").unwrap();
    let (current, _) =
        Keyring::open(&good, &alice_vk, alice.unlock_key("alice").x25519_secret()).unwrap();
    let evil = current
        .seal(
            &cardfs::format::crypto::SecretKey::random(),
            attacker.signing_key(),
        )
        .unwrap();
    for (what, bytes) in [
        ("re-sealed by the store", evil),
        ("shortened", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ] {
        op.put(&newest, bytes);
        let m = alice.mount(&store);
        let err = std::fs::read(m.path(SHARED).join(SHARED_FILE)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{what}: {err}");
        assert_eq!(
            std::fs::read(m.path(PRIVATE).join(PRIVATE_FILE)).unwrap(),
            PRIVATE_TEXT,
            "{what}"
        );
        m.unmount();
    }
    op.put(&newest, good);
    let m = alice.mount(&store);
    assert_eq!(
        std::fs::read(m.path(SHARED).join(SHARED_FILE)).unwrap(),
        SHARED_TEXT
    );
    m.unmount();
}
