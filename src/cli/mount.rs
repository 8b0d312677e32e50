//! `cardfs mount`: unlock, verify, mount, and (unless `--foreground`)
//! return once the mount is usable, with the daemon in the background.
//!
//! Backgrounding re-runs this binary as a detached child (`--daemon-child`,
//! its own process group, logging to the cache directory's `daemon.log`)
//! instead of forking, because a fork after threads exist is unsound. The
//! child reports on its stdout, a pipe to the parent: one `ready` line once
//! the kernel answers requests on the mountpoint, or one
//! `error CODE MESSAGE` line; the parent prints the outcome and exits with
//! the same code. A password typed at the parent's prompt, printed by
//! `--password-command` or set in `CARDFS_PASSWORD` reaches the child
//! through its stdin, never through its arguments or environment (the
//! child's environment has no `CARDFS_PASSWORD`).

use super::backend::DriveBackend;
use super::exit;
use super::{control, daemon, mountpoint, open, owner, paths};
use anyhow::Context;
use cardfs::drive::{Drive, DriveOptions};
use cardfs::fuse::DriveFs;
use cardfs::fuse::options::{self, MountFlags};
use cardfs::fuse::settings::MountSettings;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// Options of `cardfs mount` (see docs/CLI.md).
#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// The store holding the drive: a directory, file:///DIR or s3://BUCKET[/PREFIX].
    pub store: String,
    /// An existing, empty directory to mount the drive on (a non-empty one
    /// is refused, exit 17, unless `-o nonempty`).
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub key: open::KeyArgs,
    #[command(flatten)]
    pub store_args: open::StoreArgs,
    /// Local cache directory (default: one per store under $CARDFS_HOME/cache).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Upper bound of the local cache, e.g. 512M, 10G (default 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Mount read-only: no change can be made.
    #[arg(long)]
    pub read_only: bool,
    /// Seconds between pulls of changes others committed (shared folders,
    /// other machines); `cardfs sync` pulls at once.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_REFRESH_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub refresh: u64,
    /// History retention of this drive as this mount collects garbage:
    /// every state of the last DURATION stays whole (7d, 12h, 0).
    #[arg(long, value_name = "DURATION", default_value = "7d",
          value_parser = super::units::parse_duration)]
    pub keep: std::time::Duration,
    /// How often the owner's mount collects garbage on its own (grace
    /// 1 hour); `0` turns automatic collection off.
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = super::units::parse_duration)]
    pub gc_interval: std::time::Duration,
    /// For a drive someone else owns: the owner's card fingerprint,
    /// compared with them over a channel you trust (pins their card).
    /// Needed once, unless their card is already pinned or approved by an
    /// authority you trust.
    #[arg(long, value_name = "FP")]
    pub owner_fingerprint: Option<String>,
    /// Stay in the foreground and log to stderr; Ctrl-C unmounts.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Mount options, comma-separated (each explained in docs/CLI.md):
    /// ro, rw, allow_other, allow_root, default_permissions, exec, noexec,
    /// suid, nosuid, dev, nodev, atime, relatime, noatime, nonempty,
    /// uid=N, gid=N, umask=OOO, keep_ownership, writeback_cache (faster
    /// small writes; only for a drive no other client writes), key=NAME,
    /// cache_dir=DIR, cache_size=SIZE, password_file=FILE, endpoint=URL,
    /// refresh=SECONDS, store_timeout=SECONDS; fstab-only words (defaults, noauto, _netdev, nofail,
    /// user, x-*, ...) are accepted. Anything else is refused (exit 2).
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Internal: run as the background daemon of a `cardfs mount`.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

impl MountArgs {
    /// A background mount of `store` on `mountpoint` with every default,
    /// for a drive someone else owns (`cardfs join`).
    pub fn for_join(
        store: &str,
        mountpoint: &Path,
        key: open::KeyArgs,
        store_args: open::StoreArgs,
        owner_fingerprint: &str,
    ) -> Self {
        MountArgs {
            store: store.into(),
            mountpoint: mountpoint.to_path_buf(),
            key,
            store_args,
            cache_dir: None,
            cache_size: None,
            read_only: false,
            refresh: DEFAULT_REFRESH_SECS,
            keep: cardfs::drive::DEFAULT_KEEP,
            gc_interval: DEFAULT_GC_INTERVAL,
            owner_fingerprint: Some(owner_fingerprint.into()),
            foreground: false,
            options: Vec::new(),
            daemon_child: false,
        }
    }
}

/// Default of `--gc-interval`: the owner's mount collects garbage hourly.
pub const DEFAULT_GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Default of `--refresh`: other members' changes show within seconds; one
/// listing of each open volume's log per interval.
const DEFAULT_REFRESH_SECS: u64 = 5;

