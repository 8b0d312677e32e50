//! `cardfs card publish|find|get` run as users would, with separate
//! `CARDFS_HOME`s, against a local-directory store and the real S3 server:
//! fingerprints, pinning, a store that swaps cards, and authorities.

use crate::support::user::{User, s, text};
use cardfs::format::card::Card;
use cardfs::identity::directory::{card_key, id_key};
use cardfs::store::S3Store;

fn card_of(user: &User, identity: &str) -> Card {
    Card::from_text(&text(user.ok(&["card", "export", identity]))).unwrap()
}

/// Runs a command that must fail after warnings; returns its last
/// stderr line (the error) and checks the others are warnings.
fn fails_with_warnings(user: &User, args: &[&str]) -> String {
    let out = user.cmd(args, Some("pw"), b"");
    assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
    let err = text(out.stderr);
    let lines: Vec<&str> = err.trim().lines().collect();
    let (last, warnings) = lines.split_last().unwrap();
    assert!(warnings.iter().all(|l| l.starts_with("warning: ")), "{err}");
    last.to_string()
}

/// Bob's side: finds Alice's card, cannot use it unpinned, a wrong
/// fingerprint is refused, the right one pins it.
fn find_and_pin(bob: &User, store: &str, alice_fp: &str, wrong_fp: &str) {
    let listed = text(bob.ok(&["card", "find", "alice", "--store", store]));
    assert!(
        listed.starts_with(&format!("alice\t{alice_fp}\t")),
        "{listed}"
    );
    assert!(listed.contains("unknown"), "{listed}");
    let err = bob.fails(&["card", "find", "alice", "--store", store, "--pin"], b"");
    assert!(
        err.contains(alice_fp) && err.contains("not pinned"),
        "{err}"
    );
    let err = bob.fails(
        &[
            "card",
            "find",
            "alice",
            "--store",
            store,
            "--fingerprint",
            wrong_fp,
            "--pin",
        ],
        b"",
    );
    assert!(err.contains("no card published for alice"), "{err}");
    assert!(bob.cmd(&["card", "show", "alice"], None, b"").status.code() != Some(0));
    bob.ok(&[
        "card",
        "find",
        "alice",
        "--store",
        store,
        "--fingerprint",
        alice_fp,
        "--pin",
    ]);
    assert_eq!(bob.fingerprint("alice"), alice_fp);
    let listed = text(bob.ok(&["card", "find", "alice", "--store", store]));
    assert!(listed.contains("\tpinned"), "{listed}");
}

#[test]
fn publish_to_a_directory_store_find_pin_and_get() {
    let alice = User::new();
    let bob = User::new();
    alice.setup("alice");
    bob.setup("bob");
    let store_dir = tempfile::tempdir().unwrap();
    let store = s(store_dir.path());
    let out = text(alice.ok(&["card", "publish", "--key", "alice", "--store", store]));
    assert!(out.starts_with("Published card alice"), "{out}");
    let out = text(alice.ok(&["card", "publish", "alice", "--store", store]));
    assert!(out.contains("already published"), "{out}");
    let alice_fp = alice.fingerprint("alice");
    find_and_pin(&bob, store, &alice_fp, &bob.fingerprint("bob"));

    // get by card id prints the verified card.
    let id = card_of(&alice, "alice").id().to_string();
    let got = text(bob.ok(&["card", "get", &id, "--store", store]));
    assert_eq!(Card::from_text(&got).unwrap(), card_of(&alice, "alice"));
    let err = bob.fails(&["card", "get", &"0".repeat(64), "--store", store], b"");
    assert!(err.contains("no card with id"), "{err}");
    let err = bob.fails(&["card", "get", "xyz", "--store", store], b"");
    assert!(err.contains("64 hex digits"), "{err}");
    let err = bob.fails(&["card", "find", "carol", "--store", store], b"");
    assert!(
        err.contains("no valid card is published for carol"),
        "{err}"
    );
    let missing = store_dir.path().join("typo");
    let err = bob.fails(&["card", "find", "alice", "--store", s(&missing)], b"");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists());
    let err = bob.fails(&["card", "find", "alice", "--store", "gs://x"], b"");
    assert!(err.contains("unsupported store scheme"), "{err}");
    let err = bob.fails(
        &["card", "publish", "--key", "nokey", "--store", store],
        b"",
    );
    assert!(err.contains("nokey"), "{err}");
}

