//! Real FUSE mounts of drives on the real S3 server from
//! `scripts/s3-server` (tests fail, never skip, without one), exercised
//! with the tools people use (see tests/common/scenarios.rs), plus the
//! server going away while files are written.

use crate::support::mount::{Home, assert_ok, bucket_bytes, new_bucket, sh};
use crate::support::private_s3::PrivateServer;
use crate::support::s3;
use crate::support::scenarios::{self, pattern};

fn s3_drive() -> (Home, String) {
    let env = s3();
    let home = Home::with_s3(env);
    let store = new_bucket(env);
    home.init(&store);
    (home, store)
}

#[test]
fn tree_round_trip_to_an_empty_cache() {
    let (home, store) = s3_drive();
    scenarios::tree_round_trip(&home, &store);
}

#[test]
fn cp_rsync_tar_mv_find_du_df() {
    let (home, store) = s3_drive();
    scenarios::copy_tools(&home, &store);
}

#[test]
fn git_and_sqlite() {
    let (home, store) = s3_drive();
    scenarios::git_and_sqlite(&home, &store);
}

#[test]
fn mmap_read_write() {
    let (home, store) = s3_drive();
    scenarios::mmap_read_write(&home, &store);
}

#[test]
fn no_plaintext_in_the_store() {
    let (home, store) = s3_drive();
    let env = s3().clone();
    scenarios::no_plaintext(&home, &store, || bucket_bytes(&env, &store));
}

#[test]
fn kill_9_keeps_fsynced_files() {
    let (home, store) = s3_drive();
    scenarios::kill_9_keeps_fsynced_files(&home, &store);
}

/// Stop the S3 server while writing: writes keep succeeding into the
/// cache; start it again; `cardfs sync` gets everything there, as a fresh
/// mount shows.
#[test]
fn server_stopped_while_writing_then_everything_arrives() {
    let data = tempfile::tempdir().unwrap();
    let server = PrivateServer::start(data.path().to_path_buf(), None);
    let (home, store) = server.drive();
    let m = home.mount(&store);
    std::fs::write(m.path("before.bin"), pattern(3 << 20, 20)).unwrap();
    assert_ok(&m.cardfs(&["sync", &m.mnt.display().to_string()]), "sync");

    server.stop();
    for i in 0..8u64 {
        std::fs::write(m.path(&format!("during-{i}.bin")), pattern(2 << 20, 30 + i)).unwrap();
    }
    sh(
        &m.mnt,
        "mkdir -p dir/sub && echo offline > dir/sub/note && sync during-0.bin",
    );

    let restarted = PrivateServer::start(server.dir.clone(), Some(server.port));
    assert_ok(
        &m.cardfs(&["sync", &m.mnt.display().to_string()]),
        "sync after restart",
    );
    m.unmount();

    let fresh = home.mount(&store);
    assert!(std::fs::read(fresh.path("before.bin")).unwrap() == pattern(3 << 20, 20));
    for i in 0..8u64 {
        let got = std::fs::read(fresh.path(&format!("during-{i}.bin"))).unwrap();
        assert!(got == pattern(2 << 20, 30 + i), "during-{i}.bin differs");
    }
    assert_eq!(
        std::fs::read_to_string(fresh.path("dir/sub/note")).unwrap(),
        "offline\n"
    );
    fresh.unmount();
    drop(restarted);
}
