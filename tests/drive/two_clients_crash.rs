//! Two clients of one store, one of them killed with SIGKILL while it
//! commits: a child process (client A) closes files and edits a file the
//! other client (B, in this process) edits too, then is killed while its
//! uploads and log puts are in flight (the store adds latency so the window
//! is wide); B keeps writing meanwhile. Client A then reopens its cache:
//! nothing it had acknowledged (closed) is lost, the concurrent edits end
//! as a file and its conflict copy, the two clients converge, and a client
//! with an empty cache reads the same bytes (nothing half-trusted).

use crate::support::drive::crash::{
    self, child_arg, child_role, new_drive, open_in_child, quiet_opts,
};
use crate::support::drive::*;
use cardfs::drive::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const CHILD_ENV: &str = "CARDFS_TEST_TWO_CLIENTS_CHILD";
/// Files client A closes in each round.
const A_FILES: usize = 5;
/// Latency the child's store adds to every call.
const LATENCY: Duration = Duration::from_millis(120);

fn a_file(round: usize, i: usize) -> (String, Vec<u8>) {
    let len = 200_000 + 70_001 * i;
    let data = (0..len)
        .map(|j| (j as u32 ^ (round as u32 * 7919 + i as u32)).wrapping_mul(2654435761) as u8)
        .collect();
    (format!("a-{round}-{i}"), data)
}

fn opts(dir: &Path, cache: &str) -> DriveOptions {
    quiet_opts(dir.join(cache))
}

async fn overwrite(d: &Drive, name: &str, data: &[u8]) {
    let ino = lookup(d, name).await.unwrap();
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

/// Every file of the root directory and its bytes.
async fn contents(d: &Drive) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for name in names(d, ROOT_INO).await {
        let ino = lookup(d, &name).await.unwrap();
        out.insert(name, read_all(d, ino).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_client_during_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (store, id) = new_drive(dir).await;
    let b = Drive::open_drive(store.clone(), id.clone(), opts(dir, "b"))
        .await
        .unwrap();
    // Kill points from READY on: uploads in flight, the first log put in
    // flight or landed, later commits.
    let delays = [0, 150, 260, 400, 700];
    for (round, delay) in delays.into_iter().enumerate() {
        let shared = format!("shared-{round}");
        put(&b, ROOT_INO, &shared, b"base").await;
        sync(&b).await;
        let entry = crate::support::test_name(module_path!(), "two_clients_child_entry");
        let arg = child_arg(dir, &round.to_string());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let child = tokio::task::spawn_blocking(move || {
            crash::run_child_and_kill_after(
                &entry,
                CHILD_ENV,
                &arg,
                move || ready_tx.send(()).unwrap(),
                Duration::from_millis(delay),
            )
        });
        // A has edited the shared file (on the version "base") and closed
        // its files; B edits the shared file on the same version and keeps
        // writing while A commits and is killed.
        ready_rx.await.unwrap();
        overwrite(&b, &shared, format!("from b {round}").as_bytes()).await;
        for i in 0..4 {
            put(
                &b,
                ROOT_INO,
                &format!("b-{round}-{i}"),
                format!("b {round} {i}").as_bytes(),
            )
            .await;
            sync(&b).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        child.await.unwrap();

        // A reopens its cache: everything it closed is there.
        let a = Drive::open_drive(store.clone(), id.clone(), opts(dir, "a"))
            .await
            .unwrap();
        sync(&a).await;
        b.refresh().await.unwrap();
        sync(&b).await;
        a.refresh().await.unwrap();
        let seen_a = contents(&a).await;
        let seen_b = contents(&b).await;
        for r in 0..=round {
            for i in 0..A_FILES {
                let (name, data) = a_file(r, i);
                let got = seen_a
                    .get(&name)
                    .unwrap_or_else(|| panic!("round {round}: {name} lost"));
                assert!(*got == data, "round {round}: {name} differs");
            }
            for i in 0..4 {
                let name = format!("b-{r}-{i}");
                assert_eq!(seen_a[&name], format!("b {r} {i}").as_bytes());
            }
        }
        // Both edits of the shared file survive: one in place, the other
        // as a conflict copy next to it.
        let mut versions: Vec<&[u8]> = seen_a
            .iter()
            .filter(|(n, _)| **n == shared || n.starts_with(&format!("{shared}.conflict-")))
            .map(|(_, v)| v.as_slice())
            .collect();
        versions.sort();
        let (from_a, from_b) = (format!("from a {round}"), format!("from b {round}"));
        assert_eq!(
            versions,
            vec![from_a.as_bytes(), from_b.as_bytes()],
            "round {round}: {:?}",
            seen_a.keys().collect::<Vec<_>>()
        );
        // The two clients converge.
        assert_eq!(
            seen_a.keys().collect::<Vec<_>>(),
            seen_b.keys().collect::<Vec<_>>(),
            "round {round}"
        );
        assert!(seen_a == seen_b, "round {round}: the clients differ");
        a.shutdown().await.unwrap();
    }
    // A client with an empty cache reads the same bytes from the store.
    let fresh = Drive::open_drive(store.clone(), id.clone(), opts(dir, "fresh"))
        .await
        .unwrap();
    assert!(contents(&fresh).await == contents(&b).await);
    b.shutdown().await.unwrap();
}

/// The child process of `kill_9_of_one_client_during_its_commit` (does
/// nothing unless started by it): client A on a slow store closes its
/// files and edits the shared file, prints CHILD-READY, and commits until
/// it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the two-client crash test's child process"]
async fn two_clients_child_entry() {
    let Some((dir, round)) = child_role(CHILD_ENV) else {
        return;
    };
    let round: usize = round.parse().unwrap();
    let (a, slow) = open_in_child(&dir, "a").await;
    slow.update_config(|c| c.latency = LATENCY);
    overwrite(
        &a,
        &format!("shared-{round}"),
        format!("from a {round}").as_bytes(),
    )
    .await;
    for i in 0..A_FILES {
        let (name, data) = a_file(round, i);
        put(&a, ROOT_INO, &name, &data).await;
    }
    crash::ready();
    tokio::time::sleep(Duration::from_secs(120)).await;
}
