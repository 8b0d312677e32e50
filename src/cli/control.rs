//! The control channel between a mount daemon and the `status`, `sync`,
//! `unmount` and `share` commands: a Unix socket per mount under
//! `$CARDFS_HOME/run/`, named by a hash of the mountpoint so a command given
//! the mountpoint finds it, and readable only by the user (mode 0600 under a
//! 0700 directory).
//!
//! Protocol: JSON lines of serde-typed messages, one request per
//! connection (see `control_messages`). The client sends one [`Request`]
//! frame; the daemon answers with `progress`/`working` frames and one final
//! `done` or `error` frame. A frame of another protocol version (or a line
//! of the old text protocol) is refused with exit code 33, naming both
//! cardfs versions. Every read has a timeout ([`timeout`]): the daemon
//! sends a `working` frame each second while a request runs, so a silence
//! longer than the timeout means a stopped or hung daemon (exit 34), never
//! a slow upload.

pub use super::control_messages::{Answer, Reply, Request};
use super::control_messages::{Frame, Head, PROTOCOL};
use super::exit::{DaemonError, UserError};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable: seconds a command waits for a word from the
/// daemon before it calls the daemon hung (default [`DEFAULT_TIMEOUT`]).
pub const TIMEOUT_ENV: &str = "CARDFS_CONTROL_TIMEOUT";

/// Default of [`TIMEOUT_ENV`]: many heartbeats (one a second) long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a command waits for the next frame from the daemon.
pub fn timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64)
}

/// Directory of the control sockets: `run/` in the cardfs home.
pub fn run_dir() -> anyhow::Result<PathBuf> {
    Ok(super::paths::home()?.join("run"))
}

/// The control socket of a mount on `mountpoint` (an absolute path).
pub fn socket_path(mountpoint: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = super::paths::short_hash(mountpoint.as_os_str().as_bytes());
    Ok(run_dir()?.join(format!("{name}.sock")))
}

/// Sends `request` to the daemon serving `mountpoint` (through this
/// home's socket) and returns its answer; `on_progress` sees every
/// progress frame.
pub fn call(
    mountpoint: &Path,
    request: Request,
    mut on_progress: impl FnMut(u64, u64),
) -> anyhow::Result<Answer> {
    let socket = socket_path(mountpoint)?;
    let stream = UnixStream::connect(&socket).map_err(|_| UserError::NotMounted {
        path: mountpoint.to_path_buf(),
    })?;
    call_on(stream, mountpoint, request, &mut on_progress)
}

/// Connects to the daemon serving `mountpoint`: the socket of this
/// `$CARDFS_HOME` first, else the socket its daemon recorded (a daemon
/// started with another `$CARDFS_HOME`, see `mount_record`). The record is
/// returned when it was used.
pub fn connect_any_home(
    mountpoint: &Path,
) -> anyhow::Result<(UnixStream, Option<super::mount_record::MountRecord>)> {
    let own = socket_path(mountpoint)?;
    if let Ok(stream) = UnixStream::connect(&own) {
        return Ok((stream, None));
    }
    if let Some(record) = super::mount_record::read(mountpoint)
        && record.socket != own
        && let Ok(stream) = UnixStream::connect(&record.socket)
    {
        return Ok((stream, Some(record)));
    }
    Err(UserError::NotMounted {
        path: mountpoint.to_path_buf(),
    }
    .into())
}

/// [`call`] on an already connected socket of the daemon serving
/// `mountpoint` (named in errors).
pub fn call_on(
    stream: UnixStream,
    mountpoint: &Path,
    request: Request,
    on_progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<Answer> {
    exchange(stream, mountpoint, request, on_progress, timeout())
}

/// [`call_on`] with a given read timeout.
pub fn exchange(
    mut stream: UnixStream,
    mountpoint: &Path,
    request: Request,
    on_progress: &mut dyn FnMut(u64, u64),
    wait: Duration,
) -> anyhow::Result<Answer> {
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    let hung = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    let hung_error = || UserError::DaemonHung {
        path: mountpoint.to_path_buf(),
        waited: wait,
        pid: super::mount_record::read(mountpoint).map(|r| r.pid),
    };
    if let Err(e) = stream.write_all(Frame::new(request).to_line().as_bytes()) {
        return Err(if hung(&e) {
            hung_error().into()
        } else {
            anyhow::Error::new(e).context("sending the request to the mount daemon")
        });
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => anyhow::bail!(
                "the mount daemon of {} closed the control connection without an answer \
                 (did it exit? see its log)",
                mountpoint.display()
            ),
            Ok(_) => {}
            Err(e) if hung(&e) => return Err(hung_error().into()),
            Err(e) => return Err(e.into()),
        }
        match read_reply(&line, mountpoint)? {
            Reply::Progress { done, total } => on_progress(done, total),
            Reply::Working => {}
            Reply::Done { answer } => return Ok(answer),
            Reply::Error { code, message } => {
                return Err(DaemonError { code, message }.into());
            }
        }
    }
}

/// Decodes one reply line, refusing a frame of another protocol version.
fn read_reply(line: &str, mountpoint: &Path) -> anyhow::Result<Reply> {
    let mismatch = |daemon: String| UserError::ProtocolMismatch {
        path: mountpoint.to_path_buf(),
        daemon,
    };
    let head: Head = serde_json::from_str(line).map_err(|_| {
        // The text protocol of cardfs before JSON lines answered
        // `error 1 unknown control request ...`.
        mismatch("an older cardfs (text control protocol)".into())
    })?;
    if head.protocol != PROTOCOL {
        let version = head.cardfs.unwrap_or_else(|| "?".into());
        return Err(mismatch(format!(
            "cardfs {version} (control protocol {})",
            head.protocol
        ))
        .into());
    }
    let frame: Frame<Reply> = serde_json::from_str(line).map_err(|e| {
        anyhow::anyhow!(
            "the mount daemon of {} sent an unreadable answer ({e})",
            mountpoint.display()
        )
    })?;
    Ok(frame.message)
}

