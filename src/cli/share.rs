//! `cardfs share add|remove|list|rotate`: folder sharing on a mounted
//! drive. The command finds the mount holding PATH, resolves the member's
//! card here (local pins, then the drive's card directory through the
//! daemon; see [`super::member`]), and asks the mount daemon over its
//! control socket to change the folder's keyring.
//!
//! Invariants: only a card that passed [`member::resolve`] is ever sent to
//! the daemon; every path and card travels hex-encoded (see
//! [`control::Request`]).

use super::backend::{YOUR_ROLE, role_name};
use super::control::{self, Request};
use super::exit::UserError;
use super::member::{self, Directory, Vouched};
use super::mountpoint;
use super::progress::Progress;
use anyhow::Context;
use cardfs::drive::Role;
use cardfs::format::card::{Card, CardId};
use cardfs::format::wire::{hex, parse_hex};
use cardfs::identity::cards::CardStore;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum ShareCommand {
    /// Share the folder PATH of a mounted drive you own with a card
    /// holder (as a writer, or a reader with --read-only). Sharing again
    /// with a member changes their role.
    Add {
        /// A folder on a mounted cardfs drive.
        path: PathBuf,
        /// The member: an identity or a full card id.
        #[arg(long, value_name = "IDENTITY|CARD_ID")]
        with: String,
        /// Read-only member: their writes fail (EROFS).
        #[arg(long)]
        read_only: bool,
        /// The member's card fingerprint, compared with them over a
        /// channel you trust (needed once for a card not yet pinned).
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
    },
    /// Remove a member from the shared folder PATH: the folder moves to a
    /// new key that the member never gets.
    Remove {
        path: PathBuf,
        /// The member: an identity or a full card id.
        #[arg(long, value_name = "IDENTITY|CARD_ID")]
        with: String,
    },
    /// List the shared folders of the mount holding PATH (default: every
    /// running mount) with their members.
    List { path: Option<PathBuf> },
    /// Re-encrypt every file of the shared folder PATH under its current
    /// key, so nothing in it can be read with keys of earlier members.
    Rotate {
        /// Rewrite every block (required: it is the only rotation there is;
        /// `share remove` already moves the folder to a new key).
        #[arg(long, required = true)]
        reencrypt: bool,
        path: PathBuf,
    },
}

pub fn run(command: ShareCommand) -> anyhow::Result<()> {
    match command {
        ShareCommand::Add {
            path,
            with,
            read_only,
            fingerprint,
        } => add(&path, &with, read_only, fingerprint.as_deref()),
        ShareCommand::Remove { path, with } => remove(&path, &with),
        ShareCommand::List { path } => list(path.as_deref()),
        ShareCommand::Rotate { reencrypt: _, path } => rotate(&path),
    }
}

/// A path on a mounted drive: the mountpoint and the path below it.
struct OnMount {
    mnt: PathBuf,
    rel: PathBuf,
}

/// Finds the cardfs mount holding `path` (which must exist).
fn locate(path: &Path) -> anyhow::Result<OnMount> {
    let abs = path
        .canonicalize()
        .with_context(|| format!("cannot use {}", path.display()))?;
    let mounts = mountpoint::mounts().context("reading /proc/self/mountinfo")?;
    let mnt = mounts
        .into_iter()
        .filter(|m| m.fstype == "fuse.cardfs" && abs.starts_with(&m.mountpoint))
        .map(|m| m.mountpoint)
        .max_by_key(|m| m.components().count())
        .ok_or_else(|| UserError::NotMounted { path: abs.clone() })?;
    let rel = abs.strip_prefix(&mnt)?.to_path_buf();
    Ok(OnMount { mnt, rel })
}

/// The drive's card directory, reached through the mount daemon.
struct ViaDaemon<'a> {
    mnt: &'a Path,
}

impl Directory for ViaDaemon<'_> {
    fn find(&mut self, identity: &str) -> anyhow::Result<Vec<Card>> {
        let request = Request::CardsFind {
            identity: identity.into(),
        };
        cards_from(control::call(self.mnt, request, |_, _| {})?)
    }

    fn get(&mut self, id: CardId) -> anyhow::Result<Option<Card>> {
        let fields = control::call(self.mnt, Request::CardGet { id: id.0 }, |_, _| {})?;
        Ok(cards_from(fields)?.into_iter().next())
    }
}

