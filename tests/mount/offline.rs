//! Offline mount: with its S3 server stopped, a drive mounted here before
//! mounts from the cache (reads what the cache holds, takes writes), says
//! so in `cardfs status`, and commits everything once the server is back;
//! a drive never mounted with this cache still fails (exit 20).

use crate::support::mount::{assert_ok, daemon_log_with, exit_code};
use crate::support::pattern::pattern;
use crate::support::private_s3::PrivateServer;

fn status(m: &crate::support::mount::Mounted) -> String {
    let out = m.cardfs(&["status", &m.mnt.display().to_string()]);
    assert_ok(&out, "cardfs status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mount_from_the_cache_while_the_store_is_down() {
    let data = tempfile::tempdir().unwrap();
    let server = PrivateServer::start(data.path().to_path_buf(), None);
    let (home, store) = server.drive();
    let cache = home.new_dir("cache");
    let m = home.mount_at(&store, &home.new_dir("mnt"), &cache, &[]);
    std::fs::create_dir(m.path("docs")).unwrap();
    std::fs::write(m.path("docs/note.txt"), "online\n").unwrap();
    std::fs::write(m.path("before.bin"), pattern(3 << 20, 40)).unwrap();
    assert_ok(&m.cardfs(&["sync", &m.mnt.display().to_string()]), "sync");
    m.unmount();

    server.stop();
    // Never mounted with this (empty) cache: today's error and exit code.
    let out = home.try_mount(&store, &home.new_dir("mnt"), &home.new_dir("cache"), &[]);
    assert_eq!(exit_code(&out), 20, "{out:?}");

    let m = home.mount_at(&store, &home.new_dir("mnt"), &cache, &[]);
    let log = daemon_log_with(&cache, |l| l.contains("from the local cache (offline)"));
    assert!(log.contains("from the local cache (offline)"), "{log}");
    let st = status(&m);
    assert!(st.contains("offline (store unreachable since"), "{st}");
    assert!(std::fs::read(m.path("before.bin")).unwrap() == pattern(3 << 20, 40));
    assert_eq!(
        std::fs::read_to_string(m.path("docs/note.txt")).unwrap(),
        "online\n"
    );
    std::fs::write(m.path("during.bin"), pattern(2 << 20, 41)).unwrap();
    std::fs::write(m.path("docs/note.txt"), "online\noffline\n").unwrap();
    std::fs::create_dir(m.path("made-offline")).unwrap();

    let restarted = PrivateServer::start(server.dir.clone(), Some(server.port));
    // A server just restarted on its old data may answer InternalError for
    // a moment (SeaweedFS: until its volume server has registered again);
    // `sync` then says the store is unreachable (exit 20), as it should.
    // Ask again, for at most 30 s, until the store answers.
    let mnt = m.mnt.display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut out = m.cardfs(&["sync", &mnt]);
    while exit_code(&out) == 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
        out = m.cardfs(&["sync", &mnt]);
    }
    assert_ok(&out, "sync after the server is back");
    let st = status(&m);
    assert!(st.contains("store reachable: yes"), "{st}");
    assert!(st.contains("pending uploads: 0 changes"), "{st}");
    m.unmount();

    let fresh = home.mount(&store);
    assert!(std::fs::read(fresh.path("before.bin")).unwrap() == pattern(3 << 20, 40));
    assert!(std::fs::read(fresh.path("during.bin")).unwrap() == pattern(2 << 20, 41));
    assert_eq!(
        std::fs::read_to_string(fresh.path("docs/note.txt")).unwrap(),
        "online\noffline\n"
    );
    assert!(fresh.path("made-offline").is_dir());
    fresh.unmount();
    drop(restarted);
}
