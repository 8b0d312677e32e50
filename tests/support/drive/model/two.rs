//! The model test's second client: two drives on one store, each through
//! its own fault wrapper with its own cache, take turns. A turn's client
//! works on its view while its commits are refused (so nothing it does
//! reaches the other side, and it learns nothing of the other side, until
//! its turn ends); at [`M::Switch`] it syncs, which rebases its changes on
//! what the other client committed since it last looked, and the other
//! client takes over either refreshed or still on its old view (`stale`),
//! so that its changes rebase in turn. The model does the same with
//! [`rebase::rebase`]; after every switch the incoming client's whole tree
//! must equal its model view (conflict names compared without their card
//! and time), and at the end both clients and a brand-new one agree.
//!
//! Handles are held within a turn (writes and reads through them, on
//! files other ops rename or unlink meanwhile) and all closed before the
//! turn ends, as the single-client run closes them before a reopen, crash
//! or collection: when a held file's writes are sealed is the engine's
//! choice, and a rebase sees only sealed writes.

use super::rebase::{names_taken, normalized, rebase};
use super::*;
use cardfs::store::KeyMatch;

/// Paths of a two-client sequence: the first [`NARROW`] of [`PATHS`] (a
/// directory with two names in it among them), so that both clients often
/// touch the same names and files.
pub const NARROW: usize = 6;

/// One op of a two-client sequence: the single-client ops on the first
/// [`NARROW`] paths, and switches (about one op in twelve).
pub fn op_two() -> impl Strategy<Value = M> {
    let n = |p: usize| p % NARROW;
    let narrowed = op().prop_map(move |m| match m {
        M::Hold(p, k) => M::Hold(n(p), k),
        m @ (M::WriteHeld(..) | M::ReadHeld(_) | M::Release(_)) => m,
        M::Create(p) => M::Create(n(p)),
        M::Mkdir(p) => M::Mkdir(n(p)),
        M::Write(p, o, l, b) => M::Write(n(p), o, l, b),
        M::Truncate(p, s) => M::Truncate(n(p), s),
        M::Rename(p, q, f) => M::Rename(n(p), n(q), f),
        M::Unlink(p) => M::Unlink(n(p)),
        M::Rmdir(p) => M::Rmdir(n(p)),
        M::Link(p, q) => M::Link(n(p), n(q)),
        M::Read(p) => M::Read(n(p)),
        M::Symlink(p, t) => M::Symlink(n(p), t),
        M::Chmod(p, m) => M::Chmod(n(p), m),
        M::SetXattr(p, x, l, b, f) => M::SetXattr(n(p), x, l, b, f),
        M::RemoveXattr(p, x) => M::RemoveXattr(n(p), x),
        // Sharing is single-client (a share converts a folder on one
        // client; the rebase of a turn across it is not modelled).
        M::Share(p) => M::Mkdir(n(p)),
        M::Unshare(p) | M::Reencrypt(p) => M::Read(n(p)),
        m @ (M::Reopen | M::Crash | M::Gc | M::Switch { .. }) => m,
    });
    prop_oneof![
        32 => narrowed,
        3 => any::<bool>().prop_map(|stale| M::Switch { stale }),
    ]
}

fn refuse(store: &FaultStore, refused: bool) {
    store.update_config(|c| {
        c.refuse_puts = if refused {
            vec![KeyMatch::Contains("/l/".into())]
        } else {
            Vec::new()
        }
    });
}

/// One of the two clients: its store wrapper, drive, cache and model view
/// (whose log is what it has not committed).
struct Client {
    store: Arc<FaultStore>,
    /// Always open (taken only to close it).
    drive: Option<Drive>,
    cache: String,
    view: Model,
    /// The handles it holds open (none between turns).
    held: Held,
    /// How much of the commit history its view holds.
    seen: usize,
}

/// What both clients committed, in order, and the model's tree after it.
struct Committed {
    tree: Model,
    history: Vec<MOp>,
}

impl Client {
    fn d(&self) -> &Drive {
        self.drive.as_ref().expect("open")
    }

    /// Opens a client and refreshes it: an engine that has not looked at
    /// the log's end since it opened pulls what is there before its first
    /// commit, which would end a stale turn early.
    async fn open(env: &Env, store: &Arc<FaultStore>, cache: &str) -> Drive {
        let store: Arc<dyn ObjectStore> = store.clone();
        let d = Drive::open_drive(store, env.id.clone(), env.opts(cache))
            .await
            .unwrap();
        d.refresh().await.unwrap();
        d
    }

    /// Syncs with its commits let through (rebasing on the other client's
    /// commits), then refuses them again. With nothing to commit the
    /// client looks at nothing either: its view stays as it was.
    async fn commit(&mut self, committed: &mut Committed) {
        refuse(&self.store, false);
        sync_retry(self.d()).await;
        refuse(&self.store, true);
        if self.view.log.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.view.log);
        let taken = names_taken(&committed.history[self.seen..]);
        let mut c = rebase(&committed.tree, &self.view, pending, &taken);
        committed.history.append(&mut c.log);
        committed.tree = c;
        self.caught_up(committed);
    }

    /// Closes every handle it holds, in the engine and in its view.
    async fn release_all(&mut self) {
        let d = self.drive.as_ref().expect("open");
        release_all(d, &mut self.held).await;
        self.view.release_all();
    }

    /// Its view is the committed tree now.
    fn caught_up(&mut self, committed: &Committed) {
        self.view = committed.tree.clone();
        self.seen = committed.history.len();
    }

    async fn reopen(&mut self, env: &Env, cache: String) {
        self.drive.take().unwrap().shutdown().await.unwrap();
        self.cache = cache;
        self.drive = Some(Client::open(env, &self.store, &self.cache).await);
    }
}

