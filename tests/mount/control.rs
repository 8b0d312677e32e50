//! The control socket through the real binary: `--json` output that
//! scripts can parse, a daemon of another protocol version refused by
//! name (exit 33), and a stopped daemon reported instead of waited for
//! forever (exit 34).

use crate::support::mount::{Home, assert_ok, expect_error, local_drive};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn json(home: &Home, args: &[&str]) -> Value {
    let text = home.ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn status_share_list_and_card_list_print_documented_json() {
    let home = Home::new();
    home.make_key("bob");
    let store = local_drive(&home);
    let m = home.mount(&store);
    std::fs::create_dir(m.path("team")).unwrap();
    std::fs::write(m.path("team/plan.txt"), b"the plan").unwrap();
    let mnt = m.mnt.to_str().unwrap();
    assert_ok(&home.run(&["sync", mnt]), "sync");

    let all = json(&home, &["status", "--json"]);
    let one = json(&home, &["status", "--json", mnt]);
    for list in [&all, &one] {
        let mounts = list.as_array().expect("an array of mounts");
        assert_eq!(mounts.len(), 1, "{list}");
        let s = &mounts[0];
        assert_eq!(s["mountpoint"], mnt);
        assert_eq!(s["store"], store.as_str());
        assert_eq!(s["daemon_pid"], m.pid);
        assert_eq!(s["daemon_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s["read_only"], false);
        assert_eq!(s["pending_changes"], 0, "{s}");
        assert_eq!(s["pending_bytes"], 0);
        assert!(s["uploaded_bytes"].as_u64().is_some(), "{s}");
        assert!(s["upload_rate"].as_u64().is_some(), "{s}");
        assert!(is_rfc3339_utc(s["last_commit"].as_str().unwrap()), "{s}");
        assert!(s["last_commit_age_secs"].as_u64().unwrap() < 600);
        assert_eq!(s["store_reachable"], true);
        assert_eq!(s["cache_full"], false);
        assert_eq!(s["lost_writes"], Value::Array(Vec::new()));
        assert_eq!(s["owner_identity"], home.identity());
        assert_eq!(s["owner_fingerprint"], home.fingerprint());
        assert_eq!(s["role"], "owner");
        assert!(s["cache_dir"].as_str().unwrap().starts_with('/'));
    }

    let cards = json(&home, &["card", "list", "--json"]);
    let cards = cards.as_array().unwrap();
    assert_eq!(cards.len(), 2, "{cards:?}");
    let mine = cards
        .iter()
        .find(|c| c["identity"] == home.identity())
        .unwrap();
    assert_eq!(mine["fingerprint"], home.fingerprint());
    assert_eq!(mine["card_id"], home.card().id().to_string());
    assert_eq!(mine["your_key"], "tester");
    assert_eq!(mine["approved_by"], Value::Null);
    // Test cards are made at Unix time 1 700 000 000.
    assert_eq!(mine["created"], "2023-11-14T22:13:20Z");

    home.ok(&["share", "add", &format!("{mnt}/team"), "--with", "bob@test"]);
    let shares = json(&home, &["share", "list", "--json", mnt]);
    let shares = shares.as_array().unwrap();
    assert_eq!(shares.len(), 1, "{shares:?}");
    let s = &shares[0];
    assert_eq!(s["mountpoint"], mnt);
    assert_eq!(s["path"], "team");
    assert_eq!(s["your_role"], "owner");
    assert_eq!(s["owner_card_id"], home.card().id().to_string());
    assert!(s["generation"].as_u64().is_some());
    let bob = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|mb| mb["identity"] == "bob@test")
        .unwrap_or_else(|| panic!("bob is not listed: {s}"));
    assert_eq!(bob["role"], "writer");
    assert!(bob["fingerprint"].as_str().unwrap().len() > 20);
    assert_eq!(bob["card_id"].as_str().unwrap().len(), 64);
    m.unmount();
    assert_eq!(json(&home, &["status", "--json"]), Value::Array(Vec::new()));
}

/// The control socket `cardfs` looks for first: `run/` in the home, named
/// by 20 hex digits of SHA-256 of the mountpoint (src/cli/control.rs).
fn socket_of(home: &Home, mnt: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(mnt.as_os_str().as_encoded_bytes());
    let name: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    home.path().join("run").join(format!("{name}.sock"))
}

#[test]
fn a_daemon_of_another_protocol_version_is_refused_by_name() {
    let home = Home::new();
    let mnt = home.new_dir("mnt").canonicalize().unwrap();
    let socket = socket_of(&home, &mnt);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // A daemon from the future: it reads the request and answers in its
    // own protocol, as a real daemon of another version does.
    let fake = std::thread::spawn(move || {
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            assert!(line.contains("\"protocol\":"), "{line}");
            (&stream)
                .write_all(
                    b"{\"protocol\":99,\"cardfs\":\"9.9.9\",\"message\":{\"type\":\"error\",\
                      \"code\":1,\"message\":\"speak protocol 99\"}}\n",
                )
                .unwrap();
        }
    });
    for cmd in ["status", "sync"] {
        let out = home.cmd().arg(cmd).arg(&mnt).output().unwrap();
        expect_error(&out, 33, "runs cardfs 9.9.9 (control protocol 99)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "this command is cardfs {}",
                env!("CARGO_PKG_VERSION")
            )),
            "{err}"
        );
    }
    fake.join().unwrap();
}

#[test]
fn a_stopped_daemon_is_reported_not_waited_for() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    std::fs::write(m.path("f.txt"), b"written before SIGSTOP").unwrap();
    let mnt = m.mnt.to_str().unwrap().to_string();
    let pid = m.pid.to_string();
    /// Resumes the daemon however the test ends.
    struct Resume(String);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0])
                .status();
        }
    }
    assert_ok(
        &std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .output()
            .unwrap(),
        "kill -STOP",
    );
    let resume = Resume(pid.clone());
    for cmd in ["status", "sync"] {
        let started = Instant::now();
        let out = home
            .cmd()
            .env("CARDFS_CONTROL_TIMEOUT", "1")
            .args([cmd, &mnt])
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{cmd} hung");
        expect_error(&out, 34, "did not answer within 1 s");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("pid {pid}")), "{err}");
        assert!(err.contains("kill -CONT"), "{err}");
    }
    drop(resume);
    // Resumed, it answers again and unmounts with everything committed.
    assert_ok(&home.run(&["status", &mnt]), "status after SIGCONT");
    let cache = m.cache.clone();
    m.unmount();
    let again = home.mount_at(&store, &home.new_dir("mnt"), &cache, &[]);
    assert_eq!(
        std::fs::read(again.path("f.txt")).unwrap(),
        b"written before SIGSTOP"
    );
    again.unmount();
}
