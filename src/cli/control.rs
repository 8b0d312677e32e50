//! The control channel between a mount daemon and the `status`, `sync`,
//! `unmount` and `share` commands: a Unix socket per mount under
//! `$CARDFS_HOME/run/`, named by a hash of the mountpoint so a command given
//! the mountpoint finds it, and readable only by the user (mode 0600 under a
//! 0700 directory).
//!
//! Protocol (text lines, one request per connection): the client sends one
//! request line ([`Request::to_line`]: `status`, `sync`, `unmount`,
//! `share-add PATH reader|writer CARD`, `share-remove PATH CARD-ID`,
//! `share-list`, `share-reencrypt PATH`, `cards-find IDENTITY`,
//! `card-get CARD-ID`, every argument in lower-case hex, a root path as
//! `.`); the daemon answers with any number of `progress DONE TOTAL` and
//! `field NAME VALUE` lines and ends with one final line, `ok` or
//! `error CODE MESSAGE`. A line of any other shape is refused.

use super::exit::{GENERIC, UserError};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// What a client asks of the daemon.
///
/// On the wire every argument is hex (paths, identities, cards), so no
/// argument can contain a space or a newline and a request is always one
/// line of fixed shape; anything else is refused as unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Sync,
    Unmount,
    /// Share the folder at `path` (relative to the mount root, as bytes)
    /// with the holder of `card` (a card's bytes, verified by the daemon).
    ShareAdd {
        path: Vec<u8>,
        read_only: bool,
        card: Vec<u8>,
    },
    /// Remove the member with this card id from the folder at `path`.
    ShareRemove {
        path: Vec<u8>,
        card_id: [u8; 32],
    },
    /// Every shared folder this mount sees.
    ShareList,
    /// Re-encrypt every block of the shared folder at `path`.
    ShareReencrypt {
        path: Vec<u8>,
    },
    /// Cards published for an identity in the drive's card directory.
    CardsFind {
        identity: String,
    },
    /// The card with this id in the drive's card directory.
    CardGet {
        id: [u8; 32],
    },
}

impl Request {
    /// The request as one line, without its newline.
    pub fn to_line(&self) -> String {
        use cardfs::format::wire::hex;
        match self {
            Request::Status => "status".into(),
            Request::Sync => "sync".into(),
            Request::Unmount => "unmount".into(),
            Request::ShareAdd {
                path,
                read_only,
                card,
            } => format!(
                "share-add {} {} {}",
                path_token(path),
                if *read_only { "reader" } else { "writer" },
                hex(card)
            ),
            Request::ShareRemove { path, card_id } => {
                format!("share-remove {} {}", path_token(path), hex(card_id))
            }
            Request::ShareList => "share-list".into(),
            Request::ShareReencrypt { path } => format!("share-reencrypt {}", path_token(path)),
            Request::CardsFind { identity } => format!("cards-find {}", hex(identity.as_bytes())),
            Request::CardGet { id } => format!("card-get {}", hex(id)),
        }
    }

    pub fn parse(line: &str) -> Option<Self> {
        use cardfs::format::wire::parse_hex;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let words: Vec<&str> = line.split(' ').collect();
        Some(match words.as_slice() {
            ["status"] => Request::Status,
            ["sync"] => Request::Sync,
            ["unmount"] => Request::Unmount,
            ["share-add", path, role, card] => Request::ShareAdd {
                path: parse_path(path)?,
                read_only: match *role {
                    "reader" => true,
                    "writer" => false,
                    _ => return None,
                },
                card: unhex(card).filter(|c| !c.is_empty())?,
            },
            ["share-remove", path, id] => Request::ShareRemove {
                path: parse_path(path)?,
                card_id: parse_hex(id)?,
            },
            ["share-list"] => Request::ShareList,
            ["share-reencrypt", path] => Request::ShareReencrypt {
                path: parse_path(path)?,
            },
            ["cards-find", identity] => Request::CardsFind {
                identity: String::from_utf8(unhex(identity)?).ok()?,
            },
            ["card-get", id] => Request::CardGet { id: parse_hex(id)? },
            _ => return None,
        })
    }
}

/// A relative path on the wire: `.` for the mount root, else its hex.
fn path_token(path: &[u8]) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        cardfs::format::wire::hex(path)
    }
}

fn parse_path(token: &str) -> Option<Vec<u8>> {
    if token == "." {
        Some(Vec::new())
    } else {
        unhex(token).filter(|p| !p.is_empty())
    }
}

/// Lower-case hex of any length (upper case and odd lengths refused).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
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

/// [`call`] on an already connected socket.
pub fn call_on(
    mut stream: UnixStream,
    request: Request,
    on_progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<Vec<(String, String)>> {
    stream.write_all(format!("{}\n", request.to_line()).as_bytes())?;
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
        for r in [
            Request::Status,
            Request::Sync,
            Request::Unmount,
            Request::ShareAdd {
                path: b"projects/x y\nok".to_vec(),
                read_only: true,
                card: vec![1, 2, 0xff],
            },
            Request::ShareAdd {
                path: Vec::new(),
                read_only: false,
                card: vec![7],
            },
            Request::ShareRemove {
                path: b"a".to_vec(),
                card_id: [0xab; 32],
            },
            Request::ShareList,
            Request::ShareReencrypt {
                path: "d\u{e9}j\u{e0}".into(),
            },
            Request::CardsFind {
                identity: "bob@example.org".into(),
            },
            Request::CardGet { id: [3; 32] },
        ] {
            let line = r.to_line();
            assert_eq!(line.lines().count(), 1, "{line}");
            assert_eq!(Request::parse(&line), Some(r.clone()), "{line}");
            assert_eq!(Request::parse(&format!("{line}\n")), Some(r));
        }
        assert_eq!(Request::parse("rm -rf"), None);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let card = "0a".repeat(4);
        let id = "ab".repeat(32);
        for bad in [
            "status extra".to_string(),
            " status".into(),
            "status ".into(),
            // Raw text instead of hex, upper case, odd length, empty.
            format!("share-add projects writer {card}"),
            format!("share-add 6A writer {card}"),
            format!("share-add 616 writer {card}"),
            "share-add 61 writer ".into(),
            format!("share-add 61 owner {card}"),
            format!("share-add 61  writer {card}"),
            format!("share-add 61 writer {card} {card}"),
            format!("share-remove 61 {}", &id[2..]),
            format!("share-remove 61 {id}\nunmount"),
            "share-reencrypt".into(),
            "cards-find ff".into(),
            "card-get 00".into(),
        ] {
            assert_eq!(Request::parse(&bad), None, "{bad:?}");
        }
    }
}
