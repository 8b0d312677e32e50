//! The command line as a user meets it, through the real binary: unmount
//! from another `$CARDFS_HOME`, passwords kept out of the daemon's
//! environment, the daemon's log, S3 errors in one sentence, exit codes,
//! `--json`, man page and completions.

use crate::support::mount::exit_code as code;
use crate::support::mount::{Home, PASSWORD, assert_ok, expect_error, is_mounted, local_drive};
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The record a daemon leaves for other homes (see src/cli/mount_record.rs).
fn mount_record(mnt: &Path) -> Option<PathBuf> {
    let uid = unsafe { libc::getuid() };
    let dirs = [
        PathBuf::from(format!("/run/user/{uid}/cardfs/mounts")),
        PathBuf::from(format!("/tmp/cardfs-{uid}/mounts")),
    ];
    let needle = format!("\"mountpoint\":{}", serde_json::json!(mnt));
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.contains(&needle))
                .unwrap_or(false)
        })
}

#[test]
fn unmount_from_another_home_commits_through_the_daemon_it_finds() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::fs::write(m.path("kept.txt"), b"written before a foreign unmount").unwrap();
    assert!(mount_record(&m.mnt).is_some(), "the daemon left no record");

    // Another home on the same machine: no socket of its own for this
    // mount, but the daemon is found from the mountpoint and commits first.
    let other = Home::named("other");
    let out = other.run(&["unmount", m.mnt.to_str().unwrap()]);
    assert_ok(&out, "cardfs unmount from another home");
    let said = stdout(&out);
    assert!(said.contains("every change is in the store"), "{said}");
    assert!(
        said.contains(&format!("pid {}", m.pid)) && said.contains(&*alice.path().to_string_lossy()),
        "does not say whose mount it was: {said}"
    );
    assert!(!is_mounted(&m.mnt));
    crate::support::mount::wait_gone(m.pid);
    assert!(mount_record(&m.mnt).is_none(), "record left behind");
    std::mem::forget(m);

    let again = alice.mount(&store);
    assert_eq!(
        std::fs::read(again.path("kept.txt")).unwrap(),
        b"written before a foreign unmount"
    );
    again.unmount();
}

#[test]
fn unmount_refuses_a_live_mount_whose_daemon_it_cannot_reach() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::fs::write(m.path("alive.txt"), b"still here").unwrap();
    // Without the record (a daemon that could not write it), another home
    // has no way to reach this daemon: it must refuse, not detach.
    std::fs::remove_file(mount_record(&m.mnt).expect("record")).unwrap();

    let other = Home::named("other");
    let out = other.run(&["unmount", m.mnt.to_str().unwrap()]);
    expect_error(&out, 32, "is served by a running cardfs daemon");
    assert!(stderr(&out).contains("CARDFS_HOME"), "{}", stderr(&out));
    assert!(is_mounted(&m.mnt), "the live mount was detached");
    assert_eq!(std::fs::read(m.path("alive.txt")).unwrap(), b"still here");
    // Its own home still unmounts it, committing first.
    m.unmount();
}

#[test]
fn unmount_from_another_home_clears_a_mount_whose_daemon_died() {
    let alice = Home::named("alice");
    let store = local_drive(&alice);
    let m = alice.mount(&store);
    std::process::Command::new("kill")
        .args(["-KILL", &m.pid.to_string()])
        .status()
        .unwrap();
    crate::support::mount::wait_gone(m.pid);
    let other = Home::named("other");
    let out = other.run(&["unmount", m.mnt.to_str().unwrap()]);
    assert_ok(&out, "cardfs unmount of a dead mount");
    assert!(
        stdout(&out).contains("its daemon was gone"),
        "{}",
        stdout(&out)
    );
    assert!(!is_mounted(&m.mnt));
    std::mem::forget(m);
}

/// A background mount started by a test without the common helpers:
/// detached and killed on drop if the test fails.
struct RawMount {
    mnt: PathBuf,
    pid: u32,
}

