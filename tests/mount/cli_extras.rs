//! Smaller command-line promises, through the real binary: `init
//! --create-bucket`, `card show` dates and key names, `key list` with a
//! corrupt key file, a private cache directory, and what Ctrl-C of a
//! foreground mount says it did.

use crate::support::mount::{Home, assert_ok, expect_error, is_mounted, local_drive};
use crate::support::{s3, unique};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

#[test]
fn init_create_bucket_makes_the_bucket_then_the_drive() {
    let env = s3();
    let home = Home::with_s3(env);
    let store = format!("s3://{}", unique("cardfs-create").to_lowercase());
    let init = |extra: &[&str]| {
        home.cmd()
            .args(["init", &store, "--key", &home.key, "--password-file"])
            .arg(&home.password_file)
            .args(extra)
            .output()
            .unwrap()
    };
    expect_error(&init(&[]), 21, "does not exist");
    let out = init(&["--create-bucket"]);
    assert_ok(&out, "init --create-bucket");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("is ready"), "{said}");
    let m = home.mount(&store);
    std::fs::write(m.path("f"), b"in the new bucket").unwrap();
    m.unmount();
    // An existing bucket of yours is fine; the drive in it is not replaced.
    expect_error(&init(&["--create-bucket"]), 24, "already holds a drive");
    // A local directory needs no bucket: bad usage.
    let dir = home.new_dir("local");
    let out = home
        .cmd()
        .args(["init", dir.to_str().unwrap(), "--create-bucket"])
        .args(["--key", &home.key, "--password-file"])
        .arg(&home.password_file)
        .output()
        .unwrap();
    expect_error(&out, 2, "--create-bucket is for s3:// stores");
}

#[test]
fn card_show_prints_dates_and_takes_a_key_name() {
    let home = Home::new();
    let by_identity = home.ok(&["card", "show", &home.identity()]);
    // Test cards are made at Unix time 1 700 000 000.
    assert!(
        by_identity.contains("created      2023-11-14 22:13:20 UTC"),
        "{by_identity}"
    );
    assert!(!by_identity.contains("Unix time"), "{by_identity}");
    let by_key = home.ok(&["card", "show", &home.key]);
    assert_eq!(by_key, by_identity);
    home.make_key_only("cardless");
    expect_error(&home.run(&["card", "show", "cardless"]), 12, "has no card");
}

#[test]
fn a_corrupt_key_file_does_not_hide_the_others() {
    let home = Home::new();
    std::fs::write(home.path().join("keys/broken.key"), b"garbage").unwrap();
    let listed = home.ok(&["key", "list"]);
    assert!(listed.contains("tester\targon2id"), "{listed}");
    let broken = listed
        .lines()
        .find(|l| l.starts_with("broken\t"))
        .unwrap_or_else(|| panic!("the corrupt key is not listed: {listed}"));
    assert!(broken.contains("unreadable"), "{broken}");
    // Commands that need the other key keep working.
    let cards = home.ok(&["card", "list"]);
    assert!(cards.contains("your key tester"), "{cards}");
}

/// Every file under `dir` is 0600 and every directory 0700 (at most).
fn assert_private(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
                files += 1;
            }
        }
    }
    assert!(files > 2, "nothing was checked under {}", dir.display());
}

#[test]
fn the_cache_directory_is_private() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    assert_eq!(
        std::fs::metadata(&m.cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for i in 0..5 {
        std::fs::write(m.path(&format!("f{i}")), vec![i as u8; 300_000]).unwrap();
    }
    std::fs::read(m.path("f1")).unwrap();
    assert_private(&m.cache);
    let cache = m.cache.clone();
    m.unmount();
    assert_private(&cache);
}

#[test]
fn ctrl_c_of_a_foreground_mount_says_what_it_did() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let child = home
        .cmd()
        .args(["mount", &store, mnt.to_str().unwrap(), "--foreground"])
        .args(["--key", &home.key, "--password-file"])
        .arg(&home.password_file)
        .arg("--cache-dir")
        .arg(home.new_dir("cache"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    /// Detaches the mount and kills the daemon if the test fails.
    struct Guard<'a>(&'a Path, u32);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.1.to_string()])
                .status();
        }
    }
    let _guard = Guard(&mnt, child.id());
    for _ in 0..500 {
        if is_mounted(&mnt) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(is_mounted(&mnt), "the foreground mount never came up");
    std::fs::write(mnt.join("a.txt"), b"written before Ctrl-C").unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .output()
        .unwrap();
    assert_ok(&kill, "kill -INT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    let said = err
        .lines()
        .find(|l| l.starts_with("cardfs: SIGINT: committed "))
        .unwrap_or_else(|| panic!("Ctrl-C said nothing of what it did: {err}"));
    assert!(
        said.ends_with(&format!("to the store; unmounted {}", mnt.display())),
        "{said}"
    );
    assert!(!is_mounted(&mnt));
    let again = home.mount(&store);
    assert_eq!(
        std::fs::read(again.path("a.txt")).unwrap(),
        b"written before Ctrl-C"
    );
    again.unmount();
}
