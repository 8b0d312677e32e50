//! The `cardfs` command line: argument parsing, prompts, progress output and
//! exit codes. The only place `anyhow` is used; library errors are typed.

mod backend;
mod card;
mod card_files;
mod control;
mod control_cmds;
mod control_messages;
mod daemon;
mod directory;
mod envelope;
mod exit;
mod fsck;
mod history;
mod init;
mod invitation;
mod key;
mod logging;
mod member;
mod mount;
mod mount_record;
mod mountpoint;
mod open;
mod owner;
pub mod password;
mod paths;
mod progress;
mod share;
mod units;
mod upload_meter;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// End-to-end encrypted cloud storage, shared by public key.
#[derive(Debug, Parser)]
#[command(name = "cardfs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that this machine can mount FUSE filesystems: mounts a small
    /// read-only filesystem on a temporary directory and reads it back.
    Doctor,
    /// Create an empty encrypted drive in STORE, owned by the key's card.
    Init {
        /// A directory, file:///DIR or s3://BUCKET[/PREFIX].
        store: String,
        #[command(flatten)]
        key: open::KeyArgs,
        #[command(flatten)]
        store_args: open::StoreArgs,
        /// Create the S3 bucket first (a bucket you already own is fine).
        #[arg(long)]
        create_bucket: bool,
    },
    /// Mount the drive in STORE on MOUNTPOINT. Returns once the mount is
    /// usable, with the daemon in the background (unless --foreground).
    Mount(mount::MountArgs),
    /// Commit every pending change of a mounted drive, then unmount it.
    Unmount {
        /// Where the drive is mounted.
        mountpoint: PathBuf,
    },
    /// Push every pending change of a mounted drive to the store now and
    /// wait until it is committed.
    Sync {
        /// Where the drive is mounted.
        mountpoint: PathBuf,
    },
    /// Delete content objects no state within the drive's history
    /// retention references (the drive's owner, on a mounted drive).
    Gc {
        /// Where the drive is mounted.
        mountpoint: PathBuf,
        /// Leave unreferenced objects younger than this in the store
        /// (uploads of other clients not committed yet): 1h, 30m, 0.
        #[arg(long, value_name = "DURATION", default_value = "1h",
              value_parser = units::parse_duration)]
        grace: std::time::Duration,
        /// Keep every state of the last DURATION whole for this run
        /// (default: the mount's `--keep`, 7 days unless set).
        #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
        keep: Option<std::time::Duration>,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repack small files' packs until the dead bytes left in them are
        /// at most PERCENT of their live bytes (packs under half live are
        /// always repacked): lower keeps less dead data, moves more bytes.
        #[arg(long, value_name = "PERCENT",
              default_value_t = cardfs::drive::DEFAULT_PACK_WASTE_PERCENT)]
        pack_waste: u64,
        /// Print the figures as one JSON object (fields in docs/CLI.md).
        #[arg(long)]
        json: bool,
    },
    /// Show mounted drives: store, pending uploads, last commit, whether
    /// the store is reachable.
    Status {
        /// Only this mount (default: every mount of this user).
        mountpoint: Option<PathBuf>,
        /// Print a JSON array, one object per mount (fields in docs/CLI.md).
        #[arg(long)]
        json: bool,
    },
    /// Check a mounted drive you own: every volume's keyrings, log and
    /// snapshots, every content object its files reference; counts
    /// orphaned objects. Exit 50 when something is missing or damaged.
    Fsck {
        /// Where the drive is mounted.
        mountpoint: PathBuf,
        /// Print the report as JSON (fields in docs/CLI.md).
        #[arg(long)]
        json: bool,
        /// Fetch and decrypt every content object (otherwise presence and
        /// size are checked from the store listing).
        #[arg(long)]
        verify_content: bool,
    },
    /// List the versions of a file or folder on a mounted drive (also of
    /// one deleted since), from the history the store keeps.
    History {
        /// A path on a mounted drive (it may no longer exist).
        path: PathBuf,
        /// Print a JSON array of versions (fields in docs/CLI.md).
        #[arg(long)]
        json: bool,
    },
    /// Bring a file or folder back as it was at a time: as a new copy,
    /// never over anything (PATH itself if it is gone, else
    /// PATH.restored-TIME, or DEST).
    Restore {
        /// A path on a mounted drive (it may no longer exist).
        path: PathBuf,
        /// RFC 3339 (2026-11-29T10:14:00Z), a date, or a span ago (2h, 3d).
        #[arg(long, value_name = "TIME")]
        at: String,
        /// Where to put it (must not exist; in the same shared folder, or
        /// outside any, as PATH).
        #[arg(long, value_name = "DEST")]
        to: Option<PathBuf>,
    },
    /// Mount a drive someone shared with you, from the invitation line
    /// their `cardfs share add` printed (shows their fingerprint to compare).
    Join(invitation::JoinArgs),
    /// Share folders of a mounted drive with other card holders.
    #[command(subcommand)]
    Share(share::ShareCommand),
    /// Password-locked keys (X25519 for encryption, Ed25519 for signatures).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Cards: an identity bound to a key's public halves, self-signed.
    #[command(subcommand)]
    Card(card::CardCommand),
    /// Authorities that approve cards, and which ones this home trusts.
    #[command(subcommand)]
    Authority(card::AuthorityCommand),
    /// Encrypt (and optionally sign) data for one or more cards.
    Encrypt(envelope::EncryptArgs),
    /// Decrypt data encrypted to one of your keys (and check its signature).
    Decrypt(envelope::DecryptArgs),
    /// Print the manual page (roff), e.g. `cardfs man > cardfs.1`.
    Man,
    /// Print a shell completion script, e.g.
    /// `cardfs completions bash > /etc/bash_completion.d/cardfs`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Parses the arguments, runs the command, and turns errors into one clear