impl RawMount {
    fn from_output(mnt: &Path, out: &Output) -> RawMount {
        assert_ok(out, "cardfs mount");
        let said = stdout(out);
        let pid = said
            .split("daemon pid ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in: {said}"));
        RawMount {
            mnt: mnt.to_path_buf(),
            pid,
        }
    }
}

impl Drop for RawMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
    }
}

fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn the_daemon_environment_holds_no_password() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let out = home
        .cmd()
        .args(["mount", &store, mnt.to_str().unwrap(), "--key", &home.key])
        .env("CARDFS_PASSWORD", PASSWORD)
        .env("CARDFS_NEW_PASSWORD", "another secret")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let m = RawMount::from_output(&mnt, &out);
    let env = environ(m.pid);
    assert!(env.iter().any(|v| v.starts_with("CARDFS_HOME=")), "{env:?}");
    for v in &env {
        assert!(
            !v.starts_with("CARDFS_PASSWORD") && !v.starts_with("CARDFS_NEW_PASSWORD"),
            "the daemon's environment holds {v:?}"
        );
        assert!(!v.contains(PASSWORD) && !v.contains("another secret"));
    }
    std::fs::write(mnt.join("f"), b"x").unwrap();
    assert_ok(&home.run(&["unmount", mnt.to_str().unwrap()]), "unmount");
    crate::support::mount::wait_gone(m.pid);
}

#[test]
fn password_command_unlocks_and_stays_out_of_the_daemon() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let command = format!("cat '{}'", home.password_file.display());
    let out = home
        .cmd()
        .args(["mount", &store, mnt.to_str().unwrap(), "--key", &home.key])
        .args(["--password-command", &command])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let m = RawMount::from_output(&mnt, &out);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", m.pid)).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("password-command"),
        "the daemon was handed the command instead of the password"
    );
    assert!(!environ(m.pid).iter().any(|v| v.contains(PASSWORD)));
    assert_ok(&home.run(&["unmount", mnt.to_str().unwrap()]), "unmount");
    crate::support::mount::wait_gone(m.pid);

    // A command that fails, or prints the wrong password.
    let out = home
        .cmd()
        .args(["key", "passwd", &home.key, "--password-command", "exit 3"])
        .env("CARDFS_NEW_PASSWORD", "new one")
        .output()
        .unwrap();
    expect_error(&out, 1, "the password command `exit 3` failed");
    let out = home
        .cmd()
        .args([
            "key",
            "passwd",
            &home.key,
            "--password-command",
            "echo nope",
        ])
        .env("CARDFS_NEW_PASSWORD", "new one")
        .output()
        .unwrap();
    expect_error(&out, 10, "wrong password");
}