/// Normalized, sorted, for comparison.
fn norm(mut t: Vec<Entry>) -> Vec<Entry> {
    for e in &mut t {
        e.path = normalized(&e.path);
    }
    t.sort();
    t
}

async fn same(d: &Drive, m: &Model, what: &str) {
    let et = norm(engine_tree(d).await);
    let mt = norm(model_tree(m));
    assert!(
        et == mt,
        "tree differs {what}: engine {:?} model {:?}",
        summary(&et),
        summary(&mt)
    );
}

/// Runs a two-client sequence; with `fail_every` > 0 every Nth store put
/// of each client fails (transiently).
pub async fn check_two(env: Env, ops: Vec<M>, fail_every: u64) {
    let mut clients = Vec::new();
    for k in 0..2 {
        let store = Arc::new(FaultStore::new(
            env.store.clone(),
            FaultConfig {
                fail_every_nth_put: fail_every,
                ..Default::default()
            },
        ));
        refuse(&store, true);
        let cache = format!("c{k}");
        clients.push(Client {
            drive: Some(Client::open(&env, &store, &cache).await),
            store,
            cache,
            view: Model::new(),
            held: [None; HELD],
            seen: 0,
        });
    }
    let mut committed = Committed {
        tree: Model::new(),
        history: Vec::new(),
    };
    let mut me = 0;
    let mut opens = 0;
    for (i, m) in ops.iter().enumerate() {
        let c = &mut clients[me];
        if matches!(m, M::Switch { .. } | M::Reopen | M::Crash | M::Gc) {
            // Handles are closed first (see the module doc).
            c.release_all().await;
        }
        match m {
            M::Switch { stale } => {
                c.commit(&mut committed).await;
                let next = c.view.next;
                me = 1 - me;
                let o = &mut clients[me];
                if !stale {
                    o.d().refresh().await.unwrap();
                    o.caught_up(&committed);
                }
                o.view.next = o.view.next.max(next);
                same(o.d(), &o.view, &format!("after op {i} {m:?}")).await;
                continue;
            }
            M::Reopen => {
                c.commit(&mut committed).await;
                opens += 1;
                let cache = if opens % 2 == 0 {
                    c.cache.clone()
                } else {
                    format!("fresh{opens}")
                };
                c.reopen(&env, cache).await;
                c.caught_up(&committed);
            }
            M::Crash => {
                c.drive.take().unwrap().abandon().await;
                c.drive = Some(Client::open(&env, &c.store, &c.cache).await);
                // The journal is replayed on what the store holds now, as
                // a commit would rebase it: the names the other client
                // took since are known from the log.
                let pending = std::mem::take(&mut c.view.log);
                let taken = names_taken(&committed.history[c.seen..]);
                c.view = rebase(&committed.tree, &c.view, pending, &taken);
                c.seen = committed.history.len();
            }
            M::Gc => {
                c.commit(&mut committed).await;
                let now = GcOptions {
                    grace: std::time::Duration::ZERO,
                    keep: std::time::Duration::ZERO,
                    ..Default::default()
                };
                refuse(&c.store, false);
                c.d().gc(&now, &|_, _| {}).await.unwrap();
                sync_retry(c.d()).await;
                refuse(&c.store, true);
                // Both clients reopen on fresh caches: what the other one
                // last saw may be collected now.
                for (k, c) in clients.iter_mut().enumerate() {
                    opens += 1;
                    c.reopen(&env, format!("after-gc{opens}-{k}")).await;
                    c.caught_up(&committed);
                }
            }
            _ => {
                let want = c.view.apply(m);
                let d = c.drive.as_ref().expect("open");
                let got = run_held(d, &mut c.held, m).await;
                if short(&got) != short(&want) {
                    // The trees the op met, to tell which side went wrong.
                    let et = summary(&norm(engine_tree(c.d()).await));
                    eprintln!("engine tree before op {i}: {et:?}");
                    eprintln!("model tree: {:?}", summary(&norm(model_tree(&c.view))));
                }
                assert_eq!(short(&got), short(&want), "op {i} {m:?} on client {me}");
                assert_eq!(got, want, "op {i} {m:?} on client {me}");
                continue;
            }
        }
        let c = &clients[me];
        same(c.d(), &c.view, &format!("after op {i} {m:?}")).await;
    }
    clients[me].release_all().await;
    clients[me].commit(&mut committed).await;
    for (k, c) in clients.iter().enumerate() {
        c.d().refresh().await.unwrap();
        same(c.d(), &committed.tree, &format!("at the end on client {k}")).await;
    }
    for mut c in clients {
        c.drive.take().unwrap().shutdown().await.unwrap();
    }
    let d = env.open_with("final").await;
    same(&d, &committed.tree, "for a new client").await;
}
