//! Harness for tests that mount real cardfs drives through the `cardfs`
//! binary: a private `$CARDFS_HOME` with a key and card, stores (a local
//! directory or a fresh bucket on the test S3 server), and [`Mounted`], a
//! guard whose drop unmounts and kills the daemon even when a test fails.

use super::{S3Env, cardfs_bin, s3, unique};
use cardfs::format::card::Card;
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::{KdfParams, KeyFile, Password};
use cardfs::identity::{cards::CardStore, keys::KeyStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Password of every test key.
pub const PASSWORD: &str = "correct horse battery staple";

/// A private cardfs home with one key (and its card) named `tester`.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub key: String,
    pub password_file: PathBuf,
    /// Extra environment for every command (S3 credentials).
    pub env: Vec<(String, String)>,
}

impl Home {
    pub fn new() -> Home {
        Home::named("tester")
    }

    /// A user with key `name` and card `name@test` (see [`Home::identity`]).
    pub fn named(name: &str) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("cardfs-test-")
            .tempdir()
            .unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let home = Home {
            dir,
            key: name.into(),
            password_file,
            env: Vec::new(),
        };
        home.make_key(&home.key.clone());
        home
    }

    /// A `Home` whose commands can reach the test S3 server.
    pub fn with_s3(env: &S3Env) -> Home {
        Home::named_with_s3("tester", env)
    }

    /// [`Home::named`], reaching the test S3 server.
    pub fn named_with_s3(name: &str, env: &S3Env) -> Home {
        let mut home = Home::named(name);
        home.env = s3_vars(env);
        home
    }

    /// The identity of this user's card: `KEY@test`.
    pub fn identity(&self) -> String {
        format!("{}@test", self.key)
    }

    /// This user's own card.
    pub fn card(&self) -> Card {
        CardStore::new(self.path())
            .get(&self.identity())
            .unwrap()
            .expect("own card pinned")
    }

    /// The fingerprint of this user's own card.
    pub fn fingerprint(&self) -> String {
        self.card().fingerprint()
    }

    /// Runs `cardfs ARGS` (password from the test file in the environment)
    /// and returns its output whatever happens.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .env("CARDFS_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    }

    /// [`Home::run`] that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_ok(&out, &format!("cardfs {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates key `name` (password [`PASSWORD`], fast test-only KDF
    /// parameters) and pins its card under the identity `name@test`.
    pub fn make_key(&self, name: &str) {
        self.make_key_only(name);
        let key = self.unlock_key(name);
        let card = Card::create(&key, &format!("{name}@test"), 1_700_000_000).unwrap();
        CardStore::new(self.path()).pin(&card, None).unwrap();
    }

    /// Creates key `name` without a card.
    pub fn make_key_only(&self, name: &str) {
        let key = UserKey::generate(name).unwrap();
        let file = KeyFile::lock(
            &key,
            &Password::new(PASSWORD),
            KdfParams::INSECURE_TEST_ONLY,
        )
        .unwrap();
        KeyStore::new(self.path()).create(&file).unwrap();
    }

    pub fn unlock_key(&self, name: &str) -> UserKey {
        KeyStore::new(self.path())
            .unlock(name, &Password::new(PASSWORD))
            .unwrap()
    }

    /// `cardfs share add FOLDER --with MEMBER` (by identity, with the
    /// member's fingerprint, as a reader when `read_only`); its stdout.
    pub fn share_folder(&self, folder: &Path, member: &Home, read_only: bool) -> String {
        let (fp, id) = (member.fingerprint(), member.identity());
        let folder = folder.to_str().unwrap();
        let mut args = vec!["share", "add", folder, "--with", &id, "--fingerprint", &fp];
        if read_only {
            args.push("--read-only");
        }
        self.ok(&args)
    }

    /// `cardfs` with this home and environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(cardfs_bin());
        cmd.env("CARDFS_HOME", self.path())
            .env_remove("CARDFS_PASSWORD")
            .env("RUST_LOG", "warn,cardfs=info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// A new directory under this home.
    pub fn new_dir(&self, name: &str) -> PathBuf {
        let p = self.path().join(unique(name));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `cardfs init STORE` with the test key; panics on failure.
    pub fn init(&self, store: &str) {
        assert_ok(&self.try_init(store, &self.key), "cardfs init");
    }

    /// `cardfs init STORE --key KEY` (password from the test file),
    /// returning its output whatever happens.
    pub fn try_init(&self, store: &str, key: &str) -> Output {
        self.cmd()
            .args(["init", store, "--key", key, "--password-file"])
            .arg(&self.password_file)
            .output()
            .unwrap()
    }

    /// Mounts `store` on a new directory with a new, empty cache directory.
    pub fn mount(&self, store: &str) -> Mounted {
        self.mount_with(store, &[])
    }

    /// [`Home::mount`] with extra `cardfs mount` arguments.
    pub fn mount_with(&self, store: &str, extra: &[&str]) -> Mounted {
        let mnt = self.new_dir("mnt");
        let cache = self.new_dir("cache");
        self.mount_at(store, &mnt, &cache, extra)
    }

    /// `cardfs mount` (background); panics unless it succeeds.
    pub fn mount_at(&self, store: &str, mnt: &Path, cache: &Path, extra: &[&str]) -> Mounted {
        let out = self.try_mount(store, mnt, cache, extra);
        assert_ok(&out, "cardfs mount");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid = stdout
            .split("daemon pid ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in mount output: {stdout}"));
        Mounted {
            mnt: mnt.to_path_buf(),
            cache: cache.to_path_buf(),
            pid,
            home: self.path().to_path_buf(),
            ended: false,
        }
    }

    /// `cardfs mount` (background), returning its output whatever happens.
    pub fn try_mount(&self, store: &str, mnt: &Path, cache: &Path, extra: &[&str]) -> Output {
        self.cmd()
            .args(["mount", store])
            .arg(mnt)
            .args(["--key", &self.key, "--cache-dir"])
            .arg(cache)
            .arg("--password-file")
            .arg(&self.password_file)
            .args(extra)
            .output()
            .unwrap()
    }
}

