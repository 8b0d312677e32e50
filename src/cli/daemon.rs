//! The life of a mount daemon, from mounting to exit.
//!
//! [`serve`] mounts a FUSE filesystem, answers the control socket, and
//! ends the mount in one of three ways, each leaving the drive consistent:
//!
//! - `cardfs unmount` (control socket): sync with progress, unmount; a busy
//!   mount is refused and stays mounted.
//! - SIGTERM or SIGINT: sync, unmount (lazily if busy).
//! - An unmount from outside (`umount`, `fusermount3 -u`): the kernel ends
//!   the session; the daemon then shuts the backend down, which attempts a
//!   final sync. Whatever is not uploaded stays in the journal for the next
//!   mount.
//!
//! Invariants: the control socket exists only while the daemon runs (it is
//! removed on every exit path); the cache directory lock ([`CacheLock`]) is
//! held for the daemon's whole life; the backend is shut down after the
//! kernel stops sending requests.

use super::control::{self, Answer, Reply, Request};
use super::control_messages::{DriveReport, Frame, MountInfo};
use super::exit::{self, UserError};
use super::mount_record;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// What the daemon serves besides the kernel requests: the drive's control
/// operations.
pub trait Backend: Send + Sync + 'static {
    /// Pushes every pending change to the store and waits; `progress` gets
    /// (done, total) bytes.
    fn sync(
        &self,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The drive's part of `cardfs status` (pending uploads, last commit, ...).
    fn status(&self) -> DriveReport;
    /// Pulls changes other clients committed (as the refresh timer does).
    fn refresh(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Final sync attempt and stop of background work.
    fn shutdown(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Called once the kernel session exists, with its notifier (to drop
    /// kernel cache entries a control request made stale).
    fn mounted(&self, _notifier: fuser::Notifier) {}
    /// Any other request (sharing, the card directory): its answer;
    /// `progress` gets (done, total) of long work.
    fn request(
        &self,
        request: Request,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> impl Future<Output = anyhow::Result<Answer>> + Send;
}

/// An exclusive lock on a cache directory, held while a daemon uses it.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// Locks `cache_dir` (creating it, or making it, mode 0700) for the mount
/// on `mountpoint`, or says which mount holds it.
pub fn lock_cache_dir(cache_dir: &Path, mountpoint: &Path) -> anyhow::Result<CacheLock> {
    use anyhow::Context;
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .with_context(|| format!("creating cache directory {}", cache_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache_dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(cache_dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private (0700)", cache_dir.display()))?;
        }
    }
    // Not `lock`: the engine takes its own lock on that file when it opens
    // the cache, and a second flock from this process would conflict.
    let path = cache_dir.join("mount.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(UserError::CacheDirBusy {
                cache_dir: cache_dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "another cardfs process".into()
                } else {
                    holder.to_string()
                },
            }
            .into());
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    write!(
        file,
        "pid {} mounted on {}",
        std::process::id(),
        mountpoint.display()
    )?;
    Ok(CacheLock { _file: file })
}

/// A mount to serve.
pub struct MountPlan<F> {
    pub fs: F,
    /// Absolute, canonical mountpoint.
    pub mountpoint: PathBuf,
    pub config: fuser::Config,
    /// Where the control socket is created.
    pub socket: PathBuf,
    /// What `status` reports besides the backend's part.
    pub info: MountInfo,
}

/// A client waiting for an unmount: its replies, and a signal that its
/// final reply has been written to the socket.
struct Asker {
    out: mpsc::UnboundedSender<Reply>,
    written: tokio::sync::oneshot::Receiver<()>,
}

/// Removes a file when dropped (the control socket).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Mounts `plan.fs`, calls `ready` once the mount answers requests, and
/// serves until the mount ends (see the module doc). Returns when the
/// kernel session is over and the backend is shut down.
pub fn serve<B: Backend, F: fuser::Filesystem>(
    rt: &tokio::runtime::Runtime,
    backend: Arc<B>,
    plan: MountPlan<F>,
    ready: impl FnOnce(&Path),
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    let _enter = rt.enter();
    let MountPlan {
        fs,
        mountpoint,
        config,
        socket: socket_path,
        info,
    } = plan;

    let listener = control::bind(&socket_path).with_context(|| {
        format!(
            "creating the control socket {} for {}",
            socket_path.display(),
            mountpoint.display()
        )
    })?;
    let _socket = RemoveOnDrop(socket_path.clone());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let session = fuser::Session::new(fs, &mountpoint, &config)
        .with_context(|| format!("mounting FUSE on {}", mountpoint.display()))?;
    backend.mounted(session.notifier());
    let (done_tx, mut session_done) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let result = session.run();
            let _ = done_tx.send(());
            result
        })?;

    if let Err(e) = cardfs::fuse::settings::raise_read_ahead(&mountpoint) {
        tracing::warn!(
            "could not raise read-ahead on {}: {e}",
            mountpoint.display()
        );
    }
    tracing::info!("mounted on {}", mountpoint.display());
    let _record = write_record(&mountpoint, &socket_path, &info);
    ready(&mountpoint);

    let (unmount_tx, mut unmount_rx) = mpsc::unbounded_channel::<Asker>();
    let info = Arc::new(info);
    rt.spawn(accept_loop(listener, backend.clone(), info, unmount_tx));

    let finish = rt.block_on(async {
        let mut session_over = false;
        let mut asker: Option<Asker> = None;
        loop {
            tokio::select! {
                _ = term.recv() => { stop_on_signal(&*backend, &mountpoint, "SIGTERM").await; break; }
                _ = int.recv() => { stop_on_signal(&*backend, &mountpoint, "SIGINT").await; break; }
                _ = &mut session_done => {
                    tracing::info!("{} was unmounted", mountpoint.display());
                    session_over = true;
                    break;
                }
                Some(a) = unmount_rx.recv() => {
                    if unmount_on_request(&*backend, &mountpoint, &a.out).await {
                        asker = Some(a);
                        break;
                    }
                }
            }
        }
        if !session_over {
            // After a lazy unmount the session lasts until the last open file
            // is closed; do not wait for that forever.
            if tokio::time::timeout(Duration::from_secs(10), &mut session_done)
                .await
                .is_err()
            {
                tracing::warn!("the kernel session is still busy; shutting down anyway");
            }
        }
        let result = backend.shutdown().await;
        if let Some(a) = asker {
            let _ = a.out.send(match &result {
                Ok(()) => done(),
                Err(e) => error_reply(e),
            });
            let _ = tokio::time::timeout(Duration::from_secs(5), a.written).await;
        }
        result
    });
    if thread.is_finished() {
        match thread.join() {
            Ok(Err(e)) => tracing::warn!("FUSE session ended with an error: {e}"),
            Err(_) => tracing::error!("FUSE session thread panicked"),
            Ok(Ok(())) => {}
        }
    }
    finish.context("final sync at shutdown")
}

/// Records this daemon where any `cardfs unmount MOUNTPOINT` finds it,
/// whatever its `$CARDFS_HOME` (see `mount_record`). A failure only costs
/// that discovery, so it is logged, not fatal.
fn write_record(
    mountpoint: &Path,
    socket: &Path,
    info: &MountInfo,
) -> Option<mount_record::RecordGuard> {
    let store = info.store.clone();
    let home = super::paths::home().ok()?;
    let record = mount_record::MountRecord {
        pid: std::process::id(),
        mountpoint: mountpoint.to_path_buf(),
        socket: std::path::absolute(socket).unwrap_or_else(|_| socket.to_path_buf()),
        home: std::path::absolute(&home).unwrap_or(home),
        store,
    };
    match mount_record::write(&record) {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::warn!(
                "could not record this mount for `cardfs unmount` from other homes: {e}"
            );
            None
        }
    }
}