#[test]
fn no_password_and_no_terminal_is_exit_10() {
    let home = Home::new();
    let out = home
        .cmd()
        .args(["key", "generate", "--name", "fresh"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    expect_error(&out, 10, "no password given and no terminal");
}

#[test]
fn daemon_log_has_no_colour_codes_and_no_unimplemented_noise() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    std::fs::write(m.path("f.txt"), b"hello").unwrap();
    // Python's open() asks isatty (ioctl TCGETS) on every file it opens.
    let script = format!(
        "import errno, fcntl, termios\n\
         for _ in range(200):\n    open({path:?}).read()\n\
         f = open({path:?})\n\
         try:\n    fcntl.ioctl(f.fileno(), termios.TCGETS, bytes(64))\n    print('no error')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])\n",
        path = m.path("f.txt").to_str().unwrap()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert_ok(&out, "python3");
    assert_eq!(stdout(&out).trim(), "ENOTTY");
    let cache = m.cache.clone();
    m.unmount();
    let log = std::fs::read_to_string(cache.join("daemon.log")).unwrap();
    assert!(log.contains("mounted on"), "the log is empty: {log}");
    assert!(!log.contains('\x1b'), "colour codes in daemon.log:\n{log}");
    assert!(!log.contains("Not Implemented"), "fuser noise:\n{log}");
}

#[test]
fn a_log_that_cannot_be_written_never_stops_the_daemon() {
    let home = Home::new();
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let cache = home.new_dir("cache");
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", cache.join("daemon.log")).unwrap();
    let out = home
        .cmd()
        .env("RUST_LOG", "trace")
        .args(["mount", &store, mnt.to_str().unwrap(), "--key", &home.key])
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--password-file")
        .arg(&home.password_file)
        .output()
        .unwrap();
    let m = RawMount::from_output(&mnt, &out);
    for i in 0..200 {
        std::fs::write(mnt.join(format!("f{i}")), vec![i as u8; 5000]).unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            std::fs::read(mnt.join(format!("f{i}"))).unwrap(),
            vec![i as u8; 5000]
        );
    }
    assert_ok(&home.run(&["sync", mnt.to_str().unwrap()]), "sync");
    assert!(Path::new(&format!("/proc/{}", m.pid)).exists());
    assert_ok(&home.run(&["unmount", mnt.to_str().unwrap()]), "unmount");
    crate::support::mount::wait_gone(m.pid);
}

/// A plain HTTP server (not S3) on a free loopback port; killed on drop.
struct PlainHttp {
    child: std::process::Child,
    url: String,
}

impl PlainHttp {
    fn start(dir: &Path) -> PlainHttp {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import http.server, socketserver, sys\n\
                 s = socketserver.TCPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
                 print(s.server_address[1], flush=True)\n\
                 s.serve_forever()\n",
            )
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 http.server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("port of the HTTP server");
        PlainHttp {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PlainHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn s3_errors_are_one_sentence_with_cause_fix_and_code() {
    let env = crate::support::s3();
    let bucket = crate::support::mount::new_bucket(env);
    let home = Home::with_s3(env);
    let init = |vars: &[(&str, &str)], remove: &[&str], store: &str| {
        let mut cmd = home.cmd();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        cmd.args(["init", store, "--key", &home.key, "--password-file"])
            .arg(&home.password_file)
            .output()
            .unwrap()
    };
    let short = |out: &Output| {
        let err = stderr(out);
        assert!(err.len() < 300, "not short: {err}");
        for dump in ["DispatchFailure", "ErrorMetadata", "<?xml", "headers"] {
            assert!(!err.contains(dump), "SDK dump in: {err}");
        }
    };

    let out = init(&[("AWS_SECRET_ACCESS_KEY", "wrong")], &[], &bucket);
    expect_error(&out, 22, "rejected the credentials");
    assert!(stderr(&out).contains("AWS_SECRET_ACCESS_KEY"));
    short(&out);

    let out = init(&[], &[], "s3://no-such-bucket-for-cardfs");
    expect_error(&out, 21, "does not exist");
    short(&out);

    let port = dead_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let out = init(&[("AWS_ENDPOINT_URL", &nowhere)], &[], &bucket);
    expect_error(&out, 20, "Connection refused");
    assert!(stderr(&out).contains("cannot reach the store"));
    short(&out);

    let web = PlainHttp::start(home.path());
    let out = init(&[("AWS_ENDPOINT_URL", &web.url)], &[], &bucket);
    expect_error(&out, 28, "did not answer as an S3 server");
    short(&out);
    drop(web);

    let no_profile = home.new_dir("no-aws-profile");
    let out = init(
        &[
            ("HOME", no_profile.to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"],
        &bucket,
    );
    expect_error(&out, 27, "no S3 credentials found");
    short(&out);

    // Only RUST_LOG=debug shows the SDK's report.
    let out = init(
        &[("AWS_SECRET_ACCESS_KEY", "wrong"), ("RUST_LOG", "debug")],
        &[],
        &bucket,
    );
    assert_eq!(code(&out), 22);
    assert!(stderr(&out).contains("SignatureDoesNotMatch"));
    assert!(stderr(&out).lines().count() > 1, "no debug report");
}

#[test]
fn man_page_and_completions_come_from_the_binary() {
    let home = Home::new();
    let man = home.ok(&["man"]);
    assert!(
        man.starts_with(".ie") || man.starts_with(".TH"),
        "{}",
        &man[..80]
    );
    assert!(man.contains(".TH cardfs 1"), "no title header");
    for sub in ["mount", "unmount", "share", "completions"] {
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    for (shell, mark) in [
        ("bash", "complete -F _cardfs"),
        ("zsh", "#compdef cardfs"),
        ("fish", "complete -c cardfs"),
    ] {
        let script = home.ok(&["completions", shell]);
        assert!(script.contains(mark), "{shell}: no {mark:?}");
        assert!(script.contains("unmount"), "{shell}: subcommands missing");
    }
    let bash = home.ok(&["completions", "bash"]);
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&bash)
        .output()
        .unwrap();
    assert_ok(&check, "bash -n on the completion script");
    let out = home.run(&["completions", "tcsh"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn usage_missing_store_busy_mount_and_generic_codes() {
    let home = Home::new();
    // 2: usage, from clap and from a `-o` option clap cannot check.
    let out = home.run(&["frobnicate"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let store = local_drive(&home);
    let mnt = home.new_dir("mnt");
    let out = home.try_mount(&store, &mnt, &home.new_dir("cache"), &["-o", "frobnicate"]);
    expect_error(&out, 2, "unknown mount option \"frobnicate\"");
    // 20: a local store directory that does not exist (only init creates one).
    let missing = home.path().join("no-such-store");
    let out = home.try_mount(missing.to_str().unwrap(), &mnt, &home.new_dir("cache"), &[]);
    expect_error(&out, 20, "no such directory");
    assert!(!missing.exists(), "mount created the missing store");
    // 1: any other error, e.g. importing a key file that does not exist.
    let out = home.run(&["key", "import", "/no/such/key/file"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // 31: a busy mount is refused and stays mounted.
    let m = home.mount(&store);
    let open = std::fs::File::open(m.path(".")).unwrap();
    let out = home.run(&["unmount", m.mnt.to_str().unwrap()]);
    expect_error(&out, 31, "is busy");
    assert!(is_mounted(&m.mnt));
    drop(open);
    m.unmount();
}

/// Exit codes no test here can provoke, and why.
const NOT_PROVOKED: &[(i32, &str)] = &[(
    23,
    "needs an S3 server that accepts If-None-Match/If-Match but ignores them; the test \
     server (SeaweedFS or MinIO) honours them, and the probe itself is tested against a \
     fault-injecting store in the library's tests",
)];

/// Every exit code docs/CLI.md lists is provoked through the real binary
/// by some test (this file, tests/mount/cli.rs for 10-30,
/// tests/mount/share.rs for 40-45), or listed in [`NOT_PROVOKED`] with the reason.
#[test]
fn every_documented_exit_code_is_provoked_by_a_test() {
    let root = crate::support::project_root();
    let doc = std::fs::read_to_string(root.join("docs/CLI.md")).unwrap();
    let section = doc.split("## Exit codes").nth(1).unwrap();
    let documented: Vec<i32> = section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(documented.len() > 20, "table not found: {documented:?}");
    let mut tests = String::new();
    let mut dirs = vec![root.join("tests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                tests.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let provoked = |c: i32| {
        tests.lines().any(|l| {
            (l.contains("expect_error(") && l.contains(&format!(", {c}, ")))
                || l.contains(&format!("assert_eq!(code(&out), {c},"))
        })
    };
    for c in documented {
        let excused = NOT_PROVOKED.iter().any(|(n, _)| *n == c);
        assert!(
            c == 0 || provoked(c) || excused,
            "no test provokes documented exit code {c}"
        );
        assert!(
            !(excused && provoked(c)),
            "exit code {c} is provoked now: drop its excuse"
        );
    }
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let home = Home::new();
    let bin = crate::support::cardfs_bin();
    // 8 MiB of ciphertext: far more than the pipe holds after `head` has
    // read its 10 bytes and gone.
    let script = format!(
        "head -c 8M /dev/zero | '{}' encrypt --to {} | head -c 10 >/dev/null; \
         echo ${{PIPESTATUS[1]}}",
        bin.display(),
        home.identity()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("CARDFS_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(stderr(&out), "", "noise on a closed pipe");
    // 141 = killed by SIGPIPE, as `yes | head` is.
    assert_eq!(stdout(&out).trim(), "141");
}
