//! Real mounts keep their promises when the store misbehaves: a replicated
//! SeaweedFS cluster losing a volume server mid-write loses nothing, and a
//! store that stops answering (SIGSTOP) shows as unreachable in
//! `cardfs status`, then recovers.
//!
//! Each test starts its own servers through `scripts/s3-server` (fails,
//! never skips, when they cannot start) and stops them on drop.

use crate::support::mount::{Home, Mounted, assert_ok, new_bucket, s3_vars};
use crate::support::pattern::pattern;
use crate::support::private_s3::{exported, exported_env};
use crate::support::{S3Env, project_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Servers of this test's own (`scripts/s3-server start [--cluster]`),
/// stopped on drop, also when the test fails.
struct Servers {
    dir: PathBuf,
    env: S3Env,
}

impl Servers {
    fn start(extra: &[&str]) -> Servers {
        let out = Command::new(project_root().join("scripts/s3-server"))
            .arg("start")
            .args(["--watch-pid", &std::process::id().to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert_ok(&out, "scripts/s3-server start");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Servers {
            dir: PathBuf::from(exported(&stdout, "CARDFS_S3_DIR")),
            env: exported_env(&stdout),
        }
    }

    /// The pid recorded in `DIR/NAME.pid`.
    fn pid(&self, name: &str) -> u32 {
        let path = self.dir.join(format!("{name}.pid"));
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// A user reaching these servers, with a new, initialised drive.
    fn drive(&self) -> (Home, String) {
        let mut home = Home::new();
        home.env = s3_vars(&self.env);
        let store = new_bucket(&self.env);
        home.init(&store);
        (home, store)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(self.dir.join("server.pid"))
            .unwrap_or_default()
            .lines()
        {
            // A stopped process must run again to exit on SIGTERM.
            signal(pid.trim(), "CONT");
        }
        let _ = Command::new(project_root().join("scripts/s3-server"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}

/// Signals the process group led by `pid` (the servers run under setsid).
fn signal(pid: &str, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stderr(std::process::Stdio::null())
        .status();
}

fn status(m: &Mounted) -> String {
    let out = m.cardfs(&["status", &m.mnt.display().to_string()]);
    assert_ok(&out, "cardfs status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cardfs status` until it says `want` (within `limit`).
fn wait_status(m: &Mounted, want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let text = status(m);
        if text.contains(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "cardfs status did not say {want:?} within {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The files this test writes: (name, length, seed).
fn files() -> Vec<(String, usize, u64)> {
    let mut v: Vec<(String, usize, u64)> = (0..24u64)
        .map(|i| {
            (
                format!("small/f{i:02}.bin"),
                (1 << 20) + 4099 * i as usize,
                100 + i,
            )
        })
        .collect();
    v.push(("big.bin".into(), 40 << 20, 7));
    v.push(("after/late.bin".into(), 3 << 20, 8));
    v
}

fn assert_files(root: &Path, files: &[(String, usize, u64)]) {
    for (name, len, seed) in files {
        let got = std::fs::read(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.len(), *len, "{name}: wrong length");
        assert!(got == pattern(*len, *seed), "{name}: contents differ");
    }
}

/// The scale-out path: a SeaweedFS cluster (1 master with replication 001,
/// 3 volume servers, 1 filer with the S3 gateway). One volume server is
/// killed with SIGKILL while files are written and their uploads pending;
/// `cardfs sync` still gets everything into the store, and a mount with an
/// empty cache reads every byte back.
#[test]
fn cluster_losing_a_volume_server_mid_write_loses_nothing() {
    let cluster = Servers::start(&["--cluster"]);
    let (home, store) = cluster.drive();
    let m = home.mount(&store);
    let files = files();
    std::fs::create_dir_all(m.path("small")).unwrap();
    std::fs::create_dir_all(m.path("after")).unwrap();
    let victim = cluster.pid("volume2");
    // The S3 gateway is held still (SIGSTOP) while the first files are
    // written, so their uploads are surely pending when the volume server
    // dies: on a loaded machine, writing through the mount is slow enough
    // for the uploads to keep up, and the kill would come too late (a CI
    // run at load 8 saw "pending uploads: 0").
    let filer = cluster.pid("filer").to_string();
    signal(&filer, "STOP");
    // The small files, then the big one (files[24]).
    let (first, rest) = files.split_at(25);
    for (name, len, seed) in first {
        std::fs::write(m.path(name), pattern(*len, *seed)).unwrap();
    }
    let before = status(&m);
    if before.contains("pending uploads: 0 changes, 0 bytes") {
        signal(&filer, "CONT");
        panic!("uploads done with the gateway stopped; the test would prove nothing:\n{before}");
    }
    // Kill one of the three volume servers with those uploads pending, let
    // the gateway go on, and keep writing.
    signal(&victim.to_string(), "KILL");
    crate::support::mount::wait_gone(victim);
    signal(&filer, "CONT");
    for (name, len, seed) in rest {
        std::fs::write(m.path(name), pattern(*len, *seed)).unwrap();
    }
    let sync = m.cardfs(&["sync", &m.mnt.display().to_string()]);
    assert_ok(&sync, "cardfs sync with one volume server down");
    assert_files(&m.mnt, &files);
    m.unmount();

    // Another machine: an empty cache, everything from the two volume
    // servers left.
    let fresh = home.mount(&store);
    assert_files(&fresh.mnt, &files);
    let entries = std::fs::read_dir(fresh.path("small")).unwrap().count();
    assert_eq!(entries, 24, "no file missing, none extra");
    fresh.unmount();
}

/// A store that accepts connections but does not answer (SIGSTOP) shows
/// as unreachable in `cardfs status` within the store timeout (6 s here,
/// `--store-timeout`) plus one refresh interval; writes go on into the cache; once the
/// server runs again, status says reachable and everything is committed.
#[test]
fn a_hung_store_shows_as_unreachable_then_recovers() {
    let server = Servers::start(&[]);
    let (home, store) = server.drive();
    let m = home.mount_with(&store, &["--refresh", "2", "--store-timeout", "6"]);
    std::fs::write(m.path("before.bin"), pattern(2 << 20, 1)).unwrap();
    assert_ok(&m.cardfs(&["sync", &m.mnt.display().to_string()]), "sync");
    wait_status(&m, "store reachable: yes", Duration::from_secs(10));

    let pid = server.pid("server").to_string();
    signal(&pid, "STOP");
    let took = wait_status(&m, "store reachable: no", Duration::from_secs(60));
    eprintln!("a stopped server was reported unreachable after {took:?}");
    // Writes keep going into the cache meanwhile.
    std::fs::write(m.path("during.bin"), pattern(3 << 20, 2)).unwrap();

    signal(&pid, "CONT");
    wait_status(&m, "store reachable: yes", Duration::from_secs(60));
    assert_ok(
        &m.cardfs(&["sync", &m.mnt.display().to_string()]),
        "sync after the server runs again",
    );
    m.unmount();
    let fresh = home.mount(&store);
    assert!(std::fs::read(fresh.path("before.bin")).unwrap() == pattern(2 << 20, 1));
    assert!(std::fs::read(fresh.path("during.bin")).unwrap() == pattern(3 << 20, 2));
    fresh.unmount();
}

/// A drive on a local-directory store.
fn local_drive() -> (Home, String) {
    let home = Home::new();
    let store = home.new_dir("store").to_string_lossy().into_owned();
    home.init(&store);
    (home, store)
}

/// Runs a shell script; returns its output whatever happens.
fn run_sh(script: &str) -> std::process::Output {
    Command::new("bash").arg("-c").arg(script).output().unwrap()
}

/// `cp` of a big file returns, the daemon is killed with SIGKILL at once
/// (nothing fsynced, uploads under way), the dead mount is detached with
/// `umount -l`, and a new mount on the same cache has the whole file,
/// which then reaches the store (a client with an empty cache reads it).
fn closed_big_file_survives_kill_9(home: &Home, store: &str) {
    let src = home.new_dir("src").join("big.bin");
    std::fs::write(&src, pattern(120 << 20, 9)).unwrap();
    let m = home.mount(store);
    let (mnt, cache) = (m.mnt.clone(), m.cache.clone());
    let out = run_sh(&format!("cp {} {}/k9.bin", src.display(), mnt.display()));
    assert_ok(&out, "cp");
    m.kill9();
    let again = home.mount_at(store, &mnt, &cache, &[]);
    assert_ok(
        &run_sh(&format!("cmp {} {}/k9.bin", src.display(), mnt.display())),
        "cmp after kill -9 and remount",
    );
    again.unmount();
    let fresh = home.mount(store);
    assert_ok(
        &run_sh(&format!(
            "cmp {} {}/k9.bin",
            src.display(),
            fresh.mnt.display()
        )),
        "cmp from an empty cache",
    );
    fresh.unmount();
}

/// `cp -a` of a tree of hundreds of small files, kill -9 right after it
/// returns, `umount -l`, remount: `diff -r` finds nothing missing or
/// different, and the same from an empty cache.
fn closed_tree_survives_kill_9(home: &Home, store: &str) {
    let src = home.new_dir("tree");
    for d in 0..16 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..50u64 {
            let len = (d * 50 + f as usize) * 97 % 30_000;
            std::fs::write(
                dir.join(format!("f{f:02}")),
                pattern(len, d as u64 * 100 + f),
            )
            .unwrap();
        }
    }
    let m = home.mount(store);
    let (mnt, cache) = (m.mnt.clone(), m.cache.clone());
    assert_ok(
        &run_sh(&format!("cp -a {} {}/tree", src.display(), mnt.display())),
        "cp -a",
    );
    m.kill9();
    let again = home.mount_at(store, &mnt, &cache, &[]);
    assert_ok(
        &run_sh(&format!("diff -r {} {}/tree", src.display(), mnt.display())),
        "diff -r after kill -9 and remount",
    );
    again.unmount();
    let fresh = home.mount(store);
    assert_ok(
        &run_sh(&format!(
            "diff -r {} {}/tree",
            src.display(),
            fresh.mnt.display()
        )),
        "diff -r from an empty cache",
    );
    fresh.unmount();
}

#[test]
fn kill_9_after_cp_of_a_big_file_on_s3() {
    let server = Servers::start(&[]);
    let (home, store) = server.drive();
    closed_big_file_survives_kill_9(&home, &store);
}

#[test]
fn kill_9_after_cp_of_a_big_file_on_a_local_store() {
    let (home, store) = local_drive();
    closed_big_file_survives_kill_9(&home, &store);
}

#[test]
fn kill_9_after_cp_a_of_a_tree_on_a_local_store() {
    let (home, store) = local_drive();
    closed_tree_survives_kill_9(&home, &store);
}

#[test]
fn kill_9_after_cp_a_of_a_tree_on_s3() {
    let server = Servers::start(&[]);
    let (home, store) = server.drive();
    closed_tree_survives_kill_9(&home, &store);
}

/// A tmpfs of `size` mounted on a new directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(home: &Home, size: &str) -> Tmpfs {
        let dir = home.new_dir("small-disk");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_ok(&out, "mount -t tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes 300 MB with `dd` (1 MiB blocks, no fsync) into a mount whose
/// cache lies on a 50 MB tmpfs (which also holds the daemon's log).
/// Returns how many whole MiB `dd` was told were written, and its stderr.
fn dd_300mb(src: &Path, target: &Path) -> (u64, String) {
    let out = run_sh(&format!(
        "dd if={} of={} bs=1M 2>&1; echo rc=$?",
        src.display(),
        target.display()
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let written = text
        .lines()
        .find_map(|l| l.strip_suffix(" records out"))
        .and_then(|r| r.split('+').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no record count from dd: {text}"));
    (written, text)
}

/// A full cache disk is back-pressure, never a dead mount: with the store
/// reachable the writer waits for uploads to free room and succeeds; the
/// cache holds no more than the disk allows; everything reads back.
#[test]
fn full_cache_disk_with_the_store_up_slows_the_writer() {
    let (home, store) = local_drive();
    let disk = Tmpfs::new(&home, "50m");
    let src = home.new_dir("src").join("300mb.bin");
    std::fs::write(&src, pattern(300 << 20, 11)).unwrap();
    let mnt = home.new_dir("mnt");
    let m = home.mount_at(&store, &mnt, &disk.0, &["--cache-size", "20M"]);
    let (written, text) = dd_300mb(&src, &m.path("big.bin"));
    assert!(text.contains("rc=0"), "dd failed with the store up: {text}");
    assert_eq!(written, 300, "{text}");
    // The daemon is alive and the mount answers.
    assert!(std::fs::metadata(m.path("big.bin")).is_ok(), "mount gone");
    m.unmount();
    let fresh = home.mount(&store);
    assert_ok(
        &run_sh(&format!(
            "cmp {} {}",
            src.display(),
            fresh.path("big.bin").display()
        )),
        "cmp after remount",
    );
    fresh.unmount();
}

/// With the store stopped nothing can be freed: the writer gets ENOSPC
/// (not EIO, not a dead mount), `cardfs status` says the cache is full, the
/// mount keeps answering; once the store is back, what `dd` was told was
/// written reads back after a remount.
#[test]
fn full_cache_disk_with_the_store_down_is_enospc() {
    let server = Servers::start(&[]);
    let (home, store) = server.drive();
    let disk = Tmpfs::new(&home, "50m");
    let src = home.new_dir("src").join("300mb.bin");
    std::fs::write(&src, pattern(300 << 20, 12)).unwrap();
    let mnt = home.new_dir("mnt");
    // A short store timeout: the stopped store counts as stuck after 20 s
    // and the writer gets ENOSPC 3 s later (defaults: 60 s and 10 s).
    let m = home.mount_at(
        &store,
        &mnt,
        &disk.0,
        &[
            "--cache-size",
            "20M",
            "--store-timeout",
            "10",
            "--refresh",
            "2",
        ],
    );
    let pid = server.pid("server").to_string();
    signal(&pid, "STOP");
    let (written, text) = dd_300mb(&src, &m.path("big.bin"));
    assert!(
        text.contains("No space left on device"),
        "the writer must get ENOSPC: {text}"
    );
    assert!(written < 300, "{text}");
    assert!(std::fs::read_dir(&m.mnt).is_ok(), "the mount still answers");
    let st = status(&m);
    assert!(
        st.contains("cache: full"),
        "status names the full cache: {st}"
    );
    signal(&pid, "CONT");
    // The server works through what queued up while it was stopped; a
    // sync sent before it answers again could time out.
    wait_status(&m, "store reachable: yes", Duration::from_secs(60));
    assert_ok(&m.cardfs(&["sync", &m.mnt.display().to_string()]), "sync");
    m.unmount();
    let fresh = home.mount(&store);
    let got = std::fs::read(fresh.path("big.bin")).unwrap();
    let told = (written as usize) << 20;
    assert!(
        got.len() >= told,
        "{} bytes back, dd was told {told}",
        got.len()
    );
    assert!(
        got[..told] == pattern(300 << 20, 12)[..told],
        "acknowledged bytes differ"
    );
    fresh.unmount();
}
