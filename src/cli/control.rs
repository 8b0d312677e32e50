//! The control channel between a mount daemon and the `status`, `sync` and
//! `unmount` commands: a Unix socket per mount under `$CARDFS_HOME/run/`,
//! named by a hash of the mountpoint so a command given the mountpoint finds
//! it, and readable only by the user (mode 0600 under a 0700 directory).
//!
//! Protocol (text lines, one request per connection): the client sends
//! `status`, `sync` or `unmount`; the daemon answers with any number of
//! `progress DONE TOTAL` and `field NAME VALUE` lines and ends with one
//! final line, `ok` or `error CODE MESSAGE`.

use super::exit::{GENERIC, UserError};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// What a client asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Status,
    Sync,
    Unmount,
}

impl Request {
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Sync => "sync",
            Request::Unmount => "unmount",
        }
    }

    pub fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            "status" => Some(Request::Status),
            "sync" => Some(Request::Sync),
            "unmount" => Some(Request::Unmount),
            _ => None,
        }
    }
}

/// One line the daemon sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Progress { done: u64, total: u64 },
    Field { name: String, value: String },
    Ok,
    Error { code: u8, message: String },
}

impl Reply {
    pub fn to_line(&self) -> String {
        // Values are single-line by construction; newlines are replaced so a
        // message can never forge a following line.
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        match self {
            Reply::Progress { done, total } => format!("progress {done} {total}\n"),
            Reply::Field { name, value } => format!("field {} {}\n", clean(name), clean(value)),
            Reply::Ok => "ok\n".into(),
            Reply::Error { code, message } => format!("error {code} {}\n", clean(message)),
        }
    }

    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        match head {
            "progress" => {
                let (d, t) = rest.split_once(' ')?;
                Some(Reply::Progress {
                    done: d.parse().ok()?,
                    total: t.parse().ok()?,
                })
            }
            "field" => {
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Reply::Field {
                    name: name.into(),
                    value: value.into(),
                })
            }
            "ok" => Some(Reply::Ok),
            "error" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Reply::Error {
                    code: code.parse().unwrap_or(GENERIC),
                    message: message.into(),
                })
            }
            _ => None,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, Reply::Ok | Reply::Error { .. })
    }
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

/// An error the daemon reported, carrying its exit code.
#[derive(Debug)]
pub struct DaemonError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DaemonError {}

/// Sends `request` to the daemon serving `mountpoint` and returns its
/// fields; `on_progress` sees every progress line.
pub fn call(
    mountpoint: &Path,
    request: Request,
    mut on_progress: impl FnMut(u64, u64),
) -> anyhow::Result<Vec<(String, String)>> {
    let socket = socket_path(mountpoint)?;
    let stream = UnixStream::connect(&socket).map_err(|_| UserError::NotMounted {
        path: mountpoint.to_path_buf(),
    })?;
    call_on(stream, request, &mut on_progress)
}

/// [`call`] on an already connected socket.
pub fn call_on(
    mut stream: UnixStream,
    request: Request,
    on_progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<Vec<(String, String)>> {
    stream.write_all(format!("{}\n", request.as_str()).as_bytes())?;
    let mut fields = Vec::new();
    for line in BufReader::new(stream).lines() {
        match Reply::parse(&line?) {
            Some(Reply::Progress { done, total }) => on_progress(done, total),
            Some(Reply::Field { name, value }) => fields.push((name, value)),
            Some(Reply::Ok) => return Ok(fields),
            Some(Reply::Error { code, message }) => {
                return Err(DaemonError { code, message }.into());
            }
            None => anyhow::bail!("the mount daemon sent an unreadable answer"),
        }
    }
    anyhow::bail!(
        "the mount daemon closed the control connection without an answer (did it exit? see its log)"
    )
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

    #[test]
    fn replies_round_trip() {
        for r in [
            Reply::Progress { done: 5, total: 9 },
            Reply::Field {
                name: "store".into(),
                value: "s3://b/p with space".into(),
            },
            Reply::Ok,
            Reply::Error {
                code: 31,
                message: "busy mount".into(),
            },
        ] {
            assert_eq!(Reply::parse(&r.to_line()), Some(r));
        }
        assert_eq!(Reply::parse("nonsense"), None);
    }

    #[test]
    fn messages_cannot_forge_lines() {
        let r = Reply::Error {
            code: 1,
            message: "a\nok".into(),
        };
        assert_eq!(r.to_line().lines().count(), 1);
    }

    #[test]
    fn requests_round_trip() {
        for r in [Request::Status, Request::Sync, Request::Unmount] {
            assert_eq!(Request::parse(r.as_str()), Some(r));
        }
        assert_eq!(Request::parse("rm -rf"), None);
    }
}