/// Folds `-o` options into the named options (parsing is
/// `cardfs::fuse::options`); returns the mount flags. A bad word is a usage
/// error (exit 2).
fn apply_options(args: &mut MountArgs) -> anyhow::Result<MountFlags> {
    let start = MountFlags {
        read_only: args.read_only,
        ..MountFlags::default()
    };
    let parsed = options::parse(&args.options, start)?;
    let bad = |option: String, problem: String| options::OptionError::Value { option, problem };
    for (name, value) in parsed.cli {
        let opt = format!("{name}={value}");
        match name.as_str() {
            "key" => args.key.key = Some(value),
            "password_file" => args.key.password.password_file = Some(value.into()),
            "cache_dir" => args.cache_dir = Some(value.into()),
            "cache_size" => args.cache_size = Some(parse_size(&value).map_err(|m| bad(opt, m))?),
            "endpoint" => args.store_args.endpoint = Some(value),
            "store_timeout" => {
                args.store_args.store_timeout = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|s| (3..=3600).contains(s))
                        .ok_or_else(|| bad(opt, "not a number of seconds from 3 to 3600".into()))?,
                )
            }
            "keep" => args.keep = super::units::parse_duration(&value).map_err(|m| bad(opt, m))?,
            "gc_interval" => {
                args.gc_interval = super::units::parse_duration(&value).map_err(|m| bad(opt, m))?
            }
            "refresh" => {
                args.refresh = value
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(opt, "not a number of seconds".into()))?
            }
            _ => unreachable!("options::CLI_VALUE_OPTIONS lists only these"),
        }
    }
    args.read_only = parsed.flags.read_only;
    Ok(parsed.flags)
}

/// Parses `512M`, `10G`, `1T`, `4096` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512M or 10G"))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB") {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown size unit in {text:?} (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Runs `cardfs mount`.
pub fn run(mut args: MountArgs) -> anyhow::Result<()> {
    let flags = apply_options(&mut args)?;
    args.store = absolute_store(&args.store)?;
    check_local_store(&args.store)?;
    if args.daemon_child {
        let result = super::logging::to_daemon_log(&cache_dir(&args)?)
            .context("opening the daemon's log")
            .and_then(|_log| {
                serve(&args, &flags, |_, offline| {
                    if offline {
                        report("offline");
                    }
                    report("ready")
                })
            });
        if let Err(err) = &result {
            // Before readiness the parent is listening; afterwards stdout is
            // /dev/null and this goes nowhere.
            report(&format!("error {} {err:#}", exit::code_of(err)));
        }
        return result;
    }
    if args.foreground {
        return serve(&args, &flags, |mnt, offline| {
            if offline {
                eprintln!("cardfs: {OFFLINE_NOTE}");
            }
            eprintln!(
                "cardfs: {} mounted on {}; Ctrl-C or `cardfs unmount {}` to unmount",
                args.store,
                mnt.display(),
                mnt.display()
            );
        });
    }
    background(args, &flags)
}

/// Said when a mount starts offline.
const OFFLINE_NOTE: &str = "the store is unreachable: mounted from the local cache (offline); \
     files not in the cache fail to read (EIO), changes are committed once the store answers";

/// A line to the parent of a daemon child (its stdout pipe).
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.replace('\n', " "));
    let _ = out.flush();
    if line == "ready" {
        detach_stdout();
    }
}

/// Points stdout at /dev/null so the parent sees end-of-file and the
/// daemon never writes into a pipe nobody reads.
#[allow(unsafe_code)] // dup2: std has no safe way to replace fd 1.
fn detach_stdout() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 on two valid descriptors we own (the open /dev/null
        // file and stdout); it replaces fd 1 atomically and touches no memory.
        unsafe {
            libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
        }
    }
}

/// A local store path made absolute (the daemon runs in `/`, and the
/// default cache directory is derived from this string); URLs unchanged.
fn absolute_store(location: &str) -> anyhow::Result<String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let path = std::path::absolute(location)
        .with_context(|| format!("resolving store path {location}"))?;
    Ok(path.to_string_lossy().into_owned())
}

/// A local store that does not exist cannot be reached (exit 20); only
/// `init` creates one.
fn check_local_store(location: &str) -> anyhow::Result<()> {
    let path = match location.strip_prefix("file://") {
        Some(path) => path,
        None if location.contains("://") => return Ok(()),
        None => location,
    };
    if !Path::new(path).is_dir() {
        return Err(exit::UserError::StoreUnreachable {
            store: location.into(),
            reason: "no such directory".into(),
        }
        .into());
    }
    Ok(())
}

fn cache_dir(args: &MountArgs) -> anyhow::Result<PathBuf> {
    match &args.cache_dir {
        Some(dir) => Ok(dir.clone()),
        None => paths::default_cache_dir(&args.store),
    }
}