/// Unmounts with umount2(2) directly: fuser's own unmounter forgets the
/// mount after a failed (busy) attempt, so it cannot retry.
///
/// A mount stays busy for a moment after its last file is closed: the
/// kernel holds the file until the daemon answers its RELEASE, which it
/// sends after close(2) returns. So EBUSY is retried for up to three
/// seconds before it is taken to mean files are really open.
async fn unmount_now(mountpoint: &Path, lazy: bool) -> std::io::Result<()> {
    const RETRIES: u32 = 30;
    for attempt in 0.. {
        let path = mountpoint.to_path_buf();
        let result = tokio::task::spawn_blocking(move || super::mountpoint::unmount(&path, lazy))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RETRIES => {
                tracing::debug!("{} busy, retrying the unmount", mountpoint.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// Syncs with progress to `out`, then unmounts. Returns whether the mount
/// is gone (the final reply is then sent after shutdown); otherwise the
/// error was sent to `out` and the daemon keeps serving.
async fn unmount_on_request<B: Backend>(
    backend: &B,
    mountpoint: &Path,
    out: &mpsc::UnboundedSender<Reply>,
) -> bool {
    let progress = |done, total| {
        let _ = out.send(Reply::Progress { done, total });
    };
    if let Err(e) = backend.sync(&progress).await {
        let _ = out.send(error_reply(&e.context(
            "pending changes could not be committed; the drive stays mounted",
        )));
        return false;
    }
    match unmount_now(mountpoint, false).await {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let err = UserError::MountBusy {
                path: mountpoint.to_path_buf(),
            };
            let _ = out.send(Reply::Error {
                code: err.code(),
                message: err.to_string(),
            });
            false
        }
        Err(e) => {
            let _ = out.send(Reply::Error {
                code: exit::GENERIC,
                message: format!("unmounting {}: {e}", mountpoint.display()),
            });
            false
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C of a foreground mount): sync, unmount, and
/// say on stderr what was done (a foreground user sees it; a background
/// daemon's stderr is /dev/null and its log has the same).
async fn stop_on_signal<B: Backend>(backend: &B, mountpoint: &Path, name: &str) {
    tracing::info!("{name}: syncing and unmounting {}", mountpoint.display());
    let pending = backend.status();
    let committed = match backend.sync(&|_, _| {}).await {
        Ok(()) => format!(
            "committed {} changes ({}) to the store",
            pending.pending_changes,
            super::units::bytes(pending.pending_bytes)
        ),
        Err(e) => {
            tracing::warn!("sync before unmount failed ({e:#}); the journal keeps the changes");
            format!(
                "could not commit {} pending changes ({e:#}); the cache directory's journal \
                 keeps them for the next mount",
                pending.pending_changes
            )
        }
    };
    let unmounted = match unmount_now(mountpoint, false).await {
        Ok(()) => "unmounted",
        Err(e) => {
            tracing::warn!("unmount failed ({e}); detaching the mount lazily");
            match unmount_now(mountpoint, true).await {
                Ok(()) => "detached (lazily: files were open)",
                Err(e) => {
                    tracing::error!("lazy unmount of {} failed: {e}", mountpoint.display());
                    "could not unmount"
                }
            }
        }
    };
    let said = format!("{name}: {committed}; {unmounted} {}", mountpoint.display());
    tracing::info!("{said}");
    eprintln!("cardfs: {said}");
}

/// Makes every file and directory this process creates private to the
/// user (0600 and 0700): the cache holds ciphertext, the journal and the
/// log of a drive. Called before a mount creates anything.
#[allow(unsafe_code)] // umask(2): std has no way to set it.
pub fn private_files() {
    // SAFETY: umask only changes this process's file-creation mask and
    // cannot fail; no memory is touched.
    unsafe {
        libc::umask(0o077);
    }
}

/// The final reply of a request with nothing to report.
fn done() -> Reply {
    Reply::Done {
        answer: Answer::Nothing,
    }
}

fn error_reply(err: &anyhow::Error) -> Reply {
    Reply::Error {
        code: exit::code_of(err),
        message: format!("{err:#}"),
    }
}

async fn accept_loop<B: Backend>(
    listener: tokio::net::UnixListener,
    backend: Arc<B>,
    info: Arc<MountInfo>,
    unmount_tx: mpsc::UnboundedSender<Asker>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(
                    stream,
                    backend.clone(),
                    info.clone(),
                    unmount_tx.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How often a connection hears from the daemon while its request runs
/// (a `working` frame when nothing else was sent), well inside the
/// client's timeout (`control::timeout`).
const HEARTBEAT: Duration = Duration::from_secs(1);

async fn serve_connection<B: Backend>(
    stream: tokio::net::UnixStream,
    backend: Arc<B>,
    info: Arc<MountInfo>,
    unmount_tx: mpsc::UnboundedSender<Asker>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (written_tx, written) = tokio::sync::oneshot::channel();
    match control::read_request(&line) {
        Ok(Request::Status) => {
            let _ = tx.send(Reply::Done {
                answer: Answer::Status {
                    status: Box::new(info.report(backend.status())),
                },
            });
        }
        Ok(Request::Sync) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                let progress = |done, total| {
                    let _ = tx.send(Reply::Progress { done, total });
                };
                // Push ours, then pull what others committed meanwhile.
                let result = match backend.sync(&progress).await {
                    Ok(()) => backend.refresh().await,
                    Err(e) => Err(e),
                };
                let _ = tx.send(match result {
                    Ok(()) => done(),
                    Err(e) => error_reply(&e),
                });
            });
        }
        Ok(Request::Unmount) => {
            let _ = unmount_tx.send(Asker {
                out: tx.clone(),
                written,
            });
        }
        Ok(request) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                let progress = |done, total| {
                    let _ = tx.send(Reply::Progress { done, total });
                };
                let _ = tx.send(match backend.request(request, &progress).await {
                    Ok(answer) => Reply::Done { answer },
                    Err(e) => error_reply(&e),
                });
            });
        }
        Err(refusal) => {
            let _ = tx.send(refusal);
        }
    }
    drop(tx);
    loop {
        let reply = match tokio::time::timeout(HEARTBEAT, rx.recv()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => break,
            Err(_) => Reply::Working,
        };
        let bytes = Frame::new(&reply).to_line();
        if write.write_all(bytes.as_bytes()).await.is_err() {
            return;
        }
        if reply.is_final() {
            break;
        }
    }
    let _ = write.shutdown().await;
    let _ = written_tx.send(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct CountingBackend {
        /// How long each sync takes.
        sync_time: Duration,
        syncs: AtomicU32,
        refreshes: AtomicU32,
        shutdowns: AtomicU32,
    }

    impl Backend for CountingBackend {
        async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> anyhow::Result<()> {
            progress(0, 10);
            tokio::time::sleep(self.sync_time).await;
            progress(10, 10);
            self.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn status(&self) -> DriveReport {
            DriveReport {
                pending_changes: 4,
                role: "owner".into(),
                ..DriveReport::default()
            }
        }
        async fn shutdown(&self) -> anyhow::Result<()> {
            self.shutdowns.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn refresh(&self) -> anyhow::Result<()> {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        /// Echoes the decoded request, or fails with exit code 43.
        async fn request(
            &self,
            request: Request,
            progress: &(dyn Fn(u64, u64) + Send + Sync),
        ) -> anyhow::Result<Answer> {
            progress(1, 2);
            match request {
                Request::ShareRemove { .. } => Err(UserError::NotOwner { path: "x".into() }.into()),
                other => Ok(Answer::Cards {
                    cards: vec![format!("{other:?}")],
                    rejected: Vec::new(),
                }),
            }
        }
    }

    struct Running {
        dir: tempfile::TempDir,
        mnt: PathBuf,
        socket: PathBuf,
        backend: Arc<CountingBackend>,
        thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    }

    impl Running {
        fn start() -> Self {
            Self::with_backend(CountingBackend::default())
        }

        fn with_backend(backend: CountingBackend) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mnt = dir.path().join("mnt");
            std::fs::create_dir(&mnt).unwrap();
            let socket = dir.path().join("run").join("control.sock");
            let backend = Arc::new(backend);
            let fs = cardfs::fuse::StaticFs::new(vec![("hello".into(), b"hi\n".to_vec())]);
            let plan = MountPlan {
                fs,
                mountpoint: mnt.clone(),
                config: fuser::Config::default(),
                socket: socket.clone(),
                info: MountInfo {
                    mountpoint: mnt.display().to_string(),
                    ..MountInfo::default()
                },
            };
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let b = backend.clone();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                serve(&rt, b, plan, |_| ready_tx.send(()).unwrap())
            });
            ready_rx.recv().expect("daemon failed before it was ready");
            Self {
                dir,
                mnt,
                socket,
                backend,
                thread: Some(thread),
            }
        }

        /// The answer and the `done` value of each progress frame.
        fn call(&self, request: Request) -> anyhow::Result<(Answer, Vec<u64>)> {
            self.call_within(request, control::DEFAULT_TIMEOUT)
        }

        /// [`Running::call`] with a client timeout of `wait`.
        fn call_within(
            &self,
            request: Request,
            wait: Duration,
        ) -> anyhow::Result<(Answer, Vec<u64>)> {
            let mut seen = Vec::new();
            let stream = UnixStream::connect(&self.socket)?;
            let answer =
                control::exchange(stream, &self.mnt, request, &mut |d, _| seen.push(d), wait)?;
            Ok((answer, seen))
        }

        fn join(&mut self) -> anyhow::Result<()> {
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if self.thread.is_some() {
                let _ = super::super::mountpoint::unmount(&self.mnt, true);
            }
            let _ = &self.dir;
        }
    }

    #[test]
    fn status_sync_and_unmount_over_the_control_socket() {
        let mut d = Running::start();
        assert_eq!(std::fs::read(d.mnt.join("hello")).unwrap(), b"hi\n");
        let (answer, _) = d.call(Request::Status).unwrap();
        let Answer::Status { status } = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(status.drive.pending_changes, 4);
        assert_eq!(status.mountpoint, d.mnt.display().to_string());
        let (_, progress) = d.call(Request::Sync).unwrap();
        assert_eq!(progress, [0, 10]);
        let (_, progress) = d.call(Request::Unmount).unwrap();
        assert_eq!(progress, [0, 10]);
        d.join().unwrap();
        assert!(
            super::super::mountpoint::mount_at(&d.mnt)
                .unwrap()
                .is_none()
        );
        assert_eq!(d.backend.syncs.load(Ordering::SeqCst), 2);
        // `sync` pulls after pushing; `unmount` does not.
        assert_eq!(d.backend.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(d.backend.shutdowns.load(Ordering::SeqCst), 1);
        assert!(!d.socket.exists(), "control socket left behind");
    }

    #[test]
    fn other_requests_reach_the_backend_decoded() {
        let mut d = Running::start();
        let request = Request::ShareAdd {
            path: b"a b\nc".to_vec(),
            read_only: true,
            card: vec![9, 10],
        };
        let (answer, progress) = d.call(request.clone()).unwrap();
        assert_eq!(
            answer,
            Answer::Cards {
                cards: vec![format!("{request:?}")],
                rejected: Vec::new()
            }
        );
        assert_eq!(progress, [1]);
        let err = d
            .call(Request::ShareRemove {
                path: b"a".to_vec(),
                card_id: [1; 32],
            })
            .unwrap_err();
        assert_eq!(exit::code_of(&err), 43, "{err:#}");
        // A line that is not a request is refused, and the daemon goes on.
        let mut raw = UnixStream::connect(&d.socket).unwrap();
        std::io::Write::write_all(&mut raw, b"share-add projects writer 00\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut raw, &mut answer).unwrap();
        let reply: Frame<Reply> = serde_json::from_str(&answer).unwrap();
        assert!(
            matches!(&reply.message, Reply::Error { code: 1, message }
                if message.starts_with("unknown control request")),
            "{answer}"
        );
        d.call(Request::Unmount).unwrap();
        d.join().unwrap();
    }

    #[test]
    fn heartbeats_keep_a_request_longer_than_the_client_timeout_alive() {
        let mut d = Running::with_backend(CountingBackend {
            sync_time: Duration::from_millis(2500),
            ..CountingBackend::default()
        });
        let (_, progress) = d
            .call_within(Request::Sync, Duration::from_millis(1500))
            .unwrap();
        assert_eq!(progress, [0, 10]);
        d.call(Request::Unmount).unwrap();
        d.join().unwrap();
    }

    #[test]
    fn busy_mount_is_refused_and_stays_mounted() {
        let mut d = Running::start();
        let open = std::fs::File::open(d.mnt.join("hello")).unwrap();
        let err = d.call(Request::Unmount).unwrap_err();
        assert_eq!(exit::code_of(&err), 31, "{err:#}");
        assert_eq!(std::fs::read(d.mnt.join("hello")).unwrap(), b"hi\n");
        drop(open);
        d.call(Request::Unmount).unwrap();
        d.join().unwrap();
        assert!(
            super::super::mountpoint::mount_at(&d.mnt)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn outside_unmount_ends_the_daemon_after_shutdown() {
        let mut d = Running::start();
        super::super::mountpoint::unmount(&d.mnt, false).unwrap();
        d.join().unwrap();
        assert_eq!(d.backend.shutdowns.load(Ordering::SeqCst), 1);
        assert!(!d.socket.exists());
    }

    #[test]
    fn second_lock_of_a_cache_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_cache_dir(dir.path(), Path::new("/mnt/a")).unwrap();
        let err = lock_cache_dir(dir.path(), Path::new("/mnt/b")).unwrap_err();
        assert_eq!(exit::code_of(&err), 16);
        assert!(err.to_string().contains("/mnt/a"), "{err}");
    }
}
