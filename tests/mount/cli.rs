//! The command line's user errors: each one clear sentence and its own
//! exit code (docs/CLI.md), checked against real stores, keys and mounts.

use crate::support::mount::exit_code as code;
use crate::support::mount::{Home, PASSWORD, assert_ok, local_drive, new_bucket, s3_vars};
use std::process::Output;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code `want` and that stderr says `phrase`, in one line.
fn expect_error(out: &Output, want: i32, phrase: &str) {
    let err = stderr(out);
    assert_eq!(code(out), want, "stderr: {err}");
    assert!(err.contains(phrase), "expected {phrase:?} in: {err}");
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("cardfs:"))
            .count(),
        1,
        "one sentence expected: {err}"
    );
}

#[test]
fn wrong_password_is_exit_10() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let out = home
        .cmd()
        .args(["mount", &store])
        .arg(&mnt)
        .args(["--key", &home.key])
        .env("CARDFS_PASSWORD", format!("not {PASSWORD}"))
        .output()
        .unwrap();
    expect_error(&out, 10, "wrong password");
}

#[test]
fn missing_key_is_exit_11() {
    let home = Home::new();
    let store = home.new_dir("store");
    let out = home.try_init(&store.to_string_lossy(), "nobody");
    expect_error(&out, 11, "no key named \"nobody\"");
}

#[test]
fn key_without_card_is_exit_12() {
    let home = Home::new();
    home.make_key_only("cardless");
    let store = home.new_dir("store");
    let out = home.try_init(&store.to_string_lossy(), "cardless");
    expect_error(&out, 12, "has no card");
}

#[test]
fn mountpoint_errors_are_13_14_15() {
    let home = Home::new();
    let store = local_drive(&home);
    let cache = home.new_dir("cache");

    let missing = home.path().join("does-not-exist");
    let out = home.try_mount(&store, &missing, &cache, &[]);
    expect_error(&out, 13, "does not exist");

    let file = home.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = home.try_mount(&store, &file, &cache, &[]);
    expect_error(&out, 14, "not a directory");

    let mounted = home.mount(&store);
    let other_cache = home.new_dir("cache");
    let out = home.try_mount(&store, &mounted.mnt, &other_cache, &[]);
    expect_error(&out, 15, "already mounted");
    mounted.unmount();
}

#[test]
fn second_mount_of_a_cache_dir_is_exit_16() {
    let home = Home::new();
    let store = local_drive(&home);
    let first = home.mount(&store);
    let mnt2 = home.new_dir("mnt");
    let out = home.try_mount(&store, &mnt2, &first.cache, &[]);
    expect_error(&out, 16, "already used by another mount");
    first.unmount();
}

#[test]
fn unreachable_store_is_exit_20() {
    let mut home = Home::new();
    home.env = vec![
        ("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()),
        ("AWS_ACCESS_KEY_ID".into(), "x".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "y".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    let out = home.try_init("s3://some-bucket", &home.key);
    expect_error(&out, 20, "cannot reach the store");
}

#[test]
fn missing_bucket_is_exit_21() {
    let home = Home::with_s3(crate::support::s3());
    let bucket = crate::support::unique("no-such-bucket").to_lowercase();
    let out = home.try_init(&format!("s3://{bucket}"), &home.key);
    expect_error(&out, 21, "does not exist");
}

#[test]
fn rejected_credentials_are_exit_22() {
    let env = crate::support::s3();
    let store = new_bucket(env);
    let mut home = Home::new();
    home.env = s3_vars(env);
    home.env
        .push(("AWS_SECRET_ACCESS_KEY".into(), "wrong-secret".into()));
    let out = home.try_init(&store, &home.key);
    expect_error(&out, 22, "rejected the credentials");
}

#[test]
fn init_twice_is_exit_24_and_empty_store_is_exit_25() {
    let home = Home::new();
    let store = local_drive(&home);
    let out = home.try_init(&store, &home.key);
    expect_error(&out, 24, "already holds a drive");

    let empty = home.new_dir("empty-store");
    let out = home.try_mount(
        &empty.to_string_lossy(),
        &home.new_dir("mnt"),
        &home.new_dir("cache"),
        &[],
    );
    expect_error(&out, 25, "holds no drive");
}

/// The local store's drive header file (`objects/drive`): the 4-byte
/// magic, the u8 drive format version (2) and the u8 flags, checked.
fn drive_header(store: &str) -> (std::path::PathBuf, Vec<u8>) {
    let header = std::path::Path::new(store).join("objects/drive");
    let bytes = std::fs::read(&header).unwrap();
    assert_eq!(&bytes[..6], b"CFSD\x02\x00", "unexpected header layout");
    (header, bytes)
}

#[test]
fn drive_of_a_newer_format_is_exit_26() {
    let home = Home::new();
    let store = local_drive(&home);
    let (header, mut bytes) = drive_header(&store);
    bytes[4] = 3;
    std::fs::write(&header, bytes).unwrap();
    let out = home.try_mount(&store, &home.new_dir("mnt"), &home.new_dir("cache"), &[]);
    expect_error(&out, 26, "newer version of cardfs");
}

#[test]
fn drive_in_the_version_1_layout_is_exit_29() {
    let home = Home::new();
    let store = local_drive(&home);
    // A drive as format 1 wrote it: its header began `"CFSD" u16 1 u16 0`
    // (the same fields followed).
    let (header, bytes) = drive_header(&store);
    let v1 = [&b"CFSD\x01\x00\x00\x00"[..], &bytes[6..]].concat();
    std::fs::write(&header, v1).unwrap();
    let out = home.try_mount(&store, &home.new_dir("mnt"), &home.new_dir("cache"), &[]);
    expect_error(&out, 29, "drive format version 1");
    assert!(
        stderr(&out).contains("cardfs init"),
        "says what to do: {}",
        stderr(&out)
    );
}

#[test]
fn control_commands_on_a_non_mount_are_exit_30() {
    let home = Home::new();
    let dir = home.new_dir("plain");
    for cmd in ["unmount", "sync", "status"] {
        let out = home.cmd().arg(cmd).arg(&dir).output().unwrap();
        expect_error(&out, 30, "is not a running cardfs mount");
    }
    let out = home.cmd().arg("status").output().unwrap();
    assert_ok(&out, "cardfs status");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no cardfs drive is mounted"));
}