/// Starts the daemon child and waits until it is ready or has failed.
fn background(args: MountArgs, flags: &MountFlags) -> anyhow::Result<()> {
    // Errors found here are the same the child would find, but clearer
    // before a process is spawned.
    let mnt = mountpoint::check_free(&args.mountpoint)?;
    if !flags.nonempty {
        mountpoint::check_empty(&mnt)?;
    }
    let cache_dir = mountpoint::absolute(&cache_dir(&args)?)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cache_dir)
            .with_context(|| format!("creating cache directory {}", cache_dir.display()))?;
    }
    let password = open::password_for_child(&args.key)?;
    let log_path = paths::daemon_log(&cache_dir);

    let mut cmd = Command::new(std::env::current_exe().context("locating the cardfs binary")?);
    cmd.arg("mount")
        .arg(&args.store)
        .arg(&mnt)
        .arg("--daemon-child")
        .arg("--cache-dir")
        .arg(&cache_dir);
    if let Some(key) = &args.key.key {
        cmd.arg("--key").arg(key);
    }
    if let Some(size) = args.cache_size {
        cmd.arg("--cache-size").arg(size.to_string());
    }
    if args.read_only {
        cmd.arg("--read-only");
    }
    cmd.arg("--refresh").arg(args.refresh.to_string());
    cmd.arg("--keep").arg(format!("{}s", args.keep.as_secs()));
    cmd.arg("--gc-interval")
        .arg(format!("{}s", args.gc_interval.as_secs()));
    if let Some(fp) = &args.owner_fingerprint {
        cmd.arg("--owner-fingerprint").arg(fp);
    }
    cmd.arg("-o").arg(options::to_words(flags).join(","));
    if let Some(endpoint) = &args.store_args.endpoint {
        cmd.arg("--endpoint").arg(endpoint);
    }
    if let Some(secs) = args.store_args.store_timeout {
        cmd.arg("--store-timeout").arg(secs.to_string());
    }
    match (&password, &args.key.password.password_file) {
        (Some(_), _) => {
            cmd.arg("--password-file").arg("/dev/stdin");
        }
        (None, Some(file)) => {
            cmd.arg("--password-file").arg(mountpoint::absolute(file)?);
        }
        (None, None) => {}
    }
    // The daemon lives for days: no password in its environment
    // (/proc/PID/environ); it gets one on stdin or reads the file itself.
    cmd.env_remove(super::password::PASSWORD_ENV)
        .env_remove(super::password::NEW_PASSWORD_ENV);
    use std::os::unix::process::CommandExt;
    cmd.stdin(if password.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    // It logs to daemon.log itself (see `logging`); a write to a stderr
    // on a full disk must not be able to kill it.
    .stderr(Stdio::null())
    // Out of the caller's directory, so it never keeps it busy.
    .current_dir("/")
    // Its own process group: Ctrl-C in this terminal must not reach it.
    .process_group(0);
    let mut child = cmd.spawn().context("starting the mount daemon")?;
    if let (Some(pw), Some(mut stdin)) = (password, child.stdin.take()) {
        stdin.write_all(&pw)?;
        // Dropping stdin closes it: the child reads to end of file.
    }
    let stdout = child.stdout.take().context("daemon stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line == "offline" {
            eprintln!("cardfs: {OFFLINE_NOTE}");
            continue;
        }
        if line == "ready" {
            println!(
                "mounted {} on {} (daemon pid {}, log {})\nunmount with: cardfs unmount {}",
                args.store,
                mnt.display(),
                child.id(),
                log_path.display(),
                mnt.display()
            );
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("error ") {
            let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = child.wait();
            return Err(exit::DaemonError {
                code: code.parse().unwrap_or(exit::GENERIC),
                message: message.to_string(),
            }
            .into());
        }
    }
    let status = child.wait()?;
    anyhow::bail!(
        "the mount daemon exited ({status}) before the mount was ready; see {}",
        log_path.display()
    )
}

