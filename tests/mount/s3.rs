//! Real FUSE mounts of drives on the real S3 server from
//! `scripts/s3-server` (tests fail, never skip, without one), exercised
//! with the tools people use (see tests/common/scenarios.rs), plus the
//! server going away while files are written.

use crate::support::mount::{Home, assert_ok, bucket_bytes, new_bucket, s3_vars, sh};
use crate::support::scenarios::{self, pattern};
use crate::support::{S3Env, project_root, s3};
use std::path::PathBuf;
use std::process::Command;

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

/// A server of our own, to stop and start; stopped on drop.
struct PrivateServer {
    dir: PathBuf,
    port: u16,
    env: S3Env,
}

impl PrivateServer {
    fn start(dir: PathBuf, port: Option<u16>) -> PrivateServer {
        let mut cmd = Command::new(project_root().join("scripts/s3-server"));
        cmd.arg("start").arg("--dir").arg(&dir);
        if let Some(port) = port {
            cmd.arg("--port").arg(port.to_string());
        }
        // No --watch-pid: its watchdog deletes the data directory when the
        // server stops, and this server must restart on the same data.
        // Drop stops it, also when the test fails.
        let out = cmd.output().unwrap();
        assert_ok(&out, "scripts/s3-server start");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_string()
        };
        let endpoint = var("AWS_ENDPOINT_URL");
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        PrivateServer {
            dir,
            port,
            env: S3Env {
                endpoint,
                access_key: var("AWS_ACCESS_KEY_ID"),
                secret_key: var("AWS_SECRET_ACCESS_KEY"),
                region: var("AWS_REGION"),
            },
        }
    }

    fn stop(&self) {
        let out = Command::new(project_root().join("scripts/s3-server"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert_ok(&out, "scripts/s3-server stop");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new(project_root().join("scripts/s3-server"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}

/// Stop the S3 server while writing: writes keep succeeding into the
/// cache; start it again; `cardfs sync` gets everything there, as a fresh
/// mount shows.
#[test]
fn server_stopped_while_writing_then_everything_arrives() {
    let data = tempfile::tempdir().unwrap();
    let server = PrivateServer::start(data.path().to_path_buf(), None);
    let mut home = Home::new();
    home.env = s3_vars(&server.env);
    let store = new_bucket(&server.env);
    home.init(&store);
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