/// sentence on stderr and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Mount(_)) {
        quiet_broken_pipe();
    }
    // A mount daemon logs to its cache directory (see `mount::run`).
    let _log = match &cli.command {
        Command::Mount(args) if args.daemon_child => None,
        _ => Some(logging::to_stderr()),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cardfs: {err:#}");
            ExitCode::from(exit::code_of(&err))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor => doctor(),
        Command::Init {
            store,
            key,
            store_args,
            create_bucket,
        } => init::run(&store, &key, &store_args, create_bucket),
        Command::Mount(args) => mount::run(args),
        Command::Unmount { mountpoint } => control_cmds::unmount(&mountpoint),
        Command::Sync { mountpoint } => control_cmds::sync(&mountpoint),
        Command::Gc {
            mountpoint,
            grace,
            keep,
            dry_run,
            pack_waste,
            json,
        } => control_cmds::gc(&mountpoint, grace, keep, dry_run, pack_waste, json),
        Command::Status { mountpoint, json } => control_cmds::status(mountpoint.as_deref(), json),
        Command::Fsck {
            mountpoint,
            json,
            verify_content,
        } => fsck::run(&mountpoint, json, verify_content),
        Command::History { path, json } => history::history(&path, json),
        Command::Restore { path, at, to } => history::restore(&path, &at, to.as_deref()),
        Command::Join(args) => invitation::join(args),
        Command::Share(c) => share::run(c),
        Command::Key(c) => key::run(c),
        Command::Card(c) => card::run_card(c),
        Command::Authority(c) => card::run_authority(c),
        Command::Encrypt(a) => envelope::encrypt(a),
        Command::Decrypt(a) => envelope::decrypt(a),
        Command::Man => {
            use clap::CommandFactory;
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "cardfs", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn doctor() -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = tempfile_dir()?;
    let probe = b"cardfs can mount here\n".to_vec();
    let fs = cardfs::fuse::StaticFs::new(vec![("probe".into(), probe.clone())]);
    let mut config = fuser::Config::default();
    config.mount_options.extend([
        fuser::MountOption::RO,
        fuser::MountOption::FSName("cardfs-doctor".into()),
    ]);
    let session = fuser::spawn_mount(fs, &dir, &config).with_context(|| {
        format!(
            "cannot mount FUSE on {} (is /dev/fuse present and usable?)",
            dir.display()
        )
    })?;
    let read = std::fs::read(dir.join("probe"));
    session
        .umount_and_join()
        .context("unmounting the probe filesystem")?;
    std::fs::remove_dir(&dir).ok();
    anyhow::ensure!(
        read.context("reading through the probe mount")? == probe,
        "the probe mount returned wrong bytes"
    );
    println!("FUSE works: mounted, read and unmounted a probe filesystem");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cardfs-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Restores the default action of SIGPIPE, so `cardfs ... | head` ends
/// quietly when `head` stops reading, as every Unix tool does (Rust ignores
/// SIGPIPE, and the failed write would otherwise print "Broken pipe" or
/// panic). Not for `mount`: a daemon must see EPIPE on a closed control
/// socket, not die.
#[allow(unsafe_code)] // signal(2): std has no way to restore SIGPIPE.
fn quiet_broken_pipe() {
    // SAFETY: called first thing in main, before any thread is started;
    // setting a signal's disposition to SIG_DFL touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