#[test]
fn publish_to_s3_and_find_there() {
    let env = crate::support::s3();
    let bucket = crate::support::unique("cards").to_lowercase();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options = env.store_options();
        S3Store::new(&bucket, "", &options)
            .await
            .unwrap()
            .create_bucket()
            .await
            .unwrap();
    });
    let mut alice = User::new();
    let mut bob = User::new();
    for user in [&mut alice, &mut bob] {
        user.set_env("AWS_ACCESS_KEY_ID", &env.access_key);
        user.set_env("AWS_SECRET_ACCESS_KEY", &env.secret_key);
        user.set_env("AWS_REGION", &env.region);
    }
    // Alice names the endpoint on the command line, Bob through the
    // environment.
    bob.set_env("AWS_ENDPOINT_URL", &env.endpoint);
    alice.setup("alice");
    bob.setup("bob");
    let store = format!("s3://{bucket}/team");
    alice.ok(&[
        "card",
        "publish",
        "--key",
        "alice",
        "--store",
        &store,
        "--endpoint",
        &env.endpoint,
    ]);
    find_and_pin(
        &bob,
        &store,
        &alice.fingerprint("alice"),
        &bob.fingerprint("bob"),
    );
    let id = card_of(&alice, "alice").id().to_string();
    let got = text(bob.ok(&["card", "get", &id, "--store", &store]));
    assert_eq!(Card::from_text(&got).unwrap(), card_of(&alice, "alice"));
}

/// Replaces the object under `key` in the local store at `dir`.
fn overwrite(dir: &str, key: &str, bytes: Vec<u8>) {
    crate::support::Operator::new(dir).put(key, bytes);
}

