//! The reference model of the drive-engine model test: random file
//! operations, a simple in-memory model of their POSIX results, and a
//! driver that runs both and compares every result and, after reopen or
//! crash, the whole tree. Used over the memory store (`drive_model.rs`) and
//! over S3 (`drive_s3.rs`).
#![allow(dead_code)]

use super::*;
use cardfs::drive::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

pub const PATHS: [&str; 8] = ["a", "b", "c", "d", "d/a", "d/b", "d/d", "d/d/a"];

#[derive(Debug, Clone)]
pub enum M {
    Create(usize),
    Mkdir(usize),
    Write(usize, u64, usize, u8),
    Truncate(usize, u64),
    Rename(usize, usize, u8),
    Unlink(usize),
    Rmdir(usize),
    Link(usize, usize),
    Read(usize),
    Reopen,
    Crash,
    /// Collect everything unreferenced now (`--grace 0 --keep 0`) with
    /// changes possibly pending, then reopen on a fresh cache.
    Gc,
}

pub fn op() -> impl Strategy<Value = M> {
    let p = 0..PATHS.len();
    let offset = prop_oneof![
        0u64..5000,
        (1u64..4).prop_map(|b| b * 1024 * 1024 - 3),
        1_000_000u64..3_200_000
    ];
    prop_oneof![
        3 => p.clone().prop_map(M::Create),
        2 => p.clone().prop_map(M::Mkdir),
        4 => (p.clone(), offset.clone(), 1usize..70_000, any::<u8>()).prop_map(|(a, o, l, b)| M::Write(a, o, l, b)),
        1 => (p.clone(), prop_oneof![0u64..3000, 1_000_000u64..3_000_000]).prop_map(|(a, s)| M::Truncate(a, s)),
        2 => (p.clone(), p.clone(), 0u8..3).prop_map(|(a, b, f)| M::Rename(a, b, f)),
        1 => p.clone().prop_map(M::Unlink),
        1 => p.clone().prop_map(M::Rmdir),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| M::Link(a, b)),
        2 => p.clone().prop_map(M::Read),
        1 => Just(M::Reopen),
        1 => Just(M::Crash),
        1 => Just(M::Gc),
    ]
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<u64, Kind>,
    next: u64,
}

type R<T> = std::result::Result<T, i32>;

