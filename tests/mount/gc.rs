//! `cardfs gc` through the binary on a real mount (local store): a file
//! written five times and deleted leaves only the live file's objects, and
//! everything live reads back from an empty cache.

use crate::support::mount::{Home, assert_ok, local_drive};
use std::path::Path;

fn content_objects(store: &str) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() { walk(&path) } else { 1 }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&Path::new(store).join("objects").join("c~"))
}

#[test]
fn gc_reclaims_overwritten_and_deleted_files() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    let live: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(m.mnt.join("live"), &live).unwrap();
    for i in 0..5u8 {
        std::fs::write(m.mnt.join("f"), vec![i; 2 << 20]).unwrap();
        assert_ok(&home.run(&["sync", m.mnt.to_str().unwrap()]), "sync");
    }
    std::fs::remove_file(m.mnt.join("f")).unwrap();
    assert_ok(&home.run(&["sync", m.mnt.to_str().unwrap()]), "sync");
    // Three blocks of "live" and two of each version of "f"; more when a
    // writer stalled past the idle-seal delay mid-block (a loaded machine)
    // and a partial block was sealed and uploaded, then superseded: also
    // dead, also collected.
    let before = content_objects(&store);
    assert!(before >= 3 + 5 * 2, "{before} content objects");
    let mnt = m.mnt.to_str().unwrap();
    let out = home.ok(&["gc", mnt, "--grace", "0", "--keep", "0", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["reclaimed_objects"], before - 3, "{out}");
    assert!(r["reclaimed_bytes"].as_u64().unwrap() > 10 << 20, "{out}");
    assert_eq!(r["live_objects"], 3, "{out}");
    assert_eq!(content_objects(&store), 3);
    let status = home.ok(&["status", mnt]);
    assert!(status.contains("last collection"), "{status}");
    m.unmount();
    let m = home.mount(&store);
    assert_eq!(std::fs::read(m.mnt.join("live")).unwrap(), live);
    m.unmount();
}
