//! Readdir from a handle's snapshot of the directory (the tree keeps no
//! index of entries by cookie): a listing goes on correctly while entries
//! are created, removed and renamed, and a handle can start at, or seek
//! back to, any offset a listing returned.

use crate::support::drive::*;
use cardfs::drive::*;

/// Names of a page, "." and ".." left out.
fn page_names(page: &[(DirEntry, Attr)]) -> Vec<String> {
    page.iter()
        .map(|(e, _)| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// Names of readdir entries, in order.
fn entry_names(v: &[DirEntry]) -> Vec<String> {
    v.iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

/// Reads pages of `limit` from `offset` until an empty one; the names, and
/// the offset after the last entry.
async fn read_to_end(d: &Drive, fh: Fh, mut offset: u64, limit: usize) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    loop {
        let page = d.readdirplus(ROOT_INO, fh, offset, limit).await.unwrap();
        let Some((last, _)) = page.last() else {
            return (names, offset);
        };
        offset = last.next_offset;
        names.extend(page_names(&page));
    }
}

#[tokio::test]
async fn listing_continues_from_its_snapshot_while_entries_change() {
    let env = Env::new().await;
    let d = env.open().await;
    for i in 0..10 {
        put(&d, ROOT_INO, &format!("f{i}"), b"").await;
    }
    let fh = d.opendir(ROOT_INO).await.unwrap();
    let first = d.readdirplus(ROOT_INO, fh, 0, 4).await.unwrap();
    assert_eq!(page_names(&first), ["f0", "f1"]);
    // Changes after the listing started: one listed entry and one not yet
    // listed removed, one not yet listed renamed (a new entry now), one
    // created.
    d.unlink(ROOT_INO, os("f0")).await.unwrap();
    d.unlink(ROOT_INO, os("f5")).await.unwrap();
    d.rename(
        ROOT_INO,
        os("f7"),
        ROOT_INO,
        os("g7"),
        RenameFlags::default(),
    )
    .await
    .unwrap();
    put(&d, ROOT_INO, "late1", b"").await;
    let (rest, end) = read_to_end(&d, fh, first.last().unwrap().0.next_offset, 4).await;
    assert_eq!(
        rest,
        ["f2", "f3", "f4", "f6", "f8", "f9", "g7", "late1"],
        "each current entry once, in creation order, removed ones skipped"
    );
    // An entry created after the end was reached shows at the end.
    put(&d, ROOT_INO, "late2", b"").await;
    let after_end = d.readdirplus(ROOT_INO, fh, end, 4).await.unwrap();
    assert_eq!(page_names(&after_end), ["late2"]);
    // One removed after the snapshot is not returned on a seek back.
    d.unlink(ROOT_INO, os("f8")).await.unwrap();
    let back = d
        .readdir(ROOT_INO, fh, first[3].0.next_offset)
        .await
        .unwrap();
    let back: Vec<_> = back
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    assert_eq!(back, ["f2", "f3", "f4", "f6", "f9", "g7", "late1", "late2"]);
    // Offset 0 again (rewinddir) lists the directory as it is now.
    let (all, _) = read_to_end(&d, fh, 0, 3).await;
    assert_eq!(
        all,
        ["f1", "f2", "f3", "f4", "f6", "f9", "g7", "late1", "late2"]
    );
    d.releasedir(ROOT_INO, fh).await.unwrap();
}

#[tokio::test]
async fn a_handle_starts_at_any_offset_a_listing_returned() {
    let env = Env::new().await;
    let d = env.open().await;
    for i in 0..12 {
        put(&d, ROOT_INO, &format!("f{i:02}"), b"").await;
    }
    let fh = d.opendir(ROOT_INO).await.unwrap();
    let full = d.readdir(ROOT_INO, fh, 0).await.unwrap();
    d.releasedir(ROOT_INO, fh).await.unwrap();
    assert_eq!(full.len(), 14);
    let names_from = |k: usize| entry_names(&full[k + 1..]);
    // A new handle whose first read is at a non-zero offset (no snapshot
    // yet: telldir from an earlier listing, then seekdir).
    let fh = d.opendir(ROOT_INO).await.unwrap();
    let got = d.readdir(ROOT_INO, fh, full[7].next_offset).await.unwrap();
    assert_eq!(entry_names(&got), names_from(7));
    // Seeking back before where that snapshot started, on the same handle.
    let got = d.readdir(ROOT_INO, fh, full[3].next_offset).await.unwrap();
    assert_eq!(entry_names(&got), names_from(3));
    // And to the last entry: nothing after it.
    let got = d.readdir(ROOT_INO, fh, full[13].next_offset).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
    d.releasedir(ROOT_INO, fh).await.unwrap();
}