impl Model {
    fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(0, Kind::Dir(BTreeMap::new()));
        Model { nodes, next: 1 }
    }
    fn children(&self, id: u64) -> R<&BTreeMap<String, u64>> {
        match &self.nodes[&id] {
            Kind::Dir(c) => Ok(c),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }
    fn children_mut(&mut self, id: u64) -> &mut BTreeMap<String, u64> {
        match self.nodes.get_mut(&id).unwrap() {
            Kind::Dir(c) => c,
            Kind::File(_) => panic!("not a dir"),
        }
    }
    fn resolve(&self, path: &str) -> R<u64> {
        let mut id = 0;
        for part in path.split('/') {
            id = *self.children(id)?.get(part).ok_or(libc::ENOENT)?;
        }
        Ok(id)
    }
    fn parent(&self, path: &str) -> R<(u64, String)> {
        match path.rsplit_once('/') {
            Some((dir, name)) => {
                let id = self.resolve(dir)?;
                self.children(id)?;
                Ok((id, name.to_string()))
            }
            None => Ok((0, path.to_string())),
        }
    }
    fn is_dir(&self, id: u64) -> bool {
        matches!(self.nodes[&id], Kind::Dir(_))
    }
    fn within(&self, node: u64, ancestor: u64) -> bool {
        // Is `node` equal to or below `ancestor`?
        if node == ancestor {
            return true;
        }
        if let Kind::Dir(c) = &self.nodes[&ancestor] {
            return c.values().any(|child| self.within(node, *child));
        }
        false
    }
    fn gc(&mut self) {
        let mut live = std::collections::BTreeSet::new();
        let mut stack = vec![0u64];
        while let Some(id) = stack.pop() {
            if live.insert(id)
                && let Kind::Dir(c) = &self.nodes[&id]
            {
                stack.extend(c.values());
            }
        }
        self.nodes.retain(|id, _| live.contains(id));
    }
    fn make(&mut self, p: &str, k: Kind) -> R<()> {
        let (parent, name) = self.parent(p)?;
        if self.children(parent)?.contains_key(&name) {
            return Err(libc::EEXIST);
        }
        let id = self.next;
        self.next += 1;
        self.nodes.insert(id, k);
        self.children_mut(parent).insert(name, id);
        Ok(())
    }
    fn file(&mut self, p: &str) -> R<&mut Vec<u8>> {
        let id = self.resolve(p)?;
        match self.nodes.get_mut(&id).unwrap() {
            Kind::File(d) => Ok(d),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }
    fn apply(&mut self, m: &M) -> R<Vec<u8>> {
        match m {
            M::Create(p) => self.make(PATHS[*p], Kind::File(Vec::new())).map(|_| vec![]),
            M::Mkdir(p) => self
                .make(PATHS[*p], Kind::Dir(BTreeMap::new()))
                .map(|_| vec![]),
            M::Write(p, off, len, b) => {
                let d = self.file(PATHS[*p])?;
                let end = *off as usize + len;
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[*off as usize..end].fill(*b);
                Ok(vec![])
            }
            M::Truncate(p, size) => {
                self.file(PATHS[*p])?.resize(*size as usize, 0);
                Ok(vec![])
            }
            M::Read(p) => self.file(PATHS[*p]).map(|d| d.clone()),
            M::Unlink(p) => {
                let (parent, name) = self.parent(PATHS[*p])?;
                let id = *self.children(parent)?.get(&name).ok_or(libc::ENOENT)?;
                if self.is_dir(id) {
                    return Err(libc::EISDIR);
                }
                self.children_mut(parent).remove(&name);
                self.gc();
                Ok(vec![])
            }
            M::Rmdir(p) => {
                let (parent, name) = self.parent(PATHS[*p])?;
                let id = *self.children(parent)?.get(&name).ok_or(libc::ENOENT)?;
                if !self.is_dir(id) {
                    return Err(libc::ENOTDIR);
                }
                if !self.children(id)?.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
                self.children_mut(parent).remove(&name);
                self.gc();
                Ok(vec![])
            }
            M::Link(p, q) => {
                let id = self.resolve(PATHS[*p])?;
                let (parent, name) = self.parent(PATHS[*q])?;
                if self.children(parent)?.contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                if self.is_dir(id) {
                    return Err(libc::EPERM);
                }
                self.children_mut(parent).insert(name, id);
                Ok(vec![])
            }
            M::Rename(p, q, flags) => {
                let (sp, sname) = self.parent(PATHS[*p])?;
                let (dp, dname) = self.parent(PATHS[*q])?;
                let src = *self.children(sp)?.get(&sname).ok_or(libc::ENOENT)?;
                let dst = self.children(dp)?.get(&dname).copied();
                match (flags, dst) {
                    (1, Some(_)) => return Err(libc::EEXIST),
                    (2, None) => return Err(libc::ENOENT),
                    _ => {}
                }
                if self.is_dir(src) && self.within(dp, src) {
                    return Err(libc::EINVAL);
                }
                if *flags == 2 {
                    let dst = dst.unwrap();
                    if self.is_dir(dst) && self.within(sp, dst) {
                        return Err(libc::EINVAL);
                    }
                    self.children_mut(sp).insert(sname, dst);
                    self.children_mut(dp).insert(dname, src);
                    return Ok(vec![]);
                }
                if let Some(dst) = dst {
                    if dst == src {
                        return Ok(vec![]);
                    }
                    match (self.is_dir(src), self.is_dir(dst)) {
                        (true, false) => return Err(libc::ENOTDIR),
                        (false, true) => return Err(libc::EISDIR),
                        (true, true) if !self.children(dst)?.is_empty() => {
                            return Err(libc::ENOTEMPTY);
                        }
                        _ => {}
                    }
                }
                self.children_mut(sp).remove(&sname);
                self.children_mut(dp).insert(dname, src);
                self.gc();
                Ok(vec![])
            }
            M::Reopen | M::Crash | M::Gc => Ok(vec![]),
        }
    }
}

// ---------------------------------------------------------------- engine

async fn resolve(d: &Drive, path: &str) -> R<Ino> {
    lookup(d, path).await.map_err(|e| e.errno())
}

async fn parent(d: &Drive, path: &str) -> R<(Ino, String)> {
    match path.rsplit_once('/') {
        Some((dir, name)) => {
            let ino = resolve(d, dir).await?;
            if d.getattr(ino).await.map_err(|e| e.errno())?.kind != FileKind::Dir {
                return Err(libc::ENOTDIR);
            }
            Ok((ino, name.to_string()))
        }
        None => Ok((ROOT_INO, path.to_string())),
    }
}

async fn run(d: &Drive, m: &M) -> R<Vec<u8>> {
    let e = |e: DriveError| e.errno();
    match m {
        M::Create(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            let (a, fh) = d
                .create(par, os(&name), 0o644, libc::O_RDWR, WHO)
                .await
                .map_err(e)?;
            d.release(a.ino, fh).await.map_err(e)?;
            Ok(vec![])
        }
        M::Mkdir(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            d.mkdir(par, os(&name), 0o755, WHO).await.map_err(e)?;
            Ok(vec![])
        }
        M::Write(p, off, len, b) => {
            let ino = resolve(d, PATHS[*p]).await?;
            let fh = d.open(ino, libc::O_WRONLY).await.map_err(e)?;
            let r = d.write(ino, fh, *off, &vec![*b; *len]).await.map_err(e);
            d.release(ino, fh).await.map_err(e)?;
            assert_eq!(r?, *len as u32);
            Ok(vec![])
        }
        M::Truncate(p, size) => {
            let ino = resolve(d, PATHS[*p]).await?;
            d.setattr(
                ino,
                None,
                SetAttr {
                    size: Some(*size),
                    ..Default::default()
                },
            )
            .await
            .map_err(e)?;
            Ok(vec![])
        }
        M::Read(p) => {
            let ino = resolve(d, PATHS[*p]).await?;
            let fh = d.open(ino, libc::O_RDONLY).await.map_err(e)?;
            let size = d.getattr(ino).await.map_err(e)?.size;
            let mut out = Vec::new();
            let mut r = Ok(());
            while (out.len() as u64) < size {
                match d.read(ino, fh, out.len() as u64, 128 * 1024).await {
                    Ok(c) if c.is_empty() => break,
                    Ok(c) => out.extend_from_slice(&c),
                    Err(err) => {
                        r = Err(err.errno());
                        break;
                    }
                }
            }
            d.release(ino, fh).await.map_err(e)?;
            r.map(|_| out)
        }
        M::Unlink(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            d.unlink(par, os(&name)).await.map_err(e).map(|_| vec![])
        }
        M::Rmdir(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            d.rmdir(par, os(&name)).await.map_err(e).map(|_| vec![])
        }
        M::Link(p, q) => {
            let ino = resolve(d, PATHS[*p]).await?;
            let (par, name) = parent(d, PATHS[*q]).await?;
            d.link(ino, par, os(&name)).await.map_err(e).map(|_| vec![])
        }
        M::Rename(p, q, f) => {
            let (sp, sname) = parent(d, PATHS[*p]).await?;
            let (dp, dname) = parent(d, PATHS[*q]).await?;
            let flags = RenameFlags {
                noreplace: *f == 1,
                exchange: *f == 2,
            };
            d.rename(sp, os(&sname), dp, os(&dname), flags)
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Reopen | M::Crash | M::Gc => unreachable!("handled by the driver"),
    }
}

/// The whole tree as (path, kind, content) for comparison.
fn model_tree(m: &Model) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    fn walk(m: &Model, id: u64, prefix: &str, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        if let Kind::Dir(c) = &m.nodes[&id] {
            for (name, child) in c {
                let path = format!("{prefix}{name}");
                match &m.nodes[child] {
                    Kind::File(d) => out.push((path, Some(d.clone()))),
                    Kind::Dir(_) => {
                        out.push((path.clone(), None));
                        walk(m, *child, &format!("{path}/"), out);
                    }
                }
            }
        }
    }
    walk(m, 0, "", &mut out);
    out
}

async fn engine_tree(d: &Drive) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for name in names(d, dir).await {
            let path = format!("{prefix}{name}");
            let a = d.lookup(dir, os(&name)).await.unwrap();
            if a.kind == FileKind::Dir {
                out.push((path.clone(), None));
                stack.push((a.ino, format!("{path}/")));
            } else {
                out.push((path, Some(read_all(d, a.ino).await)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn summary(t: &[(String, Option<Vec<u8>>)]) -> Vec<String> {
    t.iter()
        .map(|(p, c)| format!("{p}:{}", short(&Ok(c.clone().unwrap_or_default()))))
        .collect()
}

fn short(r: &R<Vec<u8>>) -> String {
    match r {
        Ok(v) => format!(
            "Ok({} bytes, sum {})",
            v.len(),
            v.iter().map(|b| *b as u64).sum::<u64>()
        ),
        Err(e) => format!("Err({e})"),
    }
}

/// Syncs, retrying while injected store failures make it fail.
async fn sync_retry(d: &Drive) {
    for _ in 0..100 {
        if d.sync(&|_, _| {}).await.is_ok() {
            return;
        }
    }
    panic!("sync kept failing");
}

pub async fn check(ops: Vec<M>) {
    check_on(Env::new().await, ops, 0).await
}

/// Runs `ops`; with `fail_every` > 0 every Nth store put fails
/// (transiently), through the fault-injecting wrapper.
pub async fn check_on(mut env: Env, ops: Vec<M>, fail_every: u64) {
    env.store = Arc::new(FaultStore::new(
        env.store.clone(),
        FaultConfig {
            fail_every_nth_put: fail_every,
            ..Default::default()
        },
    ));
    let mut d = env.open().await;
    let mut model = Model::new();
    let mut opens = 0;
    let mut cache = "cache".to_string();
    for (i, m) in ops.iter().enumerate() {
        match m {
            M::Reopen => {
                sync_retry(&d).await;
                d.shutdown().await.unwrap();
                opens += 1;
                // Alternate between a fresh cache and the first one.
                cache = if opens % 2 == 0 {
                    "cache".to_string()
                } else {
                    format!("fresh{opens}")
                };
                d = env.open_with(&cache).await;
            }
            M::Gc => {
                let now = GcOptions {
                    grace: std::time::Duration::ZERO,
                    keep: std::time::Duration::ZERO,
                    ..Default::default()
                };
                d.gc(&now, &|_, _| {}).await.unwrap();
                sync_retry(&d).await;
                d.shutdown().await.unwrap();
                opens += 1;
                cache = format!("after-gc{opens}");
                d = env.open_with(&cache).await;
            }
            M::Crash => {
                // The process "dies" without fsync and without uploading:
                // every op above was closed, so all of it survives.
                d.abandon().await;
                d = env.open_with(&cache).await;
            }
            _ => {
                let want = model.apply(m);
                let got = run(&d, m).await;
                assert_eq!(short(&got), short(&want), "op {i} {m:?}");
                assert_eq!(got, want, "op {i} {m:?}");
                continue;
            }
        }
        let mt = model_tree(&model);
        let et = engine_tree(&d).await;
        assert_eq!(
            et.len(),
            mt.len(),
            "after op {i} {m:?}: {:?} vs {:?}",
            et.iter().map(|x| &x.0).collect::<Vec<_>>(),
            mt.iter().map(|x| &x.0).collect::<Vec<_>>()
        );
        assert!(
            et == mt,
            "tree differs after op {i} {m:?}: engine {:?} model {:?}",
            summary(&et),
            summary(&mt)
        );
    }
    let mt = model_tree(&model);
    let et = engine_tree(&d).await;
    assert!(et == mt, "final tree differs");
    sync_retry(&d).await;
    d.shutdown().await.unwrap();
    // A brand-new client sees the same final tree.
    let d2 = env.open_with("final").await;
    assert!(
        engine_tree(&d2).await == mt,
        "tree differs for a new client"
    );
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
