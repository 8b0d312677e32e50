//! The `cardfs key|card|authority|encrypt|decrypt` commands, run as a user
//! would, with two (or three) users on one machine, each with their own
//! `CARDFS_HOME`. Keys use the hidden test-only `--insecure-test-kdf` flag
//! except in the one test that checks the default Argon2id parameters.

use crate::support::user::{User, s, text};
use std::process::Command;
#[test]
fn two_users_exchange_cards_encrypt_sign_and_verify() {
    let a = User::new();
    let b = User::new();
    let alice_card = a.setup("alice");
    let bob_card = b.setup("bob");
    assert_eq!(
        text(std::fs::read(&alice_card).unwrap())
            .trim()
            .lines()
            .count(),
        1
    );
    a.ok(&["card", "import", s(&bob_card)]);
    b.ok(&["card", "import", s(&alice_card)]);
    let listed = text(b.ok(&["card", "list"]));
    assert!(
        listed.contains("alice\t") && listed.contains("your key bob"),
        "{listed}"
    );

    // Encrypt for both; both decrypt.
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let input = a.file("in.bin");
    std::fs::write(&input, &plain).unwrap();
    let both = a.file("both.cfe");
    a.ok(&[
        "encrypt",
        "--to",
        "alice",
        "--to",
        "bob",
        "-o",
        s(&both),
        s(&input),
    ]);
    let shared = b.file("both.cfe");
    std::fs::copy(&both, &shared).unwrap();
    assert_eq!(a.ok(&["decrypt", s(&both)]), plain);
    assert_eq!(b.ok(&["decrypt", s(&shared)]), plain);

    // Sign-then-encrypt from alice to bob, armored, through stdin/stdout.
    let out = a.cmd(
        &["encrypt", "--to", "bob", "--sign-with", "alice", "--armor"],
        Some("pw"),
        b"hello bob, this is alice",
    );
    assert!(out.status.success());
    let armored = out.stdout;
    assert!(text(armored.clone()).starts_with("-----BEGIN CARDFS ENVELOPE-----\n"));
    let out = b.cmd(&["decrypt", "--verify-from", "alice"], Some("pw"), &armored);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello bob, this is alice");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Good signature from alice"));

    // Wrong sender: bob expects a message from himself.
    let err = b.fails(&["decrypt", "--verify-from", "bob"], &armored);
    assert!(err.contains("not by the expected sender"), "{err}");
    // Signature required but missing.
    let unsigned = a.ok(&["encrypt", "--to", "bob", s(&input)]);
    let err = b.fails(&["decrypt", "--verify-from", "alice"], &unsigned);
    assert!(err.contains("not signed"), "{err}");
    // Not a recipient: alice cannot read what was only for bob.
    let err = a.fails(&["decrypt"], &unsigned);
    assert!(err.contains("none of your keys is a recipient"), "{err}");
    let err = a.fails(&["decrypt", "--key", "alice"], &unsigned);
    assert!(err.contains("not a recipient"), "{err}");
}

#[test]
fn tampered_and_truncated_ciphertexts_fail_with_their_reason_and_leave_no_output() {
    let a = User::new();
    a.setup("alice");
    let plain = vec![7u8; 3 * 65536 + 100];
    let sealed = a.cmd(&["encrypt", "--to", "alice"], None, &plain).stdout;
    let out = a.file("out.bin");
    let check = |bytes: &[u8], expect: &str| {
        let err = a.fails(&["decrypt", "-o", s(&out)], bytes);
        assert!(err.contains(expect), "expected {expect:?} in {err}");
        assert!(!out.exists(), "partial output left behind");
        let leftovers: Vec<_> = std::fs::read_dir(a.home())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    };
    let header = 24 + 112 + 32;
    let chunk = 65536 + 16;
    check(&sealed[..header + 2 * chunk], "truncated");
    check(&sealed[..header - 5], "truncated");
    let mut flipped = sealed.clone();
    flipped[header + chunk + 7] ^= 1;
    check(&flipped, "chunk 1 was tampered with");
    let mut flipped = sealed.clone();
    flipped[24 + 40] ^= 1;
    check(&flipped, "header was tampered with");
    let mut version = sealed.clone();
    version[4] = 9;
    check(&version, "version 9 is not supported");
    check(b"hello, not an envelope", "not a cardfs envelope");
    // The good one still decrypts to the file.
    let good = a.cmd(&["decrypt", "-o", s(&out)], Some("pw"), &sealed);
    assert!(good.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), plain);
}