/// The `card` fields of a daemon answer, verified again; `rejected`
/// fields become warnings.
fn cards_from(fields: Vec<(String, String)>) -> anyhow::Result<Vec<Card>> {
    let mut out = Vec::new();
    for (name, value) in fields {
        match name.as_str() {
            "card" => out.push(Card::from_text(&value).context("a card the daemon sent")?),
            "rejected" => eprintln!("warning: skipped store object {value}"),
            _ => {}
        }
    }
    Ok(out)
}

fn card_store() -> anyhow::Result<CardStore> {
    super::card_files::card_store()
}

fn rel_bytes(rel: &Path) -> Vec<u8> {
    rel.as_os_str().as_bytes().to_vec()
}

/// Refuses early, before any card is looked up or pinned, when the user
/// does not own the drive mounted at `at` (the daemon would refuse too).
fn ensure_owner(at: &OnMount) -> anyhow::Result<()> {
    let fields = control::call(&at.mnt, Request::Status, |_, _| {})?;
    let owner = fields
        .iter()
        .any(|(name, value)| name == YOUR_ROLE && value == "owner");
    if !owner {
        return Err(UserError::NotOwner {
            path: at.mnt.join(&at.rel),
        }
        .into());
    }
    Ok(())
}

fn add(path: &Path, with: &str, read_only: bool, fingerprint: Option<&str>) -> anyhow::Result<()> {
    let at = locate(path)?;
    ensure_owner(&at)?;
    let cards = card_store()?;
    let mut directory = ViaDaemon { mnt: &at.mnt };
    let (card, vouched) =
        member::resolve(&cards, with, fingerprint, &mut directory, "--fingerprint")?;
    match &vouched {
        Vouched::Pinned => {}
        Vouched::Authority(a) => eprintln!(
            "Pinned card {} ({}), approved by authority {a}",
            card.identity(),
            card.fingerprint()
        ),
        Vouched::Fingerprint => eprintln!(
            "Pinned card {} ({}): fingerprint confirmed",
            card.identity(),
            card.fingerprint()
        ),
    }
    let request = Request::ShareAdd {
        path: rel_bytes(&at.rel),
        read_only,
        card: card.to_bytes(),
    };
    let shares = shares_from(control::call(&at.mnt, request, |_, _| {})?)?;
    let role = if read_only { "reader" } else { "writer" };
    println!(
        "shared {} with {} ({}) as {role}",
        at.mnt.join(&at.rel).display(),
        card.identity(),
        card.fingerprint()
    );
    print_shares(&cards, &shares);
    Ok(())
}

fn remove(path: &Path, with: &str) -> anyhow::Result<()> {
    let at = locate(path)?;
    ensure_owner(&at)?;
    let cards = card_store()?;
    // Removing needs no trust decision: only the card id is sent, and a
    // member's id is in the folder's member list (as `share list` shows).
    let card_id = match with.parse::<CardId>() {
        Ok(id) => id,
        Err(_) => match cards.get(with)? {
            Some(card) => card.id(),
            None => anyhow::bail!(
                "no card is pinned here for {with}; name the member by the card id \
                 `cardfs share list` shows"
            ),
        },
    };
    let request = Request::ShareRemove {
        path: rel_bytes(&at.rel),
        card_id: card_id.0,
    };
    let shares = shares_from(control::call(&at.mnt, request, |_, _| {})?)?;
    println!(
        "removed {with} from {}: the folder has a new key they never get; files they \
         already read or kept are not taken back (see `cardfs share rotate --reencrypt`)",
        at.mnt.join(&at.rel).display()
    );
    print_shares(&cards, &shares);
    Ok(())
}

fn list(path: Option<&Path>) -> anyhow::Result<()> {
    let cards = card_store()?;
    let Some(path) = path else {
        let mut any = false;
        for entry in mountpoint::mounts()?
            .into_iter()
            .filter(|m| m.fstype == "fuse.cardfs")
        {
            // Mounts of other homes have no socket here: skip them.
            let Ok(fields) = control::call(&entry.mountpoint, Request::ShareList, |_, _| {}) else {
                continue;
            };
            let shares = shares_from(fields)?;
            println!("{}", entry.mountpoint.display());
            if shares.is_empty() {
                println!("  (no shared folders)");
            }
            print_shares(&cards, &shares);
            any = true;
        }
        if !any {
            println!("no cardfs drive is mounted");
        }
        return Ok(());
    };
    let at = locate(path)?;
    let shares = shares_from(control::call(&at.mnt, Request::ShareList, |_, _| {})?)?;
    let shares: Vec<Share> = shares
        .into_iter()
        .filter(|s| Path::new(std::ffi::OsStr::from_bytes(&s.path)).starts_with(&at.rel))
        .collect();
    if shares.is_empty() {
        println!("no shared folder at or under {}", path.display());
    }
    print_shares(&cards, &shares);
    Ok(())
}

