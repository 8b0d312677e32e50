//! `-o` mount options: parsing every word `cardfs mount -o` (and fstab)
//! accepts into [`MountFlags`] (what the kernel and the adapter do) and
//! the CLI's own value options (key, cache directory, ...), which are
//! handed back untouched for the CLI to apply. The list and each effect
//! are in docs/CLI.md, "Mount options".
//!
//! Invariants:
//! - Every accepted word has an effect, is passed to the kernel, or is an
//!   fstab/mount(8) word with no meaning for a FUSE mount (listed in
//!   [`FSTAB_ONLY`]); anything else is an [`OptionError`], never dropped.
//! - Later words override earlier ones (`ro,rw` is read-write), as mount(8).

use std::fmt;

/// How the kernel updates access times (the daemon itself only changes
/// atime through utimens; see docs/CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtimeMode {
    /// The kernel's default (`relatime`, also what `atime` gives).
    #[default]
    Relatime,
    /// `noatime` (`MS_NOATIME`).
    NoAtime,
}

/// How a mount presents owners and modes (`uid=`, `gid=`, `umask=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ownership {
    /// Every node appears owned by this uid.
    pub uid: Option<u32>,
    /// Every node appears owned by this gid.
    pub gid: Option<u32>,
    /// Bits cleared from every node's mode as shown.
    pub umask: Option<u16>,
    /// A member's mount: show shared folders' stored owners instead of the
    /// mounting user (see docs/SHARING.md, "Ownership on a member's mount").
    pub keep_ownership: bool,
}

/// What the kernel and the adapter do for a mount, from `-o`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlags {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    /// Programs may be executed (off: `noexec`).
    pub exec: bool,
    /// Set-user/group-id bits take effect (default off: `nosuid`).
    pub suid: bool,
    /// Device nodes can be opened (default off: `nodev`).
    pub dev: bool,
    pub atime: AtimeMode,
    pub writeback_cache: bool,
    /// Mount even over a non-empty directory (hiding its files).
    pub nonempty: bool,
    pub ownership: Ownership,
}

impl Default for MountFlags {
    fn default() -> Self {
        Self {
            read_only: false,
            allow_other: false,
            allow_root: false,
            exec: true,
            suid: false,
            dev: false,
            atime: AtimeMode::Relatime,
            writeback_cache: false,
            nonempty: false,
            ownership: Ownership::default(),
        }
    }
}

/// The CLI's own options that take a value (`key=NAME`, ...): returned as
/// given for the CLI to apply.
pub const CLI_VALUE_OPTIONS: &[&str] = &[
    "key",
    "password_file",
    "cache_dir",
    "cache_size",
    "endpoint",
    "refresh",
    "store_timeout",
    "keep",
    "gc_interval",
];

/// Words of fstab and mount(8) that mean nothing to a FUSE daemon; also
/// `x-*` and `comment=*`.
pub const FSTAB_ONLY: &[&str] = &[
    "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "_netdev", "nofail", "async",
];

/// A refused `-o` word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    Unknown(String),
    /// A word that needs a value (`uid=N`) given without one, or a flag
    /// given one.
    Value {
        option: String,
        problem: String,
    },
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Unknown(o) => write!(
                f,
                "unknown mount option {o:?} (see `cardfs mount --help` or docs/CLI.md)"
            ),
            OptionError::Value { option, problem } => {
                write!(f, "mount option {option:?}: {problem}")
            }
        }
    }
}

impl std::error::Error for OptionError {}

/// Parsed `-o` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedOptions {
    pub flags: MountFlags,
    /// `(name, value)` of the CLI's value options, in order.
    pub cli: Vec<(String, String)>,
}

fn number<T: TryFrom<u32>>(option: &str, value: &str, radix8: bool) -> Result<T, OptionError> {
    let parsed = if radix8 {
        u32::from_str_radix(value, 8).ok()
    } else {
        value.parse::<u32>().ok()
    };
    parsed
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| OptionError::Value {
            option: option.to_string(),
            problem: if radix8 {
                "not an octal mode mask like 022".into()
            } else {
                "not a number".into()
            },
        })
}