#[test]
fn a_store_that_swaps_cards_gets_nothing() {
    let alice = User::new();
    let bob = User::new();
    let dave = User::new();
    let mallory = User::new();
    alice.setup("alice");
    bob.setup("bob");
    dave.setup("dave");
    // The attacker's keys under Alice's identity.
    mallory.setup("alice");
    let store_dir = tempfile::tempdir().unwrap();
    let store = s(store_dir.path());
    alice.ok(&["card", "publish", "--key", "alice", "--store", store]);
    let alice_fp = alice.fingerprint("alice");
    let forged_fp = mallory.fingerprint("alice");
    bob.ok(&[
        "card",
        "find",
        "alice",
        "--store",
        store,
        "--fingerprint",
        &alice_fp,
        "--pin",
    ]);

    // The forged card published next to the real one, under its own name:
    // Bob sees it as a mismatch and keeps the pinned card.
    mallory.ok(&["card", "publish", "--key", "alice", "--store", store]);
    let listed = text(bob.ok(&["card", "find", "alice", "--store", store]));
    assert!(
        listed.contains(&format!("{forged_fp}\t")) && listed.contains("MISMATCH"),
        "{listed}"
    );
    assert!(listed.contains(&format!("{alice_fp}\t")), "{listed}");
    bob.ok(&["card", "find", "alice", "--store", store, "--pin"]);
    assert_eq!(bob.fingerprint("alice"), alice_fp);

    // The store swaps the bytes of Alice's card objects for the forged
    // card. Bob's find warns and lists no card for alice; Dave, who never
    // pinned Alice, sees only the forged fingerprint, which is not the one
    // Alice told him, and pinning with Alice's fingerprint is refused.
    let real = card_of(&alice, "alice");
    let forged = card_of(&mallory, "alice").to_bytes();
    overwrite(
        store,
        &card_key("alice", real.id()).unwrap(),
        forged.clone(),
    );
    overwrite(store, &id_key(real.id()), forged);
    let out = bob.cmd(&["card", "find", "alice", "--store", store], None, b"");
    let listed = text(out.stdout);
    let warnings = text(out.stderr);
    // Only the forged card is listed (the pinned fingerprint appears in
    // its MISMATCH note).
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.starts_with(&format!("alice\t{forged_fp}\t")) && listed.contains("MISMATCH"),
        "{listed}"
    );
    assert!(
        warnings.contains("warning: skipped store object"),
        "{warnings}"
    );
    let err = fails_with_warnings(&bob, &["card", "find", "alice", "--store", store, "--pin"]);
    assert!(err.contains("key-substitution"), "{err}");
    let err = fails_with_warnings(
        &dave,
        &[
            "card",
            "find",
            "alice",
            "--store",
            store,
            "--fingerprint",
            &alice_fp,
            "--pin",
        ],
    );
    assert!(
        err.contains("no card published for alice has fingerprint"),
        "{err}"
    );
    let err = fails_with_warnings(&dave, &["card", "find", "alice", "--store", store, "--pin"]);
    assert!(err.contains(&forged_fp), "{err}");
    let err = bob.fails(
        &["card", "get", &real.id().to_string(), "--store", store],
        b"",
    );
    assert!(err.contains("is not a valid card"), "{err}");
    assert_eq!(bob.fingerprint("alice"), alice_fp);
    assert!(
        dave.cmd(&["card", "show", "alice"], None, b"")
            .status
            .code()
            != Some(0)
    );

    // Alice publishing again repairs her objects.
    let out = text(alice.ok(&["card", "publish", "--key", "alice", "--store", store]));
    assert!(out.contains("replacing an invalid object"), "{out}");
    dave.ok(&[
        "card",
        "find",
        "alice",
        "--store",
        store,
        "--fingerprint",
        &alice_fp,
        "--pin",
    ]);
}

#[test]
fn authority_approved_card_is_accepted_without_fingerprint() {
    let app = User::new();
    let alice = User::new();
    let erin = User::new();
    let authority_path = app.create_authority("acme", &erin);
    let alice_card = alice.setup("alice");
    erin.setup("erin");
    let store_dir = tempfile::tempdir().unwrap();
    let store = s(store_dir.path());
    alice.ok(&["card", "publish", "--key", "alice", "--store", store]);

    // The authority approves Alice's card and publishes the approval.
    app.ok(&["card", "import", s(&alice_card)]);
    app.ok(&["card", "approve", "alice", "--authority", "acme"]);
    let out = text(app.ok(&["card", "publish", "alice", "--store", store]));
    assert!(out.contains("added 1 approval"), "{out}");

    // Not trusted yet: unknown, and --pin alone is refused.
    let listed = text(erin.ok(&["card", "find", "alice", "--store", store]));
    assert!(listed.contains("unknown"), "{listed}");
    erin.fails(&["card", "find", "alice", "--store", store, "--pin"], b"");
    erin.ok(&["authority", "trust", s(&authority_path)]);
    let listed = text(erin.ok(&["card", "find", "alice", "--store", store]));
    assert!(
        listed.contains("approved by trusted authority acme"),
        "{listed}"
    );
    let out = erin.cmd(
        &["card", "find", "alice", "--store", store, "--pin"],
        Some("pw"),
        b"",
    );
    assert!(out.status.success());
    assert!(text(out.stderr).contains("approved by authority acme"));
    assert_eq!(erin.fingerprint("alice"), alice.fingerprint("alice"));
    // Alice re-publishing her bare card keeps the approval.
    let out = text(alice.ok(&["card", "publish", "--key", "alice", "--store", store]));
    assert!(out.contains("already published"), "{out}");
    assert!(text(erin.ok(&["card", "find", "alice", "--store", store])).contains("\tpinned"));
}