#[test]
fn key_commands_and_bad_passwords() {
    let a = User::new();
    // Empty password, from the environment.
    let out = a.cmd(
        &["key", "generate", "--name", "k", "--insecure-test-kdf"],
        Some(""),
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password is empty"));
    assert!(!a.file("keys/k.key").exists());
    // No password source and no terminal.
    let out = a.cmd(
        &["key", "generate", "--name", "k", "--insecure-test-kdf"],
        None,
        b"",
    );
    assert!(!out.status.success());
    // Password from a file.
    let pwfile = a.file("pw.txt");
    std::fs::write(&pwfile, "file-pw\n").unwrap();
    let out = a.cmd(
        &[
            "key",
            "generate",
            "--name",
            "k",
            "--insecure-test-kdf",
            "--password-file",
            s(&pwfile),
        ],
        None,
        b"",
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be recovered"));
    let listed = text(a.ok(&["key", "list"]));
    assert!(
        listed.starts_with("k\targon2id m=64 KiB t=1 p=1"),
        "{listed}"
    );
    let err = a.fails(
        &["key", "generate", "--name", "k", "--insecure-test-kdf"],
        b"",
    );
    assert!(err.contains("already exists"), "{err}");

    // Wrong password: one sentence, non-zero, nothing written.
    let before = std::fs::read(a.file("keys/k.key")).unwrap();
    let err = a.fails(&["card", "create", "--key", "k", "--identity", "kay"], b"");
    assert_eq!(err.matches("wrong password").count(), 1, "{err}");
    assert!(text(a.ok(&["card", "list"])).is_empty());
    let err = a.fails(
        &["card", "create", "--key", "nokey", "--identity", "kay"],
        b"",
    );
    assert!(err.contains("no key named \"nokey\""), "{err}");

    // passwd: old password from file, new from the environment.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardfs"));
    let status = cmd
        .args([
            "key",
            "passwd",
            "k",
            "--password-file",
            s(&pwfile),
            "--insecure-test-kdf",
        ])
        .env("CARDFS_HOME", a.home())
        .env("CARDFS_NEW_PASSWORD", "pw")
        .env_remove("CARDFS_PASSWORD")
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    assert_ne!(std::fs::read(a.file("keys/k.key")).unwrap(), before);
    a.ok(&["card", "create", "--key", "k", "--identity", "kay"]);

    // export / import into another home, still locked with the password.
    let exported = a.ok(&["key", "export", "k"]);
    assert!(text(exported.clone()).starts_with("cardfs-key:"));
    let b = User::new();
    let path = b.file("k.txt");
    std::fs::write(&path, &exported).unwrap();
    b.ok(&["key", "import", s(&path)]);
    assert_eq!(
        std::fs::read(b.file("keys/k.key")).unwrap(),
        std::fs::read(a.file("keys/k.key")).unwrap()
    );
    let err = b.fails(&["key", "import", s(&path)], b"");
    assert!(err.contains("already exists"), "{err}");
    // The export is a bundle: the key's card came with it.
    assert!(text(exported.clone()).contains("\ncardfs-card:"));
    assert!(text(b.ok(&["card", "list"])).contains("kay\t"));
    let card = a.ok(&["card", "export", "kay"]);
    let card_path = b.file("kay.card");
    std::fs::write(&card_path, card).unwrap();
    b.ok(&["card", "import", s(&card_path)]);
    let sealed = b.ok(&["encrypt", "--to", "kay", s(&card_path)]);
    assert_eq!(
        b.cmd(&["decrypt"], Some("pw"), &sealed).stdout,
        std::fs::read(&card_path).unwrap()
    );
    let err = b.fails(&["key", "import", s(&card_path)], b"");
    assert!(err.contains("not an importable key file"), "{err}");
}

#[test]
fn default_argon2id_parameters_are_stored_and_used() {
    let a = User::new();
    a.ok(&["key", "generate", "--name", "real"]);
    let listed = text(a.ok(&["key", "list"]));
    assert!(listed.contains("argon2id m=65536 KiB t=3 p=4"), "{listed}");
    a.ok(&["card", "create", "--key", "real", "--identity", "real"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.file("keys/real.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn malformed_cards_and_key_substitution_are_refused() {
    let a = User::new();
    let b = User::new();
    let mallory = User::new();
    let alice_card = a.setup("alice");
    b.setup("bob");
    // Mallory makes her own card claiming to be alice.
    mallory.ok(&["key", "generate", "--name", "m", "--insecure-test-kdf"]);
    let fake = mallory.ok(&["card", "create", "--key", "m", "--identity", "alice"]);
    let fake_path = b.file("fake.card");
    std::fs::write(&fake_path, &fake).unwrap();

    b.ok(&["card", "import", s(&alice_card)]);
    let err = b.fails(&["card", "import", s(&fake_path)], b"");
    assert!(err.contains("key-substitution"), "{err}");
    let show = text(b.ok(&["card", "show", "alice"]));
    let real_fp = show.lines().find(|l| l.starts_with("fingerprint")).unwrap()[13..].to_string();
    let err = b.fails(
        &["card", "import", s(&fake_path), "--replace", &real_fp],
        b"",
    );
    assert!(err.contains("not the"), "{err}");

    // Malformed and mis-signed cards.
    let good = text(std::fs::read(&alice_card).unwrap());
    let err = b.fails(&["card", "import", "-"], b"cardfs-card:AAAA");
    assert!(err.contains("refusing card"), "{err}");
    let err = b.fails(&["card", "import", "-"], b"not a card at all");
    assert!(err.contains("malformed"), "{err}");
    let mut chars: Vec<char> = good.trim().chars().collect();
    let i = chars.len() - 30;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let mis_signed: String = chars.into_iter().collect();
    let err = b.fails(&["card", "import", "-"], mis_signed.as_bytes());
    assert!(err.contains("refusing card"), "{err}");

    // With the right fingerprint, replacing is allowed (alice got a new key).
    let fake_fp = {
        let tmp = User::new();
        tmp.ok(&["card", "import", s(&fake_path)]);
        tmp.fingerprint("alice")
    };
    b.ok(&["card", "import", s(&fake_path), "--replace", &fake_fp]);
}

#[test]
fn authority_approved_cards_are_accepted_without_fingerprint_check() {
    let app = User::new();
    let a = User::new();
    let b = User::new();
    let authority_path = app.create_authority("acme", &b);
    let alice_card = a.setup("alice");
    b.setup("bob");
    b.ok(&["card", "import", s(&alice_card)]);

    // alice rotates to a new key; the application approves the new card.
    // Card times have one-second resolution and an approval only replaces
    // an older card, so let the clock move on first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let a2 = User::new();
    let new_card = a2.setup("alice");
    app.ok(&["card", "import", s(&new_card)]);
    let approved = app.ok(&["card", "approve", "alice", "--authority", "acme"]);
    let approved_path = b.file("alice-approved.card");
    std::fs::write(&approved_path, &approved).unwrap();

    // Not trusted yet: refused as a possible substitution.
    let err = b.fails(&["card", "import", s(&approved_path)], b"");
    assert!(err.contains("key-substitution"), "{err}");
    b.ok(&["authority", "trust", s(&authority_path)]);
    let out = text(b.ok(&["card", "import", s(&approved_path)]));
    assert!(out.contains("approved by authority acme"), "{out}");
    assert!(text(b.ok(&["card", "list"])).contains("approved by acme"));
    assert!(text(b.ok(&["authority", "list"])).starts_with("acme\t"));
    // bob can now encrypt to the new alice and she can read it.
    let sealed = b.ok(&["encrypt", "--to", "alice", s(&approved_path)]);
    assert_eq!(a2.cmd(&["decrypt"], Some("pw"), &sealed).stdout, approved);
    let err = a.fails(&["decrypt"], &sealed);
    assert!(err.contains("recipient"), "{err}");
}