/// Parses `-o` arguments (each comma-separated), applying them over
/// `flags` (so `--read-only` and `-o rw` combine as given).
pub fn parse(options: &[String], mut flags: MountFlags) -> Result<ParsedOptions, OptionError> {
    let mut cli = Vec::new();
    for word in options.iter().flat_map(|o| o.split(',')) {
        if word.is_empty() {
            continue;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        if name.starts_with("x-") || name == "comment" {
            continue;
        }
        if CLI_VALUE_OPTIONS.contains(&name) {
            let value = value.ok_or_else(|| OptionError::Value {
                option: name.to_string(),
                problem: format!("needs a value ({name}=...)"),
            })?;
            cli.push((name.to_string(), value.to_string()));
            continue;
        }
        if let Some(v) = value {
            let o = &mut flags.ownership;
            match name {
                "uid" => o.uid = Some(number(name, v, false)?),
                "gid" => o.gid = Some(number(name, v, false)?),
                "umask" => {
                    let m: u16 = number(name, v, true)?;
                    if m > 0o7777 {
                        return Err(OptionError::Value {
                            option: name.into(),
                            problem: "larger than 7777".into(),
                        });
                    }
                    o.umask = Some(m)
                }
                _ if is_flag(name) => {
                    return Err(OptionError::Value {
                        option: word.to_string(),
                        problem: "takes no value".into(),
                    });
                }
                _ => return Err(OptionError::Unknown(word.to_string())),
            }
            continue;
        }
        match name {
            "ro" => flags.read_only = true,
            "rw" => flags.read_only = false,
            "allow_other" => flags.allow_other = true,
            "allow_root" => flags.allow_root = true,
            // Always on: the daemon does not check permissions itself.
            "default_permissions" => {}
            "exec" => flags.exec = true,
            "noexec" => flags.exec = false,
            "suid" => flags.suid = true,
            "nosuid" => flags.suid = false,
            "dev" => flags.dev = true,
            "nodev" => flags.dev = false,
            "atime" | "relatime" => flags.atime = AtimeMode::Relatime,
            "noatime" => flags.atime = AtimeMode::NoAtime,
            "writeback_cache" => flags.writeback_cache = true,
            "nonempty" => flags.nonempty = true,
            "keep_ownership" => flags.ownership.keep_ownership = true,
            n if FSTAB_ONLY.contains(&n) => {}
            "uid" | "gid" | "umask" => {
                return Err(OptionError::Value {
                    option: name.to_string(),
                    problem: format!("needs a value ({name}=...)"),
                });
            }
            _ => return Err(OptionError::Unknown(word.to_string())),
        }
    }
    Ok(ParsedOptions { flags, cli })
}

fn is_flag(name: &str) -> bool {
    matches!(
        name,
        "ro" | "rw"
            | "allow_other"
            | "allow_root"
            | "default_permissions"
            | "exec"
            | "noexec"
            | "suid"
            | "nosuid"
            | "dev"
            | "nodev"
            | "atime"
            | "relatime"
            | "noatime"
            | "writeback_cache"
            | "nonempty"
            | "keep_ownership"
    ) || FSTAB_ONLY.contains(&name)
}

/// The `-o` words that give `flags` again (to hand a parent's parsed
/// options to the daemon child).
pub fn to_words(flags: &MountFlags) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    let mut flag = |on: bool, yes: &str, no: &str| w.push(if on { yes } else { no }.to_string());
    flag(flags.read_only, "ro", "rw");
    flag(flags.exec, "exec", "noexec");
    flag(flags.suid, "suid", "nosuid");
    flag(flags.dev, "dev", "nodev");
    flag(flags.atime == AtimeMode::NoAtime, "noatime", "relatime");
    if flags.allow_other {
        w.push("allow_other".into());
    }
    if flags.allow_root {
        w.push("allow_root".into());
    }
    if flags.writeback_cache {
        w.push("writeback_cache".into());
    }
    if flags.nonempty {
        w.push("nonempty".into());
    }
    let o = &flags.ownership;
    if let Some(u) = o.uid {
        w.push(format!("uid={u}"));
    }
    if let Some(g) = o.gid {
        w.push(format!("gid={g}"));
    }
    if let Some(m) = o.umask {
        w.push(format!("umask={m:03o}"));
    }
    if o.keep_ownership {
        w.push("keep_ownership".into());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(words: &str) -> Result<ParsedOptions, OptionError> {
        parse(&[words.to_string()], MountFlags::default())
    }

    #[test]
    fn defaults_are_exec_nosuid_nodev_relatime() {
        let f = p("").unwrap().flags;
        assert!(f.exec && !f.suid && !f.dev && !f.read_only);
        assert_eq!(f.atime, AtimeMode::Relatime);
    }

    #[test]
    fn flags_later_words_win() {
        let f = p("noexec,suid,dev,noatime,ro,allow_other,nonempty")
            .unwrap()
            .flags;
        assert!(!f.exec && f.suid && f.dev && f.read_only && f.allow_other && f.nonempty);
        assert_eq!(f.atime, AtimeMode::NoAtime);
        let f = p("ro,rw,noexec,exec,dev,nodev,noatime,atime")
            .unwrap()
            .flags;
        assert!(f.exec && !f.dev && !f.read_only);
        assert_eq!(f.atime, AtimeMode::Relatime);
    }

    #[test]
    fn ownership_values() {
        let f = p("uid=1000,gid=100,umask=027,keep_ownership")
            .unwrap()
            .flags;
        assert_eq!(
            f.ownership,
            Ownership {
                uid: Some(1000),
                gid: Some(100),
                umask: Some(0o027),
                keep_ownership: true
            }
        );
        assert!(p("uid=alice").is_err());
        assert!(p("umask=9").is_err());
        assert!(p("umask=17777").is_err());
        assert!(p("uid").is_err());
    }

    #[test]
    fn fstab_words_accepted_cli_values_returned() {
        let r = p(
            "defaults,noauto,_netdev,nofail,user,x-systemd.automount,comment=x,key=alice,refresh=9",
        )
        .unwrap();
        assert_eq!(r.flags, MountFlags::default());
        assert_eq!(
            r.cli,
            vec![
                ("key".to_string(), "alice".to_string()),
                ("refresh".to_string(), "9".to_string())
            ]
        );
    }

    #[test]
    fn unknown_and_malformed_words_are_refused() {
        assert_eq!(
            p("frobnicate"),
            Err(OptionError::Unknown("frobnicate".into()))
        );
        assert!(matches!(p("noexec=1"), Err(OptionError::Value { .. })));
        assert!(matches!(p("key"), Err(OptionError::Value { .. })));
        assert!(matches!(p("color=red"), Err(OptionError::Unknown(_))));
    }

    #[test]
    fn words_round_trip() {
        let f =
            p("noexec,dev,noatime,ro,allow_root,writeback_cache,uid=5,umask=077,keep_ownership")
                .unwrap()
                .flags;
        assert_eq!(
            parse(&to_words(&f), MountFlags::default()).unwrap().flags,
            f
        );
        let d = MountFlags::default();
        assert_eq!(
            parse(&to_words(&d), MountFlags::default()).unwrap().flags,
            d
        );
    }
}
