//! Shared folders through `Drive` (engine level, MemoryStore): the owner
//! shares folders with a writer and a reader; members see only what is
//! shared with them under a read-only synthetic root; changes travel both
//! ways; cross-folder renames are EXDEV; new shares appear and removed ones
//! disappear on refresh; concurrent edits keep both versions.

use crate::support::drive::*;
use cardfs::drive::*;

/// A drive owned by `env.id`, plus a writer (Bob) and a reader (Carol).
struct Team {
    env: Env,
    bob: Identity,
    carol: Identity,
}

impl Team {
    async fn new() -> Team {
        Team {
            env: Env::new().await,
            bob: Identity::generate(),
            carol: Identity::generate(),
        }
    }

    async fn open_as(&self, who: &Identity, cache: &str) -> Result<Drive> {
        Drive::open_drive(self.env.store.clone(), who.clone(), self.env.opts(cache)).await
    }
}

/// Pseudo-random bytes (more than one block, so block refs move too).
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn errno<T: std::fmt::Debug>(f: impl std::future::Future<Output = Result<T>>) -> i32 {
    f.await.unwrap_err().errno()
}

async fn overwrite(d: &Drive, ino: Ino, bytes: &[u8]) {
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, bytes).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_shares_a_folder_with_a_writer_and_a_reader() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let big = data(1_500_000, 7);
    let projects = owner
        .mkdir(ROOT_INO, os("projects"), 0o750, WHO)
        .await
        .unwrap()
        .ino;
    put(&owner, projects, "plan.txt", &big).await;
    let sub = owner
        .mkdir(projects, os("sub"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let deep = put(&owner, sub, "deep.txt", b"deep inside").await;
    owner.link(deep, projects, os("deep-link")).await.unwrap();
    let private = owner
        .mkdir(ROOT_INO, os("private"), 0o700, WHO)
        .await
        .unwrap()
        .ino;
    put(&owner, private, "secret.txt", b"only mine").await;
    put(&owner, ROOT_INO, "notes.txt", b"root file").await;

    let info = owner
        .share_add(projects, t.bob.member(Role::Writer))
        .await
        .unwrap();
    assert_eq!(info.path, "projects");
    assert_eq!(info.my_role, Role::Owner);
    assert_eq!(info.generation, 0);
    assert_eq!(info.owner, t.env.id.card_id);
    assert_eq!(info.members.len(), 2);
    assert!(owner.is_owner());
    assert_eq!(owner.owner_card(), b"test card");
    // The owner's tree looks the same; the folder is now the volume root.
    assert_eq!(
        names(&owner, ROOT_INO).await,
        ["notes.txt", "private", "projects"]
    );
    let shared = lookup(&owner, "projects").await.unwrap();
    assert_eq!(shared, info.ino);
    let attr = owner.getattr(shared).await.unwrap();
    assert_eq!((attr.kind, attr.perm), (FileKind::Dir, 0o750));
    assert_eq!(
        names(&owner, shared).await,
        ["deep-link", "plan.txt", "sub"]
    );
    assert_eq!(
        read_all(&owner, lookup(&owner, "projects/plan.txt").await.unwrap()).await,
        big
    );
    let deep2 = lookup(&owner, "projects/sub/deep.txt").await.unwrap();
    assert_eq!(lookup(&owner, "projects/deep-link").await.unwrap(), deep2);
    assert_eq!(owner.getattr(deep2).await.unwrap().nlink, 2);
    // ".." of the shared folder is the drive root.
    assert_eq!(owner.lookup(shared, os("..")).await.unwrap().ino, ROOT_INO);

    // Adding Carol as a reader writes a new keyring generation.
    let info = owner
        .share_add(shared, t.carol.member(Role::Reader))
        .await
        .unwrap();
    assert_eq!(info.generation, 1);
    assert_eq!(info.members.len(), 3);
    let roles: Vec<Role> = info.members.iter().map(|m| m.role).collect();
    assert!(roles.contains(&Role::Reader) && roles.contains(&Role::Writer));

    // Bob sees only the shared folder, under a read-only synthetic root.
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    assert!(!bob.is_owner());
    assert_eq!(bob.owner_card(), b"test card");
    let root = bob.getattr(ROOT_INO).await.unwrap();
    assert_eq!((root.kind, root.perm), (FileKind::Dir, 0o555));
    assert_eq!(names(&bob, ROOT_INO).await, ["projects"]);
    assert_eq!(
        read_all(&bob, lookup(&bob, "projects/plan.txt").await.unwrap()).await,
        big
    );
    assert_eq!(
        read_all(&bob, lookup(&bob, "projects/sub/deep.txt").await.unwrap()).await,
        b"deep inside"
    );
    assert_eq!(
        errno(bob.lookup(ROOT_INO, os("private"))).await,
        libc::ENOENT
    );
    assert_eq!(
        errno(bob.mkdir(ROOT_INO, os("mine"), 0o755, WHO)).await,
        libc::EROFS
    );
    assert_eq!(
        errno(bob.create(ROOT_INO, os("f"), 0o644, libc::O_RDWR, WHO)).await,
        libc::EROFS
    );
    assert_eq!(
        errno(bob.rename(
            ROOT_INO,
            os("projects"),
            ROOT_INO,
            os("p"),
            RenameFlags::default()
        ))
        .await,
        libc::EROFS
    );
    assert_eq!(
        errno(bob.rmdir(ROOT_INO, os("projects"))).await,
        libc::EROFS
    );
    let list = bob.share_list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].path.as_os_str(), list[0].my_role),
        (os("projects"), Role::Writer)
    );
    assert_eq!(
        errno(bob.share_add(list[0].ino, t.carol.member(Role::Writer))).await,
        libc::EPERM
    );

    // Bob writes; the owner reads it after a refresh.
    let bp = lookup(&bob, "projects").await.unwrap();
    put(&bob, bp, "from-bob.txt", b"written by bob").await;
    sync(&bob).await;
    owner.refresh().await.unwrap();
    assert_eq!(
        read_all(
            &owner,
            lookup(&owner, "projects/from-bob.txt").await.unwrap()
        )
        .await,
        b"written by bob"
    );

    // Carol reads and gets EROFS on every change.
    let carol = t.open_as(&t.carol, "carol").await.unwrap();
    assert_eq!(names(&carol, ROOT_INO).await, ["projects"]);
    let cp = lookup(&carol, "projects").await.unwrap();
    assert_eq!(
        read_all(
            &carol,
            lookup(&carol, "projects/from-bob.txt").await.unwrap()
        )
        .await,
        b"written by bob"
    );
    let plan = lookup(&carol, "projects/plan.txt").await.unwrap();
    assert_eq!(read_all(&carol, plan).await, big);
    assert_eq!(
        errno(carol.create(cp, os("x"), 0o644, libc::O_RDWR, WHO)).await,
        libc::EROFS
    );
    assert_eq!(errno(carol.open(plan, libc::O_WRONLY)).await, libc::EROFS);
    assert_eq!(errno(carol.unlink(cp, os("plan.txt"))).await, libc::EROFS);
    assert_eq!(
        errno(carol.mkdir(cp, os("d"), 0o755, WHO)).await,
        libc::EROFS
    );

    // Nothing of the unshared tree reached the members, and nobody else
    // can open the drive at all.
    assert_eq!(
        errno(t.open_as(&Identity::generate(), "stranger")).await,
        libc::EACCES
    );
    for d in [&owner, &bob, &carol] {
        d.shutdown().await.unwrap();
    }
    // Reopening keeps the shared folder's inode for the owner.
    let owner = t.env.open_with("owner").await;
    assert_eq!(lookup(&owner, "projects").await.unwrap(), shared);
    assert_eq!(
        names(&owner, shared).await,
        ["deep-link", "from-bob.txt", "plan.txt", "sub"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_across_a_shared_folder_are_exdev_and_its_link_goes_only_when_empty() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("shared"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let inner = owner.mkdir(dir, os("inner"), 0o755, WHO).await.unwrap().ino;
    put(&owner, dir, "in.txt", b"inside").await;
    let out = put(&owner, ROOT_INO, "out.txt", b"outside").await;
    let plain = owner
        .mkdir(ROOT_INO, os("plain"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let info = owner
        .share_add(dir, t.bob.member(Role::Writer))
        .await
        .unwrap();
    let shared = info.ino;
    let inner = {
        let _ = inner;
        lookup(&owner, "shared/inner").await.unwrap()
    };
    let no = RenameFlags::default();

    // Across the boundary, both ways, and hard links: EXDEV.
    let exdev = libc::EXDEV;
    assert_eq!(
        errno(owner.rename(ROOT_INO, os("out.txt"), shared, os("o"), no)).await,
        exdev
    );
    assert_eq!(
        errno(owner.rename(shared, os("in.txt"), ROOT_INO, os("i"), no)).await,
        exdev
    );
    assert_eq!(
        errno(owner.rename(shared, os("in.txt"), plain, os("i"), no)).await,
        exdev
    );
    assert_eq!(errno(owner.link(out, shared, os("l"))).await, exdev);
    let in_ino = lookup(&owner, "shared/in.txt").await.unwrap();
    assert_eq!(errno(owner.link(in_ino, ROOT_INO, os("l"))).await, exdev);
    // Inside the shared folder, and of the link itself within the root: fine.
    owner
        .rename(shared, os("in.txt"), inner, os("moved.txt"), no)
        .await
        .unwrap();
    owner
        .rename(ROOT_INO, os("shared"), plain, os("s2"), no)
        .await
        .unwrap();
    assert_eq!(lookup(&owner, "plain/s2").await.unwrap(), shared);
    assert_eq!(owner.lookup(shared, os("..")).await.unwrap().ino, plain);
    assert_eq!(owner.share_list().await.unwrap()[0].path, "plain/s2");

    // No sharing of the root, of a folder inside a shared one, or of a
    // folder holding one.
    let bob = t.bob.member(Role::Reader);
    assert_eq!(
        errno(owner.share_add(ROOT_INO, bob.clone())).await,
        libc::EINVAL
    );
    assert_eq!(
        errno(owner.share_add(inner, bob.clone())).await,
        libc::EINVAL
    );
    assert_eq!(
        errno(owner.share_add(plain, bob.clone())).await,
        libc::EINVAL
    );
    assert_eq!(
        errno(owner.share_add(out, bob.clone())).await,
        libc::ENOTDIR
    );

    // rmdir of the link, or a directory moved over it: refused while the
    // folder holds anything.
    assert_eq!(errno(owner.rmdir(plain, os("s2"))).await, libc::ENOTEMPTY);
    assert_eq!(errno(owner.unlink(plain, os("s2"))).await, libc::EISDIR);
    owner.mkdir(plain, os("empty"), 0o755, WHO).await.unwrap();
    assert_eq!(
        errno(owner.rename(plain, os("empty"), plain, os("s2"), no)).await,
        libc::ENOTEMPTY
    );
    owner.rmdir(plain, os("empty")).await.unwrap();
    owner.unlink(inner, os("moved.txt")).await.unwrap();
    owner.rmdir(shared, os("inner")).await.unwrap();
    owner.rmdir(plain, os("s2")).await.unwrap();
    assert!(names(&owner, plain).await.is_empty());
    assert!(owner.share_list().await.unwrap().is_empty());
    assert_eq!(errno(owner.getattr(shared)).await, libc::ENOENT);
    sync(&owner).await;
    // The volume stays in the store with its members (documented).
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    assert_eq!(names(&bob, ROOT_INO).await, ["shared"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_discover_new_shares_and_lose_removed_ones_on_refresh() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let mut dirs = Vec::new();
    for path in ["a", "x", "y"] {
        dirs.push(
            owner
                .mkdir(ROOT_INO, os(path), 0o755, WHO)
                .await
                .unwrap()
                .ino,
        );
    }
    let docs_x = owner
        .mkdir(dirs[1], os("docs"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let docs_y = owner
        .mkdir(dirs[2], os("docs"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    put(&owner, dirs[0], "a.txt", b"in a").await;
    put(&owner, docs_y, "y.txt", b"in y/docs").await;
    // Nothing shared yet: Bob cannot open the drive.
    assert_eq!(errno(t.open_as(&t.bob, "bob0")).await, libc::EACCES);
    let a = owner
        .share_add(dirs[0], t.bob.member(Role::Writer))
        .await
        .unwrap()
        .ino;
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    assert_eq!(names(&bob, ROOT_INO).await, ["a"]);
    let bob_a = lookup(&bob, "a").await.unwrap();
    let bob_file = lookup(&bob, "a/a.txt").await.unwrap();

    // Two new shares with the same name: both appear, told apart.
    owner
        .share_add(docs_x, t.bob.member(Role::Reader))
        .await
        .unwrap();
    owner
        .share_add(docs_y, t.bob.member(Role::Reader))
        .await
        .unwrap();
    assert_eq!(names(&bob, ROOT_INO).await, ["a"]);
    bob.refresh().await.unwrap();
    assert_eq!(names(&bob, ROOT_INO).await, ["a", "docs", "docs (2)"]);
    // readdir offsets of the synthetic root continue where they stopped.
    let fh = bob.opendir(ROOT_INO).await.unwrap();
    let all = bob.readdir(ROOT_INO, fh, 0).await.unwrap();
    assert_eq!(all.len(), 5);
    let rest = bob.readdir(ROOT_INO, fh, all[2].next_offset).await.unwrap();
    assert_eq!(rest, all[3..]);
    assert!(
        bob.readdir(ROOT_INO, fh, all[4].next_offset)
            .await
            .unwrap()
            .is_empty()
    );
    bob.releasedir(ROOT_INO, fh).await.unwrap();
    let mut texts = Vec::new();
    for n in ["docs", "docs (2)"] {
        let d = lookup(&bob, n).await.unwrap();
        texts.push(names(&bob, d).await);
    }
    texts.sort();
    assert_eq!(texts, [vec![], vec!["y.txt".to_string()]]);
    // The earlier share kept its inode.
    assert_eq!(lookup(&bob, "a").await.unwrap(), bob_a);

    // Removal: the folder disappears from Bob's view on refresh.
    let info = owner.share_remove(a, &t.bob.card_id).await.unwrap();
    assert_eq!(info.members.len(), 1);
    assert_eq!(
        errno(owner.share_remove(a, &t.bob.card_id)).await,
        libc::ENOENT
    );
    assert_eq!(
        errno(owner.share_remove(a, &t.env.id.card_id)).await,
        libc::EINVAL
    );
    bob.refresh().await.unwrap();
    let left = names(&bob, ROOT_INO).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&"a".to_string()), "{left:?}");
    assert_eq!(errno(bob.getattr(bob_a)).await, libc::ENOENT);
    assert_eq!(errno(bob.getattr(bob_file)).await, libc::ENOENT);
    // The owner still has the folder and its content.
    assert_eq!(
        read_all(&owner, lookup(&owner, "a/a.txt").await.unwrap()).await,
        b"in a"
    );
    let shares = bob.share_list().await.unwrap();
    assert_eq!(shares.len(), 2);
    assert!(shares.iter().all(|s| s.my_role == Role::Reader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_by_owner_and_writer_keep_both_versions() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("team"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    put(&owner, dir, "doc.txt", b"original").await;
    let dir = owner
        .share_add(dir, t.bob.member(Role::Writer))
        .await
        .unwrap()
        .ino;
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    let mine = lookup(&owner, "team/doc.txt").await.unwrap();
    let theirs = lookup(&bob, "team/doc.txt").await.unwrap();
    overwrite(&owner, mine, b"owner's version").await;
    overwrite(&bob, theirs, b"bob's version").await;
    sync(&owner).await;
    sync(&bob).await;
    owner.refresh().await.unwrap();
    let mut versions = Vec::new();
    let files = names(&owner, dir).await;
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f == "doc.txt"));
    assert!(
        files.iter().any(|f| f.starts_with("doc.txt.conflict-")),
        "{files:?}"
    );
    for f in &files {
        let ino = owner.lookup(dir, os(f)).await.unwrap().ino;
        versions.push(read_all(&owner, ino).await);
    }
    versions.sort();
    assert_eq!(
        versions,
        [b"bob's version".to_vec(), b"owner's version".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_with_a_file_open_for_writing_is_not_converted() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("busy"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let (a, fh) = owner
        .create(dir, os("f"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    owner.write(a.ino, fh, 0, b"unsealed").await.unwrap();
    assert_eq!(
        errno(owner.share_add(dir, t.bob.member(Role::Writer))).await,
        libc::EBUSY
    );
    owner.release(a.ino, fh).await.unwrap();
    let info = owner
        .share_add(dir, t.bob.member(Role::Writer))
        .await
        .unwrap();
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    assert_eq!(
        read_all(&bob, lookup(&bob, "busy/f").await.unwrap()).await,
        b"unsealed"
    );
    assert_eq!(info.path, "busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypting_a_shared_folder_keeps_its_content_readable_by_members() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("r"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let big = data(2_100_000, 3);
    put(&owner, dir, "big.bin", &big).await;
    let dir = owner
        .share_add(dir, t.bob.member(Role::Writer))
        .await
        .unwrap()
        .ino;
    owner
        .share_add(dir, t.carol.member(Role::Reader))
        .await
        .unwrap();
    owner.share_remove(dir, &t.bob.card_id).await.unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    owner
        .share_reencrypt(dir, &|done, total| seen.lock().unwrap().push((done, total)))
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    let &(done, total) = seen.last().expect("progress reported");
    assert_eq!(done, total);
    assert!(total >= big.len() as u64, "{seen:?}");
    assert_eq!(
        read_all(&owner, lookup(&owner, "r/big.bin").await.unwrap()).await,
        big
    );
    let carol = t.open_as(&t.carol, "carol").await.unwrap();
    assert_eq!(
        read_all(&carol, lookup(&carol, "r/big.bin").await.unwrap()).await,
        big
    );
    // Only the owner re-encrypts, and only a shared folder.
    let cr = lookup(&carol, "r").await.unwrap();
    assert_eq!(
        errno(carol.share_reencrypt(cr, &|_, _| {})).await,
        libc::EPERM
    );
    assert_eq!(
        errno(owner.share_reencrypt(ROOT_INO, &|_, _| {})).await,
        libc::EINVAL
    );
    // Bob, removed before, has nothing left to open.
    assert_eq!(errno(t.open_as(&t.bob, "bob")).await, libc::EACCES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_timer_shows_a_new_share_to_a_mounted_member() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let first = owner
        .mkdir(ROOT_INO, os("first"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let second = owner
        .mkdir(ROOT_INO, os("second"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    owner
        .share_add(first, t.bob.member(Role::Reader))
        .await
        .unwrap();
    let mut opts = t.env.opts("bob");
    opts.refresh_interval = std::time::Duration::from_millis(50);
    let bob = Drive::open_drive(t.env.store.clone(), t.bob.clone(), opts)
        .await
        .unwrap();
    let f = lookup(&bob, "first").await.unwrap();
    assert_eq!(bob.lookup(f, os("..")).await.unwrap().ino, ROOT_INO);
    assert_eq!(names(&bob, ROOT_INO).await, ["first"]);
    owner
        .share_add(second, t.bob.member(Role::Reader))
        .await
        .unwrap();
    let mut appeared = false;
    for _ in 0..400 {
        if names(&bob, ROOT_INO).await == ["first", "second"] {
            appeared = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        appeared,
        "the new share never appeared without an explicit refresh"
    );
    bob.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_names_stay_secret_and_a_damaged_keyring_is_not_listed() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let mine = owner
        .mkdir(ROOT_INO, os("SECRETNAMEMARKER"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let theirs = owner
        .mkdir(ROOT_INO, os("for-bob"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    owner
        .share_add(mine, t.carol.member(Role::Reader))
        .await
        .unwrap();
    let info = owner
        .share_add(theirs, t.bob.member(Role::Reader))
        .await
        .unwrap();
    sync(&owner).await;
    // Bob sees his folder only; the store holds no folder name anywhere.
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    assert_eq!(names(&bob, ROOT_INO).await, ["for-bob"]);
    let marker = b"SECRETNAMEMARKER";
    for m in t.env.store.list_all("").await.unwrap() {
        assert!(!m.key.as_bytes().windows(marker.len()).any(|w| w == marker));
        let body = t
            .env
            .store
            .get(&m.key, Default::default())
            .await
            .unwrap()
            .bytes;
        assert!(
            !body.windows(marker.len()).any(|w| w == marker),
            "name in {}",
            m.key
        );
    }
    // A keyring that fails verification is not listed to a member who
    // did not know the volume before (and names nothing).
    let hex: String = info.volume.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("k/{hex}/00000000");
    let mut bytes = t
        .env
        .store
        .get(&key, Default::default())
        .await
        .unwrap()
        .bytes
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    t.env
        .store
        .put(&key, bytes.into(), cardfs::store::PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(errno(t.open_as(&t.bob, "bob-again")).await, libc::EACCES);
    // Bob's mount that knew it keeps it listed; its engine reports the
    // damage once it has to read the keyring again.
    bob.refresh().await.unwrap();
    assert_eq!(names(&bob, ROOT_INO).await, ["for-bob"]);
}

/// The root volume's log is unreachable when the folder is converted: the
/// new volume exists, the link ops are only in the journal. After a crash
/// the next open commits them, and the member reads the folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_link_is_committed_finishes_on_reopen() {
    use cardfs::store::KeyMatch;
    let store = faulty(std::sync::Arc::new(cardfs::store::MemoryStore::new()));
    let env = Env::with_store(store.clone()).await;
    let bob = Identity::generate();
    let owner = env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("f"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    put(&owner, dir, "x.txt", b"survives").await;
    sync(&owner).await;
    let header = cardfs::drive::read_header(env.store.as_ref())
        .await
        .unwrap();
    let hex: String = header
        .root_volume
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    store.update_config(|c| c.refuse_puts = vec![KeyMatch::Prefix(format!("v/{hex}/l/"))]);
    let e = owner
        .share_add(dir, bob.member(Role::Writer))
        .await
        .unwrap_err();
    assert!(matches!(e, DriveError::Store(_)), "{e}");
    owner.abandon().await;
    store.update_config(|c| c.refuse_puts.clear());

    let owner = env.open_with("owner").await;
    sync(&owner).await;
    let shares = owner.share_list().await.unwrap();
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].path, "f");
    assert_eq!(names(&owner, ROOT_INO).await, ["f"]);
    assert_eq!(
        read_all(&owner, lookup(&owner, "f/x.txt").await.unwrap()).await,
        b"survives"
    );
    let b = Drive::open_drive(env.store.clone(), bob, env.opts("bob"))
        .await
        .unwrap();
    assert_eq!(
        read_all(&b, lookup(&b, "f/x.txt").await.unwrap()).await,
        b"survives"
    );
}

/// A folder of more nodes than one log entry holds (4096 ops) converts
/// whole: the new volume's genesis and the root volume's removal both span
/// several entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_larger_than_one_log_entry_converts_whole() {
    let t = Team::new().await;
    let owner = t.env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("many"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let sub = owner.mkdir(dir, os("sub"), 0o755, WHO).await.unwrap().ino;
    const N: usize = 4200;
    for i in 0..N {
        let parent = if i % 2 == 0 { dir } else { sub };
        let (a, fh) = owner
            .create(parent, os(&format!("f{i}")), 0o644, libc::O_RDWR, WHO)
            .await
            .unwrap();
        owner.release(a.ino, fh).await.unwrap();
    }
    put(&owner, sub, "data.txt", b"last").await;
    let shared = owner
        .share_add(dir, t.bob.member(Role::Reader))
        .await
        .unwrap()
        .ino;
    assert_eq!(owner.status().pending_ops, 0);
    assert_eq!(names(&owner, shared).await.len(), N / 2 + 1);
    owner.shutdown().await.unwrap();
    let owner = t.env.open_with("owner").await;
    assert_eq!(names(&owner, ROOT_INO).await, ["many"]);
    let bob = t.open_as(&t.bob, "bob").await.unwrap();
    let bsub = lookup(&bob, "many/sub").await.unwrap();
    assert_eq!(names(&bob, bsub).await.len(), N / 2 + 1);
    assert_eq!(
        read_all(&bob, lookup(&bob, "many/sub/data.txt").await.unwrap()).await,
        b"last"
    );
    // The old nodes left the root volume: only the root and the link
    // remain (the owner has not opened the shared folder's volume yet).
    assert_eq!(owner.statfs().await.unwrap().files, 2 + (1 << 32));
}