/// Environment variables that point aws-sdk at the test server.
pub fn s3_vars(env: &S3Env) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), env.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), env.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), env.secret_key.clone()),
        ("AWS_REGION".into(), env.region.clone()),
        // rclone and some SDK builds choke on a stray CA bundle (FACTS.md).
        ("AWS_CA_BUNDLE".into(), String::new()),
    ]
}

/// Store options that reach the test server `env` with its credentials.
pub fn s3_options(env: &S3Env) -> cardfs::store::OpenOptions {
    cardfs::store::OpenOptions {
        s3: env.store_options(),
    }
}

/// A fresh bucket on the test server; returns `s3://BUCKET`.
pub fn new_bucket(env: &S3Env) -> String {
    let bucket = unique("cardfs-mount").to_lowercase();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        cardfs::store::S3Store::new(&bucket, "", &s3_options(env).s3)
            .await
            .expect("S3 client")
            .create_bucket()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e}"));
    });
    format!("s3://{bucket}")
}

/// The shared test S3 server with a fresh bucket.
pub fn s3_store() -> (&'static S3Env, String) {
    let env = s3();
    let store = new_bucket(env);
    (env, store)
}

/// The exit code of a finished command (a signal is a test failure).
pub fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("exited by signal")
}

/// Asserts exit code `want` and that stderr is one `cardfs:` sentence
/// containing `phrase`.
pub fn expect_error(out: &Output, want: i32, phrase: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(out), want, "stderr: {err}");
    assert!(err.contains(phrase), "expected {phrase:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("cardfs: "), "{err}");
}

/// A new local-directory store in `home` holding a drive of its key;
/// returns the store's path.
pub fn local_drive(home: &Home) -> String {
    let store = home.new_dir("store");
    let store = store.to_string_lossy().into_owned();
    home.init(&store);
    store
}