/// Decodes a request line (daemon side). On a line of another protocol
/// version, or no request at all, returns the error frame to answer.
pub fn read_request(line: &str) -> Result<Request, Reply> {
    use super::control_messages::CARDFS_VERSION;
    let refuse = |code: u8, message: String| Reply::Error { code, message };
    let Ok(head) = serde_json::from_str::<Head>(line) else {
        return Err(refuse(
            super::exit::GENERIC,
            format!("unknown control request {:?}", line.trim()),
        ));
    };
    if head.protocol != PROTOCOL {
        let err = UserError::ProtocolMismatch {
            path: "this mount".into(),
            daemon: format!("cardfs {CARDFS_VERSION} (control protocol {PROTOCOL})"),
        };
        return Err(refuse(err.code(), err.to_string()));
    }
    serde_json::from_str::<Frame<Request>>(line)
        .map(|f| f.message)
        .map_err(|e| {
            refuse(
                super::exit::GENERIC,
                format!("unknown control request {:?} ({e})", line.trim()),
            )
        })
}

/// Creates the run directory (0700) and binds a fresh socket at `path`,
/// replacing a stale one left by a dead daemon.
pub fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a daemon already answers on {}", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Every control socket in the run directory (live or stale).
pub fn all_sockets() -> anyhow::Result<Vec<PathBuf>> {
    let Ok(dir) = std::fs::read_dir(run_dir()?) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit;
    use std::os::unix::net::UnixListener;

    /// A fake daemon on a fresh socket: reads one line, answers `answer`
    /// (nothing at all when `None`, keeping the connection open).
    fn fake_daemon(answer: Option<String>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            match answer {
                Some(a) => (&stream).write_all(a.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_secs(5)),
            }
        });
        (dir, path)
    }

    fn ask(path: &Path, wait: Duration) -> anyhow::Result<Answer> {
        let stream = UnixStream::connect(path).unwrap();
        exchange(
            stream,
            Path::new("/mnt/x"),
            Request::Status,
            &mut |_, _| {},
            wait,
        )
    }

    #[test]
    fn a_daemon_of_another_protocol_version_is_refused_by_name() {
        let frame = r#"{"protocol":2,"cardfs":"9.9.9","message":{"type":"done","answer":{"kind":"nothing"}}}"#;
        let (_dir, path) = fake_daemon(Some(format!("{frame}\n")));
        let err = ask(&path, Duration::from_secs(5)).unwrap_err();
        assert_eq!(exit::code_of(&err), 33, "{err:#}");
        let text = err.to_string();
        assert!(text.contains("cardfs 9.9.9 (control protocol 2)"), "{text}");
        assert!(text.contains(&format!("protocol {PROTOCOL}")), "{text}");
        assert!(text.contains("/mnt/x"), "{text}");
    }

    #[test]
    fn a_daemon_of_the_old_text_protocol_is_refused_by_name() {
        let (_dir, path) = fake_daemon(Some("error 1 unknown control request \"x\"\n".into()));
        let err = ask(&path, Duration::from_secs(5)).unwrap_err();
        assert_eq!(exit::code_of(&err), 33, "{err:#}");
        assert!(err.to_string().contains("text control protocol"), "{err}");
    }

    #[test]
    fn a_silent_daemon_times_out_with_its_own_code() {
        let (_dir, path) = fake_daemon(None);
        let started = std::time::Instant::now();
        let err = ask(&path, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(exit::code_of(&err), 34, "{err:#}");
        assert!(err.to_string().contains(TIMEOUT_ENV), "{err}");
    }

    #[test]
    fn heartbeats_and_progress_keep_a_slow_request_alive() {
        let mut answer = String::new();
        for _ in 0..3 {
            answer.push_str(&Frame::new(Reply::Working).to_line());
        }
        answer.push_str(&Frame::new(Reply::Progress { done: 4, total: 8 }).to_line());
        answer.push_str(
            &Frame::new(Reply::Error {
                code: 31,
                message: "busy".into(),
            })
            .to_line(),
        );
        let (_dir, path) = fake_daemon(Some(answer));
        let stream = UnixStream::connect(&path).unwrap();
        let mut seen = Vec::new();
        let err = exchange(
            stream,
            Path::new("/m"),
            Request::Sync,
            &mut |d, t| seen.push((d, t)),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(exit::code_of(&err), 31);
        assert_eq!(seen, [(4, 8)]);
    }

    #[test]
    fn the_daemon_refuses_requests_of_another_version_or_shape() {
        let ours = Frame::new(Request::Sync).to_line();
        assert_eq!(read_request(&ours), Ok(Request::Sync));
        let theirs = ours.replace(&format!("\"protocol\":{PROTOCOL}"), "\"protocol\":7");
        match read_request(&theirs) {
            Err(Reply::Error { code: 33, message }) => {
                assert!(message.contains("control protocol"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "sync\n",
            "{}",
            r#"{"protocol":1,"cardfs":"x","message":{"type":"rm"}}"#,
        ] {
            assert!(
                matches!(read_request(bad), Err(Reply::Error { code: 1, .. })),
                "{bad}"
            );
        }
    }
}
