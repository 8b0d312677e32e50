//! Child-process crash harness: a test binary re-runs one of its own
//! (ignored) tests as a child with `DIR|ROLE` in an environment variable,
//! waits for the child to print READY, and kills it with SIGKILL, as the
//! kernel kills an OOM victim or `kill -9` a daemon. Parent and child share
//! a local-directory store in `DIR/store` and the owner's identity in
//! `DIR/id`.

use super::faulty;
use cardfs::drive::{Drive, DriveOptions, Identity};
use cardfs::store::{FaultStore, LocalStore, ObjectStore};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The local-directory store `dir/store` that parent and child share.
pub fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalStore::open(dir.join("store")).unwrap())
}

/// A new drive in [`local_store`], its owner's identity saved in `dir/id`
/// for the child.
pub async fn new_drive(dir: &Path) -> (Arc<dyn ObjectStore>, Identity) {
    let store = local_store(dir);
    let id = Identity::generate();
    Drive::create_drive(store.clone(), &id, b"card")
        .await
        .unwrap();
    save_identity(&id, &dir.join("id"));
    (store, id)
}

/// Options with the cache directory `cache` and no refresh timer.
pub fn quiet_opts(cache: PathBuf) -> DriveOptions {
    let mut o = DriveOptions::new(cache);
    o.refresh_interval = std::time::Duration::from_secs(3600);
    o
}

/// The child's argument for `dir` and `role`.
pub fn child_arg(dir: &Path, role: &str) -> String {
    format!("{}|{role}", dir.display())
}

/// In a child: its directory and role from `env_var`; `None` when the
/// entry runs on its own (it then does nothing).
pub fn child_role(env_var: &str) -> Option<(PathBuf, String)> {
    let arg = std::env::var(env_var).ok()?;
    let (dir, role) = arg.split_once('|').unwrap();
    Some((PathBuf::from(dir), role.to_string()))
}

/// In a child: the drive of [`new_drive`] opened with the cache `dir/cache`
/// over [`local_store`] behind the fault wrapper (injecting nothing yet).
pub async fn open_in_child(dir: &Path, cache: &str) -> (Drive, Arc<FaultStore>) {
    let flaky = faulty(local_store(dir));
    let d = Drive::open_drive(
        flaky.clone(),
        load_identity(&dir.join("id")),
        quiet_opts(dir.join(cache)),
    )
    .await
    .unwrap();
    (d, flaky)
}

/// Writes the identity's secrets to `path` so a child can open the drive.
pub fn save_identity(id: &Identity, path: &Path) {
    let bytes = [
        id.x25519.to_bytes().as_slice(),
        &id.ed25519.to_bytes(),
        &id.card_id,
    ]
    .concat();
    std::fs::write(path, bytes).unwrap();
}

pub fn load_identity(path: &Path) -> Identity {
    let b = std::fs::read(path).unwrap();
    Identity::new(
        x25519_dalek::StaticSecret::from(<[u8; 32]>::try_from(&b[..32]).unwrap()),
        ed25519_dalek::SigningKey::from_bytes(&b[32..64].try_into().unwrap()),
        b[64..96].try_into().unwrap(),
    )
}

/// Runs the ignored test `entry` of this binary (its full name, see
/// `support::test_name`) as a child with `env_var` set to `arg`, and
/// SIGKILLs it as soon as it prints `CHILD-READY` (panics if it exits
/// without doing so).
pub fn run_child_and_kill(entry: &str, env_var: &str, arg: &str) {
    run_child_and_kill_after(entry, env_var, arg, || {}, std::time::Duration::ZERO)
}

/// [`run_child_and_kill`], calling `on_ready` at READY and waiting `delay`
/// before SIGKILL (to kill the child while work it started after READY is
/// in flight).
pub fn run_child_and_kill_after(
    entry: &str,
    env_var: &str,
    arg: &str,
    on_ready: impl FnOnce(),
    delay: std::time::Duration,
) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            entry,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env_var, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut ready = false;
    for line in out.lines() {
        if line.unwrap().contains("CHILD-READY") {
            ready = true;
            break;
        }
    }
    if ready {
        on_ready();
        std::thread::sleep(delay);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(ready, "child never reported READY");
}

/// Tells the parent that the child may be killed now.
pub fn ready() {
    println!("CHILD-READY");
    std::io::stdout().flush().unwrap();
}