fn rotate(path: &Path) -> anyhow::Result<()> {
    let at = locate(path)?;
    let progress = Progress::new("re-encrypting");
    let request = Request::ShareReencrypt {
        path: rel_bytes(&at.rel),
    };
    let result = control::call(&at.mnt, request, |d, t| progress.update(d, t));
    progress.finish();
    result?;
    println!(
        "re-encrypted every file of {} under the folder's current key",
        at.mnt.join(&at.rel).display()
    );
    Ok(())
}

/// A shared folder as the daemon reports it (see [`share_field`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub path: Vec<u8>,
    pub volume: [u8; 16],
    pub generation: u32,
    pub owner: [u8; 32],
    pub my_role: Role,
    pub members: Vec<([u8; 32], Role)>,
}

fn role_from(name: &str) -> Option<Role> {
    match name {
        "reader" => Some(Role::Reader),
        "writer" => Some(Role::Writer),
        "owner" => Some(Role::Owner),
        _ => None,
    }
}

fn parse_share(value: &str) -> Option<Share> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [path, volume, generation, owner, my_role, members] = parts.as_slice() else {
        return None;
    };
    let members = members
        .split(',')
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (id, role) = m.split_once(':')?;
            Some((parse_hex(id)?, role_from(role)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Share {
        path: if *path == "." {
            Vec::new()
        } else {
            control::unhex(path)?
        },
        volume: parse_hex(volume)?,
        generation: generation.parse().ok()?,
        owner: parse_hex(owner)?,
        my_role: role_from(my_role)?,
        members,
    })
}

fn shares_from(fields: Vec<(String, String)>) -> anyhow::Result<Vec<Share>> {
    fields
        .iter()
        .filter(|(name, _)| name == "share")
        .map(|(_, value)| {
            parse_share(value).with_context(|| format!("unreadable share from the daemon: {value}"))
        })
        .collect()
}

/// A member's name: the identity of their pinned card, else the card id.
fn who(cards: &CardStore, id: &[u8; 32]) -> String {
    match cards.find_id(CardId(*id)) {
        Ok(Some(card)) => format!("{}\t{}", card.identity(), card.fingerprint()),
        _ => format!("card {}\t(not pinned here)", hex(id)),
    }
}

fn print_shares(cards: &CardStore, shares: &[Share]) {
    for s in shares {
        println!(
            "  {}\t(you: {}, key generation {})",
            String::from_utf8_lossy(&s.path),
            role_name(s.my_role),
            s.generation
        );
        for (id, role) in &s.members {
            println!("    {}\t{}", role_name(*role), who(cards, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::backend::share_field;
    use cardfs::drive::ShareInfo;
    use cardfs::drive::ShareMember;

    #[test]
    fn share_fields_round_trip() {
        let info = ShareInfo {
            ino: 7,
            path: "a b/\ndéjà".into(),
            volume: [4; 16],
            generation: 3,
            owner: [1; 32],
            members: vec![
                ShareMember {
                    card_id: [1; 32],
                    role: Role::Owner,
                },
                ShareMember {
                    card_id: [2; 32],
                    role: Role::Reader,
                },
            ],
            my_role: Role::Writer,
        };
        let (name, value) = share_field(&info);
        assert_eq!(name, "share");
        assert!(!value.contains('\n'));
        let got = shares_from(vec![(name, value)]).unwrap();
        assert_eq!(
            got,
            [Share {
                path: "a b/\ndéjà".as_bytes().to_vec(),
                volume: [4; 16],
                generation: 3,
                owner: [1; 32],
                my_role: Role::Writer,
                members: vec![([1; 32], Role::Owner), ([2; 32], Role::Reader)],
            }]
        );
        assert!(shares_from(vec![("share".into(), "x".into())]).is_err());
    }
}
