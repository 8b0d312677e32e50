//! `cardfs history` and `cardfs restore` through the real binary on a
//! mounted drive: versions of a deleted file (text and JSON), each
//! brought back byte for byte, a deleted folder brought back whole, and
//! the refusals (a taken destination, an unreadable time).

use crate::support::mount::{Home, assert_ok, expect_error, local_drive};
use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn history_lists_versions_and_restore_brings_each_back() {
    let home = Home::new();
    let store = local_drive(&home);
    let m = home.mount(&store);
    let mnt = s(&m.mnt).to_string();
    let sync = || assert_ok(&home.run(&["sync", &mnt]), "sync");
    let f = m.path("notes.txt");
    let big: Vec<u8> = (0..(2 << 20) + 77).map(|i| (i % 251) as u8).collect();
    std::fs::write(&f, &big).unwrap();
    sync();
    std::fs::write(&f, b"second version").unwrap();
    sync();
    std::fs::create_dir_all(m.path("proj/src")).unwrap();
    std::fs::write(m.path("proj/src/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(m.path("proj/README"), b"read me\n").unwrap();
    sync();
    std::fs::remove_file(&f).unwrap();
    std::fs::remove_dir_all(m.path("proj")).unwrap();
    sync();

    let out = home.run(&["history", "--json", s(&f)]);
    assert_ok(&out, "history --json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = v.as_array().unwrap();
    // The committer may land a big write in parts: versions in between.
    let changes: Vec<&str> = v.iter().map(|x| x["change"].as_str().unwrap()).collect();
    assert_eq!(changes[0], "created", "{v:?}");
    assert_eq!(changes[changes.len() - 1], "deleted", "{v:?}");
    assert!(
        changes[1..changes.len() - 1]
            .iter()
            .all(|c| *c == "modified"),
        "{v:?}"
    );
    let last_of = |size: usize| {
        let at = v
            .iter()
            .rposition(|x| x["size"] == size && x["change"] != "deleted");
        at.unwrap_or_else(|| panic!("no version of {size} bytes: {v:?}"))
    };
    let (first, second) = (last_of(big.len()), last_of(14));
    assert!(first < second);
    assert_eq!(v[0]["kind"], "file");
    assert_eq!(v[0]["this_client"], true);
    let time = |i: usize| v[i]["time"].as_str().unwrap().to_string();
    let text = home.ok(&["history", s(&f)]);
    assert!(text.contains(&format!("{} versions", v.len())), "{text}");
    assert!(
        text.contains(&time(0)) && text.contains("created"),
        "{text}"
    );
    assert!(text.contains("(this mount)"), "{text}");
    // Each change names the card that signed it.
    assert_eq!(v[0]["writer"].as_str().map(str::len), Some(64), "{v:?}");
    assert!(text.contains(", by "), "{text}");

    // The first version, to its own name (free now).
    let out = home.ok(&["restore", s(&f), "--at", &time(first)]);
    assert!(out.contains(&format!("to {}", f.display())), "{out}");
    assert_eq!(std::fs::read(&f).unwrap(), big);
    // The second, beside it: never over the file.
    home.ok(&["restore", s(&f), "--at", &time(second)]);
    let beside: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("notes.txt.restored-"))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert_eq!(
        std::fs::read(m.path(&beside[0])).unwrap(),
        b"second version"
    );
    assert_eq!(std::fs::read(&f).unwrap(), big);
    // A taken destination, an unreadable time.
    let taken = home.run(&["restore", s(&f), "--at", &time(second), "--to", s(&f)]);
    expect_error(&taken, 1, "already exists; nothing was overwritten");
    let bad = home.run(&["restore", s(&f), "--at", "last tuesday"]);
    expect_error(&bad, 2, "cannot read \"last tuesday\" as a time");

    // The deleted folder, whole, at the time its files were written.
    let h = home.run(&["history", "--json", s(&m.path("proj/README"))]);
    assert_ok(&h, "history of a file of a deleted folder");
    let h: Value = serde_json::from_slice(&h.stdout).unwrap();
    let h = h.as_array().unwrap();
    let last = h.iter().rposition(|x| x["change"] != "deleted").unwrap();
    assert_eq!(h[last]["size"], 8, "{h:?}");
    let written = h[last]["time"].as_str().unwrap().to_string();
    let out = home.ok(&[
        "restore",
        s(&m.path("proj")),
        "--at",
        &written,
        "--to",
        s(&m.path("proj-back")),
    ]);
    assert!(out.contains("4 items"), "proj, src, main.rs, README: {out}");
    assert_eq!(
        std::fs::read(m.path("proj-back/src/main.rs")).unwrap(),
        b"fn main() {}\n"
    );
    assert_eq!(
        std::fs::read(m.path("proj-back/README")).unwrap(),
        b"read me\n"
    );
    sync();
    m.unmount();
}
