//! `cardfs share add|remove|list|rotate`: folder sharing on a mounted
//! drive. The command finds the mount holding PATH, resolves the member's
//! card here (local pins, then the drive's card directory through the
//! daemon; see [`super::member`]), and asks the mount daemon over its
//! control socket to change the folder's keyring.
//!
//! Invariant: only a card that passed [`member::resolve`] is ever sent to
//! the daemon.

use super::control::{self, Answer, Request};
use super::control_messages::{ShareReport, StatusReport};
use super::exit::UserError;
use super::member::{self, Directory, Vouched};
use super::mountpoint;
use super::progress::Progress;
use anyhow::Context;
use cardfs::format::card::{Card, CardId};
use cardfs::format::wire::hex;
use cardfs::identity::cards::CardStore;
use serde::Serialize;
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
    List {
        path: Option<PathBuf>,
        /// Print a JSON array, one object per shared folder (fields in
        /// docs/CLI.md).
        #[arg(long)]
        json: bool,
    },
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
        ShareCommand::List { path, json } => list(path.as_deref(), json),
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
    let mnt = mountpoint::cardfs_mount_holding(&abs)
        .context("reading /proc/self/mountinfo")?
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

/// The cards of a daemon answer, verified again; rejected objects become
/// warnings.
fn cards_from(answer: Answer) -> anyhow::Result<Vec<Card>> {
    let Answer::Cards { cards, rejected } = answer else {
        anyhow::bail!("the mount daemon answered a card lookup with {answer:?}");
    };
    for r in rejected {
        eprintln!("warning: skipped store object {r}");
    }
    cards
        .iter()
        .map(|c| Card::from_text(c).context("a card the daemon sent"))
        .collect()
}

fn card_store() -> anyhow::Result<CardStore> {
    super::card_files::card_store()
}

fn rel_bytes(rel: &Path) -> Vec<u8> {
    rel.as_os_str().as_bytes().to_vec()
}

/// A "no card for WHO" error with the close identities that do have a
/// card (pinned here, or published in the drive's card directory); any
/// other error unchanged.
fn with_suggestions(err: anyhow::Error, cards: &CardStore, mnt: &Path) -> anyhow::Error {
    let Some(UserError::CardNotFound { who, .. }) = err.downcast_ref::<UserError>() else {
        return err;
    };
    let mut names: Vec<String> = (cards.list().unwrap_or_default().iter())
        .map(|c| c.identity().to_string())
        .collect();
    if let Ok(Answer::Cards {
        cards: published, ..
    }) = control::call(mnt, Request::CardsAll, |_, _| {})
    {
        names.extend(
            (published.iter())
                .filter_map(|text| Card::from_text(text).ok())
                .map(|c| c.identity().to_string()),
        );
    }
    UserError::CardNotFound {
        who: who.clone(),
        suggestions: member::close_identities(who, names),
    }
    .into()
}

/// Refuses early, before any card is looked up or pinned, when the user
/// does not own the drive mounted at `at` (the daemon would refuse too).
/// Returns the mount's status.
fn ensure_owner(at: &OnMount) -> anyhow::Result<StatusReport> {
    let status = match control::call(&at.mnt, Request::Status, |_, _| {})? {
        Answer::Status { status } if status.drive.role == "owner" => status,
        _ => {
            return Err(UserError::NotOwner {
                path: at.mnt.join(&at.rel),
            }
            .into());
        }
    };
    Ok(*status)
}

