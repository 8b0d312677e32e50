//! Real FUSE mounts of drives on the local-directory store, exercised with
//! the tools people use (see tests/common/scenarios.rs).

mod common;

use common::mount::{Home, local_store_bytes};
use common::scenarios;

fn local_drive(home: &Home) -> String {
    let store = home.new_dir("store").to_string_lossy().into_owned();
    home.init(&store);
    store
}

#[test]
fn tree_round_trip_to_an_empty_cache() {
    let home = Home::new();
    scenarios::tree_round_trip(&home, &local_drive(&home));
}

#[test]
fn cp_rsync_tar_mv_find_du_df() {
    let home = Home::new();
    scenarios::copy_tools(&home, &local_drive(&home));
}

#[test]
fn git_and_sqlite() {
    let home = Home::new();
    scenarios::git_and_sqlite(&home, &local_drive(&home));
}

#[test]
fn mmap_read_write() {
    let home = Home::new();
    scenarios::mmap_read_write(&home, &local_drive(&home));
}

#[test]
fn no_plaintext_in_the_store() {
    let home = Home::new();
    let store = local_drive(&home);
    let dir = std::path::PathBuf::from(&store);
    scenarios::no_plaintext(&home, &store, || local_store_bytes(&dir));
}

#[test]
fn kill_9_keeps_fsynced_files() {
    let home = Home::new();
    scenarios::kill_9_keeps_fsynced_files(&home, &local_drive(&home));
}

#[test]
fn status_sync_and_sigterm() {
    let home = Home::new();
    scenarios::status_sync_and_sigterm(&home, &local_drive(&home));
}

#[test]
fn guard_unmounts_on_drop() {
    let home = Home::new();
    scenarios::guard_cleans_up(&home, &local_drive(&home));
}
