//! Real mounts keep their promises when the store misbehaves: a replicated
//! SeaweedFS cluster losing a volume server mid-write loses nothing, and a
//! store that stops answering (SIGSTOP) shows as unreachable in
//! `cardfs status`, then recovers.
//!
//! Each test starts its own servers through `scripts/s3-server` (fails,
//! never skips, when they cannot start) and stops them on drop.

use crate::support::mount::{Home, Mounted, assert_ok, new_bucket, s3_vars};
use crate::support::pattern::pattern;
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
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_string()
        };
        Servers {
            dir: PathBuf::from(var("CARDFS_S3_DIR")),
            env: S3Env {
                endpoint: var("AWS_ENDPOINT_URL"),
                access_key: var("AWS_ACCESS_KEY_ID"),
                secret_key: var("AWS_SECRET_ACCESS_KEY"),
                region: var("AWS_REGION"),
            },
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
/// killed with SIGKILL while files are written and uploaded; `cardfs sync`
/// still gets everything into the store, and a mount with an empty cache
/// reads every byte back.
#[test]
fn cluster_losing_a_volume_server_mid_write_loses_nothing() {
    let cluster = Servers::start(&["--cluster"]);
    let (home, store) = cluster.drive();
    let m = home.mount(&store);
    let files = files();
    std::fs::create_dir_all(m.path("small")).unwrap();
    std::fs::create_dir_all(m.path("after")).unwrap();
    let victim = cluster.pid("volume2");
    // The small files, then the big one (files[24]).
    let (first, rest) = files.split_at(25);
    for (name, len, seed) in first {
        std::fs::write(m.path(name), pattern(*len, *seed)).unwrap();
    }
    // Uploads are under way (the big file's 40 MiB take a while): kill one
    // of the three volume servers now, then keep writing.
    let before = status(&m);
    assert!(
        !before.contains("pending uploads: 0 changes, 0 bytes"),
        "uploads already done before the kill; the test would prove nothing:\n{before}"
    );
    signal(&victim.to_string(), "KILL");
    crate::support::mount::wait_gone(victim);
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
/// as unreachable in `cardfs status` within the small-request timeouts
/// (30 s) plus one refresh interval; writes go on into the cache; once the
/// server runs again, status says reachable and everything is committed.
#[test]
fn a_hung_store_shows_as_unreachable_then_recovers() {
    let server = Servers::start(&[]);
    let (home, store) = server.drive();
    let m = home.mount_with(&store, &["--refresh", "2"]);
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