fn add(path: &Path, with: &str, read_only: bool, fingerprint: Option<&str>) -> anyhow::Result<()> {
    let at = locate(path)?;
    let status = ensure_owner(&at)?;
    let cards = card_store()?;
    let mut directory = ViaDaemon { mnt: &at.mnt };
    let (card, vouched) =
        member::resolve(&cards, with, fingerprint, &mut directory, "--fingerprint")
            .map_err(|e| with_suggestions(e, &cards, &at.mnt))?;
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
    if let (Some(owner), Some(fp)) = (
        &status.drive.owner_identity,
        &status.drive.owner_fingerprint,
    ) {
        let folder = at.rel.to_string_lossy();
        let invitation = super::invitation::Invitation::new(&status.store, &folder, owner, fp);
        eprintln!(
            "Send {} this invitation; they mount the drive with \
             `cardfs join INVITATION MOUNTPOINT`:",
            card.identity()
        );
        println!("{}", invitation.to_line());
    }
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

fn list(path: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let cards = card_store()?;
    // (mountpoint, its shared folders) of every mount asked.
    let mut found: Vec<(PathBuf, Vec<ShareReport>)> = Vec::new();
    match path {
        None => {
            for entry in mountpoint::mounts()?
                .into_iter()
                .filter(|m| m.fstype == "fuse.cardfs")
            {
                // Mounts of other homes have no socket here: skip them.
                let Ok(answer) = control::call(&entry.mountpoint, Request::ShareList, |_, _| {})
                else {
                    continue;
                };
                found.push((entry.mountpoint, shares_from(answer)?));
            }
        }
        Some(path) => {
            let at = locate(path)?;
            let shares = shares_from(control::call(&at.mnt, Request::ShareList, |_, _| {})?)?;
            let shares = shares
                .into_iter()
                .filter(|s| Path::new(&s.path).starts_with(&at.rel))
                .collect();
            found.push((at.mnt, shares));
        }
    }
    if json {
        let listed: Vec<ListedShare> = found
            .iter()
            .flat_map(|(mnt, shares)| shares.iter().map(|s| listed(&cards, mnt, s)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    match (path, found.is_empty()) {
        (None, true) => println!("no cardfs drive is mounted"),
        (Some(path), _) if found.iter().all(|(_, s)| s.is_empty()) => {
            println!("no shared folder at or under {}", path.display())
        }
        _ => {}
    }
    for (mnt, shares) in &found {
        if path.is_none() {
            println!("{}", mnt.display());
            if shares.is_empty() {
                println!("  (no shared folders)");
            }
        }
        print_shares(&cards, shares);
    }
    Ok(())
}

/// One object of `cardfs share list --json` (documented in docs/CLI.md).
#[derive(Debug, Serialize)]
struct ListedShare {
    mountpoint: PathBuf,
    path: String,
    generation: u32,
    your_role: String,
    owner_card_id: String,
    members: Vec<ListedMember>,
}

#[derive(Debug, Serialize)]
struct ListedMember {
    card_id: String,
    role: String,
    /// The identity and fingerprint of the member's card when it is pinned
    /// here, else `null`.
    identity: Option<String>,
    fingerprint: Option<String>,
}

fn listed(cards: &CardStore, mnt: &Path, s: &ShareReport) -> ListedShare {
    ListedShare {
        mountpoint: mnt.to_path_buf(),
        path: s.path.clone(),
        generation: s.generation,
        your_role: s.my_role.clone(),
        owner_card_id: hex(&s.owner),
        members: (s.members.iter())
            .map(|m| {
                let card = cards.find_id(CardId(m.card_id)).ok().flatten();
                ListedMember {
                    card_id: hex(&m.card_id),
                    role: m.role.clone(),
                    identity: card.as_ref().map(|c| c.identity().to_string()),
                    fingerprint: card.as_ref().map(Card::fingerprint),
                }
            })
            .collect(),
    }
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

/// The shared folders of a daemon answer.
fn shares_from(answer: Answer) -> anyhow::Result<Vec<ShareReport>> {
    match answer {
        Answer::Shares { shares } => Ok(shares),
        other => anyhow::bail!("the mount daemon answered a sharing request with {other:?}"),
    }
}

/// A member's name: the identity of their pinned card, else the card id.
fn who(cards: &CardStore, id: &[u8; 32]) -> String {
    match cards.find_id(CardId(*id)) {
        Ok(Some(card)) => format!("{}\t{}", card.identity(), card.fingerprint()),
        _ => format!("card {}\t(not pinned here)", hex(id)),
    }
}

fn print_shares(cards: &CardStore, shares: &[ShareReport]) {
    for s in shares {
        println!(
            "  {}\t(you: {}, key generation {})",
            s.path, s.my_role, s.generation
        );
        for m in &s.members {
            println!("    {}\t{}", m.role, who(cards, &m.card_id));
        }
    }
}