/// Does the work of a mount in this process: verify, mount, serve until
/// unmounted. `ready` is called once the mount answers requests, with
/// whether it was mounted offline (from the cache, store unreachable).
fn serve(
    args: &MountArgs,
    flags: &MountFlags,
    ready: impl FnOnce(&Path, bool),
) -> anyhow::Result<()> {
    daemon::private_files();
    let mnt = mountpoint::check_free(&args.mountpoint)?;
    if !flags.nonempty {
        mountpoint::check_empty(&mnt)?;
    }
    let cache_dir = mountpoint::absolute(&cache_dir(args)?)?;
    let _lock = daemon::lock_cache_dir(&cache_dir, &mnt)?;
    let key = open::unlock_key(&args.key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cardfs-rt")
        .build()
        .context("starting the async runtime")?;
    let (store, me, offline) = rt.block_on(async {
        let (store, header, offline) = match open::open_store(&args.store, &args.store_args).await
        {
            Ok(store) => {
                open::ensure_not_empty(store.as_ref(), &args.store).await?;
                let header = cardfs::drive::read_header(store.as_ref())
                    .await
                    .map_err(|e| open::drive_error(e, &args.store))?;
                (store, header, false)
            }
            // A drive opened here before mounts from the cache (offline).
            Err(e) if open::is_unreachable(&e) => {
                let Some(header) = cardfs::drive::cached_header(&cache_dir)
                    .map_err(|e| open::drive_error(e, &args.store))?
                else {
                    return Err(e);
                };
                tracing::warn!(
                    "{e:#}: mounting from the local cache (offline); changes are committed once the store answers again"
                );
                let store = open::open_store_offline(&args.store, &args.store_args).await?;
                (store, header, true)
            }
            Err(e) => return Err(e),
        };
        let me = open::with_card(key, Some(&header.owner_card))?;
        let cards = super::card_files::card_store()?;
        if let owner::Owner::Other(card, _) =
            owner::check(&header, &me, &cards, args.owner_fingerprint.as_deref())?
        {
            tracing::info!(
                "drive owned by {} ({}), whose card is pinned here",
                card.identity(),
                card.fingerprint()
            );
        }
        anyhow::Ok((store, me, offline))
    })?;
    let mut opts = DriveOptions::new(&cache_dir);
    opts.read_only = args.read_only;
    opts.refresh_interval = std::time::Duration::from_secs(args.refresh);
    opts.store_timeout = args.store_args.store_timeout();
    opts.whole_blocks_on_random_reads = !matches!(
        cardfs::store::parse_location(&args.store),
        Ok(cardfs::store::Location::Local(_))
    );
    if let Some(size) = args.cache_size {
        opts.cache_size = size;
    }
    let drive = rt
        .block_on(Drive::open_drive(store.clone(), me.identity, opts))
        .map_err(|e| open::drive_error(e, &args.store))?;

    let settings = MountSettings {
        source: args.store.clone(),
        flags: flags.clone(),
    };
    let fs = DriveFs::new(
        drive.clone(),
        rt.handle().clone(),
        settings.writeback_cache(),
    )
    .with_ownership(flags.ownership);
    let plan = daemon::MountPlan {
        fs,
        mountpoint: mnt.clone(),
        config: settings.config(),
        socket: control::socket_path(&mnt)?,
        info: super::control_messages::MountInfo {
            mountpoint: mnt.display().to_string(),
            store: args.store.clone(),
            cache_dir: cache_dir.display().to_string(),
            daemon_pid: std::process::id(),
            read_only: args.read_only,
        },
    };
    let result = daemon::serve(
        &rt,
        Arc::new(DriveBackend::new(drive, store).with_gc(args.keep, args.gc_interval)),
        plan,
        |mnt: &Path| ready(mnt, offline),
    );
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        m: MountArgs,
    }

    fn parse(argv: &[&str]) -> MountArgs {
        T::try_parse_from(std::iter::once("t").chain(argv.iter().copied()))
            .unwrap()
            .m
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn fstab_options_fold_into_arguments() {
        let mut a = parse(&[
            "s3://b",
            "/mnt",
            "-o",
            "rw,noauto,_netdev,key=alice,allow_other,writeback_cache",
            "-o",
            "cache_size=2G,password_file=/etc/pw,x-systemd.automount,ro,refresh=12,store_timeout=9",
        ]);
        let flags = apply_options(&mut a).unwrap();
        assert!(flags.allow_other && !flags.allow_root && flags.writeback_cache);
        assert_eq!(a.key.key.as_deref(), Some("alice"));
        assert_eq!(a.cache_size, Some(2 << 30));
        assert_eq!(a.key.password.password_file, Some(PathBuf::from("/etc/pw")));
        assert!(a.read_only);
        assert_eq!(a.refresh, 12);
        assert_eq!(
            a.store_args.store_timeout(),
            std::time::Duration::from_secs(9)
        );
    }

    #[test]
    fn unknown_or_incomplete_options_are_refused() {
        let mut a = parse(&["d", "/m", "-o", "frobnicate"]);
        let err = apply_options(&mut a).unwrap_err();
        assert_eq!(exit::code_of(&err), 2, "{err:#}");
        let mut a = parse(&["d", "/m", "-o", "key"]);
        assert!(apply_options(&mut a).is_err());
        let mut a = parse(&["d", "/m", "-o", "refresh=0"]);
        assert!(apply_options(&mut a).is_err());
        let mut a = parse(&["d", "/m", "-o", "store_timeout=1"]);
        let err = apply_options(&mut a).unwrap_err();
        assert_eq!(exit::code_of(&err), 2, "{err:#}");
    }
}