/// The daemon log in `cache` once a line satisfies `wanted`, waiting up to
/// 10 s: the daemon writes its log from a background thread, so a line about
/// a request may land just after the request was answered. Returns the log
/// as it is then, whether or not the line came (the caller asserts).
pub fn daemon_log_with(cache: &Path, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(cache.join("daemon.log")).unwrap_or_default();
        if log.lines().any(&wanted) || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running mount. Dropping it without [`Mounted::unmount`] (a failing
/// test) detaches the mount and kills the daemon.
pub struct Mounted {
    pub mnt: PathBuf,
    pub cache: PathBuf,
    pub pid: u32,
    home: PathBuf,
    ended: bool,
}

impl Mounted {
    /// `cardfs unmount`; panics unless it succeeds and the daemon is gone.
    pub fn unmount(mut self) {
        let out = Command::new(cardfs_bin())
            .env("CARDFS_HOME", &self.home)
            .arg("unmount")
            .arg(&self.mnt)
            .output()
            .unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(self.cache.join("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let holders = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "ls -l /proc/[0-9]*/fd /proc/[0-9]*/cwd 2>/dev/null | grep -F '{}'",
                    self.mnt.display()
                ))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "cardfs unmount failed ({}): {}\nopen files: {holders}\ndaemon log (newest first):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                tail.join("\n")
            );
        }
        assert!(!is_mounted(&self.mnt), "still mounted after cardfs unmount");
        wait_gone(self.pid);
        self.ended = true;
    }

    /// Kills the daemon with SIGKILL and clears the dead mount.
    pub fn kill9(self) {
        self.kill9_then(|| {});
    }

    /// SIGKILL, then `before_detach` (e.g. waiting for a writer that was
    /// busy on the mount: on the dead mount each of its calls fails with
    /// ENOTCONN), then the dead mount is detached. Detaching while a writer
    /// still runs would let its next write land in the bare mountpoint
    /// directory, and the remount then refuses a non-empty mountpoint.
    pub fn kill9_then(mut self, before_detach: impl FnOnce()) {
        signal(self.pid, "KILL");
        wait_gone(self.pid);
        before_detach();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        self.ended = true;
    }

    /// Sends `sig` (e.g. "TERM") and waits for the daemon to exit.
    pub fn signal_and_wait(mut self, sig: &str) {
        signal(self.pid, sig);
        wait_gone(self.pid);
        assert!(!is_mounted(&self.mnt), "still mounted after SIG{sig}");
        self.ended = true;
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Runs `cardfs ARGS` with this mount's home.
    pub fn cardfs(&self, args: &[&str]) -> Output {
        Command::new(cardfs_bin())
            .env("CARDFS_HOME", &self.home)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        signal(self.pid, "KILL");
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Waits (polling /proc) until process `pid` has exited, all its threads
/// included.
pub fn wait_gone(pid: u32) {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    for _ in 0..6000 {
        // A zombie counts as gone (our parent, the mount command, is gone and
        // cannot reap it), but only once it is alone: a thread-group leader
        // shows as a zombie as soon as it exits itself, while its other
        // threads may still be exiting and holding the process's files, such
        // as the cache directory's lock (seen with many tests at once: a
        // remount after kill -9 found the cache locked by the dead daemon).
        let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
        let alone = status
            .lines()
            .any(|l| l.split_whitespace().eq(["Threads:", "1"]));
        if state.is_empty() || (state.split(' ').nth(2) == Some("Z") && alone) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("daemon {pid} did not exit within two minutes");
}

pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_ref()))
}

/// Runs a shell command line in `dir`; panics with its output on failure.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_ok(&out, script);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything observable about a tree: per relative path, its kind, mode,
/// size, mtime (ns), contents digest or link target, xattrs, and which
/// earlier path it is a hard link of.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let what = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if let Some(first) = inodes.get(&meta.ino()).filter(|_| meta.nlink() > 1) {
                format!("hardlink of {}", first.display())
            } else {
                inodes.insert(meta.ino(), rel.clone());
                let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("file {} sha256 {hex}", meta.size())
            };
            let mtime = if ft.is_symlink() {
                String::new() // symlink mtimes are not preserved by every tool
            } else {
                format!("{}.{:09}", meta.mtime(), meta.mtime_nsec())
            };
            let xattrs = if ft.is_symlink() {
                String::new()
            } else {
                xattrs(&path)
            };
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} nlink {} mtime {mtime} xattrs [{xattrs}]",
                    meta.mode() & 0o7777,
                    if ft.is_dir() { 0 } else { meta.nlink() }
                ),
            );
        }
    }
    out
}

/// Panics listing every path whose snapshot differs between two trees.
pub fn assert_same_tree(want: &Path, got: &Path) {
    let (a, b) = (snapshot(want), snapshot(got));
    let mut diffs = Vec::new();
    for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        if a.get(key) != b.get(key) {
            diffs.push(format!(
                "{}:\n  want {:?}\n  got  {:?}",
                key.display(),
                a.get(key),
                b.get(key)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differs from {} in {} paths:\n{}",
        got.display(),
        want.display(),
        diffs.len(),
        diffs.join("\n")
    );
}

/// `user.*` extended attributes of `path`, as `getfattr` prints them.
fn xattrs(path: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["-d", "-m", "^user\\.", "-e", "hex", "--absolute-names"])
        .arg(path)
        .output()
        .expect("getfattr (package attr)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every key and body in the bucket of `store` on the server `env`,
/// concatenated (for plaintext searches).
pub fn bucket_bytes(env: &S3Env, store: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = cardfs::store::open(store, &s3_options(env)).await.unwrap();
        let mut all = Vec::new();
        for obj in s.list_all("").await.unwrap() {
            all.extend_from_slice(obj.key.as_bytes());
            all.push(b'\n');
            let got = s.get(&obj.key, Default::default()).await.unwrap();
            all.extend_from_slice(&got.bytes);
        }
        all
    })
}

/// Every byte of every object in a local-directory store, concatenated
/// with their relative paths (for plaintext searches).
pub fn local_store_bytes(store: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            all.extend_from_slice(
                p.strip_prefix(store)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
            all.push(b'\n');
            if p.is_dir() {
                stack.push(p);
            } else {
                all.extend_from_slice(&std::fs::read(&p).unwrap());
            }
        }
    }
    all
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
